//! What a manager leaves for its successor about every unit that runs
//! processes (one small record per unit in its runtime directory), and the
//! successor's decision, per unit, from that record and what the kernel says
//! now: take the unit back as it was (re-adoption), or stop its cgroup as a
//! leftover. The decision ([`decide`]) is a pure function, table-tested.
//!
//! The runtime directory is a tmpfs (`$XDG_RUNTIME_DIR`): a record is
//! replaced by rename, with no fsync, so writing one costs a few system calls
//! on the start path. It survives the manager (kill -9, `daemon-reexec`), not
//! a reboot, which ends the processes it describes anyway.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::state::{Exit, Pid, State, Sub, Timer};

/// The extended attribute of a unit's cgroup that names its invocation (as
/// systemd's user manager names it), checked against the record.
pub const INVOCATION_XATTR: &str = "user.invocation_id";

/// The record format; a record of another version is not trusted.
pub const VERSION: u32 = 1;

/// Errors reading or writing the records.
#[derive(Debug, thiserror::Error)]
pub enum ReadoptError {
    /// A file-system operation failed.
    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        /// What was attempted.
        op: &'static str,
        /// On what.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A record is not what this manager writes.
    #[error("cannot read the unit state record {}: {why}", path.display())]
    Bad {
        /// The record.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
}

/// What a manager knew about one unit's current invocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// [`VERSION`].
    pub version: u32,
    /// The unit's full name.
    pub unit: String,
    /// INVOCATION_ID of the invocation.
    pub invocation: String,
    /// The invocation's cgroup, as a directory name below the manager's
    /// root; none in auto-restart (the cgroup of the last run is gone).
    pub cgroup: Option<String>,
    /// The machine's state: sub-state, main and control PID, restart
    /// counter, result, whether a stop or restart was asked for.
    pub state: State,
    /// Start time of the main process (/proc/PID/stat field 22, clock
    /// ticks since boot), so that a recycled PID is never adopted.
    pub main_start: Option<u64>,
    /// Start time of the control process, likewise.
    pub control_start: Option<u64>,
    /// Armed timers and their deadlines, CLOCK_MONOTONIC ns (system-wide,
    /// so they mean the same to a successor).
    pub timers: Vec<(Timer, u64)>,
    /// The last main process and how it ended (for `status` and `$EXIT_*`).
    pub main_exit: Option<(Pid, Exit)>,
    /// The last STATUS= the service sent.
    pub status_text: Option<String>,
    /// runit: the unit's `log/run`, which outlives each run of `run`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<LogRecord>,
}

/// What a manager knew about a runit unit's `log/run` (the ends of its
/// pipe are with the fd holder).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogRecord {
    /// Its PID; none while it waited to be started again.
    pub pid: Option<Pid>,
    /// Its start time (/proc/PID/stat field 22), so that a recycled PID is never adopted.
    pub start: Option<u64>,
    /// Its cgroup, a directory name below the manager's root.
    pub cgroup: String,
}

/// What the kernel says now about a record's processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    /// The record's cgroup: None when it is gone (or the record has none),
    /// else whether it holds processes.
    pub cgroup: Option<bool>,
    /// The cgroup is marked as another invocation's (its `user.invocation_id`).
    pub foreign: bool,
    /// The main process still runs, in the cgroup, with the recorded start time.
    pub main_alive: bool,
    /// The control process likewise.
    pub control_alive: bool,
    /// CLOCK_MONOTONIC now, ns.
    pub now_ns: u64,
}

/// What to do after the unit is taken back, in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Then {
    /// Watch the main process (a pidfd: it is not the manager's child).
    WatchMain,
    /// Watch the control process likewise.
    WatchControl,
    /// The main process ended while no manager ran: an exit with status unknown.
    MainGone,
    /// The control process ended while no manager ran, likewise.
    ControlGone,
    /// A forking unit waited for its PIDFile: look again, and watch for it.
    FindMainPid,
    /// The cgroup emptied while no manager ran.
    CgroupEmpty,
}

/// A unit taken back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Adopted {
    /// The state it resumes in.
    pub state: State,
    /// Timers to arm again, with the time left of each.
    pub timers: Vec<(Timer, Duration)>,
    /// What follows, in order.
    pub then: Vec<Then>,
}

/// The successor's decision about one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Take the unit back.
    Adopt(Adopted),
    /// Nothing is left to take back or to stop (the record is stale).
    Forget,
    /// Its cgroup is a leftover: stop it (why, for the log).
    Leftover(&'static str),
}

/// Whether a unit in `sub` still has an invocation the successor must know
/// about: anything but stopped (auto-restart is a wait between two).
pub fn worth_keeping(sub: Sub) -> bool {
    !matches!(sub, Sub::Dead | Sub::Failed | Sub::Condition)
}

