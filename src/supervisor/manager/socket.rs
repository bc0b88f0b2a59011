//! The socket kind in the manager: a `.socket` unit's definition and body,
//! its machine (`socket::machine::next`) fed through `try_feed` like the
//! other kinds, and the execution of its actions. The listening fds are
//! bound and owned here; while the socket is armed, one task per fd waits
//! for readiness on the runtime (`AsyncFd` on a duplicate, so that
//! disarming closes the duplicate only); the triggered service gets them at
//! its `ExecStart=`, and its transitions go back to the socket.
//!
//! With `Accept=yes` the manager takes each connection itself and starts
//! an instance of the `@` template for it, which gets the connection (fd 3,
//! or stdin/stdout with `StandardInput=socket`); the socket keeps the
//! connection until the instance is gone. The socket's own `ExecStartPre=`
//! ... `ExecStopPost=` run in a cgroup of the socket's, their output in
//! its journal.

use std::collections::{BTreeMap, VecDeque};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::sync::oneshot;
use tokio::task::AbortHandle;

use crate::cgroup::Cgroup;
use crate::supervisor::fd_holder::{Kind, Tag};
use crate::supervisor::lines::{Line, priority};
use crate::supervisor::output::Stream;
use crate::supervisor::socket::accept::{self, Connection};
use crate::supervisor::socket::listen::{self, Listening};
use crate::supervisor::socket::machine::{
    self as sm, Action as SocketAction, Event as SocketEvent, Phase as CmdPhase, SocketResult,
    Spec, Sub,
};
use crate::supervisor::state::{self, ActiveState, Cmd, Event, Exit, Pid, Refused, ServiceResult};
use crate::unit::exec::ExecCommand;
use crate::unit::model::StdOutput;
use crate::unit::{SocketSection, Unit, UnitName};

use super::entry::Phase;
use super::exec::output_stdio;
use super::{Body, Def, Input, JobRequest, Manager};

/// A socket unit's definition: its files and its machine's spec.
#[derive(Debug)]
pub(super) struct SocketDef {
    /// The unit as loaded; its `socket` is set.
    pub(super) unit: Arc<Unit>,
    /// What the machine needs of `[Socket]`.
    pub(super) spec: Spec,
}

impl SocketDef {
    /// The definition of a loaded `.socket` unit.
    pub(super) fn new(unit: Unit) -> Result<SocketDef, String> {
        let name = &unit.name;
        let s = unit
            .socket
            .as_ref()
            .ok_or_else(|| format!("Unit {name} failed to load: it has no [Socket] section"))?;
        Ok(SocketDef {
            spec: Spec::from_section(s),
            unit: Arc::new(unit),
        })
    }

    /// `[Socket]`.
    pub(super) fn section(&self) -> &SocketSection {
        self.unit.socket.as_ref().expect("SocketDef::new checks it")
    }

    /// The service a connection starts.
    pub(super) fn triggers(&self) -> Option<UnitName> {
        self.section().triggered_service(&self.unit.name)
    }

    /// Command `index` of the socket's own list `phase`.
    fn command(&self, phase: CmdPhase, index: usize) -> Option<&ExecCommand> {
        let s = self.section();
        match phase {
            CmdPhase::StartPre => &s.exec_start_pre,
            CmdPhase::StartPost => &s.exec_start_post,
            CmdPhase::StopPre => &s.exec_stop_pre,
            CmdPhase::StopPost => &s.exec_stop_post,
        }
        .get(index)
    }
}

/// The directive of a list of the socket's own commands.
fn directive(phase: CmdPhase) -> &'static str {
    match phase {
        CmdPhase::StartPre => "ExecStartPre=",
        CmdPhase::StartPost => "ExecStartPost=",
        CmdPhase::StopPre => "ExecStopPre=",
        CmdPhase::StopPost => "ExecStopPost=",
    }
}

