//! The manager's side of re-adoption: it keeps a state record per unit
//! that runs processes (written after every change, in `try_feed`), and a
//! new manager takes back, at its start, every unit whose record matches a
//! cgroup left below its root (the decision is `supervisor::readopt`'s).
//! What has no matching record is stopped as a leftover (leftovers.rs).

use std::collections::{HashSet, VecDeque};
use std::path::Path;

use crate::cgroup::Cgroup;
use crate::supervisor::fd_holder::Kept;
use crate::supervisor::fd_holder::Kind;
use crate::supervisor::lines::priority;
use crate::supervisor::readopt::{self, Decision, LingeringCgroup, Record, Seen, Then};
use crate::supervisor::state::{Event, Exit, Pid, Sub};

use super::host::Host;
use super::{Invocation, Manager};

impl Manager {
    /// Writes the names of the active units without processes (sockets,
    /// timers, targets: they have no state record) if one of them changed
    /// since the last write, for a successor to start them again
    /// (`reexec::STARTED`). A change only marks the record stale; it is
    /// written before the answer to a job and once the manager has handled
    /// its input, so that the start of 1000 timers writes it once, not 1000
    /// times over (each write is the whole list: quadratic, and 40% of that
    /// start-up's time went into creating the files).
    pub(super) fn flush_started(&mut self) {
        if !std::mem::take(&mut self.started_stale) {
            return;
        }
        let started = crate::supervisor::reexec::started_text(
            self.units
                .iter()
                .filter(|(_, e)| e.service().is_none() && !e.phase().is_stopped())
                .map(|(n, _)| n.as_str()),
        );
        if self.started_record.as_deref() == Some(started.as_str()) {
            return;
        }
        let dir = self.notify_path.parent().unwrap_or(Path::new("/"));
        if let Err(e) = crate::supervisor::reexec::save_started(dir, &started) {
            eprintln!(
                "corrald: cannot record the active sockets, timers and targets in {}: {e}; \
                 a successor starts only those enabled",
                dir.display()
            );
        }
        self.started_record = Some(started.into_boxed_str());
    }

    /// Writes (or removes) the state record of `name` after a change: kept
    /// while the unit has an invocation or waits to restart, rewritten only
    /// when its content changed.
    pub(super) fn persist(&mut self, name: &str) {
        // Before the job waiting on this change is answered: a client told
        // "stopped" may kill the manager at once.
        self.record_lingering();
        let Some(e) = self.units.get(name) else {
            return;
        };
        let Some(s) = e.service() else {
            self.started_stale = true;
            return;
        };
        if s.inv.is_none() && s.state.sub != Sub::AutoRestart {
            if s.persisted.is_some() {
                if let Err(err) = self.records.remove(name) {
                    self.log_at(name, priority::WARNING, &err.to_string());
                }
                if let Some(s) = self.service_mut(name) {
                    s.persisted = None;
                }
            }
            return;
        }
        let main = s.state.main;
        let control = s.state.control.and_then(|c| c.pid);
        let mut start_times: Vec<(Pid, u64)> = s
            .start_times
            .iter()
            .copied()
            .filter(|(p, _)| Some(*p) == main || Some(*p) == control)
            .collect();
        for pid in [main, control].into_iter().flatten() {
            if !start_times.iter().any(|(p, _)| *p == pid)
                && let Some(t) = crate::supervisor::procs::start_time(pid)
            {
                start_times.push((pid, t));
            }
        }
        let start_of = |pid: Option<Pid>| {
            pid.and_then(|pid| start_times.iter().find(|(p, _)| *p == pid).map(|(_, t)| *t))
        };
        let mut timers: Vec<_> = s.deadlines.iter().map(|(t, d)| (*t, *d)).collect();
        timers.sort_by_key(|(t, _)| *t as u8);
        let record = Record {
            version: readopt::VERSION,
            unit: name.to_string(),
            invocation: e.invocation_id(),
            cgroup: e.cgroup().and_then(|c| {
                c.path()
                    .strip_prefix(self.root.path())
                    .ok()
                    .map(|p| p.to_string_lossy().into_owned())
            }),
            state: s.state.clone(),
            main_start: start_of(main),
            control_start: start_of(control),
            timers,
            main_exit: s.main_exit,
            status_text: s.status_text.clone(),
            log: self.runit_log_record(name),
        };
        let body = match serde_json::to_vec(&record) {
            Ok(b) => b,
            Err(err) => {
                self.log_at(
                    name,
                    priority::WARNING,
                    &format!("cannot encode the state record: {err}"),
                );
                return;
            }
        };
        if s.persisted.as_ref() == Some(&body) {
            return;
        }
        let written = self.records.write(name, &body);
        if let Err(err) = &written {
            self.log_at(name, priority::WARNING, &err.to_string());
        }
        if let Some(s) = self.service_mut(name) {
            s.start_times = start_times;
            s.persisted = written.is_ok().then_some(body);
        }
    }

