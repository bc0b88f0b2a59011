//! The inotify hub: one instance for every file the manager watches, each
//! invocation's `cgroup.events` (kept while a lingering cgroup of
//! KillMode=process remains), the directory of a PIDFile a forking unit
//! waits for, and the directory of `/etc/localtime` (timer units). Its events become manager inputs. The cgroup layer's
//! `EventsWatcher` (an instance per watcher) is for one-off waits only:
//! stopping leftovers, the system daemon's session cgroups, freezing.
//!
//! One instance per watch, as before, had two costs. Closing an inotify
//! instance waits for an SRCU grace period in the kernel (measured 6–12 ms
//! here), and the instance was closed on the runtime thread when its watcher
//! task ended, which delayed every `stop` reply by that much. And a user may
//! own only `fs.inotify.max_user_instances` (128 by default) instances, so a
//! manager with more units than that could not watch their cgroups. Removing
//! a watch from a live instance does not wait: the kernel frees the mark
//! later, in a worker.

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::path::Path;
use std::sync::{Arc, Mutex};

use nix::errno::Errno;
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};
use tokio::runtime::Handle;
use tokio::sync::mpsc;

use super::Input;

/// What an event on a watch means to the manager.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WatchFor {
    /// `cgroup.events` of an invocation: `Input::CgroupChanged`.
    Cgroup,
    /// The directory of a PIDFile: `Input::PidFileChanged`.
    PidFile,
    /// The directory of the local zone's file: `Input::ZoneFileChanged`
    /// for events on that file's name only.
    Zone,
}

/// Who is told about events on a watch.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    kind: WatchFor,
    unit: String,
    seq: u64,
    /// Only events on this name in the watched directory count.
    name: Option<std::ffi::OsString>,
}

struct Inner {
    ino: Inotify,
    /// Several targets share a watch when they watch the same inode (two
    /// PIDFiles in one directory): the kernel gives them one descriptor.
    targets: Mutex<HashMap<WatchDescriptor, Vec<Target>>>,
}

/// The manager's inotify instance and what each of its watches is for.
pub(super) struct Watches {
    inner: Arc<Inner>,
}

/// One target's registration; give it back to [`Watches::cancel`].
#[derive(Debug)]
pub(super) struct Watch {
    wd: WatchDescriptor,
    kind: WatchFor,
    seq: u64,
}

/// The inotify fd, for tokio to poll.
struct Fd(Arc<Inner>);

impl AsRawFd for Fd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.ino.as_fd().as_raw_fd()
    }
}

impl Watches {
    /// Creates the instance and the task that turns its events into inputs.
    pub(super) fn new(tx: mpsc::UnboundedSender<Input>, rt: &Handle) -> Result<Watches, Errno> {
        let ino = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)?;
        let inner = Arc::new(Inner {
            ino,
            targets: Mutex::new(HashMap::new()),
        });
        let _guard = rt.enter();
        // SAFETY: Fd holds the Inotify (through the Arc), so the fd stays
        // open and the same for as long as the AsyncFd lives.
        let afd = unsafe { tokio::io::unix::AsyncFd::register(Fd(inner.clone())) }
            .map_err(|e| Errno::from_raw(e.into_parts().1.raw_os_error().unwrap_or(libc::EIO)))?;
        rt.spawn(read_events(afd, tx));
        Ok(Watches { inner })
    }

    /// Watches `cgroup.events` of invocation `seq` of `unit` for changes.
    pub(super) fn cgroup_events(&self, path: &Path, unit: &str, seq: u64) -> Result<Watch, Errno> {
        self.add(
            path,
            AddWatchFlags::IN_MODIFY,
            WatchFor::Cgroup,
            unit,
            seq,
            None,
        )
    }

    /// Watches directory `dir` for a PIDFile of invocation `seq` of `unit`
    /// being written, created or moved in.
    pub(super) fn pid_file_dir(&self, dir: &Path, unit: &str, seq: u64) -> Result<Watch, Errno> {
        use AddWatchFlags as F;
        let mask = F::IN_CLOSE_WRITE | F::IN_MOVED_TO | F::IN_CREATE;
        self.add(dir, mask, WatchFor::PidFile, unit, seq, None)
    }

    /// Watches the directory of `file` for `file` being replaced, written,
    /// removed or touched: the file itself is a symlink that a change of
    /// zone replaces, so a watch on it would end with the first change.
    pub(super) fn zone_file(&self, file: &Path) -> Result<Watch, Errno> {
        use AddWatchFlags as F;
        let (Some(dir), Some(name)) = (file.parent(), file.file_name()) else {
            return Err(Errno::EINVAL);
        };
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        let mask = F::IN_CLOSE_WRITE
            | F::IN_MOVED_TO
            | F::IN_MOVED_FROM
            | F::IN_CREATE
            | F::IN_DELETE
            | F::IN_ATTRIB;
        self.add(dir, mask, WatchFor::Zone, "", 0, Some(name.to_owned()))
    }

    fn add(
        &self,
        path: &Path,
        mask: AddWatchFlags,
        kind: WatchFor,
        unit: &str,
        seq: u64,
        name: Option<std::ffi::OsString>,
    ) -> Result<Watch, Errno> {
        // Held across add_watch, so the reader cannot see the watch's first
        // event before its target is known.
        let mut targets = self.inner.targets.lock().expect("watch table");
        // IN_MASK_ADD: a second watch of the same inode keeps the first one's events.
        let wd = self.inner.ino.add_watch(
            path,
            mask | AddWatchFlags::from_bits_retain(libc::IN_MASK_ADD),
        )?;
        targets.entry(wd).or_default().push(Target {
            kind,
            unit: unit.to_string(),
            seq,
            name,
        });
        Ok(Watch { wd, kind, seq })
    }

    /// Ends `w`; the inotify watch goes with its last target.
    pub(super) fn cancel(&self, w: Watch) {
        let mut targets = self.inner.targets.lock().expect("watch table");
        let Some(list) = targets.get_mut(&w.wd) else {
            // The kernel dropped the watch already (its file was removed).
            return;
        };
        list.retain(|t| !(t.kind == w.kind && t.seq == w.seq));
        if list.is_empty() {
            targets.remove(&w.wd);
            // EINVAL when the file went meanwhile: nothing left to remove.
            let _ = self.inner.ino.rm_watch(w.wd);
        }
    }
}