/// The part of a socket beside its definition: its machine's state and its fds.
#[derive(Default)]
pub(super) struct SocketBody {
    /// The machine's state (`socket::machine::next`).
    pub(super) state: sm::State,
    /// The result of a verdict of the manager (condition, assert, a failed
    /// dependency, the start limit), which the socket's own results lack.
    pub(super) verdict: Option<ServiceResult>,
    /// The fds, from `Bind` to `Close`.
    pub(super) listening: Option<Listening>,
    /// The ids of their copies with the fd holder, dropped at `Close`.
    held: Vec<u64>,
    /// The readiness tasks while armed.
    watches: Vec<AbortHandle>,
    /// Each readiness task, armed now or aborted, holds a sender of this
    /// channel beside its duplicate of a listening fd: once the receiver
    /// sees every sender gone, no duplicate keeps the socket open.
    watchers: Option<(Sender<()>, Receiver<()>)>,
    /// Distinguishes the current arming's traffic from an earlier one's.
    generation: u64,
    /// The cgroup of the socket's own commands, from the first one to the
    /// socket's end.
    pub(super) cgroup: Option<Cgroup>,
    /// The command of the socket's running now.
    pub(super) control: Option<Pid>,
    /// The armed `TimeoutSec=` timer: its generation and task.
    timer: Option<(u64, Option<AbortHandle>)>,
    /// Accept=yes: the connection taken, until the machine says whether
    /// it is served.
    pending: Option<Connection>,
    /// Accept=yes: the connection of each instance still there, by the
    /// instance's name.
    pub(super) connections: BTreeMap<String, Connection>,
    /// Accept=yes: instances that ended, to drop from the unit table.
    ended: Vec<String>,
}

impl SocketBody {
    /// Where the socket is, in words every kind shares.
    pub(super) fn phase(&self) -> Phase {
        let sub = self.state.sub;
        Phase {
            active: active(sub),
            result: self.verdict.unwrap_or(match self.state.result {
                SocketResult::Success => ServiceResult::Success,
                SocketResult::Resources => ServiceResult::Resources,
                SocketResult::Timeout => ServiceResult::Timeout,
                SocketResult::ExitCode => ServiceResult::ExitCode,
                SocketResult::ServiceStartLimitHit => ServiceResult::ServiceStartLimitHit,
                SocketResult::TriggerLimitHit => ServiceResult::TriggerLimitHit,
            }),
            down: matches!(sub, Sub::Dead | Sub::Failed),
            stop_requested: active(sub) == ActiveState::Deactivating,
            start_after_stop: false,
        }
    }

    /// One event through the socket's machine; the new state is kept.
    /// Answers the actions and the line to log.
    pub(super) fn step(
        &mut self,
        spec: &Spec,
        ev: Event,
    ) -> Result<(Vec<SocketAction>, Vec<Line>), Refused> {
        let p = self.phase();
        if ev.verdict_applies(p.active, p.down) == Some(true) {
            return Ok((Vec::new(), self.apply_verdict(&ev).into_iter().collect()));
        }
        let ev = match ev {
            Event::Start | Event::Restart => {
                if p.down {
                    self.verdict = None;
                }
                SocketEvent::Start
            }
            Event::Stop => SocketEvent::Stop,
            Event::StartLimitHit => {
                self.verdict = Some(ServiceResult::StartLimitHit);
                self.state.sub = Sub::Failed;
                return Ok((Vec::new(), vec![Line::StartLimitHit]));
            }
            Event::Socket(e) => e,
            // Process, notify and bus events concern services.
            _ => return Ok((Vec::new(), Vec::new())),
        };
        let (next, actions) = sm::next(spec, &self.state, ev)?;
        let before = self.state.sub;
        self.state = next;
        Ok((actions, self.transition_lines(before)))
    }

    /// Applies a verdict of the manager (see [`Event::verdict_applies`]).
    fn apply_verdict(&mut self, ev: &Event) -> Option<Line> {
        if *ev == Event::ResetFailed {
            *self = SocketBody {
                listening: self.listening.take(),
                cgroup: self.cgroup.take(),
                connections: std::mem::take(&mut self.connections),
                ended: std::mem::take(&mut self.ended),
                ..SocketBody::default()
            };
            return None;
        }
        let (active, result) = state::verdict_outcome(ev, self.phase().result);
        self.verdict = Some(result);
        self.state.sub = if active == ActiveState::Failed {
            Sub::Failed
        } else {
            Sub::Dead
        };
        (active == ActiveState::Failed).then_some(Line::FailedWithResult(result))
    }

