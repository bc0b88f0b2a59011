//! Invocations and cgroups: a fresh INVOCATION_ID and cgroup per start,
//! its removal at the end, and the cgroups that processes left by
//! KillMode=process still hold.

use std::sync::Arc;

use crate::cgroup::Cgroup;
use crate::supervisor::service::ServiceDef;

use crate::supervisor::fd_holder::Kind;
use crate::supervisor::lines::priority;
use crate::supervisor::process_setup;
use crate::unit::model::EmergencyAction;

use super::{Input, Invocation, Lingering, Manager, now_usec};

impl Manager {
    pub(super) fn new_invocation(
        &mut self,
        name: &str,
        def: &Arc<ServiceDef>,
    ) -> Result<(), String> {
        self.seq += 1;
        let seq = self.seq;
        let id = new_invocation_id();
        let cg_name = self.fresh_cgroup_name(name, name, &id)?;
        let e = self.units.get_mut(name).expect("unit exists");
        e.last_invocation = id.as_str().into();
        let s = e
            .service_mut()
            .ok_or_else(|| format!("{name} runs no processes"))?;
        s.main_exit = None;
        s.status_text = None;
        s.left_behind.clear();
        s.main_command = None;
        s.inv = Some(Invocation {
            id: id.clone(),
            seq,
            cgroup: None,
            watch: None,
            pidfile_watch: None,
            started: self.host.now(),
        });
        self.rate_limiter(name);
        let cg = crate::supervisor::leftovers::create_unit_cgroup(&self.root, &cg_name, name)?;
        // A successor adopts the cgroup only for this invocation (readopt.rs);
        // without xattrs on cgroupfs it goes by the record alone.
        let _ = cg.set_xattr(crate::supervisor::readopt::INVOCATION_XATTR, &id);
        for (file, value) in &def.limits {
            if let Err(err) = cg.set_limit(file, value) {
                self.log_at(
                    name,
                    priority::WARNING,
                    &format!("cannot apply {file}={value}: {err}"),
                );
            }
        }
        let events = cg.file("cgroup.events");
        let watch = self
            .watches
            .cgroup_events(&events, name, seq)
            .map_err(|err| format!("cannot watch {}: {err}", events.display()))?;
        let inv = self
            .units
            .get_mut(name)
            .and_then(|e| e.inv_mut())
            .expect("invocation exists");
        inv.cgroup = Some(cg);
        inv.watch = Some(watch);
        if def.runit.as_ref().is_some_and(|r| r.log_run.is_some()) {
            self.ensure_runit_log(name)?;
        }
        Ok(())
    }

    /// The name of a new cgroup below the root for `unit`: `base`, its
    /// cgroup left empty by an earlier run removed first (a cgroup is never
    /// reused: it may have had cgroup.kill written), or `base-ID` (the first
    /// 8 digits of `id`) while processes still hold it.
    pub(super) fn fresh_cgroup_name(
        &mut self,
        base: &str,
        unit: &str,
        id: &str,
    ) -> Result<String, String> {
        let existing = self.root.path().join(base);
        if !existing.exists() {
            return Ok(base.to_string());
        }
        let old = Cgroup::open(&existing).map_err(|e| e.to_string())?;
        if self.host.populated(&old).unwrap_or(true) {
            return Ok(format!("{base}-{}", &id[..8]));
        }
        old.remove()
            .map_err(|e| format!("cannot remove the stale cgroup of {unit}: {e}"))?;
        // Its last process ended just now; its watcher's event is moot.
        let gone: Vec<u64> = self
            .lingering
            .iter()
            .filter(|(_, l)| l.cgroup.path() == existing)
            .map(|(seq, _)| *seq)
            .collect();
        for seq in gone {
            let l = self
                .lingering
                .remove(&seq)
                .expect("lingering cgroup exists");
            self.watches.cancel(l.watch);
        }
        Ok(base.to_string())
    }

    /// The unit's LogRateLimitIntervalSec=/LogRateLimitBurst= limiter, shared
    /// by all its pipes and made at its first use (none when unlimited).
    pub(super) fn rate_limiter(
        &mut self,
        name: &str,
    ) -> Option<Arc<crate::journal::ingest::RateLimiter>> {
        let def = self.units.get(name)?.service_def()?.clone();
        let s = self.service_mut(name)?;
        if s.rate_limit.is_none() {
            s.rate_limit = new_rate_limiter(&def);
        }
        s.rate_limit.clone()
    }

    /// Goes on reading the output pipes among the fds a dead predecessor
    /// left with the fd holder, each through its unit's rate limiter (the
    /// units are loaded by now).
    pub(super) fn resume_output(&mut self, held: Vec<crate::supervisor::fd_holder::Kept>) -> usize {
        let output = self.output.clone();
        let mut pipes = Vec::new();
        let mut stored = Vec::new();
        for mut k in held {
            match (k.tag.kind, k.meta.take()) {
                (_, Some(meta)) => pipes.push((k.id, meta, k.fd)),
                (Kind::Listening, _) => {
                    let unit = k.tag.unit.clone();
                    self.held_sockets.entry(unit).or_default().push(k);
                }
                (Kind::Stored, _) => stored.push(k),
                // The log pipes: re-adoption took those it wanted and dropped the rest.
                _ => {}
            }
        }
        self.restore_fd_stores(stored);
        output.resume(pipes, |unit| self.rate_limiter(unit))
    }

