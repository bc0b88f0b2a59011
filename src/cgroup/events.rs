//! Watching `cgroup.events` with inotify: the kernel signals IN_MODIFY on
//! that file whenever `populated` or `frozen` flips, so waiting for an empty
//! cgroup needs no polling.
//!
//! An [`EventsWatcher`] made by [`EventsWatcher::new`] (and the one-off
//! [`Cgroup::wait_empty`]) owns an inotify instance, so it suits short
//! waits; the user manager watches all its cgroups through its one
//! instance (`supervisor/manager/inotify.rs`), as the kernel allows a user
//! only `fs.inotify.max_user_instances` (128 by default) instances in total.
//!
//! A watcher also watches the cgroup's parent directory for its removal.
//! The kernel rate-limits `cgroup.events` notifications (at most one per
//! 20 ms, later ones deferred to a timer) and rmdir cancels a pending
//! timer; kernfs reports no removal on the file itself. So when a cgroup
//! empties and is removed within 20 ms of its previous notification, the
//! populated 1 -> 0 notification never comes. rmdir goes through the VFS,
//! which does report IN_DELETE on the parent, and a removed cgroup is
//! certainly empty.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::io::unix::AsyncFd;

use super::{Cgroup, CgroupError, Op, Result};

/// The state in `cgroup.events`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Events {
    /// Some process is in the cgroup or a descendant.
    pub populated: bool,
    /// The cgroup is completely frozen.
    pub frozen: bool,
}

impl Events {
    /// Parses the text of `cgroup.events`; `frozen` is absent before 5.2.
    pub fn parse(text: &str) -> Option<Events> {
        let mut populated = None;
        let mut frozen = false;
        for line in text.lines() {
            let mut it = line.split_whitespace();
            match (it.next(), it.next()) {
                (Some("populated"), Some(v)) => populated = Some(v == "1"),
                (Some("frozen"), Some(v)) => frozen = v == "1",
                _ => {}
            }
        }
        Some(Events {
            populated: populated?,
            frozen,
        })
    }
}

/// A nonblocking inotify instance.
#[derive(Debug)]
struct InotifyFd(OwnedFd);

impl AsRawFd for InotifyFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

/// One event read from an inotify fd.
#[derive(Debug, Clone, Copy)]
struct RawEvent<'a> {
    wd: i32,
    mask: u32,
    /// The entry's name for an event on a watched directory, else empty.
    name: &'a [u8],
}

/// What a parent-directory watch asks for: the removal of an entry (the
/// name tells which) or of the directory itself, which implies its
/// children are gone.
const DIR_MASK: u32 = libc::IN_DELETE | libc::IN_DELETE_SELF | libc::IN_ONLYDIR;

/// A directory watch's events saying every entry of it is gone.
const DIR_GONE: u32 = libc::IN_DELETE_SELF | libc::IN_IGNORED | libc::IN_UNMOUNT;

/// The directory a cgroup sits in and its name there; None for the root,
/// which cannot be removed.
fn parent_of(cg: &Cgroup) -> Option<(&Path, &OsStr)> {
    Some((cg.path().parent()?, cg.path().file_name()?))
}

/// The watch descriptors of an own inotify instance following one cgroup.
#[derive(Debug, Clone)]
struct OwnIds {
    file: i32,
    /// The parent-directory watch and the cgroup's name in it.
    dir: Option<(i32, OsString)>,
}

/// What a drain of an own instance found.
#[derive(Debug, Default)]
struct Seen {
    /// cgroup.events changed (or events were lost): re-read it.
    changed: bool,
    /// The cgroup was removed.
    gone: bool,
}

impl OwnIds {
    /// Arms the `cgroup.events` watch, then the parent-directory one; the
    /// caller reads the state only after both.
    fn arm(fd: &InotifyFd, cg: &Cgroup, file: &Path) -> io::Result<OwnIds> {
        let file_wd = fd.add_watch(file, libc::IN_MODIFY)?;
        let dir = match parent_of(cg) {
            Some((dir, name)) => Some((fd.add_watch(dir, DIR_MASK)?, name.to_owned())),
            None => None,
        };
        Ok(OwnIds { file: file_wd, dir })
    }

    /// Sorts one event; removals of siblings are neither change nor end.
    fn note(&self, ev: RawEvent, seen: &mut Seen) {
        if ev.mask & libc::IN_Q_OVERFLOW != 0 {
            seen.changed = true;
        } else if ev.wd == self.file {
            // IN_IGNORED: the kernel ended the watch (the file system
            // went away).
            if ev.mask & libc::IN_IGNORED != 0 {
                seen.gone = true;
            } else {
                seen.changed = true;
            }
        } else if let Some((wd, name)) = &self.dir
            && ev.wd == *wd
            && (ev.mask & DIR_GONE != 0
                || (ev.mask & libc::IN_DELETE != 0 && ev.name == name.as_bytes()))
        {
            seen.gone = true;
        }
    }