    /// What the manager logs when the socket moved from `before` to where
    /// it is (systemd's words).
    fn transition_lines(&self, before: Sub) -> Vec<Line> {
        let after = self.state.sub;
        if before == after {
            return Vec::new();
        }
        let mut lines = Vec::new();
        if before == Sub::Listening && self.state.result == SocketResult::TriggerLimitHit {
            lines.push(Line::Note(
                priority::WARNING,
                "Trigger limit hit, refusing further activation.".into(),
            ));
        }
        match after {
            Sub::Listening if before == Sub::StartPost => lines.push(Line::Note(
                priority::INFO,
                "Listening on the socket.".into(),
            )),
            Sub::Dead => lines.push(Line::Note(priority::INFO, "Closed the socket.".into())),
            Sub::Failed => lines.push(Line::FailedWithResult(self.phase().result)),
            _ => {}
        }
        lines
    }

    /// Cancels the `TimeoutSec=` timer.
    fn cancel_timer(&mut self) {
        if let Some((_, Some(h))) = self.timer.take() {
            h.abort();
        }
    }

    /// Waits (at most a second) until the readiness tasks aborted by
    /// [`SocketBody::disarm`] have dropped their duplicates of the fds: the
    /// runtime drops an aborted task on its own thread, later, and until then
    /// a TCP port the socket listened on cannot be bound again.
    fn wait_watchers_gone(&mut self) {
        let Some((tx, rx)) = self.watchers.take() else {
            return;
        };
        drop(tx);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Err(RecvTimeoutError::Disconnected) => return,
                Err(RecvTimeoutError::Timeout) => {
                    eprintln!("corrald: a socket's readiness task outlived its stop by 1 s");
                    return;
                }
                Ok(()) => {}
            }
        }
    }

    /// Stops watching the fds; traffic already reported is ignored.
    fn disarm(&mut self) {
        self.generation += 1;
        for w in self.watches.drain(..) {
            w.abort();
        }
    }
}

/// Accept=yes: the listening sockets are the manager's alone, and
/// non-blocking, so that a connection gone before it is taken cannot block
/// the manager's loop.
fn nonblocking_for_accept(def: &SocketDef, l: &Listening) -> Result<(), listen::ListenError> {
    if !def.spec.accept {
        return Ok(());
    }
    for f in l.fds.iter().filter(|f| f.listen.accepts()) {
        accept::set_nonblocking(f.fd.as_fd()).map_err(|e| listen::ListenError::Socket {
            op: "make non-blocking",
            address: f.listen.describe(),
            source: e.into(),
        })?;
    }
    Ok(())
}

/// A readiness task's duplicate of a listening fd, with its sender of
/// [`SocketBody::watchers`]: fields drop in order, the fd first.
struct Watched {
    fd: std::os::fd::OwnedFd,
    _done: Sender<()>,
}

impl AsRawFd for Watched {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// The ActiveState of a socket's sub-state.
fn active(sub: Sub) -> ActiveState {
    match sub {
        Sub::Dead => ActiveState::Inactive,
        Sub::Failed => ActiveState::Failed,
        Sub::StartPre | Sub::StartPost => ActiveState::Activating,
        Sub::Listening | Sub::Running => ActiveState::Active,
        _ => ActiveState::Deactivating,
    }
}

impl Manager {
    /// The socket part of unit `name`, to change it.
    fn socket_mut(&mut self, name: &str) -> Option<&mut SocketBody> {
        match &mut self.units.get_mut(name)?.body {
            Body::Socket(s) => Some(s),
            _ => None,
        }
    }