    /// At start, before anything else runs: takes back every unit whose
    /// record matches what is left in the kernel; answers the names of the
    /// cgroups taken back (every other one below the root is a leftover).
    /// `held`: what the fd holder kept for the predecessor; the runit log
    /// pipes are taken out of it (the output pipes are left to the journal
    /// readers).
    pub(super) fn readopt_all(&mut self, held: &mut Vec<Kept>) -> HashSet<String> {
        let began = std::time::Instant::now();
        let (records, errors) = self.records.load_all();
        for err in errors {
            eprintln!("corrald: {err}; its unit is not taken back");
        }
        // The clients that asked for these jobs lost their connection with
        // the crash: say so where the user looks, not start them unasked.
        match self.records.take_jobs() {
            Ok(jobs) => {
                for j in jobs {
                    let msg = format!(
                        "Job {}/{} queued by the previous manager was dropped; {} it again.",
                        j.unit, j.kind, j.kind
                    );
                    self.log_at(&j.unit, priority::WARNING, &msg);
                }
            }
            Err(err) => eprintln!("corrald: {err}; the jobs it lists are dropped"),
        }
        let now_ns = readopt::monotonic_ns();
        let mut kept = HashSet::new();
        let mut taken = 0;
        for rec in &records {
            if self.readopt(rec, now_ns, held, &mut kept) {
                taken += 1;
            }
        }
        // Log pipes of units not taken back: their loggers are stopped as
        // leftovers, and the holder must not keep the pipes for ever.
        held.retain(|k| {
            let log_pipe = matches!(k.tag.kind, Kind::LogPipeRead | Kind::LogPipeWrite);
            if log_pipe && let Some(h) = self.output.holder() {
                h.drop_fd(k.id);
            }
            !log_pipe
        });
        match self.records.take_lingering() {
            Ok(list) => {
                for l in list {
                    self.readopt_lingering(l, &mut kept);
                }
            }
            Err(err) => eprintln!("corrald: {err}; the cgroups it lists are leftovers"),
        }
        self.record_lingering();
        if !records.is_empty() {
            eprintln!(
                "corrald: took back {taken} of {} unit(s) a previous manager left, in {} µs",
                records.len(),
                began.elapsed().as_micros()
            );
        }
        kept
    }

    /// Writes the list of lingering cgroups when it changed, for a successor
    /// to take them back as they are rather than stop them as leftovers.
    pub(super) fn record_lingering(&mut self) {
        let mut now: Vec<LingeringCgroup> = self
            .lingering
            .values()
            .map(|l| LingeringCgroup {
                unit: l.unit.clone(),
                cgroup: l
                    .cgroup
                    .path()
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                pids: l.pids.clone(),
            })
            .collect();
        now.sort_by(|a, b| a.cgroup.cmp(&b.cgroup));
        if now == self.lingering_record {
            return;
        }
        if let Err(err) = self.records.write_lingering(&now) {
            eprintln!("corrald: {err}; a successor would stop the processes KillMode=process left");
        }
        self.lingering_record = now;
    }

    /// Takes back a cgroup a predecessor's invocation of a service left
    /// populated (KillMode=process): watched again until its last process
    /// ends, its processes still the unit's (`status`, `kill`). Its name
    /// goes into `kept` so that it is not stopped as a leftover.
    fn readopt_lingering(&mut self, l: LingeringCgroup, kept: &mut HashSet<String>) {
        let path = self.root.path().join(&l.cgroup);
        let Ok(name) = self.resolve(&l.unit) else {
            return;
        };
        if self.units[name.as_str()].service().is_none() || l.cgroup.contains('/') {
            return;
        }
        let Ok(cgroup) = Cgroup::open(&path) else {
            return;
        };
        self.seq += 1;
        let seq = self.seq;
        let Ok(watch) = self
            .watches
            .cgroup_events(&cgroup.file("cgroup.events"), &name, seq)
        else {
            return;
        };
        kept.insert(l.cgroup.clone());
        let left = self.host.procs(&cgroup).unwrap_or_default();
        let pids: Vec<Pid> = l.pids.into_iter().filter(|p| left.contains(p)).collect();
        if let Some(s) = self.service_mut(&name) {
            s.left_behind.extend(&pids);
        }
        self.lingering.insert(
            seq,
            super::Lingering {
                unit: name.to_string(),
                cgroup,
                watch,
                pids,
            },
        );
        // Emptied before the watch was armed: removed now.
        self.lingering_changed(seq);
    }

