//! The main PID of a Type=forking service, found as systemd 252 finds it:
//! PIDFile= read once the start command has exited, and waited for until it
//! names a process of the unit (within TimeoutStartSec=); read again when
//! the main process exits, so that a daemon that moved to a new PID (nginx's
//! binary upgrade) carries on; removed once the service has stopped, so that
//! a crash leaves no stale file for the next start. Without PIDFile=,
//! GuessMainPID=: the one process of the unit the manager adopted.

use std::collections::VecDeque;
use std::path::Path;

use crate::cgroup::Cgroup;
use crate::supervisor::service::ServiceDef;
use crate::supervisor::state::{Event, Pid, Readiness};
use crate::unit::file::{UserFile, read_user_file};

use super::host::Host;
use super::{Input, Manager};

/// What PIDFile= says now.
enum PidFileRead {
    /// It names `Pid`, a live process of the unit.
    Names(Pid),
    /// It does not exist yet, or is empty.
    NotYet,
    /// It names something that cannot be the main process; why.
    Refused(String),
}

/// The PIDFile= of a Type=forking service, if it has one.
fn forking_pid_file(def: &ServiceDef) -> Option<&Path> {
    if def.spec.readiness != Readiness::Forking {
        return None;
    }
    def.unit.service.as_ref()?.pid_file.as_deref()
}

/// Reads `path` as systemd's service_load_pid_file() does, with corral's
/// rule on top: the PID is trusted only inside the unit's cgroup `cg`, and
/// never as the control process `control`.
fn read_pid_file(host: &dyn Host, path: &Path, cg: &Cgroup, control: Option<Pid>) -> PidFileRead {
    // A FIFO or /dev/zero as PIDFile= must not block or bloat the manager.
    let text = match read_user_file(path, UserFile::PidFile) {
        Ok(b) => String::from_utf8_lossy(&b).trim().to_string(),
        Err(_) => return PidFileRead::NotYet,
    };
    if text.is_empty() {
        return PidFileRead::NotYet;
    }
    let Ok(pid) = text.parse::<Pid>() else {
        return PidFileRead::Refused(format!(
            "PIDFile {} does not contain a PID ({text:?})",
            path.display()
        ));
    };
    if pid <= 0 || Some(pid) == control || !host.contains(cg, pid).unwrap_or(false) {
        return PidFileRead::Refused(format!(
            "PIDFile {} names PID {pid}, which is not a process of this unit (not running in its cgroup {}); \
             refusing it: the PIDFile may be stale or shared with another service",
            path.display(),
            cg.path().display()
        ));
    }
    PidFileRead::Names(pid)
}

impl Manager {
    /// Type=forking, the start command has exited: the main PID from
    /// PIDFile=, else (GuessMainPID=) the one process the manager adopted.
    pub(super) fn find_main_pid(&mut self, name: &str, queue: &mut VecDeque<Event>) {
        let e = &self.units[name];
        let Some(def) = e.service_def().cloned() else {
            return;
        };
        let Some(cg) = e.cgroup().cloned() else {
            queue.push_back(Event::MainPidRejected { fatal: false });
            return;
        };
        let Some(path) = forking_pid_file(&def) else {
            let guess = def.unit.service.as_ref().is_some_and(|s| s.guess_main_pid);
            let guessed = guess.then(|| guess_main_pid(self.host.as_ref(), &cg));
            queue.push_back(match guessed.flatten() {
                Some(pid) => Event::MainPid(pid),
                None => Event::MainPidRejected { fatal: false },
            });
            return;
        };
        let control = e.main_and_control().1;
        let why = match read_pid_file(self.host.as_ref(), path, &cg, control) {
            PidFileRead::Names(pid) => {
                self.stop_watching_pid_file(name);
                queue.push_back(Event::MainPid(pid));
                return;
            }
            PidFileRead::NotYet => None,
            PidFileRead::Refused(why) => Some(why),
        };
        if !self.host.populated(&cg).unwrap_or(true) {
            // As systemd: nothing of the unit is left to write it.
            let why = why.unwrap_or_else(|| format!("PIDFile {} was not written", path.display()));
            let msg = format!("{why}, and the service has no process left; the start failed");
            self.log(name, &msg);
            if let Some(e) = self.units.get_mut(name) {
                e.failure_note = Some(msg.into());
            }
            queue.push_back(Event::MainPidRejected { fatal: true });
            return;
        }
        // Daemons often write their PIDFile after the parent exited, and a
        // stale one (left by a crash) is rewritten by the new daemon: wait for
        // it, bounded by TimeoutStartSec= (armed). Said once per reason.
        if let Some(why) = why {
            let msg = format!("{why}; waiting for the service to write it");
            if let Some(e) = self.units.get_mut(name)
                && e.failure_note.as_deref() != Some(msg.as_str())
            {
                e.failure_note = Some(msg.clone().into());
                self.log(name, &msg);
            }
        }
        self.watch_pid_file(name, path);
    }