    /// Executes one action of a socket's machine.
    pub(super) fn execute_socket(
        &mut self,
        name: &str,
        def: &Arc<SocketDef>,
        action: SocketAction,
        queue: &mut VecDeque<Event>,
    ) {
        match action {
            SocketAction::Bind => {
                let opened = match self.take_held(name, def) {
                    Some(kept) => Ok(kept),
                    None => Listening::open(def.section()).map(|l| {
                        let ids = self.hold(name, &l);
                        (l, ids)
                    }),
                };
                let ev = match opened
                    .and_then(|(l, ids)| nonblocking_for_accept(def, &l).map(|()| (l, ids)))
                {
                    Ok((mut l, ids)) => {
                        for w in std::mem::take(&mut l.warnings) {
                            self.log_at(name, priority::WARNING, &w);
                        }
                        if let Some(s) = self.socket_mut(name) {
                            s.listening = Some(l);
                            s.held = ids;
                        }
                        SocketEvent::Bound
                    }
                    Err(err) => {
                        let msg = format!("Failed to create listening socket: {err}{}", {
                            self.claimed_by(name, def)
                                .map(|o| format!("; {o} listens there"))
                                .unwrap_or_default()
                        });
                        self.log(name, &msg);
                        if let Some(e) = self.units.get_mut(name) {
                            e.failure_note = Some(msg.into());
                        }
                        SocketEvent::BindFailed
                    }
                };
                queue.push_back(Event::Socket(ev));
            }
            SocketAction::Arm => self.arm_socket(name),
            SocketAction::Disarm => {
                if let Some(s) = self.socket_mut(name) {
                    s.disarm();
                }
            }
            SocketAction::Close { remove } => {
                let held = self
                    .socket_mut(name)
                    .map(|s| std::mem::take(&mut s.held))
                    .unwrap_or_default();
                self.drop_held(&held);
                let instances = match self.socket_mut(name) {
                    Some(s) => {
                        s.disarm();
                        s.listening = None;
                        s.wait_watchers_gone();
                        s.connections.keys().cloned().collect()
                    }
                    None => Vec::new(),
                };
                if remove {
                    for err in listen::remove_nodes(def.section()) {
                        self.log(name, &format!("RemoveOnStop=: {err}"));
                    }
                }
                // The instances serving its connections stop with it.
                for i in instances {
                    self.queue_job(&i, JobRequest::Stop);
                }
            }
            SocketAction::StartService => {
                let Some(service) = def.triggers() else {
                    return;
                };
                if self.can_trigger(name, service.as_str()) {
                    self.queue_job(service.as_str(), JobRequest::Start);
                } else {
                    queue.push_back(Event::Socket(SocketEvent::TriggerFailed));
                }
            }
            SocketAction::Spawn { phase, index } => {
                match self.spawn_socket_cmd(name, def, phase, index) {
                    Ok(pid) => {
                        self.pids.insert(pid, name.to_string());
                        if let Some(s) = self.socket_mut(name) {
                            s.control = Some(pid);
                        }
                    }
                    Err(msg) => {
                        let msg = format!("{}: {msg}", directive(phase));
                        self.log_at(name, priority::ERR, &msg);
                        if let Some(e) = self.units.get_mut(name) {
                            e.failure_note = Some(msg.into());
                        }
                        // A `-` command that cannot start is a failure ignored.
                        let success = def
                            .command(phase, index)
                            .is_some_and(|c| c.flags.ignore_failure);
                        queue.push_back(Event::Socket(SocketEvent::ControlExited { success }));
                    }
                }
            }
            SocketAction::Kill(sig) => {
                let Some(cg) = self.socket_mut(name).and_then(|s| s.cgroup.clone()) else {
                    return;
                };
                let r = match sig {
                    sm::Signal::Term => self.host.signal_cgroup(&cg, nix::sys::signal::SIGTERM),
                    sm::Signal::Kill => self.host.kill_cgroup(&cg),
                };
                if let Err(err) = r {
                    self.log_at(
                        name,
                        priority::WARNING,
                        &format!("cannot signal the socket's commands: {err}"),
                    );
                }
            }
            SocketAction::ArmTimer(after) => {
                self.timer_generation += 1;
                let generation = self.timer_generation;
                let input = Input::SocketTimer {
                    unit: name.to_string(),
                    generation,
                };
                let handle = self.host.arm(after, input);
                if let Some(s) = self.socket_mut(name) {
                    s.cancel_timer();
                    s.timer = Some((generation, handle));
                }
            }
            SocketAction::CancelTimer => {
                if let Some(s) = self.socket_mut(name) {
                    s.cancel_timer();
                }
            }
            SocketAction::Accept => self.accept_connection(name, queue),
            SocketAction::StartInstance { nr } => self.start_instance(name, def, nr, queue),
            SocketAction::Refuse => self.refuse_connection(name, def),
        }
    }

    /// The listening fds a predecessor (a dead manager, or this process
    /// before `daemon-reexec`) left with the fd holder for `name`, if they
    /// are for the entries `def` lists now, in order, and their ids there:
    /// taken back instead of bound again, so the socket is the same and
    /// the connections waiting in its backlog are served. Others are dropped.
    fn take_held(&mut self, name: &str, def: &SocketDef) -> Option<(Listening, Vec<u64>)> {
        let mut held = self.held_sockets.remove(name)?;
        held.sort_by_key(|k| k.id);
        let listen = &def.section().listen;
        let same = held.len() == listen.len()
            && held
                .iter()
                .zip(listen)
                .all(|(k, l)| k.tag.name == l.describe());
        let ids: Vec<u64> = held.iter().map(|k| k.id).collect();
        if !same {
            self.drop_held(&ids);
            return None;
        }
        let fds = held
            .into_iter()
            .zip(listen)
            .map(|(k, l)| listen::ListeningFd {
                listen: l.clone(),
                fd: k.fd,
            })
            .collect();
        Some((
            Listening {
                fds,
                warnings: Vec::new(),
            },
            ids,
        ))
    }