/// Reads the instance's events for as long as the manager takes inputs.
async fn read_events(afd: tokio::io::unix::AsyncFd<Fd>, tx: mpsc::UnboundedSender<Input>) {
    loop {
        let Ok(mut guard) = afd.readable().await else {
            return;
        };
        let inner = &guard.get_inner().0;
        let events = match inner.ino.read_events() {
            Ok(events) => events,
            Err(Errno::EAGAIN) => {
                guard.clear_ready();
                continue;
            }
            Err(err) => {
                eprintln!(
                    "corrald: cannot read inotify events: {err}; cgroup and PIDFile changes go unnoticed"
                );
                return;
            }
        };
        let mut inputs = Vec::new();
        {
            let mut targets = inner.targets.lock().expect("watch table");
            let mut seen = Vec::new();
            for ev in &events {
                if ev.mask.contains(AddWatchFlags::IN_IGNORED) {
                    // Removed by the kernel (the file went) or by cancel().
                    targets.remove(&ev.wd);
                    continue;
                }
                // One input per target and batch: each one makes the manager re-read.
                for t in targets.get(&ev.wd).into_iter().flatten() {
                    if t.name.as_ref().is_some_and(|n| ev.name.as_ref() != Some(n)) {
                        continue;
                    }
                    if seen.contains(&(ev.wd, t.kind, t.seq)) {
                        continue;
                    }
                    seen.push((ev.wd, t.kind, t.seq));
                    let (unit, seq) = (t.unit.clone(), t.seq);
                    inputs.push(match t.kind {
                        WatchFor::Cgroup => Input::CgroupChanged { unit, seq },
                        WatchFor::PidFile => Input::PidFileChanged { unit, seq },
                        WatchFor::Zone => Input::ZoneFileChanged,
                    });
                }
            }
        }
        for input in inputs {
            if tx.send(input).is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// The next input the hub sends, or a panic after a generous while.
    async fn next(rx: &mut mpsc::UnboundedReceiver<Input>) -> (&'static str, String, u64) {
        let input = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("no inotify input")
            .expect("the hub's task ended");
        match input {
            Input::CgroupChanged { unit, seq } => ("cgroup", unit, seq),
            Input::PidFileChanged { unit, seq } => ("pidfile", unit, seq),
            other => panic!("unexpected input {other:?}"),
        }
    }

    /// Moves a new file into `dir`: a single event (IN_MOVED_TO), where
    /// writing it in place gives IN_CREATE and IN_CLOSE_WRITE, maybe read
    /// in two batches.
    fn move_in(dir: &Path, name: &str) {
        let tmp = dir.parent().unwrap().join(name);
        std::fs::write(&tmp, "1").unwrap();
        std::fs::rename(&tmp, dir.join(name)).unwrap();
    }

    fn append(path: &Path) {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
        f.write_all(b"x\n").unwrap();
    }

    #[test]
    fn one_instance_serves_150_files_and_pidfile_directories() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let files: Vec<_> = (0..150)
            .map(|i| {
                let p = tmp.path().join(format!("f{i}"));
                std::fs::write(&p, "").unwrap();
                p
            })
            .collect();
        let run = tmp.path().join("run");
        std::fs::create_dir(&run).unwrap();
        rt.block_on(async {
            let (tx, mut rx) = mpsc::unbounded_channel();
            let hub = Watches::new(tx, &Handle::current()).unwrap();
            // More watches than the default per-user limit of instances (128).
            let mut watches: Vec<_> = files
                .iter()
                .enumerate()
                .map(|(i, p)| Some(hub.cgroup_events(p, &format!("u{i}"), i as u64).unwrap()))
                .collect();
            append(&files[7]);
            assert_eq!(next(&mut rx).await, ("cgroup", "u7".into(), 7));
            // A cancelled watch says nothing; the next change is the other file's.
            hub.cancel(watches[7].take().unwrap());
            append(&files[7]);
            append(&files[8]);
            assert_eq!(next(&mut rx).await, ("cgroup", "u8".into(), 8));
            // Two units waiting in one directory share its watch; cancelling
            // one keeps the other's.
            let a = hub.pid_file_dir(&run, "a", 1).unwrap();
            let _b = hub.pid_file_dir(&run, "b", 2).unwrap();
            move_in(&run, "a.pid");
            let mut got = vec![next(&mut rx).await, next(&mut rx).await];
            got.sort();
            assert_eq!(
                got,
                [("pidfile", "a".into(), 1), ("pidfile", "b".into(), 2)]
            );
            hub.cancel(a);
            move_in(&run, "b.pid");
            assert_eq!(next(&mut rx).await, ("pidfile", "b".into(), 2));
            // Nothing for "a" queued before this change of another file.
            append(&files[9]);
            assert_eq!(next(&mut rx).await, ("cgroup", "u9".into(), 9));
        });
    }
}
