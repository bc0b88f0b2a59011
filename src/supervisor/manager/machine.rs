//! Feeding the state machines: one event at a time through the machine of
//! the unit's kind (`state::next`, `target::next`), the actions executed in
//! order, transitions logged, OnFailure= started; and the inputs that
//! become events (reaped children, notify messages, timers).

use std::collections::VecDeque;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;

use crate::cgroup::Cgroup;
use crate::supervisor::lines::{self, Line, priority};
use crate::supervisor::notify::Message;
use crate::supervisor::service::ServiceDef;
use crate::supervisor::state::{
    Action, ActiveState, Cmd, Event, Exit, Pid, Refused, ServiceResult, Spec, State, Timer,
};
use crate::supervisor::{state, target};
use crate::unit::model::NotifyAccess;
use crate::unit::{RunitService, Unit};

use crate::supervisor::socket::machine::{Action as SocketAction, Spec as SocketSpec};

use super::{Body, Def, Input, JobRequest, LoadError, Manager, exec::SpawnFailure, now_usec};

/// The actions one step asks for, in the vocabulary of the unit's kind.
pub(super) enum Actions {
    /// A service's (a target's are none).
    Service(Vec<Action>),
    /// A timer's.
    Timer(Vec<crate::supervisor::timer::machine::Action>),
    /// A socket's.
    Socket(Vec<SocketAction>),
}

impl Manager {
    /// Feeds an event that the state machine never refuses (only `Reload` can be).
    pub(super) fn feed(&mut self, name: &str, event: Event) {
        let _ = self.try_feed(name, event);
    }

    /// Feeds `event` to the unit's machine (the one of its kind) and
    /// executes the actions, including the events they produce; refusals
    /// concern the first event only.
    ///
    /// This is the one place where a unit's state changes, whatever its
    /// kind: it keeps the time of the change, logs it, starts OnFailure=
    /// and tells the job driver (`unit_changed`).
    pub(super) fn try_feed(&mut self, name: &str, event: Event) -> Result<(), Refused> {
        self.feeding += 1;
        let fed = self.feed_events(name, event);
        self.feeding -= 1;
        if self.feeding == 0 {
            self.arm_pending();
        }
        fed
    }