    /// Deposits copies of the fds of socket `name` with the fd holder, so
    /// that a successor takes the same sockets back; their ids.
    fn hold(&self, name: &str, l: &Listening) -> Vec<u64> {
        let Some(holder) = self.output.holder() else {
            return Vec::new();
        };
        l.fds
            .iter()
            .filter_map(|f| {
                let tag = Tag {
                    kind: Kind::Listening,
                    unit: name.to_string(),
                    name: f.listen.describe(),
                };
                holder
                    .deposit_tagged(f.fd.as_fd(), &tag)
                    .map_err(|e| {
                        eprintln!("corrald: {name}: {e}; a successor binds it again");
                    })
                    .ok()
            })
            .collect()
    }

    /// Tells the fd holder to close its copies `ids`.
    pub(super) fn drop_held(&self, ids: &[u64]) {
        if let Some(holder) = self.output.holder()
            && !ids.is_empty()
        {
            for id in ids {
                holder.drop_fd(*id);
            }
            // Its copies closed before the socket's next bind: a TCP port
            // another socket still listens on cannot be bound again. A
            // holder that does not answer costs the bind that wait at most.
            if !holder.sync(std::time::Duration::from_secs(1)) {
                eprintln!("corrald: the fd holder did not confirm closing its copies of a socket");
            }
        }
    }

    /// Autostart is done: the listening fds a predecessor left for sockets
    /// that were not started again are closed.
    pub(super) fn drop_unclaimed_sockets(&mut self) {
        let left: Vec<u64> = std::mem::take(&mut self.held_sockets)
            .into_values()
            .flatten()
            .map(|k| k.id)
            .collect();
        self.drop_held(&left);
    }

    /// Queues a job of its own on `unit`, as OnFailure= does: nobody waits
    /// for it.
    fn queue_job(&self, unit: &str, job: JobRequest) {
        let (reply, _) = oneshot::channel();
        let _ = self.tx.send(Input::Job {
            unit: unit.to_string(),
            job,
            manual: false,
            reply,
        });
    }

    /// Whether a start job can be queued for `unit`, which socket `name`
    /// triggers: it loads (on demand, as a template instance does). If not,
    /// says so as systemd 252 does.
    fn can_trigger(&mut self, name: &str, unit: &str) -> bool {
        let failure = match self.resolve(unit) {
            Ok(n) => self.load_failure(&n).map(|f| f.to_string()),
            Err(f) => Some(f.message),
        };
        let Some(why) = failure else {
            return true;
        };
        self.log_at(
            name,
            priority::WARNING,
            &format!(
                "Failed to queue service startup job (Maybe the service file is missing or not a service unit?): {why}"
            ),
        );
        if let Some(e) = self.units.get_mut(name) {
            e.failure_note = Some(why.into());
        }
        false
    }

    /// Accept=yes: drops the instances of socket `name` that ended
    /// inactive from the unit table, as systemd collects them, so that the
    /// table does not grow with every connection. A failed one stays (its
    /// status tells why), as one something still refers to.
    fn collect_instances(&mut self, name: &str) {
        let Some(ended) = self.socket_mut(name).map(|s| std::mem::take(&mut s.ended)) else {
            return;
        };
        for i in ended {
            let idle = self
                .units
                .get(i.as_str())
                .is_some_and(|e| e.phase().active == ActiveState::Inactive && e.inv().is_none());
            if idle
                && !self.in_a_transaction(&i)
                && !self.pids.values().any(|u| *u == i)
                && !self.lingering.values().any(|l| l.unit == i)
            {
                self.units.remove(i.as_str());
                self.graph.skipped.remove(&i);
            }
        }
    }

