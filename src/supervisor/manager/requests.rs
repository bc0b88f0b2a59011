//! The job requests of the control socket that act on one unit: their
//! checks, reload, kill and reset-failed, and the answer of a failed job.
//! Start, stop and restart go on to the job driver (job_driver.rs).

use nix::sys::signal::Signal;
use tokio::sync::oneshot;

use crate::cgroup::Cgroup;
use crate::ipc::proto::{ErrorKind, Failure, KillWhom};
use crate::supervisor::state::{ActiveState, Event, Refused};

use super::job_driver::Reply;
use super::{JobRequest, Manager, normalize, template_refusal};

impl Manager {
    pub(super) fn job(
        &mut self,
        typed: &str,
        job: JobRequest,
        manual: bool,
        reply: oneshot::Sender<Result<Vec<String>, Failure>>,
    ) {
        if let Some(f) = template_refusal(&normalize(typed)) {
            let _ = reply.send(Err(f));
            return;
        }
        let name = match self.resolve(typed) {
            Ok(n) => n,
            Err(f) => {
                let _ = reply.send(Err(f));
                return;
            }
        };
        if self.shutting_down
            && matches!(
                job,
                JobRequest::Start | JobRequest::Restart | JobRequest::TryRestart
            )
        {
            let _ = reply.send(Err(Failure {
                kind: ErrorKind::Refused,
                message: "the manager is shutting down; no unit may start".into(),
            }));
            return;
        }
        // A unit that cannot be loaded (also one whose file went away or was
        // masked while it runs: its new state waits in `pending`) can only
        // be stopped, signalled or reset, as in systemd.
        if let Some(f) = self.load_failure(&name)
            && !matches!(
                job,
                JobRequest::Stop | JobRequest::Kill { .. } | JobRequest::ResetFailed
            )
        {
            let _ = reply.send(Err(f.failure()));
            return;
        }
        if manual && let Some(f) = self.refused_manually(&name, &job) {
            let _ = reply.send(Err(f));
            return;
        }
        match job {
            JobRequest::Start | JobRequest::Stop | JobRequest::Restart | JobRequest::TryRestart => {
                self.transaction_job(&name, &job, reply);
            }
            JobRequest::Reload => {
                if let Err((reply, r)) = self.start_reload(&name, reply) {
                    let _ = reply.send(Err(Failure {
                        kind: ErrorKind::Refused,
                        message: format!("{name}: {r}"),
                    }));
                }
            }
            // The unit's machine decides: a unit that is active and can
            // reload reloads; any other (inactive, no ExecReload=, a kind
            // that does not reload) restarts, with a restart's checks.
            JobRequest::ReloadOrRestart { only_running } => {
                if let Err((reply, _)) = self.start_reload(&name, reply) {
                    let restart = if only_running {
                        JobRequest::TryRestart
                    } else {
                        JobRequest::Restart
                    };
                    self.job(name.as_str(), restart, manual, reply);
                }
            }
            JobRequest::Kill { signal, whom } => {
                let _ = reply.send(self.kill_job(&name, signal, whom));
            }
            JobRequest::ResetFailed => {
                self.reset_failed(&name);
                self.flush_started();
                let _ = reply.send(Ok(Vec::new()));
            }
        }
    }

    /// Feeds a reload to the unit's machine; the reply waits for its end.
    /// A refusal hands the reply back with the reason.
    fn start_reload(&mut self, name: &str, reply: Reply) -> Result<(), (Reply, Refused)> {
        match self.try_feed(name, Event::Reload) {
            Ok(()) => {
                if let Some(e) = self.units.get_mut(name) {
                    e.reload_waiters.push(reply);
                }
                self.check_waiters(name);
                Ok(())
            }
            Err(r) => Err((reply, r)),
        }
    }

    pub(super) fn reset_failed(&mut self, name: &str) {
        let Some(e) = self.units.get_mut(name) else {
            return;
        };
        if let Some(s) = e.service_mut() {
            s.start_limit.reset();
        }
        self.feed(name, Event::ResetFailed);
    }