    /// The main process `old` of `name` exited: the new main PID when the
    /// unit's PIDFile= now names another process of the unit (as systemd,
    /// which re-reads it then: a forking daemon may move to a new PID).
    pub(super) fn moved_main_pid(&self, name: &str, old: Pid) -> Option<Pid> {
        let e = self.units.get(name)?;
        let path = forking_pid_file(e.service_def()?)?;
        let cg = e.cgroup()?;
        match read_pid_file(self.host.as_ref(), path, cg, e.main_and_control().1) {
            PidFileRead::Names(pid) if pid != old => Some(pid),
            _ => None,
        }
    }

    /// Removes the PIDFile= of a forking service that has stopped, as
    /// systemd does, so that a crash leaves no stale file behind.
    pub(super) fn remove_pid_file(&mut self, name: &str, def: &ServiceDef) {
        let Some(path) = forking_pid_file(def) else {
            return;
        };
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => self.log(
                name,
                &format!("cannot remove the PIDFile {}: {e}", path.display()),
            ),
        }
    }

    fn stop_watching_pid_file(&mut self, name: &str) {
        if let Some(w) = self
            .units
            .get_mut(name)
            .and_then(|e| e.inv_mut())
            .and_then(|i| i.pidfile_watch.take())
        {
            self.watches.cancel(w);
        }
    }

    fn watch_pid_file(&mut self, name: &str, path: &Path) {
        let Some(inv) = self.units.get(name).and_then(|e| e.inv()) else {
            return;
        };
        if inv.pidfile_watch.is_some() {
            return;
        }
        let seq = inv.seq;
        let dir = path.parent().unwrap_or(Path::new("/")).to_path_buf();
        let watch = match self.watches.pid_file_dir(&dir, name, seq) {
            Ok(w) => w,
            Err(err) => {
                self.log(
                    name,
                    &format!("cannot watch {} for the PIDFile: {err}", dir.display()),
                );
                return;
            }
        };
        // Check once after arming: the file may have appeared in between.
        let _ = self.tx.send(Input::PidFileChanged {
            unit: name.to_string(),
            seq,
        });
        if let Some(inv) = self.units.get_mut(name).and_then(|e| e.inv_mut()) {
            inv.pidfile_watch = Some(watch);
        }
    }
}

/// GuessMainPID=: as systemd's unit_search_main_pid(), the one process of
/// the cgroup whose parent is the manager (a daemon the start command left
/// is reparented to it, the manager being a subreaper; the daemon's own
/// children, such as the shells of a tmux server, are not); none when there
/// are several.
fn guess_main_pid(host: &dyn Host, cg: &Cgroup) -> Option<Pid> {
    let mut adopted = host
        .procs(cg)
        .unwrap_or_default()
        .into_iter()
        .filter(|&p| host.adopted(p));
    let first = adopted.next()?;
    adopted.next().is_none().then_some(first)
}