    /// Accept=yes: takes the waiting connection, and watches for the next.
    fn accept_connection(&mut self, name: &str, queue: &mut VecDeque<Event>) {
        self.collect_instances(name);
        let Some(s) = self.socket_mut(name) else {
            return;
        };
        let mut taken = Ok(None);
        if let Some(l) = &s.listening {
            for f in l.fds.iter().filter(|f| f.listen.accepts()) {
                taken = accept::accept_one(f.fd.as_fd(), &f.listen.describe());
                if !matches!(taken, Ok(None)) {
                    break;
                }
            }
        }
        match taken {
            Ok(Some(c)) => {
                let warnings = match self
                    .units
                    .get(name)
                    .and_then(|e| e.def.as_ref().ok())
                    .and_then(|d| d.unit().socket.as_ref())
                {
                    Some(def) => listen::apply_options(c.fd.as_fd(), def, c.remote.is_some()),
                    None => Vec::new(),
                };
                for w in warnings {
                    self.log_at(name, priority::WARNING, &w);
                }
                let Some(s) = self.socket_mut(name) else {
                    return;
                };
                let source = c.source.clone();
                s.pending = Some(c);
                queue.push_back(Event::Socket(SocketEvent::Accepted { source }));
            }
            Ok(None) => {}
            Err(err) => self.log_at(name, priority::WARNING, &err.to_string()),
        }
        self.arm_socket(name);
    }

    /// Accept=yes: starts instance `nr` of the template for the connection
    /// just accepted.
    fn start_instance(
        &mut self,
        name: &str,
        def: &Arc<SocketDef>,
        nr: u64,
        queue: &mut VecDeque<Event>,
    ) {
        let Some(c) = self.socket_mut(name).and_then(|s| s.pending.take()) else {
            return;
        };
        let instance = match def
            .section()
            .accepted_instance(&def.unit.name, &c.instance(nr))
        {
            Ok(i) => i.to_string(),
            Err(err) => {
                self.log_at(name, priority::WARNING, &err.to_string());
                String::new()
            }
        };
        if instance.is_empty() || !self.can_trigger(name, &instance) {
            queue.push_back(Event::Socket(SocketEvent::InstanceGone {
                source: c.source,
            }));
            queue.push_back(Event::Socket(SocketEvent::TriggerFailed));
            return;
        }
        if let Some(s) = self.socket_mut(name) {
            s.connections.insert(instance.clone(), c);
        }
        self.queue_job(&instance, JobRequest::Start);
    }

    /// Accept=yes: closes the connection just accepted, over a limit, and
    /// says why as systemd 252 does (nothing when the socket is stopping).
    fn refuse_connection(&mut self, name: &str, def: &SocketDef) {
        let Some(s) = self.socket_mut(name) else {
            return;
        };
        let Some(c) = s.pending.take() else {
            return;
        };
        if s.state.sub != Sub::Listening {
            return;
        }
        let msg = if s.state.n_connections >= def.spec.max_connections {
            format!(
                "Too many incoming connections ({}), dropping connection.",
                s.state.n_connections
            )
        } else {
            // systemd counts the refused connection among its source's.
            format!(
                "Too many incoming connections ({}) from source {}, dropping connection.",
                s.state.per_source.get(&c.source).copied().unwrap_or(0) + 1,
                c.source
            )
        };
        self.log_at(name, priority::WARNING, &msg);
    }

    /// Spawns command `index` of the socket's list `phase` into the
    /// socket's cgroup (made on first use), its output to the journal.
    fn spawn_socket_cmd(
        &mut self,
        name: &str,
        def: &SocketDef,
        phase: CmdPhase,
        index: usize,
    ) -> Result<Pid, String> {
        let c = def
            .command(phase, index)
            .ok_or_else(|| format!("no command #{index}"))?;
        let cg = match self.socket_mut(name).and_then(|s| s.cgroup.clone()) {
            Some(cg) => cg,
            None => {
                let cg = crate::supervisor::leftovers::create_unit_cgroup(&self.root, name, name)?;
                if let Some(s) = self.socket_mut(name) {
                    s.cgroup = Some(cg.clone());
                }
                cg
            }
        };
        let env = self.process_env(name, None, Cmd::StartPre);
        let path_env = env
            .iter()
            .find(|(k, _)| k == "PATH")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        let program = c.resolve_program(&path_env).map_err(|e| e.to_string())?;
        let mut spec = super::exec::command_spec(&program, &c.expand(&env), &env)?;
        spec.cgroup = Some(cg.path().to_path_buf());
        spec.new_session = true;
        let (stdout, out_r) = output_stdio(&StdOutput::Journal, name).map_err(|f| f.message)?;
        let (stderr, err_r) = output_stdio(&StdOutput::Journal, name).map_err(|f| f.message)?;
        spec.stdout = stdout;
        spec.stderr = stderr;
        let pid = self.host.spawn(&spec).map_err(|e| e.to_string())?;
        drop(spec);
        for (r, stream) in [(out_r, Stream::Stdout), (err_r, Stream::Stderr)] {
            if let Some(r) = r {
                let src = self.source(name, None, Some(&program), pid, stream);
                self.output.attach(src, r);
            }
        }
        Ok(pid)
    }

