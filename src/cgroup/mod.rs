//! Our own small layer over cgroupfs (cgroup v2 only).
//!
//! # Layout
//!
//! - [`mount`]: the cgroup2 mount from /proc/self/mountinfo, a process's
//!   cgroup from /proc/PID/cgroup, and [`pick_root`], the delegated root
//!   unit cgroups are created under.
//! - this file: [`Cgroup`], one directory of the hierarchy, and its
//!   operations (create, remove, list, signal, kill, freeze, delegate,
//!   limits), plus [`TempCgroup`], a scratch cgroup removed on drop.
//! - [`events`]: watching `cgroup.events` with inotify ([`Cgroup::wait_empty`]).
//! - [`spawn`]: starting a process straight inside a cgroup, with no
//!   window in which it (or a child it forks at once) could escape.
//!
//! docs/CGROUPS.md says why this is not cgroups-rs, and how delegation,
//! spawn and kill work.
//!
//! Every operation touches only the directory it is given and its
//! descendants; [`Cgroup::open`] refuses anything that is not on a cgroup2
//! file system, so a mistaken path can never write into a v1 hierarchy.

pub mod events;
pub mod mount;
pub mod owner;
pub mod spawn;

use std::collections::HashSet;
use std::fmt;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::Signal;

pub use events::{Events, EventsWatcher};
pub use mount::{cgroup_of_pid, find_mount, find_mount_info, own_cgroup, pick_root};

/// Result of cgroup operations.
pub type Result<T, E = CgroupError> = std::result::Result<T, E>;

/// The operation that failed on a cgroupfs path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Opening a file or directory.
    Open,
    /// Reading a file or listing a directory.
    Read,
    /// Writing `data` to a file.
    Write {
        /// What was written.
        data: String,
    },
    /// Creating a cgroup directory.
    Mkdir,
    /// Removing a cgroup directory.
    Rmdir,
    /// Changing the owner of a file or directory.
    Chown,
    /// stat/statfs of a path.
    Stat,
    /// Setting up an inotify watch.
    Watch,
    /// Reading or writing an extended attribute (the ownership record).
    Xattr,
    /// Taking the lock that proves ownership.
    Lock,
    /// Sending a signal to a process of the cgroup.
    Signal {
        /// The process signalled.
        pid: i32,
        /// The signal sent.
        signal: Signal,
    },
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::Open => write!(f, "open"),
            Op::Read => write!(f, "read"),
            Op::Write { data } => write!(f, "write {data:?} to"),
            Op::Mkdir => write!(f, "create cgroup"),
            Op::Rmdir => write!(f, "remove cgroup"),
            Op::Chown => write!(f, "chown"),
            Op::Stat => write!(f, "stat"),
            Op::Watch => write!(f, "watch"),
            Op::Xattr => write!(f, "access the extended attributes of"),
            Op::Lock => write!(f, "lock"),
            Op::Signal { pid, signal } => write!(f, "send {signal} to pid {pid} of"),
        }
    }
}

