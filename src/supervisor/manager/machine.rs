//! Feeding the state machines: one event at a time through `state::next`,
//! the actions executed in order, transitions logged, OnFailure= started;
//! and the inputs that become events (reaped children, notify messages,
//! timers).

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;

use crate::supervisor::notify::Message;
use crate::supervisor::service::ServiceDef;
use crate::supervisor::state;
use crate::supervisor::state::{
    Action, ActiveState, Cmd, Event, Exit, Pid, Refused, State, Sub, Timer,
};
use crate::unit::RunitService;
use crate::unit::model::NotifyAccess;

use super::{Input, Job, LoadError, Manager, exec::SpawnFailure, now_usec};

impl Manager {
    /// Feeds an event that the state machine never refuses (only `Reload` can be).
    pub(super) fn feed(&mut self, name: &str, event: Event) {
        let _ = self.try_feed(name, event);
    }

    /// Feeds `event` to the unit's state machine and executes the actions,
    /// including the events they produce; refusals concern the first event only.
    pub(super) fn try_feed(&mut self, name: &str, event: Event) -> Result<(), Refused> {
        let mut queue = VecDeque::from([event]);
        let mut first = true;
        while let Some(ev) = queue.pop_front() {
            let Some(e) = self.units.get_mut(name) else {
                return Ok(());
            };
            let Ok(def) = e.def.clone() else {
                return Ok(());
            };
            let (next, actions) = match state::next(&def.spec, &e.state, ev) {
                Ok(r) => r,
                Err(r) if first => return Err(r),
                Err(_) => continue,
            };
            first = false;
            let before = e.state.clone();
            if before.sub.active() != next.sub.active() {
                e.since_usec = now_usec();
            }
            e.state = next;
            self.sync_pids(name, &before);
            if before.sub != self.units[name].state.sub {
                self.log_transition(name, &before);
                if self.units[name].state.sub == Sub::Failed {
                    self.start_on_failure(name, &def);
                }
            }
            for a in actions {
                self.execute(name, &def, a, &mut queue);
            }
            if queue.is_empty() {
                self.reconcile(name, &mut queue);
            }
        }
        self.settle_pending(name);
        self.check_waiters(name);
        self.unit_changed(name);
        Ok(())
    }

    /// A start from a stopped state, through the start limit.
    pub(super) fn start_event(&mut self, name: &str) {
        let now = self.rt_elapsed();
        let admitted = match self.units.get_mut(name) {
            Some(e) => e.start_limit.admit(now),
            None => return,
        };
        if admitted {
            if let Some(e) = self.units.get_mut(name) {
                e.failure_note = None;
            }
            if self.bus_ready(name) {
                self.feed(name, Event::Start);
            } else {
                self.feed(name, Event::BusUnavailable);
            }
        } else {
            if let Some(e) = self.units.get_mut(name) {
                e.failure_note = Some(format!(
                    "start request repeated too quickly (more than StartLimitBurst={} starts within StartLimitIntervalSec={:?}); \
                     run `corral reset-failed {name}` to allow starting it again",
                    e.start_limit.burst, e.start_limit.interval
                ));
            }
            self.feed(name, Event::StartLimitHit);
        }
    }

    pub(super) fn rt_elapsed(&self) -> Duration {
        Duration::from_micros(now_usec().saturating_sub(self.started_usec))
    }