    /// A command of socket `name` was reaped: answers whether `pid` was one.
    pub(super) fn socket_reaped(&mut self, name: &str, pid: Pid, exit: Exit) -> bool {
        let Some(s) = self.socket_mut(name) else {
            return false;
        };
        if s.control != Some(pid) {
            return true;
        }
        s.control = None;
        let running = s.state.control;
        let ignore = match (self.units.get(name).map(|e| &e.def), running) {
            (Some(Ok(Def::Socket(d))), Some((phase, index))) => d
                .command(phase, index)
                .is_some_and(|c| c.flags.ignore_failure),
            _ => false,
        };
        let success = exit == Exit::Code(0) || ignore;
        if !success {
            self.line(name, Line::ControlExited(exit));
            if let (Some(e), Some((phase, _))) = (self.units.get_mut(name), running) {
                e.failure_note = Some(
                    format!(
                        "control process {pid} ({}) {}, status={}",
                        directive(phase),
                        exit.code_word(),
                        exit.status_word()
                    )
                    .into(),
                );
            }
        }
        self.feed(name, Event::Socket(SocketEvent::ControlExited { success }));
        true
    }

    /// The `TimeoutSec=` timer of socket `unit` fired.
    pub(super) fn socket_timer(&mut self, unit: &str, generation: u64) {
        let Some(s) = self.socket_mut(unit) else {
            return;
        };
        if s.timer.as_ref().map(|(g, _)| *g) != Some(generation) {
            return;
        }
        s.timer = None;
        self.feed(unit, Event::Socket(SocketEvent::Timeout));
    }

    /// After a step of socket `name`: once it is down, the cgroup of its
    /// commands goes (it is empty: the machine ends only when they are).
    pub(super) fn socket_settled(&mut self, name: &str) {
        let Some(s) = self.socket_mut(name) else {
            return;
        };
        if !matches!(s.state.sub, Sub::Dead | Sub::Failed) || s.control.is_some() {
            return;
        }
        let Some(cg) = s.cgroup.take() else {
            return;
        };
        if let Err(err) = cg.remove() {
            // Something its commands left: kept, and used by the next start.
            s.cgroup = Some(cg);
            self.log_at(
                name,
                priority::WARNING,
                &format!("cannot remove the cgroup: {err}"),
            );
        }
    }

    /// Another loaded socket unit listening on an address of `def`.
    fn claimed_by(&self, name: &str, def: &SocketDef) -> Option<String> {
        self.units.iter().find_map(|(n, e)| {
            let Body::Socket(s) = &e.body else {
                return None;
            };
            let l = s.listening.as_ref()?;
            let shared = l
                .fds
                .iter()
                .any(|f| def.section().listen.contains(&f.listen));
            (n.as_str() != name && shared).then(|| n.to_string())
        })
    }

    /// Watches every fd of the socket until one is readable, which feeds
    /// `Traffic` once.
    fn arm_socket(&mut self, name: &str) {
        let rt = self.rt.clone();
        let tx = self.tx.clone();
        let Some(s) = self.socket_mut(name) else {
            return;
        };
        s.disarm();
        let generation = s.generation;
        let done = s.watchers.get_or_insert_with(channel).0.clone();
        let Some(l) = &s.listening else {
            return;
        };
        let mut watches = Vec::new();
        for f in &l.fds {
            // A duplicate shares the socket; dropping it when the task
            // ends or is aborted leaves the listening fd open.
            let dup = match f.fd.try_clone() {
                Ok(d) => d,
                Err(err) => {
                    eprintln!("corrald: {name}: cannot watch {}: {err}", f.listen);
                    continue;
                }
            };
            let tx = tx.clone();
            let unit = name.to_string();
            let dup = Watched {
                fd: dup,
                _done: done.clone(),
            };
            let task = rt.spawn(async move {
                // SAFETY: the OwnedFd moves into the AsyncFd and stays
                // open, the same fd, until the AsyncFd drops it.
                let Ok(afd) = (unsafe { AsyncFd::register_with_interest(dup, Interest::READABLE) })
                else {
                    return;
                };
                if afd.readable().await.is_ok() {
                    let _ = tx.send(Input::SocketTraffic { unit, generation });
                }
            });
            watches.push(task.abort_handle());
        }
        s.watches = watches;
    }