/// Errors of the cgroup layer; I/O errors carry the path and the operation.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// A system call on a cgroupfs path failed.
    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        /// What was attempted.
        op: Op,
        /// On what.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// /proc/self/mountinfo lists no cgroup2 file system.
    #[error(
        "no cgroup2 file system is mounted (looked in /proc/self/mountinfo); mount one, e.g. \
         `mount -t cgroup2 none /sys/fs/cgroup/unified`, or boot with systemd.unified_cgroup_hierarchy"
    )]
    NoCgroup2Mount,
    /// A path given as a cgroup is not on the cgroup2 mount.
    #[error("{} is not a cgroup2 directory (cgroup v1 and other file systems are never written to)", path.display())]
    NotCgroup2 {
        /// The path given.
        path: PathBuf,
    },
    /// /proc/PID/cgroup has no `0::` line.
    #[error("{} has no cgroup v2 (`0::`) entry", path.display())]
    NotInCgroup2 {
        /// The /proc file read.
        path: PathBuf,
    },
    /// No cgroup root was given and none could be found or made.
    #[error(
        "no delegated cgroup to run units in: this process (uid {uid}) is in {}, which it may \
         not manage. Pass --cgroup-root PATH (a cgroup2 directory you own), run corrald under a \
         delegated cgroup such as systemd's user@{uid}.service, or log in through `corrald --system` \
         (its PAM module or `corral login`), which creates and delegates one for you",
        own.display()
    )]
    NoDelegatedRoot {
        /// Our own cgroup.
        own: PathBuf,
        /// Our effective uid.
        uid: u32,
    },
    /// rmdir found processes still inside.
    #[error("cannot remove cgroup {}: it still has processes; kill them and wait until it is empty first", path.display())]
    Busy {
        /// The cgroup that is still populated.
        path: PathBuf,
    },
    /// A limit file's controller is not enabled for this cgroup.
    #[error(
        "{file} not applied: {controller} controller not enabled in {}; enable it in the parent's \
         cgroup.subtree_control (and in every ancestor up to the delegated root)",
        path.display()
    )]
    ControllerNotEnabled {
        /// The interface file, e.g. `memory.max`.
        file: String,
        /// The controller it belongs to.
        controller: String,
        /// The cgroup.
        path: PathBuf,
    },
    /// A whole-subtree operation was asked of the cgroup2 root itself.
    #[error("refusing to {what} {}: it is the cgroup2 root (the whole machine), not a cgroup corral created", path.display())]
    IsRoot {
        /// What was refused (kill, remove, signal).
        what: &'static str,
        /// The root's path.
        path: PathBuf,
    },
    /// A child name that is not a single path component.
    #[error(
        "invalid cgroup name {name:?}: must be one non-empty path component, not starting with \"cgroup.\""
    )]
    InvalidName {
        /// The name given.
        name: String,
    },
    /// cgroup.events could not be parsed.
    #[error("cannot parse {}: {line:?}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// The offending line.
        line: String,
    },
    /// Another live manager owns the cgroup root this one was to manage.
    #[error(
        "{} is already the cgroup root of {} (pid {}, lock {}); two managers must never share \
         one cgroup root: stop that one first (`kill {}`), or give this one another --cgroup-root",
        path.display(), owner.role, owner.pid, owner.lock.display(), owner.pid
    )]
    Owned {
        /// The cgroup root.
        path: PathBuf,
        /// Who owns it.
        owner: owner::Owner,
    },
    /// The lock file of this runtime directory is held by another process.
    #[error(
        "{} is locked by pid {pid}: another manager already runs with this runtime directory; \
         stop it first (`kill {pid}`) or pass another --runtime-dir",
        lock.display()
    )]
    LockHeld {
        /// The lock file.
        lock: PathBuf,
        /// Its holder (0 when /proc/locks does not show it).
        pid: u32,
    },
    /// A blocking wait ran out of time.
    #[error("timed out after {timeout:?} waiting for {} to become empty", path.display())]
    Timeout {
        /// The cgroup waited on.
        path: PathBuf,
        /// How long we waited.
        timeout: Duration,
    },
}

impl CgroupError {
    /// Wraps an I/O error with its operation and path.
    pub fn io(op: Op, path: impl Into<PathBuf>, source: io::Error) -> Self {
        CgroupError::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// The errno of an I/O error, if this is one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            CgroupError::Io { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }

    /// Whether this is an I/O error of kind NotFound, or ENODEV: kernfs
    /// answers that for a file of a cgroup removed while it was opened.
    pub fn is_not_found(&self) -> bool {
        matches!(self, CgroupError::Io { source, .. }
            if source.kind() == io::ErrorKind::NotFound
                || source.raw_os_error() == Some(libc::ENODEV))
    }
}

/// One cgroup: a directory on the cgroup2 mount.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Cgroup {
    path: PathBuf,
}

impl Cgroup {
    /// Opens an existing cgroup, checking that it is on a cgroup2 file system.
    pub fn open(path: impl AsRef<Path>) -> Result<Cgroup> {
        let path = path.as_ref();
        let fs = nix::sys::statfs::statfs(path)
            .map_err(|e| CgroupError::io(Op::Stat, path, e.into()))?;
        if fs.filesystem_type() != nix::sys::statfs::CGROUP2_SUPER_MAGIC {
            return Err(CgroupError::NotCgroup2 { path: path.into() });
        }
        Ok(Cgroup { path: path.into() })
    }