    /// Drains `fd`, sorting what it held.
    fn drain(&self, fd: &InotifyFd) -> io::Result<Seen> {
        let mut seen = Seen::default();
        fd.drain_with(|ev| self.note(ev, &mut seen))?;
        Ok(seen)
    }
}

impl InotifyFd {
    fn new() -> io::Result<InotifyFd> {
        // SAFETY: plain syscall; the returned fd is owned from here on.
        let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh descriptor nobody else owns.
        Ok(InotifyFd(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Watches `file` for `mask`; the same file twice gives the same wd
    /// (and replaces the mask, so one instance uses one mask per file).
    fn add_watch(&self, file: &Path, mask: u32) -> io::Result<i32> {
        let c = std::ffi::CString::new(file.as_os_str().as_bytes())
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: c is NUL-terminated and outlives the call.
        let wd = unsafe { libc::inotify_add_watch(self.as_raw_fd(), c.as_ptr(), mask) };
        if wd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(wd)
    }

    /// Reads every pending event, handing each to `f`; Ok(false) when none
    /// were queued.
    fn drain_with(&self, mut f: impl FnMut(RawEvent)) -> io::Result<bool> {
        // Aligned for inotify_event; room for many events, and more than
        // the one with a NAME_MAX name that read(2) insists on fitting.
        let mut buf = [0u64; 512];
        let mut any = false;
        loop {
            // SAFETY: buf is valid for writes of its byte length.
            let n = unsafe {
                libc::read(
                    self.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    std::mem::size_of_val(&buf),
                )
            };
            if n > 0 {
                any = true;
                // SAFETY: the kernel wrote n bytes into buf.
                let bytes =
                    unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), n as usize) };
                let mut off = 0;
                while off + 16 <= bytes.len() {
                    let word = |i: usize| {
                        let b = &bytes[off + i..off + i + 4];
                        u32::from_ne_bytes([b[0], b[1], b[2], b[3]])
                    };
                    let len = word(12) as usize;
                    let name = bytes.get(off + 16..off + 16 + len).unwrap_or_default();
                    // The kernel pads the name with NULs.
                    let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
                    f(RawEvent {
                        wd: word(0) as i32,
                        mask: word(4),
                        name: &name[..end],
                    });
                    off += 16 + len;
                }
                continue;
            }
            let err = io::Error::last_os_error();
            return match err.raw_os_error() {
                Some(libc::EAGAIN) => Ok(any),
                Some(libc::EINTR) => continue,
                _ => Err(err),
            };
        }
    }
}

/// An own inotify fd, registered with the tokio reactor on first async use
/// so a watcher can also be made and used (blocking) outside a runtime.
#[derive(Debug)]
enum Watch {
    Plain(InotifyFd),
    Async(AsyncFd<InotifyFd>),
}

impl Watch {
    fn fd(&self) -> &InotifyFd {
        match self {
            Watch::Plain(f) => f,
            Watch::Async(a) => a.get_ref(),
        }
    }
}

/// A watcher's own inotify instance.
#[derive(Debug)]
struct Own {
    /// Always Some except for the instant of registering with the reactor.
    watch: Option<Watch>,
    ids: OwnIds,
    /// The removal was seen; the instance will report nothing more.
    gone: bool,
}

/// Follows one cgroup's `cgroup.events`. Create it *before* looking at the
/// state you wait to change, so a change in between is not missed.
#[derive(Debug)]
pub struct EventsWatcher {
    cg: Cgroup,
    file: PathBuf,
    own: Own,
}

impl EventsWatcher {
    /// Arms a watch on `cg`'s `cgroup.events`, and one on its parent
    /// directory for its removal, in an inotify instance of its own.
    pub fn new(cg: &Cgroup) -> Result<EventsWatcher> {
        let file = cg.file("cgroup.events");
        let (fd, ids) = arm_own(cg, &file)?;
        Ok(EventsWatcher {
            cg: cg.clone(),
            file,
            own: Own {
                watch: Some(Watch::Plain(fd)),
                ids,
                gone: false,
            },
        })
    }

    /// The cgroup watched.
    pub fn cgroup(&self) -> &Cgroup {
        &self.cg
    }

    /// The current state (reads the file).
    pub fn current(&self) -> Result<Events> {
        self.cg.events()
    }

    fn lost(&self) -> CgroupError {
        CgroupError::io(
            Op::Watch,
            &self.file,
            io::Error::other("inotify fd lost after a failed registration"),
        )
    }

