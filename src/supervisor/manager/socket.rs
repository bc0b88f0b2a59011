//! The socket kind in the manager: a `.socket` unit's definition and body,
//! its machine (`socket::machine::next`) fed through `try_feed` like the
//! other kinds, and the execution of its actions. The listening fds are
//! bound and owned here; while the socket is armed, one task per fd waits
//! for readiness on the runtime (`AsyncFd` on a duplicate, so that
//! disarming closes the duplicate only); the triggered service gets them at
//! its `ExecStart=`, and its transitions go back to the socket.

use std::collections::VecDeque;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::sync::oneshot;
use tokio::task::AbortHandle;

use crate::supervisor::lines::{Line, priority};
use crate::supervisor::socket::listen::{self, Listening};
use crate::supervisor::socket::machine::{
    self as sm, Action as SocketAction, Event as SocketEvent, SocketResult, Spec, Sub,
};
use crate::supervisor::state::{self, ActiveState, Event, Refused, ServiceResult};
use crate::unit::{SocketSection, Unit, UnitName};

use super::entry::Phase;
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
    /// The definition of a loaded `.socket` unit, or why this manager
    /// cannot run it.
    pub(super) fn new(unit: Unit) -> Result<SocketDef, String> {
        let name = &unit.name;
        let s = unit
            .socket
            .as_ref()
            .ok_or_else(|| format!("Unit {name} failed to load: it has no [Socket] section"))?;
        if s.accept {
            return Err(format!(
                "Unit {name} failed to load: Accept=yes is not supported by this manager yet"
            ));
        }
        let own = [
            ("ExecStartPre=", s.exec_start_pre.is_empty()),
            ("ExecStartPost=", s.exec_start_post.is_empty()),
            ("ExecStopPre=", s.exec_stop_pre.is_empty()),
            ("ExecStopPost=", s.exec_stop_post.is_empty()),
        ];
        if let Some((d, _)) = own.iter().find(|(_, empty)| !empty) {
            return Err(format!(
                "Unit {name} failed to load: {d} in a socket unit is not supported by this manager yet"
            ));
        }
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
    /// The readiness tasks while armed.
    watches: Vec<AbortHandle>,
    /// Distinguishes the current arming's traffic from an earlier one's.
    generation: u64,
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
                SocketResult::ServiceStartLimitHit => ServiceResult::StartLimitHit,
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
        match after {
            Sub::Listening if before == Sub::StartPost => {
                vec![Line::Note(
                    priority::INFO,
                    "Listening on the socket.".into(),
                )]
            }
            Sub::Dead => vec![Line::Note(priority::INFO, "Closed the socket.".into())],
            Sub::Failed => vec![Line::FailedWithResult(self.phase().result)],
            _ => Vec::new(),
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
                let ev = match Listening::open(def.section()) {
                    Ok(l) => {
                        if let Some(s) = self.socket_mut(name) {
                            s.listening = Some(l);
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
                            e.failure_note = Some(msg);
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
                if let Some(s) = self.socket_mut(name) {
                    s.disarm();
                    s.listening = None;
                }
                if remove {
                    for err in listen::remove_nodes(def.section()) {
                        self.log(name, &format!("RemoveOnStop=: {err}"));
                    }
                }
            }
            SocketAction::StartService => {
                let Some(service) = def.triggers() else {
                    return;
                };
                // As OnFailure=: a job of its own, nobody waits for it.
                let (reply, _) = oneshot::channel();
                let _ = self.tx.send(Input::Job {
                    unit: service.to_string(),
                    job: JobRequest::Start,
                    manual: false,
                    reply,
                });
            }
            // `SocketDef::new` refuses the units whose machine asks for
            // these (own commands, Accept=yes), so none reaches here.
            a @ (SocketAction::Spawn { .. }
            | SocketAction::Kill(_)
            | SocketAction::ArmTimer(_)
            | SocketAction::CancelTimer
            | SocketAction::Accept
            | SocketAction::StartInstance { .. }
            | SocketAction::Refuse) => {
                self.log(name, &format!("cannot execute {a:?}: not supported yet"));
            }
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
            self.feed(unit, Event::Socket(SocketEvent::Traffic));
        }
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

    /// The fds of the sockets that trigger `service`, with their
    /// `LISTEN_FDNAMES` names, in the order of the socket names.
    pub(super) fn activation_fds(&self, service: &str) -> Vec<(RawFd, String)> {
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