    /// Opens `path`, creating it and missing parents below `mount`.
    pub(crate) fn create_all(mount: &Path, path: &Path) -> Result<Cgroup> {
        let mut cg = Cgroup::open(mount)?;
        let rel = path
            .strip_prefix(mount)
            .map_err(|_| CgroupError::NotCgroup2 { path: path.into() })?;
        for comp in rel.components() {
            let name = comp.as_os_str().to_string_lossy();
            cg = match cg.create_child(&name) {
                Ok(c) => c,
                Err(e) if e.errno() == Some(libc::EEXIST) => Cgroup::open(cg.path.join(&*name))?,
                Err(e) => return Err(e),
            };
        }
        Ok(cg)
    }

    /// The cgroup's directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether this is the root of the cgroup2 hierarchy, the only cgroup
    /// without `cgroup.events`.
    pub fn is_root(&self) -> bool {
        !self.file("cgroup.events").exists() && self.path.exists()
    }

    /// Refuses subtree-wide destruction of the root: remove() would rmdir
    /// every empty cgroup of the machine, kill_each() SIGKILL everything.
    fn refuse_root(&self, what: &'static str) -> Result<()> {
        if self.is_root() {
            return Err(CgroupError::IsRoot {
                what,
                path: self.path.clone(),
            });
        }
        Ok(())
    }

    /// The path of an interface file of this cgroup.
    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Creates the child cgroup `name`; an existing one is an error (EEXIST),
    /// since every invocation of a unit must get a fresh cgroup.
    pub fn create_child(&self, name: &str) -> Result<Cgroup> {
        if name.is_empty()
            || name.contains('/')
            || name == "."
            || name == ".."
            || name.starts_with("cgroup.")
        {
            return Err(CgroupError::InvalidName { name: name.into() });
        }
        let path = self.path.join(name);
        std::fs::create_dir(&path).map_err(|e| CgroupError::io(Op::Mkdir, &path, e))?;
        Ok(Cgroup { path })
    }