/// What to make of `rec` given what the kernel says now.
pub fn decide(rec: &Record, seen: Seen) -> Decision {
    if rec.version != VERSION {
        return if seen.cgroup.is_some() {
            Decision::Leftover("its state record is of another version")
        } else {
            Decision::Forget
        };
    }
    if seen.foreign {
        return Decision::Leftover("its cgroup is another invocation's");
    }
    if !worth_keeping(rec.state.sub) {
        return if seen.cgroup.is_some() {
            Decision::Leftover("its unit was recorded as stopped")
        } else {
            Decision::Forget
        };
    }
    let timers = rec
        .timers
        .iter()
        .map(|&(t, deadline)| {
            (
                t,
                Duration::from_nanos(deadline.saturating_sub(seen.now_ns)),
            )
        })
        .collect();
    let state = rec.state.clone();
    let mut then = Vec::new();
    if rec.state.sub == Sub::AutoRestart {
        // Between two runs: only the RestartSec= wait to take back. A cgroup
        // of the last run still populated is not part of the next one.
        if seen.cgroup == Some(true) {
            return Decision::Leftover("its unit was waiting to restart");
        }
        return Decision::Adopt(Adopted {
            state,
            timers,
            then,
        });
    }
    if rec.state.main.is_some() {
        then.push(if seen.main_alive {
            Then::WatchMain
        } else {
            Then::MainGone
        });
    }
    if rec.state.control.and_then(|c| c.pid).is_some() {
        then.push(if seen.control_alive {
            Then::WatchControl
        } else {
            Then::ControlGone
        });
    }
    if rec.state.sub == Sub::Start && state.main.is_none() && state.control.is_none() {
        then.push(Then::FindMainPid);
    }
    let populated = seen.cgroup == Some(true);
    if state.populated && !populated {
        then.push(Then::CgroupEmpty);
    }
    Decision::Adopt(Adopted {
        state,
        timers,
        then,
    })
}

/// A job the manager had queued and not begun: its unit, and "start" or "stop".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuedJob {
    /// The unit's full name.
    pub unit: String,
    /// What the job was to do ("start", "stop").
    pub kind: String,
}

/// A cgroup an ended invocation left populated (KillMode=process): the
/// unit it belongs to, its name below the root, and the processes it held.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LingeringCgroup {
    /// The unit's full name.
    pub unit: String,
    /// The cgroup's name below the manager's root.
    pub cgroup: String,
    /// The processes left in it when its invocation ended.
    pub pids: Vec<Pid>,
}

/// The records of one manager: `<runtime dir>/units/<unit>`, the jobs it
/// had queued in `<runtime dir>/jobs`, and its lingering cgroups in
/// `<runtime dir>/lingering`.
#[derive(Debug, Clone)]
pub struct Records {
    dir: PathBuf,
    jobs: PathBuf,
    lingering: PathBuf,
}

impl Records {
    /// The records in `runtime_dir`.
    pub fn new(runtime_dir: &Path) -> Records {
        Records {
            dir: runtime_dir.join("units"),
            jobs: runtime_dir.join("jobs"),
            lingering: runtime_dir.join("lingering"),
        }
    }

    /// Replaces the list of queued jobs (removes it when there is none).
    pub fn write_jobs(&self, jobs: &[QueuedJob]) -> Result<(), ReadoptError> {
        write_list(&self.jobs, jobs)
    }

    /// The jobs a predecessor had queued, removing their list: a successor
    /// cannot run them for the client that asked (its connection died).
    pub fn take_jobs(&self) -> Result<Vec<QueuedJob>, ReadoptError> {
        take_list(&self.jobs)
    }

    /// Replaces the list of lingering cgroups (removes it when there is none).
    pub fn write_lingering(&self, cgroups: &[LingeringCgroup]) -> Result<(), ReadoptError> {
        write_list(&self.lingering, cgroups)
    }

    /// The lingering cgroups a predecessor left, removing their list.
    pub fn take_lingering(&self) -> Result<Vec<LingeringCgroup>, ReadoptError> {
        take_list(&self.lingering)
    }

    /// Where `unit`'s record is.
    pub fn path(&self, unit: &str) -> PathBuf {
        self.dir.join(unit)
    }

    /// Replaces `unit`'s record with `body` (no fsync: see the module doc).
    pub fn write(&self, unit: &str, body: &[u8]) -> Result<(), ReadoptError> {
        super::atomic_file::replace(&self.path(unit), body)
            .map_err(|(op, path, source)| ReadoptError::Io { op, path, source })
    }

    /// Removes `unit`'s record, if there is one.
    pub fn remove(&self, unit: &str) -> Result<(), ReadoptError> {
        remove_file(&self.path(unit))
    }

