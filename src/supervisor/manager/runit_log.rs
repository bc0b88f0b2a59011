//! runit's `log/run` as runsv(8) runs it: a process supervised on its own,
//! in a cgroup of its own beside the unit's (`NAME.service.log` below the
//! manager's root; a unit's cgroup is made anew for each run of `run` and
//! killed whole when it stops, so the logger cannot live there), reading a
//! pipe the manager creates once and holds, both ends, for as long as the
//! unit runs or waits to restart: `run` and `finish` get its write end as
//! stdout at each start, and nothing they wrote is lost between two runs.
//!
//! - log/run ending on its own is started again, after a second when it ran
//!   for less than one (runsv's rule for both its services), at once otherwise.
//! - A restart of `run` (automatic or `corral restart`) leaves it alone.
//! - When the unit stops, after `run` and `finish` are down, the manager
//!   closes its write end, as runsv does for `sv exit`: log/run reads what
//!   is left and exits at end of file; it is killed (its cgroup) after the
//!   unit's TimeoutStopSec= if it does not.
//! - Both ends are deposited with the fd holder and the logger is part of the
//!   unit's state record, so that a successor (kill -9, `daemon-reexec`)
//!   keeps the same logger and gives the next `run` the same pipe.

use std::collections::HashSet;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::time::Duration;

use crate::cgroup::Cgroup;
use crate::cgroup::spawn::Stdio;
use crate::supervisor::fd_holder::{Kept, Kind, Tag};
use crate::supervisor::lines::priority;
use crate::supervisor::output::Stream;
use crate::supervisor::readopt::LogRecord;
use crate::supervisor::state::{Cmd, Exit, Pid, Sub};
use crate::unit::RunitService;

use super::exec::{spec_stdout_raw, to_cstring};
use super::{Input, Lingering, Manager};

/// The logger of one runit unit.
pub(super) struct RunitLog {
    /// log/run's PID; None while it waits to be started again.
    pid: Option<Pid>,
    /// Its start time (/proc/PID/stat), so that a successor never takes a
    /// recycled PID for it.
    start_time: Option<u64>,
    /// When it was started (the host's clock), for runsv's delay rule.
    started: Duration,
    /// Its cgroup, below the manager's root beside the unit's.
    cgroup: Cgroup,
    /// The pipe's read end: stdin of every log/run.
    read: OwnedFd,
    /// The write end: stdout of every `run` and `finish`; closed once the
    /// unit stopped, for log/run to read to the end.
    write: Option<OwnedFd>,
    /// The ids of the two ends with the fd holder.
    held: Vec<u64>,
    /// The unit stopped: log/run is to end, not to be started again.
    stopping: bool,
    /// The generation of the timer armed last (a restart, or the stop's
    /// kill); an older one's input is ignored.
    timer: u64,
}

impl Manager {
    /// The write end of `name`'s log pipe, for `run` and `finish`.
    pub(super) fn runit_log_pipe(&self, name: &str) -> Option<RawFd> {
        let l = self.runit_logs.get(name)?;
        l.write.as_ref().map(AsRawFd::as_raw_fd)
    }

    /// At each start of `run`: the unit's logger, started with its pipe
    /// unless it already runs (or waits to be started again).
    pub(super) fn ensure_runit_log(&mut self, name: &str) -> Result<(), String> {
        if let Some(l) = self.runit_logs.get(name) {
            if !l.stopping {
                return Ok(());
            }
            // Started again while the last logger still drains a closed
            // pipe: it can no longer read this run's output, so it goes.
            let l = self.runit_logs.remove(name).expect("logger exists");
            self.retire_log_cgroup(name, l.cgroup);
        }
        let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(|e| format!("cannot create the log pipe of {name}: {e}"))?;
        let id = super::invocation::new_invocation_id();
        let cg_name = self.fresh_cgroup_name(&format!("{name}.log"), name, &id)?;
        let cgroup = crate::supervisor::leftovers::create_unit_cgroup(&self.root, &cg_name, name)?;
        let held = match self.output.holder() {
            Some(h) => [(Kind::LogPipeRead, &read), (Kind::LogPipeWrite, &write)]
                .into_iter()
                .filter_map(|(kind, fd)| {
                    let tag = Tag {
                        kind,
                        unit: name.to_string(),
                        name: String::new(),
                    };
                    h.deposit_tagged(fd.as_fd(), &tag)
                        .map_err(|e| eprintln!("corrald: {name}: {e}"))
                        .ok()
                })
                .collect(),
            None => Vec::new(),
        };
        self.runit_logs.insert(
            name.to_string(),
            RunitLog {
                pid: None,
                start_time: None,
                started: self.host.now(),
                cgroup,
                read,
                write: Some(write),
                held,
                stopping: false,
                timer: 0,
            },
        );
        self.spawn_runit_log(name)
    }