    /// Waits for the next change notification and returns the state then;
    /// a NotFound error once the cgroup is removed.
    pub async fn changed(&mut self) -> Result<Events> {
        let own = &mut self.own;
        if own.gone {
            return Err(removed(&self.file));
        }
        let watch = &mut own.watch;
        if let Some(Watch::Plain(_)) = watch
            && let Some(Watch::Plain(fd)) = watch.take()
        {
            // SAFETY: InotifyFd owns its fd and always returns that
            // same one from as_raw_fd until dropped.
            let afd = unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }
                .map_err(|e| CgroupError::io(Op::Watch, &self.file, e.into_parts().1))?;
            *watch = Some(Watch::Async(afd));
        }
        let Some(Watch::Async(afd)) = watch else {
            return Err(self.lost());
        };
        loop {
            let mut guard = afd
                .readable()
                .await
                .map_err(|e| CgroupError::io(Op::Watch, &self.file, e))?;
            let seen = own
                .ids
                .drain(guard.get_inner())
                .map_err(|e| CgroupError::io(Op::Read, &self.file, e))?;
            guard.clear_ready();
            if seen.gone {
                own.gone = true;
                return Err(removed(&self.file));
            }
            if seen.changed {
                break;
            }
        }
        self.cg.events()
    }

    /// Resolves once `pred` holds for the state; checks first (the watch is
    /// already armed), then after every change.
    pub async fn wait_until(&mut self, pred: impl Fn(&Events) -> bool) -> Result<Events> {
        let mut ev = self.cg.events()?;
        while !pred(&ev) {
            ev = self.changed().await?;
        }
        Ok(ev)
    }

    /// Resolves once the cgroup has no process left; a cgroup removed
    /// (before or while waiting) counts as empty.
    pub async fn wait_empty(&mut self) -> Result<()> {
        match self.wait_until(|e| !e.populated).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Resolves once the freeze (or thaw) is complete; a NotFound error
    /// when the cgroup is removed first.
    pub async fn wait_frozen(&mut self, frozen: bool) -> Result<()> {
        self.wait_until(|e| e.frozen == frozen).await.map(drop)
    }

    /// Blocking variant of [`EventsWatcher::wait_empty`] with a deadline,
    /// sleeping in poll(2) on the inotify fd.
    pub fn wait_empty_blocking(&mut self, timeout: Duration) -> Result<()> {
        let (fd, ids) = match &self.own {
            Own { gone: true, .. } => return Ok(()),
            Own {
                watch: Some(w),
                ids,
                ..
            } => (w.fd(), ids),
            Own { watch: None, .. } => return Err(self.lost()),
        };
        let deadline = Instant::now() + timeout;
        loop {
            match self.cg.events() {
                Ok(ev) if !ev.populated => return Ok(()),
                Ok(_) => {}
                Err(e) if e.is_not_found() => return Ok(()),
                Err(e) => return Err(e),
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(CgroupError::Timeout {
                    path: self.cg.path().into(),
                    timeout,
                });
            }
            let mut pfd = libc::pollfd {
                fd: fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            let ms = left.as_millis().clamp(1, i32::MAX as u128) as i32;
            // SAFETY: pfd is one valid pollfd.
            let r = unsafe { libc::poll(&mut pfd, 1, ms) };
            if r < 0 {
                let err = io::Error::last_os_error();
                if err.raw_os_error() != Some(libc::EINTR) {
                    return Err(CgroupError::io(Op::Watch, &self.file, err));
                }
            } else if r > 0 {
                let seen = ids
                    .drain(fd)
                    .map_err(|e| CgroupError::io(Op::Read, &self.file, e))?;
                if seen.gone {
                    return Ok(());
                }
            }
        }
    }
}

/// A fresh own inotify instance with both watches of `cg` armed.
fn arm_own(cg: &Cgroup, file: &Path) -> Result<(InotifyFd, OwnIds)> {
    let err = |e| CgroupError::io(Op::Watch, file, e);
    let fd = InotifyFd::new().map_err(err)?;
    let ids = OwnIds::arm(&fd, cg, file).map_err(err)?;
    Ok((fd, ids))
}

/// The cgroup was removed (IN_DELETE on its parent) or the kernel ended
/// the watch (IN_IGNORED: the file system went away). A NotFound error, so
/// waits for emptiness treat it as empty, and never a "change", so nobody
/// spins on a dead watch.
fn removed(file: &Path) -> CgroupError {
    CgroupError::io(
        Op::Watch,
        file,
        io::Error::new(io::ErrorKind::NotFound, "the cgroup was removed"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_events() {
        assert_eq!(
            Events::parse("populated 1\nfrozen 0\n"),
            Some(Events {
                populated: true,
                frozen: false
            })
        );
        assert_eq!(
            Events::parse("populated 0\n"),
            Some(Events {
                populated: false,
                frozen: false
            })
        );
        assert_eq!(Events::parse("frozen 1\n"), None);
    }
}