    pub(super) fn end_invocation(&mut self, name: &str) {
        let Some(inv) = self.service_mut(name).and_then(|s| s.inv.take()) else {
            return;
        };
        if let Some(w) = inv.pidfile_watch {
            self.watches.cancel(w);
        }
        if let Some(cg) = inv.cgroup {
            let left = self.host.procs(&cg).unwrap_or_default();
            if left.is_empty() {
                if let Some(w) = inv.watch {
                    self.watches.cancel(w);
                }
                if let Err(err) = cg.remove() {
                    self.log_at(
                        name,
                        priority::WARNING,
                        &format!("cannot remove the cgroup: {err}"),
                    );
                }
            } else {
                // KillMode=process (or an unkillable process): the cgroup stays
                // with them, and its watcher goes on, to remove it once the last
                // one is gone. An exit after the read above still comes as an
                // event: the watch has been armed since the cgroup was created.
                if let Some(s) = self.service_mut(name) {
                    s.left_behind = left.clone();
                }
                if let Some(watch) = inv.watch {
                    self.lingering.insert(
                        inv.seq,
                        Lingering {
                            unit: name.to_string(),
                            cgroup: cg,
                            watch,
                            pids: left,
                        },
                    );
                }
            }
        }
        self.settle_pending(name);
    }

    /// After [`Self::end_invocation`]: what systemd.exec(5) settings undo
    /// (runtime directories, credentials), and `SuccessAction=`/`FailureAction=`.
    pub(super) fn invocation_ended(
        &mut self,
        name: &str,
        def: &Arc<ServiceDef>,
        failed: bool,
        restarting: bool,
    ) {
        let Some(svc) = def.unit.service.as_ref() else {
            return;
        };
        for p in process_setup::after_invocation(svc, restarting) {
            self.log_at(name, priority::WARNING, &p);
        }
        let action = process_setup::manager_action(&def.unit.unit, failed, restarting);
        if action != EmergencyAction::None && !self.shutting_down {
            let which = if failed {
                "FailureAction"
            } else {
                "SuccessAction"
            };
            self.log(name, &format!("{which}= asks the manager to exit"));
            let _ = self.tx.send(Input::Shutdown);
        }
    }

    /// The cgroup.events of a lingering cgroup changed: remove it once it is empty.
    pub(super) fn lingering_changed(&mut self, seq: u64) {
        let Some(l) = self.lingering.get(&seq) else {
            return;
        };
        match self.host.populated(&l.cgroup) {
            Ok(true) => return,
            Ok(false) => {}
            Err(err) if err.is_not_found() => {}
            Err(err) => {
                let unit = l.unit.clone();
                self.log_at(
                    &unit,
                    priority::WARNING,
                    &format!("cannot read the left-over cgroup's events: {err}"),
                );
                return;
            }
        }
        let l = self
            .lingering
            .remove(&seq)
            .expect("lingering cgroup exists");
        if let Err(err) = l.cgroup.remove() {
            // Someone moved a process into it meanwhile: the watch goes on.
            self.log_at(
                &l.unit,
                priority::WARNING,
                &format!("cannot remove the cgroup left by KillMode=process: {err}"),
            );
            self.lingering.insert(seq, l);
            return;
        }
        self.watches.cancel(l.watch);
        if let Some(s) = self.service_mut(&l.unit) {
            s.left_behind.retain(|p| !l.pids.contains(p));
        }
    }
}

/// 128 random bits as 32 hex digits (systemd's INVOCATION_ID format).
pub(super) fn new_invocation_id() -> String {
    let mut b = [0u8; 16];
    // SAFETY: getrandom writes at most len bytes into the buffer.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    if n != b.len() as isize {
        // Without the random source, time and a counter still make ids unique here.
        let t = now_usec().to_le_bytes();
        b[..8].copy_from_slice(&t);
        b[8..12].copy_from_slice(&std::process::id().to_le_bytes());
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A fresh limiter for the unit's LogRateLimitIntervalSec=/LogRateLimitBurst=;
/// none when either turns limiting off.
pub(super) fn new_rate_limiter(
    def: &ServiceDef,
) -> Option<Arc<crate::journal::ingest::RateLimiter>> {
    let svc = def.unit.service.as_ref()?;
    let (Some(interval), Some(burst)) = (svc.log_rate_limit_interval, svc.log_rate_limit_burst)
    else {
        return None;
    };
    (!interval.is_zero() && burst > 0)
        .then(|| crate::journal::ingest::RateLimiter::new(interval, u64::from(burst)))
}