    /// Starts log/run in its cgroup, its stdin the pipe's read end, its
    /// stdout and stderr into the journal.
    fn spawn_runit_log(&mut self, name: &str) -> Result<(), String> {
        let Some(r) = self
            .units
            .get(name)
            .and_then(|e| e.service_def())
            .and_then(|d| d.runit.clone())
        else {
            return Err(format!("{name} is no longer a runit service"));
        };
        let Some(log_run) = r.log_run.clone() else {
            return Err(format!("{name} has no log/run any more"));
        };
        let l = &self.runit_logs[name];
        let env = self.process_env(name, None, Cmd::Start);
        let mut spec = super::exec::command_spec(&log_run, &["./run".to_string()], &env)?;
        spec.cwd = Some(to_cstring(&r.log_dir().to_string_lossy(), "log directory")?);
        spec.cgroup = Some(l.cgroup.path().to_path_buf());
        spec.stdin = Stdio::Borrowed(l.read.as_raw_fd());
        let (out_r, out_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(|e| format!("cannot create an output pipe for {name}: {e}"))?;
        spec.stdout = Stdio::Fd(out_w);
        spec.stderr = Stdio::Borrowed(spec_stdout_raw(&spec));
        spec.new_session = true;
        let pid = self
            .host
            .spawn(&spec)
            .map_err(|e| format!("cannot start log/run of {name}: {e}"))?;
        drop(spec);
        let mut src = self.source(name, None, None, pid, Stream::Stdout);
        src.comm = crate::journal::comm_of(&log_run);
        self.output.attach(src, out_r);
        let now = self.host.now();
        if let Some(l) = self.runit_logs.get_mut(name) {
            l.pid = Some(pid);
            l.start_time = crate::supervisor::procs::start_time(pid);
            l.started = now;
        }
        Ok(())
    }

    /// A reaped process that is no unit's main or control process: if it
    /// is a logger, it is started again (or, its unit stopped, let go).
    pub(super) fn runit_log_reaped(&mut self, pid: Pid, exit: Exit) {
        let Some(name) = self
            .runit_logs
            .iter()
            .find(|(_, l)| l.pid == Some(pid))
            .map(|(n, _)| n.clone())
        else {
            return;
        };
        let now = self.host.now();
        let l = self.runit_logs.get_mut(&name).expect("logger exists");
        l.pid = None;
        if l.stopping {
            let l = self.runit_logs.remove(&name).expect("logger exists");
            self.retire_log_cgroup(&name, l.cgroup);
            return;
        }
        let delay = RunitService::restart_delay(now.saturating_sub(l.started));
        self.log_at(
            &name,
            priority::WARNING,
            &format!(
                "log/run (PID {pid}) exited, code={}, status={}; starting it again{}",
                exit.code_word(),
                exit.status_word(),
                if delay.is_zero() {
                    String::new()
                } else {
                    format!(" in {} s", delay.as_secs())
                }
            ),
        );
        self.arm_runit_log(&name, delay);
        self.persist(&name);
    }

    /// Arms the logger's one timer: its restart, or the stop's kill.
    fn arm_runit_log(&mut self, name: &str, after: Duration) {
        self.timer_generation += 1;
        let generation = self.timer_generation;
        if let Some(l) = self.runit_logs.get_mut(name) {
            l.timer = generation;
        }
        let _ = self.host.arm(
            after,
            Input::RunitLogTimer {
                unit: name.to_string(),
                generation,
            },
        );
    }

    /// The logger's timer fired: start log/run again, or kill what is left
    /// of a logger that did not end after its unit stopped.
    pub(super) fn runit_log_timer(&mut self, name: &str, generation: u64) {
        let Some(l) = self.runit_logs.get(name) else {
            return;
        };
        if l.timer != generation {
            return;
        }
        if l.stopping {
            self.log_at(
                name,
                priority::WARNING,
                "log/run did not end within TimeoutStopSec= of its unit's stop; killing it",
            );
            if let Err(err) = self.host.kill_cgroup(&l.cgroup) {
                self.log_at(
                    name,
                    priority::WARNING,
                    &format!("cannot kill the cgroup of log/run: {err}"),
                );
            }
            return;
        }
        if l.pid.is_some() {
            return;
        }
        if let Err(msg) = self.spawn_runit_log(name) {
            // runsv tries again each second, forever.
            self.log_at(name, priority::ERR, &msg);
            self.arm_runit_log(name, Duration::from_secs(1));
        }
        self.persist(name);
    }

    /// After every change of `name`: a logger whose unit neither runs nor
    /// waits to restart (and has no start job on the way) is stopped.
    pub(super) fn runit_log_settle(&mut self, name: &str) {
        let Some(l) = self.runit_logs.get(name) else {
            return;
        };
        if l.stopping {
            return;
        }
        let needed = self
            .service(name)
            .is_some_and(|s| s.inv.is_some() || s.state.sub == Sub::AutoRestart)
            || self.start_job_waits(name);
        if !needed {
            self.stop_runit_log(name);
        }
    }

    /// `run` is down for good: closes the pipe's write end (ours and the
    /// holder's copy; runsv closes its own) so that log/run reads what is
    /// left and exits at end of file.
    fn stop_runit_log(&mut self, name: &str) {
        let timeout = self
            .units
            .get(name)
            .and_then(|e| e.service_def())
            .and_then(|d| d.spec.timeout_stop);
        let Some(l) = self.runit_logs.get_mut(name) else {
            return;
        };
        l.stopping = true;
        l.write = None;
        let held = std::mem::take(&mut l.held);
        let running = l.pid.is_some();
        if let Some(h) = self.output.holder() {
            for id in held {
                h.drop_fd(id);
            }
        }
        if !running {
            let l = self.runit_logs.remove(name).expect("logger exists");
            self.retire_log_cgroup(name, l.cgroup);
            return;
        }
        if let Some(t) = timeout {
            self.arm_runit_log(name, t);
        }
    }

    /// Removes the cgroup of a logger that ended; what it left there (its
    /// children) is killed, and the cgroup removed once they are gone.
    fn retire_log_cgroup(&mut self, name: &str, cgroup: Cgroup) {
        if !self.host.populated(&cgroup).unwrap_or(false) {
            if let Err(err) = cgroup.remove() {
                self.log_at(
                    name,
                    priority::WARNING,
                    &format!("cannot remove the cgroup of log/run: {err}"),
                );
            }
            return;
        }
        let _ = self.host.kill_cgroup(&cgroup);
        self.seq += 1;
        let seq = self.seq;
        let pids = self.host.procs(&cgroup).unwrap_or_default();
        match self
            .watches
            .cgroup_events(&cgroup.file("cgroup.events"), name, seq)
        {
            Ok(watch) => {
                self.lingering.insert(
                    seq,
                    Lingering {
                        unit: name.to_string(),
                        cgroup,
                        watch,
                        pids,
                    },
                );
            }
            Err(err) => self.log_at(
                name,
                priority::WARNING,
                &format!("cannot watch the cgroup of log/run until it is empty: {err}"),
            ),
        }
    }

    /// What the state record keeps of `name`'s logger.
    pub(super) fn runit_log_record(&self, name: &str) -> Option<LogRecord> {
        let l = self.runit_logs.get(name).filter(|l| !l.stopping)?;
        Some(LogRecord {
            pid: l.pid,
            start: l.start_time,
            cgroup: l
                .cgroup
                .path()
                .strip_prefix(self.root.path())
                .ok()?
                .to_string_lossy()
                .into_owned(),
        })
    }

    /// Re-adoption: takes back the logger `rec` describes, with the ends
    /// of its pipe the holder kept (taken out of `held`); the name of its
    /// cgroup goes into `kept`. Without both ends it is not taken back: its
    /// cgroup is stopped as a leftover and the next `run` gets a new one.
    pub(super) fn readopt_runit_log(
        &mut self,
        name: &str,
        rec: &LogRecord,
        held: &mut Vec<Kept>,
        kept: &mut HashSet<String>,
    ) {
        let path = self.root.path().join(&rec.cgroup);
        let Some(cgroup) = Some(&path)
            .filter(|p| p.is_dir() && p.parent() == Some(self.root.path()))
            .and_then(|p| Cgroup::open(p.as_path()).ok())
        else {
            return;
        };
        let mut take = |kind: Kind| {
            let i = held
                .iter()
                .position(|k| k.tag.kind == kind && k.tag.unit == name)?;
            let k = held.swap_remove(i);
            Some((k.id, k.fd))
        };
        let (Some((rid, read)), Some((wid, write))) =
            (take(Kind::LogPipeRead), take(Kind::LogPipeWrite))
        else {
            eprintln!(
                "corrald: {name}: the fd holder has no log pipe for log/run; it is stopped as a leftover"
            );
            return;
        };
        let alive = rec.pid.is_some_and(|pid| {
            (super::host::own_child(pid) || self.host.contains(&cgroup, pid).unwrap_or(false))
                && self.host.watch_exit(pid, rec.start)
        });
        kept.insert(rec.cgroup.clone());
        // Its run time is unknown: a logger that ends at once is started
        // again after a second, as one that ran for less.
        self.runit_logs.insert(
            name.to_string(),
            RunitLog {
                pid: rec.pid.filter(|_| alive),
                start_time: rec.start.filter(|_| alive),
                started: self.host.now(),
                cgroup,
                read,
                write: Some(write),
                held: vec![rid, wid],
                stopping: false,
                timer: 0,
            },
        );
        if !alive {
            self.log_at(
                name,
                priority::WARNING,
                "log/run ended while no manager ran; starting it again",
            );
            self.arm_runit_log(name, Duration::ZERO);
        }
    }

    /// The logger's cgroup (relative, as `status` shows cgroups) and its processes.
    pub(super) fn runit_log_status(
        &self,
        name: &str,
    ) -> Option<(String, Vec<crate::ipc::proto::Process>)> {
        let l = self.runit_logs.get(name)?;
        let procs =
            crate::supervisor::procs::describe(l.cgroup.procs_recursive().unwrap_or_default());
        Some((self.rel_cgroup(&l.cgroup), procs))
    }
}