    /// Takes back the unit of `rec` if the kernel still has it (whether it
    /// did), adding the name of the cgroup it keeps to `kept`.
    fn readopt(
        &mut self,
        rec: &Record,
        now_ns: u64,
        held: &mut Vec<Kept>,
        kept: &mut HashSet<String>,
    ) -> bool {
        let name = match self.resolve(&rec.unit) {
            Ok(n) if self.units[n.as_str()].service_def().is_some() => n,
            _ => {
                let _ = self.records.remove(&rec.unit);
                eprintln!(
                    "corrald: {} can no longer be loaded as a service: not taken back",
                    rec.unit
                );
                return false;
            }
        };
        let cgroup = rec
            .cgroup
            .as_ref()
            .map(|c| self.root.path().join(c))
            .filter(|p| p.is_dir())
            .and_then(|p| Cgroup::open(&p).ok());
        let alive = |pid: Option<Pid>, start: Option<u64>, host: &dyn Host| match (pid, &cgroup) {
            // A zombie child (exited during a daemon-reexec) has left its
            // cgroup but is the reaper's to report, with its status.
            (Some(pid), Some(cg)) => {
                (super::host::own_child(pid) || host.contains(cg, pid).unwrap_or(false))
                    && host.watch_exit(pid, start)
            }
            _ => false,
        };
        let seen = Seen {
            foreign: cgroup.as_ref().is_some_and(|cg| {
                cg.xattr(readopt::INVOCATION_XATTR)
                    .is_some_and(|id| id != rec.invocation)
            }),
            cgroup: cgroup
                .as_ref()
                .map(|cg| self.host.populated(cg).unwrap_or(false)),
            main_alive: alive(rec.state.main, rec.main_start, self.host.as_ref()),
            control_alive: alive(
                rec.state.control.and_then(|c| c.pid),
                rec.control_start,
                self.host.as_ref(),
            ),
            now_ns,
        };
        let adopted = match readopt::decide(rec, seen) {
            Decision::Adopt(a) => a,
            Decision::Forget => {
                let _ = self.records.remove(&rec.unit);
                return false;
            }
            Decision::Leftover(why) => {
                let _ = self.records.remove(&rec.unit);
                eprintln!(
                    "corrald: {name}: not taken back ({why}); its cgroup is stopped as a leftover"
                );
                return false;
            }
        };
        let Some(def) = self.units[name.as_str()].service_def().cloned() else {
            return false;
        };
        self.seq += 1;
        let seq = self.seq;
        let watch = cgroup.as_ref().and_then(|cg| {
            self.watches
                .cgroup_events(&cg.file("cgroup.events"), &name, seq)
                .ok()
        });
        let started = self.host.now();
        // Kept even if the unit ends just below: its cgroup is then removed,
        // or lingers under this manager's watch (KillMode=process).
        if let Some(n) = cgroup.as_ref().and_then(|cg| cg.path().file_name()) {
            kept.insert(n.to_string_lossy().into_owned());
        }
        let e = self.units.get_mut(name.as_str()).expect("unit resolved");
        e.last_invocation = rec.invocation.as_str().into();
        e.since_usec = super::now_usec();
        let s = e.service_mut().expect("a service");
        s.state = adopted.state.clone();
        // What the record holds: rewritten below only if something changed.
        s.persisted = serde_json::to_vec(rec).ok();
        s.start_times = [
            (rec.state.main, rec.main_start),
            (rec.state.control.and_then(|c| c.pid), rec.control_start),
        ]
        .into_iter()
        .filter_map(|(p, t)| Some((p?, t?)))
        .collect();
        s.main_exit = rec.main_exit;
        s.status_text = rec.status_text.clone();
        if rec.state.sub != Sub::AutoRestart {
            s.inv = Some(Invocation {
                id: rec.invocation.clone(),
                seq,
                cgroup,
                watch,
                pidfile_watch: None,
                started,
            });
        }
        if let Some(limiter) = super::invocation::new_rate_limiter(&def) {
            s.rate_limit = Some(limiter);
        }
        for pid in [
            adopted.state.main,
            adopted.state.control.and_then(|c| c.pid),
        ]
        .into_iter()
        .flatten()
        {
            self.pids.insert(pid, name.clone());
        }
        let main = adopted
            .state
            .main
            .map_or_else(String::new, |p| format!(", main PID {p}"));
        self.log(
            &name,
            &format!(
                "Taken back by a new manager: {} ({}){main}, invocation {}.",
                adopted.state.sub.active().as_str(),
                adopted.state.sub.as_str(),
                rec.invocation
            ),
        );
        // Before what follows: a run that ended during the outage restarts
        // into the same log pipe.
        if let Some(log) = &rec.log {
            self.readopt_runit_log(&name, log, held, kept);
        }
        for (timer, left) in adopted.timers {
            self.arm(&name, timer, left);
        }
        for then in adopted.then {
            match then {
                Then::WatchMain | Then::WatchControl => {}
                Then::MainGone => {
                    let pid = adopted.state.main.unwrap_or_default();
                    self.log(
                        &name,
                        &format!("Main process {pid} ended while no manager ran."),
                    );
                    self.reaped(pid, Exit::Unknown);
                }
                Then::ControlGone => {
                    let pid = adopted
                        .state
                        .control
                        .and_then(|c| c.pid)
                        .unwrap_or_default();
                    self.log(
                        &name,
                        &format!("Control process {pid} ended while no manager ran."),
                    );
                    self.reaped(pid, Exit::Unknown);
                }
                Then::FindMainPid => {
                    let mut q = VecDeque::new();
                    self.find_main_pid(&name, &mut q);
                    for ev in q {
                        self.feed(&name, ev);
                    }
                }
                Then::CgroupEmpty => self.feed(&name, Event::CgroupEmpty),
            }
        }
        self.persist(&name);
        self.unit_changed(&name);
        true
    }
}