    pub(super) fn kill_job(
        &mut self,
        name: &str,
        signal: i32,
        whom: KillWhom,
    ) -> Result<Vec<String>, Failure> {
        let e = &self.units[name];
        let sig = Signal::try_from(signal).map_err(|_| Failure {
            kind: ErrorKind::BadRequest,
            message: format!("unknown signal number {signal}"),
        })?;
        let refuse = |what: &str| Failure {
            kind: ErrorKind::Refused,
            message: format!("{name} has no {what} to signal (it is {})", e.sub_word()),
        };
        let (main, control) = e.main_and_control();
        match whom {
            KillWhom::Main => {
                let pid = main.ok_or_else(|| refuse("main process"))?;
                self.host.signal(pid, sig).map_err(|err| Failure {
                    kind: ErrorKind::Failed,
                    message: format!("cannot send {sig} to main process {pid} of {name}: {err}"),
                })?;
            }
            KillWhom::Control => {
                let pid = control.ok_or_else(|| refuse("control process"))?;
                self.host.signal(pid, sig).map_err(|err| Failure {
                    kind: ErrorKind::Failed,
                    message: format!("cannot send {sig} to control process {pid} of {name}: {err}"),
                })?;
            }
            KillWhom::All => {
                // Processes an earlier invocation left behind (KillMode=process)
                // are the unit's too, as in systemd, where they stay in its cgroup.
                let left = self.lingering.values().filter(|l| l.unit == name);
                let cgroups: Vec<&Cgroup> = e
                    .cgroup()
                    .into_iter()
                    .chain(left.map(|l| &l.cgroup))
                    .collect();
                if cgroups.is_empty() {
                    return Err(refuse("processes"));
                }
                for cg in cgroups {
                    self.host.signal_cgroup(cg, sig).map_err(|err| Failure {
                        kind: ErrorKind::Failed,
                        message: format!("cannot signal the processes of {name}: {err}"),
                    })?;
                }
            }
        }
        Ok(Vec::new())
    }

    pub(super) fn failure_of(&self, name: &str) -> Failure {
        let e = &self.units[name];
        let mut msg = format!("{name} failed (Result: {})", e.phase().result.as_str());
        if let Some(n) = &e.failure_note {
            msg.push_str(": ");
            msg.push_str(n);
        } else if let Some((pid, exit)) = e.service().and_then(|s| s.main_exit) {
            msg.push_str(&format!(
                ": main process {pid} {}, status={}",
                exit.code_word(),
                exit.status_word()
            ));
        }
        msg.push_str(&format!(". See `corral status {name}` for details."));
        Failure {
            kind: ErrorKind::Failed,
            message: msg,
        }
    }

    /// Answers the reload jobs of `name` whose reload has ended.
    pub(super) fn check_waiters(&mut self, name: &str) {
        let Some(e) = self.units.get(name) else {
            return;
        };
        if e.reload_waiters.is_empty() {
            return;
        }
        let p = e.phase();
        let done = match p.active {
            ActiveState::Active => Ok(Vec::new()),
            _ if p.down => Err(self.failure_of(name)),
            _ => return,
        };
        let Some(e) = self.units.get_mut(name) else {
            return;
        };
        for w in std::mem::take(&mut e.reload_waiters) {
            let _ = w.send(done.clone());
        }
    }
}

impl Manager {
    /// RefuseManualStart=/RefuseManualStop=, as systemd's bus_unit_queue_job():
    /// a restart needs both directions allowed.
    fn refused_manually(&self, name: &str, job: &JobRequest) -> Option<Failure> {
        let u = &self.units.get(name)?.def.as_ref().ok()?.unit().unit;
        let refused = match job {
            JobRequest::Start => u.refuse_manual_start,
            JobRequest::Stop => u.refuse_manual_stop,
            JobRequest::Restart | JobRequest::TryRestart => {
                u.refuse_manual_start || u.refuse_manual_stop
            }
            _ => false,
        };
        refused.then(|| Failure {
            kind: ErrorKind::Refused,
            message: format!(
                "Operation refused, unit {name} may be requested by dependency only (it is configured to refuse manual start/stop)."
            ),
        })
    }
}