    /// A watched fd of `unit` became readable.
    pub(super) fn socket_traffic(&mut self, unit: &str, generation: u64) {
        let current = self
            .units
            .get(unit)
            .is_some_and(|e| matches!(&e.body, Body::Socket(s) if s.generation == generation));
        if current {
            if let Some(s) = self.socket_mut(unit) {
                s.disarm();
            }
            let now = self.host.now();
            self.feed(unit, Event::Socket(SocketEvent::Traffic { now }));
        }
    }

    /// Accept=yes: the instance `service` serving a connection of `socket`
    /// is down; its place is free and the connection closed.
    fn instance_gone(&mut self, socket: &str, service: &str) {
        let Some(c) = self.socket_mut(socket).and_then(|s| {
            s.ended.push(service.to_string());
            s.connections.remove(service)
        }) else {
            return;
        };
        self.feed(
            socket,
            Event::Socket(SocketEvent::InstanceGone { source: c.source }),
        );
    }

    /// The loaded sockets that trigger `service`, with their definitions, by name.
    fn triggering(&self, service: &str) -> Vec<(String, Arc<SocketDef>)> {
        self.units
            .iter()
            .filter_map(|(n, e)| match e.def.as_ref() {
                Ok(Def::Socket(d)) if d.triggers().is_some_and(|t| t.as_str() == service) => {
                    Some((n.to_string(), d.clone()))
                }
                _ => None,
            })
            .collect()
    }

    /// `TriggeredBy=` of `service`: the loaded sockets that start it.
    pub(super) fn triggered_by(&self, service: &str) -> Vec<String> {
        self.triggering(service)
            .into_iter()
            .map(|(n, _)| n)
            .collect()
    }

    /// The socket that accepted the connection instance `service` serves,
    /// and that connection.
    pub(super) fn connection_of(&self, service: &str) -> Option<(&str, &Connection)> {
        self.units.iter().find_map(|(n, e)| match &e.body {
            Body::Socket(s) => s.connections.get(service).map(|c| (n.as_str(), c)),
            _ => None,
        })
    }

    /// The fds of the sockets that trigger `service`, with their
    /// `LISTEN_FDNAMES` names, in the order of the socket names; for an
    /// instance serving a connection, that connection ("connection", as
    /// systemd names it).
    pub(super) fn activation_fds(&self, service: &str) -> Vec<(RawFd, String)> {
        if let Some((_, c)) = self.connection_of(service) {
            return vec![(c.fd.as_raw_fd(), "connection".to_string())];
        }
        let mut out = Vec::new();
        for (n, d) in self.triggering(service) {
            let Some(Body::Socket(s)) = self.units.get(n.as_str()).map(|e| &e.body) else {
                continue;
            };
            let Some(l) = &s.listening else { continue };
            let fd_name = d.section().fd_name(&d.unit.name).to_string();
            out.extend(l.fds.iter().map(|f| (f.fd.as_raw_fd(), fd_name.clone())));
        }
        out
    }

    /// Tells the sockets that trigger `service` where it is now: they stop
    /// watching while it runs and watch again once it is down.
    pub(super) fn tell_sockets(&mut self, service: &str) {
        let Some(p) = self.units.get(service).map(|e| e.phase()) else {
            return;
        };
        if p.is_stopped()
            && let Some(socket) = self.connection_of(service).map(|(n, _)| n.to_string())
        {
            self.instance_gone(&socket, service);
            return;
        }
        let ev = if p.down {
            SocketEvent::ServiceInactive {
                start_limit_hit: p.result == ServiceResult::StartLimitHit,
            }
        } else if matches!(
            p.active,
            ActiveState::Activating | ActiveState::Active | ActiveState::Reloading
        ) {
            SocketEvent::ServiceActive
        } else {
            return;
        };
        for (n, _) in self.triggering(service) {
            self.feed(&n, Event::Socket(ev.clone()));
        }
    }
}