    fn feed_events(&mut self, name: &str, event: Event) -> Result<(), Refused> {
        let mut queue = VecDeque::from([event]);
        let mut first = true;
        // Timers count from the unit's leaving and entering inactive; they
        // hear of it once this unit's events are through.
        let mut for_timers = Vec::new();
        let initial = self.units.get(name).map(|e| e.phase());
        while let Some(ev) = queue.pop_front() {
            let Some(e) = self.units.get(name) else {
                return Ok(());
            };
            let def = e.def.clone().ok();
            let before = e.phase();
            // A unit that cannot be loaded has no machine of its own to run,
            // but the manager's verdicts (reset-failed, a failed dependency)
            // still reach it.
            let verdict = ev.verdict_applies(before.active, before.down);
            if def.is_none() && verdict.is_none() {
                return Ok(());
            }
            let applied = (verdict == Some(true)).then(|| ev.clone());
            let (actions, lines) = match self.step(name, def.as_ref(), ev) {
                Ok(r) => r,
                Err(r) if first => return Err(r),
                Err(_) => continue,
            };
            first = false;
            let Some(e) = self.units.get_mut(name) else {
                return Ok(());
            };
            let after = e.phase();
            if before.active != after.active {
                e.since_usec = now_usec();
            }
            if before.is_stopped() != after.is_stopped() {
                for_timers.push(before.is_stopped());
            }
            if let Some(v) = &applied {
                self.record_verdict(name, v);
            } else if verdict.is_none() {
                for line in lines {
                    match line {
                        // Read before EndInvocation removes the cgroup.
                        Line::Consumed(_) => {
                            if let Some(usec) = self.units[name].cgroup().and_then(cpu_usage) {
                                self.line(name, Line::Consumed(usec));
                            }
                        }
                        line => self.line(name, line),
                    }
                }
            }
            // As systemd: OnFailure= when the unit enters the failed state,
            // not for a false assertion (a job result there, not a unit failure).
            if before.active != ActiveState::Failed
                && after.active == ActiveState::Failed
                && after.result != ServiceResult::Assert
                && let Some(d) = &def
            {
                self.start_on_failure(name, d.unit());
            }
            match (def.as_ref(), actions) {
                (Some(Def::Socket(d)), Actions::Socket(list)) => {
                    for a in list {
                        self.execute_socket(name, d, a, &mut queue);
                    }
                    self.socket_settled(name);
                }
                (_, Actions::Timer(list)) => {
                    for a in list {
                        self.execute_timer(name, a);
                    }
                }
                (d, Actions::Service(actions)) => {
                    // RuntimeDirectoryPreserve=restart and SuccessAction= tell a
                    // restart (automatic or asked for) from a stop.
                    let sub = self.units[name].service().map(|s| s.state.sub);
                    let restarting = sub == Some(state::Sub::AutoRestart)
                        || actions.contains(&Action::StartAgain)
                        || self.start_job_waits(name);
                    let failed = after.active == ActiveState::Failed;
                    for a in actions {
                        match (d.and_then(Def::service), a) {
                            (Some(d), Action::EndInvocation) => {
                                self.execute(name, d, Action::EndInvocation, &mut queue);
                                self.invocation_ended(name, d, failed, restarting);
                            }
                            (Some(d), a) => self.execute(name, d, a, &mut queue),
                            (None, Action::Disarm(t)) => self.disarm(name, t),
                            // Verdicts ask for nothing else; without a
                            // definition there is nothing to run anyway.
                            (None, _) => {}
                        }
                    }
                }
                // Verdicts on a socket without a definition ask for nothing.
                (_, Actions::Socket(_)) => {}
            }
            if queue.is_empty() {
                self.reconcile(name, &mut queue);
            }
        }
        self.settle_pending(name);
        self.runit_log_settle(name);
        // Before a job waiting on this change is answered: a client told
        // "stopped" finds the stored fds closed.
        let changed = self.units.get(name).map(|e| e.phase()) != initial;
        if changed && self.service(name).is_some() {
            self.fd_store_settle(name);
        }
        self.persist(name);
        self.check_waiters(name);
        self.unit_changed(name);
        for up in for_timers {
            self.tell_timers(name, up);
        }
        let now = self.units.get(name).map(|e| e.phase());
        if now != initial && self.service(name).is_some() {
            self.tell_sockets(name);
            self.fd_store_settle(name);
        }
        // CollectMode=inactive-or-failed: systemd unloads a failed unit no
        // job refers to, which forgets the failure (the journal keeps it);
        // here the unit stays loaded and is reset, once OnFailure= and the
        // waiting job have seen the failure.
        if now.is_some_and(|p| p.active == ActiveState::Failed)
            && now != initial
            && self
                .units
                .get(name)
                .and_then(|e| e.def.as_ref().ok())
                .is_some_and(|d| d.unit().unit.collect_failed)
            && !self.start_job_waits(name)
        {
            self.reset_failed(name);
        }
        Ok(())
    }

    /// One event through the machine of the unit's kind; the new state is
    /// kept. Answers the actions to execute and the lines to log for the
    /// transition (lines.rs).
    fn step(
        &mut self,
        name: &str,
        def: Option<&Def>,
        ev: Event,
    ) -> Result<(Actions, Vec<Line>), Refused> {
        let Some(e) = self.units.get_mut(name) else {
            return Ok((Actions::Service(Vec::new()), Vec::new()));
        };
        match &mut e.body {
            Body::Service(s) => {
                let fallback;
                let spec = match def.and_then(Def::service) {
                    Some(d) => &d.spec,
                    None => {
                        fallback = Spec::default();
                        &fallback
                    }
                };
                let (next, actions) = state::next(spec, &s.state, ev.clone())?;
                let lines = lines::service_lines(spec, &s.state, &next, &ev);
                let before = std::mem::replace(&mut s.state, next);
                self.sync_pids(name, &before);
                Ok((Actions::Service(actions), lines))
            }
            Body::Target(t) => {
                let next = target::next(t.state, &ev);
                let lines = lines::target_lines(t.state, next);
                t.state = next;
                Ok((Actions::Service(Vec::new()), lines))
            }
            Body::Timer(_) => {
                let (actions, lines) = self.step_timer(name, def, ev);
                Ok((Actions::Timer(actions), lines))
            }
            Body::Socket(s) => {
                let fallback = SocketSpec::default();
                let spec = match def {
                    Some(Def::Socket(d)) => &d.spec,
                    _ => &fallback,
                };
                let (actions, lines) = s.step(spec, ev)?;
                Ok((Actions::Socket(actions), lines))
            }
        }
    }