    /// Every record left, by unit, and why the unreadable ones were
    /// skipped (and removed: they would be skipped again).
    pub fn load_all(&self) -> (Vec<Record>, Vec<ReadoptError>) {
        let mut records = Vec::new();
        let mut errors = Vec::new();
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return (records, errors),
            Err(source) => {
                errors.push(ReadoptError::Io {
                    op: "list",
                    path: self.dir.clone(),
                    source,
                });
                return (records, errors);
            }
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                // A temporary file of a write the manager did not finish.
                let _ = std::fs::remove_file(&path);
                continue;
            }
            let read = std::fs::read(&path)
                .map_err(|source| ReadoptError::Io {
                    op: "read",
                    path: path.clone(),
                    source,
                })
                .and_then(|b| {
                    serde_json::from_slice::<Record>(&b).map_err(|e| ReadoptError::Bad {
                        path: path.clone(),
                        why: e.to_string(),
                    })
                });
            match read {
                Ok(r) if r.unit == name => records.push(r),
                Ok(r) => {
                    let _ = std::fs::remove_file(&path);
                    errors.push(ReadoptError::Bad {
                        path: path.clone(),
                        why: format!("it describes {}", r.unit),
                    });
                }
                Err(e) => {
                    let _ = std::fs::remove_file(&path);
                    errors.push(e);
                }
            }
        }
        records.sort_by(|a, b| a.unit.cmp(&b.unit));
        (records, errors)
    }

    /// Removes every record (a clean exit: the units were stopped).
    pub fn clear(&self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = std::fs::remove_file(&self.jobs);
        let _ = std::fs::remove_file(&self.lingering);
    }
}

/// Replaces the JSON list at `path` with `items` (removes it when empty).
fn write_list<T: Serialize>(path: &Path, items: &[T]) -> Result<(), ReadoptError> {
    if items.is_empty() {
        return remove_file(path);
    }
    let body = serde_json::to_vec(items).expect("a record list serializes");
    super::atomic_file::replace(path, &body).map_err(|(op, path, source)| ReadoptError::Io {
        op,
        path,
        source,
    })
}

/// The JSON list at `path` (empty when there is none), removing it.
fn take_list<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Vec<T>, ReadoptError> {
    let body = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(ReadoptError::Io {
                op: "read",
                path: path.to_path_buf(),
                source,
            });
        }
    };
    remove_file(path)?;
    serde_json::from_slice(&body).map_err(|e| ReadoptError::Bad {
        path: path.to_path_buf(),
        why: e.to_string(),
    })
}

