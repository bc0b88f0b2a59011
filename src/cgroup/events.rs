//! Watching `cgroup.events` with inotify: the kernel signals IN_MODIFY on
//! that file whenever `populated` or `frozen` flips, so waiting for an empty
//! cgroup needs no polling.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
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

/// A nonblocking inotify fd watching one cgroup's `cgroup.events`.
#[derive(Debug)]
struct InotifyFd(OwnedFd);

impl AsRawFd for InotifyFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

impl InotifyFd {
    fn watch(file: &std::path::Path) -> io::Result<InotifyFd> {
        // SAFETY: plain syscall; the returned fd is owned from here on.
        let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh descriptor nobody else owns.
        let me = InotifyFd(unsafe { OwnedFd::from_raw_fd(fd) });
        let c = std::ffi::CString::new(file.as_os_str().as_bytes())
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: c is NUL-terminated and outlives the call.
        let wd = unsafe { libc::inotify_add_watch(fd, c.as_ptr(), libc::IN_MODIFY) };
        if wd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(me)
    }

    /// Reads and discards pending events; Ok(false) when none were queued.
    fn drain(&self) -> io::Result<bool> {
        let mut buf = [0u8; 1024];
        let mut any = false;
        loop {
            // SAFETY: buf is valid for writes of its length.
            let n = unsafe { libc::read(self.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n > 0 {
                any = true;
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

/// The inotify fd, registered with the tokio reactor on first async use so
/// a watcher can also be made and used (blocking) outside a runtime.
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

/// Follows one cgroup's `cgroup.events`. Create it *before* looking at the
/// state you wait to change, so a change in between is not missed.
#[derive(Debug)]
pub struct EventsWatcher {
    cg: Cgroup,
    file: PathBuf,
    // Always Some except for the instant of registering with the reactor.
    watch: Option<Watch>,
}

impl EventsWatcher {
    /// Arms an inotify watch on `cg`'s `cgroup.events`.
    pub fn new(cg: &Cgroup) -> Result<EventsWatcher> {
        let file = cg.file("cgroup.events");
        let fd = InotifyFd::watch(&file).map_err(|e| CgroupError::io(Op::Watch, &file, e))?;
        Ok(EventsWatcher {
            cg: cg.clone(),
            file,
            watch: Some(Watch::Plain(fd)),
        })
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

    /// Waits for the next change notification and returns the state then.
    pub async fn changed(&mut self) -> Result<Events> {
        if let Some(Watch::Plain(fd)) = self.watch.take() {
            // SAFETY: InotifyFd owns its fd and always returns that same one
            // from as_raw_fd until dropped.
            let afd = unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }
                .map_err(|e| CgroupError::io(Op::Watch, &self.file, e.into_parts().1))?;
            self.watch = Some(Watch::Async(afd));
        }
        let Some(Watch::Async(afd)) = &self.watch else {
            return Err(self.lost());
        };
        loop {
            let mut guard = afd
                .readable()
                .await
                .map_err(|e| CgroupError::io(Op::Watch, &self.file, e))?;
            let got = guard
                .get_inner()
                .drain()
                .map_err(|e| CgroupError::io(Op::Read, &self.file, e))?;
            guard.clear_ready();
            if got {
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
    /// meanwhile counts as empty.
    pub async fn wait_empty(&mut self) -> Result<()> {
        match self.wait_until(|e| !e.populated).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Resolves once the freeze (or thaw) is complete.
    pub async fn wait_frozen(&mut self, frozen: bool) -> Result<()> {
        self.wait_until(|e| e.frozen == frozen).await.map(drop)
    }

    /// Blocking variant of [`EventsWatcher::wait_empty`] with a deadline,
    /// sleeping in poll(2) on the inotify fd.
    pub fn wait_empty_blocking(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let Some(watch) = &self.watch else {
            return Err(self.lost());
        };
        let fd = watch.fd();
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
                fd.drain()
                    .map_err(|e| CgroupError::io(Op::Read, &self.file, e))?;
            }
        }
    }
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