    /// A start from a stopped state, through the start limit.
    pub(super) fn start_event(&mut self, name: &str) {
        if let Some(ev) = self.admit_start(name, false) {
            self.feed(name, ev);
        }
    }

    /// The start limit's decision on a start due now (`restart`: an
    /// automatic or explicit restart rather than a start job), as the event
    /// to feed: `Start`; `StartLimitHit`, with the reason kept for
    /// `status`; or `BusUnavailable` when a Type=dbus unit cannot reach the
    /// bus. The time is the manager's monotonic clock.
    pub(super) fn admit_start(&mut self, name: &str, restart: bool) -> Option<Event> {
        let now = self.host.now();
        let e = self.units.get_mut(name)?;
        let hit = e.service_mut().and_then(|s| {
            let l = &mut s.start_limit;
            (!l.admit(now)).then_some((l.burst, l.interval))
        });
        if let Some((burst, interval)) = hit {
            e.failure_note = Some((if restart {
                format!(
                    "restarted too often (StartLimitBurst={burst} within StartLimitIntervalSec={interval:?}); \
                     run `corral reset-failed {name}` to allow starting it again"
                )
            } else {
                format!(
                    "start request repeated too quickly (more than StartLimitBurst={burst} starts within StartLimitIntervalSec={interval:?}); \
                     run `corral reset-failed {name}` to allow starting it again"
                )
            }).into());
            return Some(Event::StartLimitHit);
        }
        if !restart {
            e.failure_note = None;
        }
        Some(if self.bus_ready(name) {
            Event::Start
        } else {
            Event::BusUnavailable
        })
    }

    /// What the manager keeps and logs for a verdict the machine applied.
    fn record_verdict(&mut self, name: &str, verdict: &Event) {
        let Some(e) = self.units.get_mut(name) else {
            return;
        };
        let lines = match verdict {
            Event::ResetFailed => {
                e.failure_note = None;
                return;
            }
            Event::ConditionFalse { reason } => {
                e.failure_note = None;
                self.graph.skipped.insert(name.to_string(), reason.clone());
                vec![Line::ConditionSkipped(reason.clone())]
            }
            Event::AssertFalse { reason } => {
                e.failure_note = Some(format!("Assertion failed: {reason}").into());
                vec![
                    Line::Note(priority::WARNING, format!("Assertion failed: {reason}.")),
                    Line::AssertionFailed,
                ]
            }
            Event::DependencyFailed { dep } => {
                e.failure_note = Some(format!("dependency failed: {dep}").into());
                vec![
                    Line::DependencyFailed,
                    Line::Note(
                        priority::NOTICE,
                        format!("Job {name}/start failed with result 'dependency' ({dep} failed)."),
                    ),
                ]
            }
            Event::LoadFailed { reason } => {
                e.failure_note = Some(reason.clone().into());
                vec![Line::Note(
                    priority::WARNING,
                    format!("not restarted: {reason}"),
                )]
            }
            _ => return,
        };
        for line in lines {
            self.line(name, line);
        }
    }

    /// OnFailure=: the unit entered the failed state, so the listed units are
    /// started, as jobs of their own queued behind the current input (as
    /// systemd does; nobody waits for them).
    pub(super) fn start_on_failure(&mut self, name: &str, unit: &Unit) {
        let list = &unit.unit.on_failure;
        if list.is_empty() {
            return;
        }
        let names: Vec<String> = list.iter().map(|n| n.to_string()).collect();
        self.log(
            name,
            &format!("Triggering OnFailure= dependencies: {}.", names.join(" ")),
        );
        for unit in names {
            // The answer goes nowhere: a failure shows in that unit's own status.
            let (reply, _) = oneshot::channel();
            let _ = self.tx.send(Input::Job {
                unit,
                job: JobRequest::Start,
                manual: false,
                reply,
            });
        }
    }