/// Removes `path` if it exists.
fn remove_file(path: &Path) -> Result<(), ReadoptError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(ReadoptError::Io {
            op: "remove",
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// CLOCK_MONOTONIC now, in ns.
pub fn monotonic_ns() -> u64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into `t`.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t) };
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::supervisor::state::{Cmd, Control, ServiceResult};

    fn rec(sub: Sub, main: Option<Pid>, control: Option<Pid>, timers: &[(Timer, u64)]) -> Record {
        Record {
            version: VERSION,
            unit: "a.service".into(),
            invocation: "0123456789abcdef0123456789abcdef".into(),
            cgroup: (sub != Sub::AutoRestart).then(|| "a.service".into()),
            state: State {
                sub,
                main,
                control: control.map(|pid| Control {
                    cmd: Cmd::StartPre,
                    index: 0,
                    pid: Some(pid),
                }),
                populated: sub != Sub::AutoRestart,
                restarts: 2,
                ..State::default()
            },
            main_start: main.map(|_| 77),
            control_start: control.map(|_| 78),
            timers: timers.to_vec(),
            main_exit: None,
            status_text: None,
            log: None,
        }
    }

    fn seen(cgroup: Option<bool>, main_alive: bool, control_alive: bool) -> Seen {
        Seen {
            cgroup,
            foreign: false,
            main_alive,
            control_alive,
            now_ns: 10_000_000_000,
        }
    }

    fn adopted(d: Decision) -> Adopted {
        match d {
            Decision::Adopt(a) => a,
            other => panic!("not adopted: {other:?}"),
        }
    }

    #[test]
    fn decisions_from_the_record_and_the_kernel() {
        use Then::*;
        let secs = |s: u64| s * 1_000_000_000;
        // (case, record, what the kernel says, what follows)
        let table: Vec<(&str, Record, Seen, Vec<Then>)> = vec![
            (
                "running, main alive",
                rec(Sub::Running, Some(10), None, &[]),
                seen(Some(true), true, false),
                vec![WatchMain],
            ),
            (
                "running, main died during the outage, others left",
                rec(Sub::Running, Some(10), None, &[]),
                seen(Some(true), false, false),
                vec![MainGone],
            ),
            (
                "running, everything gone",
                rec(Sub::Running, Some(10), None, &[]),
                seen(Some(false), false, false),
                vec![MainGone, CgroupEmpty],
            ),
            (
                "running, the cgroup itself removed",
                rec(Sub::Running, Some(10), None, &[]),
                seen(None, false, false),
                vec![MainGone, CgroupEmpty],
            ),
            (
                "notify not READY yet",
                rec(Sub::Start, Some(10), None, &[(Timer::Phase, secs(40))]),
                seen(Some(true), true, false),
                vec![WatchMain],
            ),
            (
                "ExecStartPre= running",
                rec(Sub::StartPre, None, Some(11), &[(Timer::Phase, secs(40))]),
                seen(Some(true), false, true),
                vec![WatchControl],
            ),
            (
                "ExecStartPre= ended during the outage",
                rec(Sub::StartPre, None, Some(11), &[]),
                seen(Some(false), false, false),
                vec![ControlGone, CgroupEmpty],
            ),
            (
                "forking, waiting for the PIDFile",
                rec(Sub::Start, None, None, &[(Timer::Phase, secs(40))]),
                seen(Some(true), false, false),
                vec![FindMainPid],
            ),
            (
                "stopping, main ignores SIGTERM",
                rec(Sub::StopSigterm, Some(10), None, &[(Timer::Phase, secs(5))]),
                seen(Some(true), true, false),
                vec![WatchMain],
            ),
            (
                "RemainAfterExit=yes, exited",
                Record {
                    state: State {
                        populated: false,
                        ..rec(Sub::Exited, None, None, &[]).state
                    },
                    ..rec(Sub::Exited, None, None, &[])
                },
                seen(Some(false), false, false),
                vec![],
            ),
        ];
        for (case, r, s, then) in table {
            let a = adopted(decide(&r, s));
            assert_eq!(a.then, then, "{case}");
            assert_eq!(a.state.restarts, 2, "{case}: the restart counter is kept");
            assert_eq!(a.state.sub, r.state.sub, "{case}: the sub-state is kept");
        }
    }

    #[test]
    fn timers_resume_with_the_time_left() {
        let r = rec(
            Sub::StopSigterm,
            Some(10),
            None,
            &[(Timer::Phase, 13_000_000_000), (Timer::RuntimeMax, 1)],
        );
        let a = adopted(decide(&r, seen(Some(true), true, false)));
        assert_eq!(
            a.timers,
            vec![
                (Timer::Phase, Duration::from_secs(3)),
                // Elapsed during the outage: due at once.
                (Timer::RuntimeMax, Duration::ZERO)
            ]
        );
    }

    #[test]
    fn auto_restart_resumes_its_wait_and_refuses_a_populated_cgroup() {
        let r = rec(
            Sub::AutoRestart,
            None,
            None,
            &[(Timer::Restart, 12_500_000_000)],
        );
        let a = adopted(decide(&r, seen(None, false, false)));
        assert_eq!(
            a.timers,
            vec![(Timer::Restart, Duration::from_millis(2500))]
        );
        assert!(a.then.is_empty());
        assert!(matches!(
            decide(&r, seen(Some(true), false, false)),
            Decision::Leftover(_)
        ));
    }

    #[test]
    fn stale_or_foreign_records_are_not_adopted() {
        let r = rec(Sub::Running, Some(10), None, &[]);
        let foreign = Seen {
            foreign: true,
            ..seen(Some(true), true, false)
        };
        assert!(matches!(decide(&r, foreign), Decision::Leftover(_)));
        let mut r = rec(Sub::Running, Some(10), None, &[]);
        r.version = VERSION + 1;
        assert!(matches!(
            decide(&r, seen(Some(true), true, false)),
            Decision::Leftover(_)
        ));
        assert_eq!(decide(&r, seen(None, false, false)), Decision::Forget);
        let mut r = rec(Sub::Running, Some(10), None, &[]);
        r.state.sub = Sub::Failed;
        r.state.result = ServiceResult::ExitCode;
        assert!(matches!(
            decide(&r, seen(Some(true), true, false)),
            Decision::Leftover(_)
        ));
        assert_eq!(decide(&r, seen(None, false, false)), Decision::Forget);
    }

    #[test]
    fn records_round_trip_through_the_runtime_dir() {
        let dir = tempfile::tempdir().unwrap();
        let records = Records::new(dir.path());
        let r = rec(Sub::Running, Some(10), None, &[(Timer::Phase, 5)]);
        records
            .write("a.service", &serde_json::to_vec(&r).unwrap())
            .unwrap();
        std::fs::write(records.path("b.service"), b"{not json").unwrap();
        let (got, errors) = records.load_all();
        assert_eq!(got, vec![r]);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].to_string().contains("b.service"), "{}", errors[0]);
        assert!(
            !records.path("b.service").exists(),
            "a bad record is removed"
        );
        records.remove("a.service").unwrap();
        records.remove("a.service").unwrap();
        records.clear();
        assert!(!dir.path().join("units").exists());
    }
}