    /// OnFailure=: the unit entered the failed state, so the listed units are
    /// started, as jobs of their own queued behind the current input (as
    /// systemd does; nobody waits for them).
    pub(super) fn start_on_failure(&mut self, name: &str, def: &ServiceDef) {
        let list = &def.unit.unit.on_failure;
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
                job: Job::Start,
                reply,
            });
        }
    }

    pub(super) fn log_transition(&self, name: &str, before: &State) {
        let e = &self.units[name];
        let s = &e.state;
        let msg = match s.sub {
            Sub::Running if before.sub.active() != ActiveState::Active => "Started.".to_string(),
            Sub::Exited => "Finished.".to_string(),
            Sub::Dead if before.sub != Sub::Dead => "Stopped.".to_string(),
            Sub::Failed => format!("Failed with result '{}'.", s.result.as_str()),
            Sub::AutoRestart => format!(
                "Failed with result '{}'; scheduling restart.",
                s.result.as_str()
            ),
            _ => return,
        };
        self.log(name, &msg);
    }

    /// Checks what the state machine believes about the cgroup against the kernel.
    pub(super) fn reconcile(&mut self, name: &str, queue: &mut VecDeque<Event>) {
        let e = &self.units[name];
        if e.state.populated
            && let Some(cg) = e.cgroup()
            && !cg.populated().unwrap_or(true)
        {
            queue.push_back(Event::CgroupEmpty);
        }
    }

    /// Keeps the PID → unit map in step with the unit's main and control processes.
    pub(super) fn sync_pids(&mut self, name: &str, before: &State) {
        let now = &self.units[name].state;
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
            // An orphan we inherited as subreaper, or an aux process (runit log): nothing to do.
            return;
        };
        let Some(e) = self.units.get_mut(&name) else {
            return;
        };
        // An emptied cgroup is noticed by reconcile() after this event, as a CgroupEmpty.
        let def = e.def.clone();
        if e.state.main == Some(pid) {
            e.main_exit = Some((pid, exit));
            if e.state.sub.active() != ActiveState::Deactivating {
                self.log(
                    &name,
                    &format!(
                        "Main process exited, code={}, status={}.",
                        exit.code_word(),
                        exit.status_word()
                    ),
                );
            }
            self.feed(&name, Event::MainExited(exit));
        } else if let Some(c) = e.state.control
            && c.pid == Some(pid)
        {
            let ignore = def
                .as_ref()
                .ok()
                .and_then(|d| d.command(c.cmd, c.index))
                .is_some_and(|cmd| cmd.flags.ignore_failure);
            if exit != Exit::Code(0) && !ignore {
                let e = self.units.get_mut(&name).expect("unit exists");
                e.failure_note = Some(format!(
                    "control process {} ({}) {}, status={}",
                    pid,
                    c.cmd.directive(),
                    exit.code_word(),
                    exit.status_word()
                ));
            }
            self.feed(&name, Event::ControlExited { exit, ignore });
        }
    }

    pub(super) fn notified(&mut self, pid: Pid, cgroup: Option<PathBuf>, msg: Message) {
        let Some(cg) = cgroup else { return };
        let Some(name) = self
            .units
            .iter()
            .find(|(_, e)| e.cgroup().is_some_and(|c| cg.starts_with(c.path())))
            .map(|(k, _)| k.clone())
        else {
            return;
        };
        let e = &self.units[&name];
        let Ok(def) = &e.def else { return };
        let allowed = match def.notify_access {
            NotifyAccess::None => false,
            NotifyAccess::Main => e.state.main == Some(pid),
            NotifyAccess::Exec => {
                e.state.main == Some(pid) || e.state.control.and_then(|c| c.pid) == Some(pid)
            }
            NotifyAccess::All => true,
        };
        if !allowed {
            self.log(
                &name,
                &format!(
                    "ignoring notification from PID {pid}: NotifyAccess={:?} does not admit it",
                    def.notify_access
                ),
            );
            return;
        }
        if let Some(t) = msg.status.clone()
            && let Some(e) = self.units.get_mut(&name)
        {
            e.status_text = Some(t);
        }
        if let Some(errno) = msg.errno
            && let Some(e) = self.units.get_mut(&name)
        {
            e.failure_note = Some(format!(
                "the service reported ERRNO={errno} ({})",
                std::io::Error::from_raw_os_error(errno)
            ));
        }
        if let Some(main) = msg.main_pid {
            let inside = self.units[&name]
                .cgroup()
                .is_some_and(|c| c.contains_pid(main).unwrap_or(false));
            if inside {
                self.feed(&name, Event::MainPid(main));
            } else {
                self.log(
                    &name,
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
                Ok(()) => self.bus_watch(name, def, queue),
                Err(msg) => {
                    self.log(name, &msg);
                    if let Some(e) = self.units.get_mut(name) {
                        e.failure_note = Some(msg);
                    }
                    queue.push_back(Event::InvocationFailed);
                }
            },
            Action::Spawn { cmd, index } => match self.spawn_cmd(name, def, cmd, index) {
                Ok(pid) => {
                    self.pids.insert(pid, name.to_string());
                    queue.push_back(Event::Spawned { cmd, pid });
                }
                Err(SpawnFailure { message, status }) => {
                    self.log(name, &message);
                    if let Some(e) = self.units.get_mut(name) {
                        e.failure_note = Some(message);
                        if cmd == Cmd::Start && def.spec.kind != state::Kind::Forking {
                            // No PID: the child never became the service.
                            e.main_exit = Some((0, Exit::Code(status)));
                        }
                    }
                    queue.push_back(Event::SpawnFailed { cmd, status });
                }
            },
            Action::FindMainPid => self.find_main_pid(name, queue),
            Action::Signal { whom, sig } => self.signal(name, whom, sig),
            Action::CgroupKill => {
                if let Some(cg) = self.units[name].cgroup()
                    && let Err(err) = cg.kill()
                {
                    self.log(name, &format!("cannot kill the cgroup: {err}"));
                }
            }
            Action::Arm(timer, after) => {
                let after = match (&def.runit, timer) {
                    // runsv restarts at once unless `run` lived less than a second.
                    (Some(_), Timer::Restart) => {
                        let ran = self.units[name]
                            .inv
                            .as_ref()
                            .map_or(Duration::ZERO, |i| i.started.elapsed());
                        RunitService::restart_delay(ran)
                    }
                    _ => after,
                };
                self.arm(name, timer, after);
            }
            Action::Disarm(timer) => {
                if let Some(e) = self.units.get_mut(name)
                    && let Some((_, Some(h))) = e.timers.remove(&timer)
                {
                    h.abort();
                }
            }
            Action::EndInvocation => {
                self.bus_unwatch(def);
                self.end_invocation(name);
            }
            Action::StartAgain => {
                if self.shutting_down {
                    return;
                }
                // Its file went away (or was masked) and daemon-reload saw it:
                // the restart job fails, as it does in systemd.
                if let Some(f) = self.load_failure(name).map(LoadError::to_string) {
                    self.log(name, &format!("not restarted: {f}"));
                    if let Some(e) = self.units.get_mut(name) {
                        e.state.sub = Sub::Failed;
                        e.since_usec = now_usec();
                        e.failure_note = Some(f);
                    }
                    return;
                }
                // A restart is a new start job: conditions and asserts are checked
                // again (a false one leaves the unit skipped or failed, not restarted).
                if self.check_conditions(name, def).is_some() {
                    return;
                }
                let admitted = match self.units.get_mut(name) {
                    Some(e) => e.start_limit.admit(Duration::from_micros(
                        now_usec().saturating_sub(self.started_usec),
                    )),
                    None => return,
                };
                if !admitted {
                    if let Some(e) = self.units.get_mut(name) {
                        e.failure_note = Some(format!(
                            "restarted too often (StartLimitBurst={} within StartLimitIntervalSec={:?}); \
                             run `corral reset-failed {name}` to allow starting it again",
                            e.start_limit.burst, e.start_limit.interval
                        ));
                    }
                    queue.push_back(Event::StartLimitHit);
                } else if self.bus_ready(name) {
                    queue.push_back(Event::Start);
                } else {
                    queue.push_back(Event::BusUnavailable);
                }
            }
        }
    }

    pub(super) fn arm(&mut self, name: &str, timer: Timer, after: Duration) {
        self.timer_generation += 1;
        let generation = self.timer_generation;
        let tx = self.tx.clone();
        let unit = name.to_string();
        if after.is_zero() {
            // RestartSec=0: straight into our own queue, with no timer tick and no thread hop.
            let _ = tx.send(Input::Timer {
                unit: unit.clone(),
                timer,
                generation,
            });
            if let Some(e) = self.units.get_mut(name)
                && let Some((_, Some(old))) = e.timers.insert(timer, (generation, None))
            {
                old.abort();
            }
            return;
        }
        let task = self.rt.spawn(async move {
            tokio::time::sleep(after).await;
            let _ = tx.send(Input::Timer {
                unit,
                timer,
                generation,
            });
        });
        if let Some(e) = self.units.get_mut(name)
            && let Some((_, Some(old))) = e
                .timers
                .insert(timer, (generation, Some(task.abort_handle())))
        {
            old.abort();
        }
    }
}