    /// Checks what the state machine believes about the cgroup against the kernel.
    pub(super) fn reconcile(&mut self, name: &str, queue: &mut VecDeque<Event>) {
        let Some(e) = self.units.get(name) else {
            return;
        };
        if e.service().is_some_and(|s| s.state.populated)
            && let Some(cg) = e.cgroup()
            && !self.host.populated(cg).unwrap_or(true)
        {
            queue.push_back(Event::CgroupEmpty);
        }
    }

    /// Keeps the PID → unit map in step with the unit's main and control processes.
    pub(super) fn sync_pids(&mut self, name: &str, before: &State) {
        let Some(now) = self.service(name).map(|s| &s.state) else {
            return;
        };
        let old = [before.main, before.control.and_then(|c| c.pid)];
        let new = [now.main, now.control.and_then(|c| c.pid)];
        for pid in old.into_iter().flatten() {
            if !new.contains(&Some(pid)) && self.pids.get(&pid).is_some_and(|u| u == name) {
                self.pids.remove(&pid);
            }
        }
        for pid in new.into_iter().flatten() {
            self.pids.insert(pid, name.to_string());
        }
    }

    pub(super) fn reaped(&mut self, pid: Pid, exit: Exit) {
        let Some(name) = self.pids.remove(&pid) else {
            // runit's log/run, or an orphan we inherited as subreaper (nothing to do).
            self.runit_log_reaped(pid, exit);
            return;
        };
        if self.socket_reaped(&name, pid, exit) {
            return;
        }
        let def = self
            .units
            .get(name.as_str())
            .and_then(|e| e.service_def().cloned());
        let Some(s) = self.service_mut(&name) else {
            return;
        };
        // An emptied cgroup is noticed by reconcile() after this event, as a CgroupEmpty.
        if s.state.main == Some(pid) {
            let stopping = s.state.sub.active() == ActiveState::Deactivating;
            if !stopping && let Some(new) = self.moved_main_pid(&name, pid) {
                self.log(
                    &name,
                    &format!(
                        "Main process {pid} exited, code={}, status={}; the PIDFile names the new main process {new}.",
                        exit.code_word(),
                        exit.status_word()
                    ),
                );
                self.feed(&name, Event::MainPid(new));
                return;
            }
            let Some(s) = self.service_mut(&name) else {
                return;
            };
            s.main_exit = Some((pid, exit));
            // As systemd: a clean exit is logged at debug level, which a
            // user manager does not keep.
            if !stopping && !def.as_ref().is_some_and(|d| d.spec.clean(exit)) {
                self.line(&name, Line::MainExited(exit));
            }
            self.feed(&name, Event::MainExited(exit));
        } else if let Some(c) = s.state.control
            && c.pid == Some(pid)
        {
            let ignore = def
                .as_ref()
                .and_then(|d| d.command(c.cmd, c.index))
                .is_some_and(|cmd| cmd.flags.ignore_failure);
            if exit != Exit::Code(0) && !ignore {
                self.line(&name, Line::ControlExited(exit));
                let e = self.units.get_mut(name.as_str()).expect("unit exists");
                e.failure_note = Some(
                    format!(
                        "control process {} ({}) {}, status={}",
                        pid,
                        c.cmd.directive(),
                        exit.code_word(),
                        exit.status_word()
                    )
                    .into(),
                );
            }
            self.feed(&name, Event::ControlExited { exit, ignore });
        }
    }

