//! What a restarted `corrald --system` needs to carry on without restarting
//! anyone: every user's sessions, linger flag and running manager, saved in
//! `<runtime-dir>/users.json` after every change (write, fsync, rename: a
//! reader sees the old or the new file, never half of one). It lives in the
//! runtime directory because it describes processes, which a reboot ends.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::SystemError;

/// Name of the state file in the runtime directory.
pub const FILE: &str = "users.json";

/// A process named by PID and start time, so a PID reused after the process
/// ended is never taken for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proc {
    /// Its PID.
    pub pid: u32,
    /// Field 22 of /proc/PID/stat (clock ticks since boot).
    pub start_time: u64,
}

impl Proc {
    /// `pid` as it is now; `None` if no such process runs.
    pub fn of(pid: u32) -> Option<Proc> {
        Some(Proc {
            pid,
            start_time: start_time(pid)?,
        })
    }

    /// Whether this very process still runs (and is not a zombie).
    pub fn alive(&self) -> bool {
        start_time(self.pid) == Some(self.start_time)
    }
}

/// One user's saved state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedUser {
    /// The uid.
    pub uid: u32,
    /// Sessions not owned by a process (`corral login`).
    pub untied_sessions: u32,
    /// Login processes that own a session each (PAM's `OpenSession`).
    pub leaders: Vec<Proc>,
    /// Whether the user lingers.
    pub linger: bool,
    /// The running manager, once it was ready or at least spawned.
    pub manager: Option<SavedManager>,
    /// Whether the system manager made /run/user/UID (and so removes it).
    pub made_rundir: bool,
}

/// A running user manager.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedManager {
    /// The process.
    pub proc: Proc,
    /// The journal invocation its output is filed under (hex).
    pub invocation: String,
}

/// Writes `users` to `dir/users.json` atomically.
pub fn save(dir: &Path, users: &[SavedUser]) -> Result<(), SystemError> {
    let path = dir.join(FILE);
    let tmp = dir.join(format!("{FILE}.tmp"));
    let io = |op: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| SystemError::Io { op, path, source }
    };
    let data = serde_json::to_vec(users).map_err(|e| io("encode", &path)(e.into()))?;
    // Root's alone: it names every user's login processes.
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io("create", &tmp))?;
    file.write_all(&data).map_err(io("write", &tmp))?;
    file.sync_all().map_err(io("fsync", &tmp))?;
    std::fs::rename(&tmp, &path).map_err(io("rename into place", &path))
}

/// Reads `dir/users.json`; empty when there is none. A damaged file is
/// reported and treated as empty: the users' managers are then left to the
/// leftover rules (kept while they own their subtree).
pub fn load(dir: &Path) -> Vec<SavedUser> {
    let path = dir.join(FILE);
    let data = match std::fs::read(&path) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => {
            eprintln!("corrald --system: cannot read {}: {e}", path.display());
            return Vec::new();
        }
    };
    serde_json::from_slice(&data).unwrap_or_else(|e| {
        eprintln!(
            "corrald --system: ignoring {}: it is not a saved state ({e})",
            path.display()
        );
        Vec::new()
    })
}

/// Removes the state file (after every user was stopped).
pub fn remove(dir: &Path) {
    let _ = std::fs::remove_file(dir.join(FILE));
}

/// The path of the state file in `dir`.
pub fn path(dir: &Path) -> PathBuf {
    dir.join(FILE)
}

/// Field 22 of /proc/PID/stat; `None` for no such process or a zombie.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count
    // from the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    // rest starts at field 3 (state).
    if fields.first() == Some(&"Z") {
        return None;
    }
    fields.get(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_state_round_trips_and_a_pid_is_checked_with_its_start_time() {
        let me = Proc::of(std::process::id()).expect("this process runs");
        assert!(me.alive());
        let reused = Proc {
            start_time: me.start_time + 1,
            ..me
        };
        assert!(!reused.alive(), "same PID, other start: another process");
        let tmp = tempfile::tempdir().unwrap();
        assert!(load(tmp.path()).is_empty());
        let users = vec![SavedUser {
            uid: 1000,
            untied_sessions: 1,
            leaders: vec![me],
            linger: false,
            manager: Some(SavedManager {
                proc: me,
                invocation: "00ff".into(),
            }),
            made_rundir: true,
        }];
        save(tmp.path(), &users).unwrap();
        assert_eq!(load(tmp.path()), users);
        assert!(!tmp.path().join(format!("{FILE}.tmp")).exists());
        std::fs::write(path(tmp.path()), b"{half").unwrap();
        assert!(load(tmp.path()).is_empty());
    }
}