    /// The child cgroups (direct subdirectories).
    pub fn children(&self) -> Result<Vec<Cgroup>> {
        let rd =
            std::fs::read_dir(&self.path).map_err(|e| CgroupError::io(Op::Read, &self.path, e))?;
        let mut out = Vec::new();
        for ent in rd {
            let ent = ent.map_err(|e| CgroupError::io(Op::Read, &self.path, e))?;
            let is_dir = ent
                .file_type()
                .map_err(|e| CgroupError::io(Op::Stat, ent.path(), e))?
                .is_dir();
            if is_dir {
                out.push(Cgroup { path: ent.path() });
            }
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    /// Removes this cgroup and its descendants, deepest first. A cgroup
    /// that is already gone is not an error; one with processes is
    /// [`CgroupError::Busy`].
    pub fn remove(&self) -> Result<()> {
        self.refuse_root("remove")?;
        match self.children() {
            Ok(children) => {
                for c in children {
                    c.remove()?;
                }
            }
            Err(e) if e.is_not_found() => return Ok(()),
            Err(e) => return Err(e),
        }
        // rmdir fails with EBUSY while the cgroup is populated. A process
        // that exits between our kill and this rmdir can make the check
        // and the rmdir disagree once, so re-check the events before
        // deciding it is really busy.
        for _ in 0..3 {
            match std::fs::remove_dir(&self.path) {
                Ok(()) => {
                    killed::forget(&self.path);
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => match self.populated() {
                    Ok(true) => {
                        return Err(CgroupError::Busy {
                            path: self.path.clone(),
                        });
                    }
                    Ok(false) => continue,
                    Err(e) if e.is_not_found() => return Ok(()),
                    Err(e) => return Err(e),
                },
                Err(e) => return Err(CgroupError::io(Op::Rmdir, &self.path, e)),
            }
        }
        Err(CgroupError::Busy {
            path: self.path.clone(),
        })
    }

    /// Sets the extended attribute `name` (`user.*`: what the owner of a
    /// delegated cgroup may write) of this cgroup's directory.
    pub fn set_xattr(&self, name: &str, value: &str) -> Result<()> {
        owner::set_xattr(self.path(), name, value)
    }

    /// The extended attribute `name` of this cgroup's directory, if set.
    pub fn xattr(&self, name: &str) -> Option<String> {
        owner::get_xattr(&owner::cpath(self.path()).ok()?, name)
    }

    /// Reads an interface file of this cgroup.
    pub fn read_file(&self, name: &str) -> Result<String> {
        let p = self.file(name);
        std::fs::read_to_string(&p).map_err(|e| CgroupError::io(Op::Read, p, e))
    }

    /// Writes `data` to an interface file in one write(2), as cgroupfs expects.
    pub fn write_file(&self, name: &str, data: &str) -> Result<()> {
        let p = self.file(name);
        let err = |e| CgroupError::io(Op::Write { data: data.into() }, &p, e);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(&p)
            .map_err(err)?;
        f.write_all(data.as_bytes()).map_err(err)
    }

    /// The processes directly in this cgroup (not its descendants).
    pub fn procs(&self) -> Result<Vec<i32>> {
        let text = self.read_file("cgroup.procs")?;
        Ok(text.lines().filter_map(|l| l.trim().parse().ok()).collect())
    }

    /// Every process in this cgroup and all its descendants.
    pub fn procs_recursive(&self) -> Result<Vec<i32>> {
        let mut out = Vec::new();
        self.collect_procs(&mut out)?;
        Ok(out)
    }

    fn collect_procs(&self, out: &mut Vec<i32>) -> Result<()> {
        out.extend(self.procs()?);
        for c in self.children()? {
            match c.collect_procs(out) {
                // A child removed while we walk had no processes left.
                Err(e) if e.is_not_found() => {}
                r => r?,
            }
        }
        Ok(())
    }

    /// Whether process `pid` is in this cgroup or one of its descendants.
    /// A zombie is not: it has left cgroup.procs, though /proc still shows
    /// its last cgroup until it is reaped.
    pub fn contains_pid(&self, pid: i32) -> Result<bool> {
        match cgroup_of_pid(pid) {
            Ok(p) if p.starts_with(&self.path) => Ok(!is_zombie(pid)?),
            Ok(_) => Ok(false),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The current `cgroup.events`.
    pub fn events(&self) -> Result<Events> {
        let p = self.file("cgroup.events");
        let text = std::fs::read_to_string(&p).map_err(|e| CgroupError::io(Op::Read, &p, e))?;
        Events::parse(&text).ok_or(CgroupError::Parse {
            path: p,
            line: text,
        })
    }

    /// Whether any process is in this cgroup or its descendants.
    pub fn populated(&self) -> Result<bool> {
        self.events().map(|e| e.populated)
    }

    /// Sends `signal` to every process of the subtree (KillMode=control-group);
    /// returns how many were signalled. Processes that exit meanwhile are
    /// skipped; one that may not be signalled (EPERM) is the error returned
    /// after all others were signalled.
    pub fn signal_all(&self, signal: Signal) -> Result<usize> {
        self.refuse_root("signal every process of")?;
        let mut n = 0;
        let mut denied = None;
        for pid in self.procs_recursive()? {
            match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal) {
                Ok(()) => n += 1,
                Err(Errno::ESRCH) => {}
                // Keep going: one process of another uid must not shield
                // the rest from the signal.
                Err(e) => {
                    let op = Op::Signal { pid, signal };
                    denied.get_or_insert(CgroupError::io(op, &self.path, e.into()));
                }
            }
        }
        denied.map_or(Ok(n), Err)
    }

    /// SIGKILLs every process of the subtree through `cgroup.kill`, or
    /// [`Cgroup::kill_each`] on kernels without it (before 5.14).
    ///
    /// On current kernels a clone3 with CLONE_INTO_CGROUP into a cgroup that
    /// was killed this way (or was below one) is killed at birth; a new
    /// invocation therefore gets a fresh cgroup. [`spawn::spawn`] remembers
    /// which cgroups this process killed and takes its fork path (which is
    /// not affected) for them, so an ExecStopPost= run in the unit's cgroup
    /// after the kill still works.
    pub fn kill(&self) -> Result<()> {
        self.refuse_root("kill")?;
        match self.write_file("cgroup.kill", "1") {
            Ok(()) => {
                killed::mark(&self.path);
                Ok(())
            }
            Err(e) if e.is_not_found() && self.path.exists() => self.kill_each(),
            Err(e) => Err(e),
        }
    }

    /// SIGKILLs the subtree one process at a time: freezes it (where the
    /// freezer exists) so nothing forks faster than we kill, signals every
    /// process until a pass finds no new one, then thaws it so the killed
    /// processes can die.
    pub fn kill_each(&self) -> Result<()> {
        self.refuse_root("kill")?;
        let froze = match self.freeze() {
            Ok(()) => true,
            Err(e) if e.is_not_found() => false,
            Err(e) => return Err(e),
        };
        let mut seen = HashSet::new();
        // A process we may not signal (EPERM: another uid) must not stop
        // us from killing the rest; the first such error is returned.
        let mut denied = None;
        let listed = loop {
            let pids = match self.procs_recursive() {
                Ok(p) => p,
                Err(e) => break Err(e),
            };
            let fresh: Vec<i32> = pids.into_iter().filter(|p| seen.insert(*p)).collect();
            if fresh.is_empty() {
                break Ok(());
            }
            for pid in fresh {
                match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL) {
                    Ok(()) | Err(Errno::ESRCH) => {}
                    Err(e) => {
                        let op = Op::Signal {
                            pid,
                            signal: Signal::SIGKILL,
                        };
                        denied.get_or_insert(CgroupError::io(op, &self.path, e.into()));
                    }
                }
            }
        };
        // Thawed whatever happened, or the killed processes could not die.
        if froze {
            self.thaw()?;
        }
        listed?;
        denied.map_or(Ok(()), Err)
    }

    /// Freezes every process of the subtree (`cgroup.freeze`); the freeze
    /// is complete when [`Events::frozen`] turns true (see [`EventsWatcher`]).
    pub fn freeze(&self) -> Result<()> {
        self.write_file("cgroup.freeze", "1")
    }

    /// Thaws the subtree.
    pub fn thaw(&self) -> Result<()> {
        self.write_file("cgroup.freeze", "0")
    }

    /// Delegates this cgroup to `uid`/`gid`: the directory (so the user can
    /// create children) and cgroup.procs, cgroup.threads and
    /// cgroup.subtree_control. cgroup.kill (and every other file) stays
    /// root's, so root can still end the whole subtree and the user cannot
    /// raise the limits root set on it.
    pub fn chown_delegate(&self, uid: u32, gid: u32) -> Result<()> {
        let chown = |p: &Path| {
            std::os::unix::fs::chown(p, Some(uid), Some(gid))
                .map_err(|e| CgroupError::io(Op::Chown, p, e))
        };
        chown(&self.path)?;
        for f in DELEGATED_FILES {
            chown(&self.file(f))?;
        }
        Ok(())
    }

    /// Controllers available in this cgroup (`cgroup.controllers`).
    pub fn controllers(&self) -> Result<Vec<String>> {
        Ok(split_words(&self.read_file("cgroup.controllers")?))
    }

    /// Controllers enabled for the children (`cgroup.subtree_control`).
    pub fn subtree_control(&self) -> Result<Vec<String>> {
        Ok(split_words(&self.read_file("cgroup.subtree_control")?))
    }

    /// Enables controllers for the children of this cgroup only (never
    /// its ancestors: those belong to whoever delegated to us).
    pub fn enable_controllers(&self, names: &[&str]) -> Result<()> {
        let data: Vec<String> = names.iter().map(|n| format!("+{n}")).collect();
        self.write_file("cgroup.subtree_control", &data.join(" "))
    }

    /// Writes a resource limit, e.g. `set_limit("memory.max", "512M")`,
    /// after checking that the file's controller is enabled here.
    pub fn set_limit(&self, file: &str, value: &str) -> Result<()> {
        let controller = file.split('.').next().unwrap_or(file);
        if controller != "cgroup" && !self.controllers()?.iter().any(|c| c == controller) {
            return Err(CgroupError::ControllerNotEnabled {
                file: file.into(),
                controller: controller.into(),
                path: self.path.clone(),
            });
        }
        self.write_file(file, value)
    }

    /// Moves the calling process into this cgroup (the manager moving
    /// itself into a leaf; never use it to move a unit's processes).
    pub fn attach_self(&self) -> Result<()> {
        self.write_file("cgroup.procs", "0")
    }

    /// Starts watching `cgroup.events` for changes.
    pub fn watch_events(&self) -> Result<EventsWatcher> {
        EventsWatcher::new(self)
    }

    /// Resolves once the subtree has no process left (`populated 0`).
    /// The watch is armed before the first check, so an exit between the
    /// check and the wait is never missed. A cgroup already removed counts
    /// as empty. Uses an inotify instance of its own for the wait; the
    /// user manager watches its many cgroups through its one instance.
    pub fn wait_empty(&self) -> impl Future<Output = Result<()>> + Send + 'static {
        let cg = self.clone();
        async move {
            let mut w = match cg.watch_events() {
                Ok(w) => w,
                Err(e) if e.is_not_found() => return Ok(()),
                Err(e) => return Err(e),
            };
            w.wait_empty().await
        }
    }

    /// Blocks (without polling) until the subtree is empty or `timeout`
    /// passes; for Drop guards and other places with no runtime.
    pub fn wait_empty_blocking(&self, timeout: Duration) -> Result<()> {
        match self.watch_events() {
            Ok(mut w) => w.wait_empty_blocking(timeout),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// The cgroups this process wrote `cgroup.kill` to and has not removed.
///
/// The kernel kills a clone3 child born (CLONE_INTO_CGROUP) into a cgroup
/// whose kill counter differs from the spawner's own cgroup's; a kill
/// bumps the counter of the cgroup and every descendant it has then. A
/// migration through cgroup.procs is not affected, so spawn takes its
/// fork path for these.
pub(crate) mod killed {
    use std::path::{Path, PathBuf};
    use std::sync::Mutex;

    static KILLED: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

    fn list() -> std::sync::MutexGuard<'static, Vec<PathBuf>> {
        // The list stays consistent even if a holder panicked.
        KILLED.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a kill of `path` (and of everything below it).
    pub(crate) fn mark(path: &Path) {
        let mut l = list();
        if !l.iter().any(|p| p == path) {
            l.push(path.to_path_buf());
        }
    }

    /// `path` was removed: a cgroup made there later is fresh.
    pub(crate) fn forget(path: &Path) {
        list().retain(|p| p != path);
    }

    /// Whether `path` or an ancestor was killed while it may have existed.
    pub(crate) fn affects(path: &Path) -> bool {
        list().iter().any(|k| path.starts_with(k))
    }
}

/// The files `chown_delegate` hands over (the kernel's
/// /sys/kernel/cgroup/delegate lists the same core three).
pub const DELEGATED_FILES: [&str; 3] = ["cgroup.procs", "cgroup.threads", "cgroup.subtree_control"];

/// Whether `pid` is a zombie (or already gone).
fn is_zombie(pid: i32) -> Result<bool> {
    let p = format!("/proc/{pid}/stat");
    let stat = match std::fs::read(&p) {
        Ok(s) => s,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(true),
        Err(e) => return Err(CgroupError::io(Op::Read, p, e)),
    };
    // "pid (comm) S ...": comm may hold spaces and parens, so look after
    // the last ')'.
    let state = stat
        .iter()
        .rposition(|&b| b == b')')
        .and_then(|i| stat.get(i + 2));
    Ok(matches!(state, Some(b'Z' | b'X')))
}

fn split_words(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_owned).collect()
}

/// A scratch cgroup `<mount>/<prefix>-<pid>-<n>/`, killed and removed
/// (with everything below it) when dropped, panics included. For tests and
/// test daemons.
#[derive(Debug)]
pub struct TempCgroup {
    cg: Cgroup,
}

static TEMP_COUNTER: AtomicU32 = AtomicU32::new(0);

impl TempCgroup {
    /// Creates a fresh scratch cgroup directly below the cgroup2 mount.
    pub fn new(prefix: &str) -> Result<TempCgroup> {
        let mount = Cgroup::open(find_mount()?)?;
        let pid = std::process::id();
        loop {
            let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
            match mount.create_child(&format!("{prefix}-{pid}-{n}")) {
                Ok(cg) => return Ok(TempCgroup { cg }),
                Err(e) if e.errno() == Some(libc::EEXIST) => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// The cgroup.
    pub fn cgroup(&self) -> &Cgroup {
        &self.cg
    }
}

impl std::ops::Deref for TempCgroup {
    type Target = Cgroup;
    fn deref(&self) -> &Cgroup {
        &self.cg
    }
}

impl Drop for TempCgroup {
    fn drop(&mut self) {
        let cleanup = || -> Result<()> {
            if self.cg.populated()? {
                self.cg.kill()?;
                self.cg.wait_empty_blocking(Duration::from_secs(10))?;
            }
            self.cg.remove()
        };
        if let Err(e) = cleanup() {
            eprintln!(
                "TempCgroup: cleanup of {} failed: {e}",
                self.cg.path.display()
            );
        }
    }
}