    pub(super) fn notified(
        &mut self,
        pid: Pid,
        cgroup: Option<PathBuf>,
        msg: Message,
        fds: Vec<OwnedFd>,
    ) {
        let Some(cg) = cgroup else { return };
        let Some(name) = self
            .units
            .iter()
            .find(|(_, e)| e.cgroup().is_some_and(|c| cg.starts_with(c.path())))
            .map(|(k, _)| k.to_string())
        else {
            return;
        };
        let e = &self.units[name.as_str()];
        let Some(def) = e.service_def() else { return };
        let (main, control) = e.main_and_control();
        let allowed = match def.notify_access {
            NotifyAccess::None => false,
            NotifyAccess::Main => main == Some(pid),
            NotifyAccess::Exec => main == Some(pid) || control == Some(pid),
            NotifyAccess::All => true,
        };
        if !allowed {
            self.log_at(
                &name,
                priority::WARNING,
                &format!(
                    "ignoring notification from PID {pid}: NotifyAccess={:?} does not admit it",
                    def.notify_access
                ),
            );
            return;
        }
        // Before READY=1 of the same datagram: the store is complete once
        // the start is.
        self.fd_store_notified(&name, &msg, fds);
        if let Some(t) = msg.status.clone()
            && let Some(s) = self.service_mut(&name)
        {
            s.status_text = Some(t);
        }
        if let Some(errno) = msg.errno
            && let Some(e) = self.units.get_mut(name.as_str())
        {
            e.failure_note = Some(
                format!(
                    "the service reported ERRNO={errno} ({})",
                    std::io::Error::from_raw_os_error(errno)
                )
                .into(),
            );
        }
        if let Some(main) = msg.main_pid {
            let inside = self.units[name.as_str()]
                .cgroup()
                .is_some_and(|c| self.host.contains(c, main).unwrap_or(false));
            if inside {
                self.feed(&name, Event::MainPid(main));
            } else {
                self.log_at(
                    &name,
                    priority::WARNING,
                    &format!("ignoring MAINPID={main}: that process is not in the unit's cgroup"),
                );
            }
        }
        if msg.reloading {
            self.feed(&name, Event::Reloading);
        }
        if msg.stopping {
            self.feed(&name, Event::Stopping);
        }
        if msg.ready {
            self.feed(&name, Event::Ready);
        }
    }

    pub(super) fn execute(
        &mut self,
        name: &str,
        def: &Arc<ServiceDef>,
        action: Action,
        queue: &mut VecDeque<Event>,
    ) {
        match action {
            Action::NewInvocation => match self.new_invocation(name, def) {
                Ok(()) => {
                    self.log_triggered(name);
                    self.bus_watch(name, def, queue);
                }
                Err(msg) => {
                    self.log_at(name, priority::ERR, &msg);
                    if let Some(e) = self.units.get_mut(name) {
                        e.failure_note = Some(msg.into());
                    }
                    queue.push_back(Event::InvocationFailed);
                }
            },
            Action::Spawn { cmd, index } => {
                let spawned = self.spawn_cmd(name, def, cmd, index);
                // What `status` shows as "Process: PID ExecStart=argv": the
                // command whose process is (or was) the main one.
                if cmd == Cmd::Start
                    && def.spec.readiness != state::Readiness::Forking
                    && let Some(s) = self.service_mut(name)
                {
                    s.main_command = def
                        .command(cmd, index)
                        .map(|c| format!("{}={}", cmd.directive(), c.argv.join(" ")));
                }
                match spawned {
                    Ok(pid) => {
                        self.pids.insert(pid, name.to_string());
                        queue.push_back(Event::Spawned { cmd, pid });
                    }
                    Err(SpawnFailure {
                        message,
                        status,
                        pid,
                    }) => {
                        self.log_at(name, priority::ERR, &message);
                        if let Some(e) = self.units.get_mut(name) {
                            e.failure_note = Some(message.into());
                        }
                        if cmd == Cmd::Start
                            && def.spec.readiness != state::Readiness::Forking
                            && let Some(s) = self.service_mut(name)
                        {
                            // The forked child that failed to become the
                            // service; 0 when it failed before the fork.
                            s.main_exit = Some((pid.unwrap_or(0), Exit::Code(status)));
                        }
                        queue.push_back(Event::SpawnFailed { cmd, status });
                    }
                }
            }
            Action::FindMainPid => self.find_main_pid(name, queue),
            Action::Signal { whom, sig } => self.signal(name, whom, sig),
            Action::CgroupKill => {
                if let Some(cg) = self.units[name].cgroup()
                    && let Err(err) = self.host.kill_cgroup(cg)
                {
                    self.log_at(
                        name,
                        priority::WARNING,
                        &format!("cannot kill the cgroup: {err}"),
                    );
                }
            }
            Action::Arm(timer, after) => {
                let after = match (&def.runit, timer) {
                    // runsv restarts at once unless `run` lived less than a second.
                    (Some(_), Timer::Restart) => {
                        let ran = self.units[name].inv().map_or(Duration::ZERO, |i| {
                            self.host.now().saturating_sub(i.started)
                        });
                        RunitService::restart_delay(ran)
                    }
                    _ => after,
                };
                self.arm(name, timer, after);
            }
            Action::Disarm(timer) => self.disarm(name, timer),
            Action::EndInvocation => {
                self.bus_unwatch(def);
                self.remove_pid_file(name, def);
                self.end_invocation(name);
            }
            Action::StartAgain => {
                if self.shutting_down {
                    return;
                }
                // Its file went away (or was masked) and daemon-reload saw it:
                // the restart job fails, as it does in systemd.
                if let Some(reason) = self.load_failure(name).map(LoadError::to_string) {
                    queue.push_back(Event::LoadFailed { reason });
                    return;
                }
                // A restart is a new start job: conditions and asserts are checked
                // again (a false one leaves the unit skipped or failed, not restarted).
                if let Some(verdict) = self.start_check(name, &def.unit) {
                    queue.push_back(verdict);
                    return;
                }
                if let Some(ev) = self.admit_start(name, true) {
                    queue.push_back(ev);
                }
            }
        }
    }

    /// Cancels a timer of the unit.
    fn disarm(&mut self, name: &str, timer: Timer) {
        if let Some(s) = self.service_mut(name) {
            s.deadlines.remove(&timer);
            if let Some((_, Some(h))) = s.timers.remove(&timer) {
                h.abort();
            }
        }
    }

    /// Arms a timer of the unit. Inside a feed the host's timer is made only
    /// when the feed is over, and not at all if the feed disarmed it again:
    /// a simple service's start timeout is armed before its spawn and
    /// disarmed by the spawn itself, and making it would wake the runtime
    /// thread twice, the first time while the spawn needs the CPU.
    pub(super) fn arm(&mut self, name: &str, timer: Timer, after: Duration) {
        self.timer_generation += 1;
        let generation = self.timer_generation;
        let handle = if self.feeding > 0 {
            let now = self.host.now();
            self.pending_arms
                .push((name.to_string(), timer, generation, after, now));
            None
        } else {
            let input = Input::Timer {
                unit: name.to_string(),
                timer,
                generation,
            };
            self.host.arm(after, input)
        };
        if let Some(s) = self.service_mut(name) {
            let deadline = crate::supervisor::readopt::monotonic_ns()
                .saturating_add(u64::try_from(after.as_nanos()).unwrap_or(u64::MAX));
            s.deadlines.insert(timer, deadline);
            if let Some((_, Some(old))) = s.timers.insert(timer, (generation, handle)) {
                old.abort();
            }
        }
    }

    /// Makes the host timers of the arms a feed left pending and did not
    /// disarm, each for what is left of its delay.
    fn arm_pending(&mut self) {
        for (unit, timer, generation, after, armed) in std::mem::take(&mut self.pending_arms) {
            let current = self
                .service(&unit)
                .and_then(|s| s.timers.get(&timer))
                .is_some_and(|(g, _)| *g == generation);
            if !current {
                continue;
            }
            let left = after.saturating_sub(self.host.now().saturating_sub(armed));
            let input = Input::Timer {
                unit: unit.clone(),
                timer,
                generation,
            };
            let handle = self.host.arm(left, input);
            if let Some(slot) = self
                .service_mut(&unit)
                .and_then(|s| s.timers.get_mut(&timer))
            {
                slot.1 = handle;
            }
        }
    }
}

/// CPU time the cgroup's processes used, in µs: `usage_usec` of cpu.stat,
/// which cgroup v2 keeps for every cgroup, with or without the cpu controller.
fn cpu_usage(cg: &Cgroup) -> Option<u64> {
    let stat = cg.read_file("cpu.stat").ok()?;
    stat.lines()
        .find_map(|l| l.strip_prefix("usage_usec "))
        .and_then(|v| v.trim().parse().ok())
}
