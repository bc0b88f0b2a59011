//! Watching `cgroup.events` with inotify: the kernel signals IN_MODIFY on
//! that file whenever `populated` or `frozen` flips, so waiting for an empty
//! cgroup needs no polling.
//!
//! An [`EventsWatcher`] made by [`EventsWatcher::new`] (and the one-off
//! [`Cgroup::wait_empty`]) owns an inotify instance. A long-running manager
//! watching many cgroups at once should use an [`EventsHub`] instead: one
//! inotify instance for all of them, since the kernel allows a user only
//! `fs.inotify.max_user_instances` (128 by default) instances in total.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::unix::AsyncFd;
use tokio::sync::watch;

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
struct RawEvent {
    wd: i32,
    mask: u32,
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

    /// Watches `file` for IN_MODIFY; the same file twice gives the same wd.
    fn add_watch(&self, file: &Path) -> io::Result<i32> {
        let c = std::ffi::CString::new(file.as_os_str().as_bytes())
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: c is NUL-terminated and outlives the call.
        let wd = unsafe { libc::inotify_add_watch(self.as_raw_fd(), c.as_ptr(), libc::IN_MODIFY) };
        if wd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(wd)
    }

    fn rm_watch(&self, wd: i32) {
        // EINVAL when the kernel already dropped it (unmount): fine.
        // SAFETY: plain syscall.
        unsafe { libc::inotify_rm_watch(self.as_raw_fd(), wd) };
    }

    fn watch(file: &Path) -> io::Result<InotifyFd> {
        let me = InotifyFd::new()?;
        me.add_watch(file)?;
        Ok(me)
    }

    /// Reads every pending event, handing each to `f`; Ok(false) when none
    /// were queued.
    fn drain_with(&self, mut f: impl FnMut(RawEvent)) -> io::Result<bool> {
        // Aligned for inotify_event; room for many events without names
        // (IN_MODIFY on a watched file carries none).
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
                    f(RawEvent {
                        wd: word(0) as i32,
                        mask: word(4),
                    });
                    off += 16 + word(12) as usize;
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

    /// Reads and discards pending events; Ok(false) when none were queued.
    fn drain(&self) -> io::Result<bool> {
        self.drain_with(|_| {})
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

/// Where a watcher's notifications come from.
#[derive(Debug)]
enum Source {
    /// Its own inotify instance; always Some except for the instant of
    /// registering with the reactor.
    Own(Option<Watch>),
    /// A watch in an [`EventsHub`].
    Shared(Subscription),
}

/// Follows one cgroup's `cgroup.events`. Create it *before* looking at the
/// state you wait to change, so a change in between is not missed.
#[derive(Debug)]
pub struct EventsWatcher {
    cg: Cgroup,
    file: PathBuf,
    source: Source,
}

impl EventsWatcher {
    /// Arms a watch on `cg`'s `cgroup.events` in an inotify instance of
    /// its own.
    pub fn new(cg: &Cgroup) -> Result<EventsWatcher> {
        let file = cg.file("cgroup.events");
        let fd = InotifyFd::watch(&file).map_err(|e| CgroupError::io(Op::Watch, &file, e))?;
        Ok(EventsWatcher {
            cg: cg.clone(),
            file,
            source: Source::Own(Some(Watch::Plain(fd))),
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

    /// Waits for the next change notification and returns the state then.
    pub async fn changed(&mut self) -> Result<Events> {
        match &mut self.source {
            Source::Own(watch) => {
                if let Some(Watch::Plain(_)) = watch
                    && let Some(Watch::Plain(fd)) = watch.take()
                {
                    // SAFETY: InotifyFd owns its fd and always returns that
                    // same one from as_raw_fd until dropped.
                    let afd = unsafe {
                        AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE)
                    }
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
                    let mut gone = false;
                    let got = guard
                        .get_inner()
                        .drain_with(|ev| gone |= ev.mask & libc::IN_IGNORED != 0)
                        .map_err(|e| CgroupError::io(Op::Read, &self.file, e))?;
                    guard.clear_ready();
                    if gone {
                        return Err(removed(&self.file));
                    }
                    if got {
                        break;
                    }
                }
            }
            Source::Shared(sub) => sub.changed(&self.file).await?,
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

    /// Resolves once the cgroup has no process left; a cgroup already
    /// removed counts as empty.
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
    /// sleeping in poll(2) on the inotify fd (a hub watcher arms an own
    /// one for this, as the hub belongs to the runtime).
    pub fn wait_empty_blocking(&mut self, timeout: Duration) -> Result<()> {
        let own;
        let fd = match &self.source {
            Source::Own(Some(w)) => w.fd(),
            Source::Own(None) => return Err(self.lost()),
            Source::Shared(_) => {
                own = InotifyFd::watch(&self.file);
                match &own {
                    Ok(fd) => fd,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
                    Err(e) => {
                        let e = io::Error::new(e.kind(), e.to_string());
                        return Err(CgroupError::io(Op::Watch, &self.file, e));
                    }
                }
            }
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
                fd.drain()
                    .map_err(|e| CgroupError::io(Op::Read, &self.file, e))?;
            }
        }
    }
}

/// The kernel ended the watch (IN_IGNORED: the file system went away).
/// kernfs sends nothing when a cgroup is merely removed; waits for
/// emptiness do not need it, as the populated 1 -> 0 change that must come
/// before any rmdir is notified. A NotFound error, so such waits treat it
/// as empty, and never a "change", so nobody spins on a dead watch.
fn removed(file: &Path) -> CgroupError {
    CgroupError::io(
        Op::Watch,
        file,
        io::Error::new(io::ErrorKind::NotFound, "the cgroup was removed"),
    )
}

/// One inotify instance shared by many [`EventsWatcher`]s (one watch per
/// cgroup.events file). Cheap to clone; create it inside the tokio runtime
/// that will await its watchers.
///
/// There is no reader task: whichever watcher is waiting when the fd turns
/// readable drains it and wakes the watchers the events are for.
#[derive(Debug, Clone)]
pub struct EventsHub {
    inner: Arc<HubInner>,
}

#[derive(Debug)]
struct HubInner {
    fd: AsyncFd<InotifyFd>,
    /// Watch descriptor → its subscribers. Locked for add/remove and for
    /// dispatching, so a dispatch never races a watch being set up.
    subs: Mutex<HashMap<i32, HubEntry>>,
    next_id: AtomicU64,
}

#[derive(Debug)]
struct HubEntry {
    /// Tells an entry apart from a later one that got the same wd.
    id: u64,
    refs: usize,
    /// Bumped on every event for the wd; dropped when the watch is gone.
    tx: watch::Sender<u64>,
}

impl HubInner {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i32, HubEntry>> {
        // The map stays consistent even if a holder panicked.
        self.subs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Drains the fd and wakes the subscribers of each event's wd.
    fn dispatch(&self) -> io::Result<()> {
        let mut subs = self.lock();
        self.fd.get_ref().drain_with(|ev| {
            if ev.mask & libc::IN_Q_OVERFLOW != 0 {
                // Events were lost: wake everyone to re-read.
                for e in subs.values() {
                    e.tx.send_modify(|n| *n += 1);
                }
                return;
            }
            if let Some(e) = subs.get(&ev.wd) {
                e.tx.send_modify(|n| *n += 1);
            }
            if ev.mask & libc::IN_IGNORED != 0 {
                // The watch is gone; dropping the sender
                // tells the remaining subscribers so.
                subs.remove(&ev.wd);
            }
        })?;
        Ok(())
    }
}

impl EventsHub {
    /// Creates the shared inotify instance and registers it with the
    /// current tokio runtime (which must have I/O enabled).
    pub fn new() -> Result<EventsHub> {
        let err = |e| CgroupError::io(Op::Watch, "inotify", e);
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(err(io::Error::other(
                "EventsHub::new must run inside a tokio runtime",
            )));
        }
        let fd = InotifyFd::new().map_err(err)?;
        // SAFETY: InotifyFd owns its fd and always returns that same one
        // from as_raw_fd until dropped.
        let fd = unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }
            .map_err(|e| err(e.into_parts().1))?;
        Ok(EventsHub {
            inner: Arc::new(HubInner {
                fd,
                subs: Mutex::new(HashMap::new()),
                next_id: AtomicU64::new(0),
            }),
        })
    }

    /// Arms a watch on `cg`'s `cgroup.events` in the shared instance.
    pub fn watch(&self, cg: &Cgroup) -> Result<EventsWatcher> {
        let file = cg.file("cgroup.events");
        let mut subs = self.inner.lock();
        let wd = self
            .inner
            .fd
            .get_ref()
            .add_watch(&file)
            .map_err(|e| CgroupError::io(Op::Watch, &file, e))?;
        let entry = subs.entry(wd).or_insert_with(|| HubEntry {
            id: self.inner.next_id.fetch_add(1, Ordering::Relaxed),
            refs: 0,
            tx: watch::Sender::new(0),
        });
        entry.refs += 1;
        let sub = Subscription {
            hub: self.inner.clone(),
            wd,
            id: entry.id,
            rx: entry.tx.subscribe(),
        };
        Ok(EventsWatcher {
            cg: cg.clone(),
            file,
            source: Source::Shared(sub),
        })
    }

    /// Like [`Cgroup::wait_empty`], through the shared instance.
    pub fn wait_empty(&self, cg: &Cgroup) -> impl Future<Output = Result<()>> + Send + 'static {
        let hub = self.clone();
        let cg = cg.clone();
        async move {
            let mut w = match hub.watch(&cg) {
                Ok(w) => w,
                Err(e) if e.is_not_found() => return Ok(()),
                Err(e) => return Err(e),
            };
            w.wait_empty().await
        }
    }

    /// How many distinct files are being watched.
    pub fn watch_count(&self) -> usize {
        self.inner.lock().len()
    }
}

/// A watcher's share of an [`EventsHub`] watch; the last one removes it.
#[derive(Debug)]
struct Subscription {
    hub: Arc<HubInner>,
    wd: i32,
    id: u64,
    rx: watch::Receiver<u64>,
}

impl Subscription {
    async fn changed(&mut self, file: &Path) -> Result<()> {
        loop {
            match self.rx.has_changed() {
                Ok(true) => {
                    self.rx.borrow_and_update();
                    return Ok(());
                }
                Ok(false) => {}
                // The hub dropped the sender: the watch is gone.
                Err(_) => return Err(removed(file)),
            }
            tokio::select! {
                r = self.rx.changed() => {
                    if r.is_err() {
                        return Err(removed(file));
                    }
                    self.rx.borrow_and_update();
                    return Ok(());
                }
                guard = self.hub.fd.readable() => {
                    let mut guard = guard.map_err(|e| CgroupError::io(Op::Watch, file, e))?;
                    self.hub.dispatch().map_err(|e| CgroupError::io(Op::Read, file, e))?;
                    guard.clear_ready();
                }
            }
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut subs = self.hub.lock();
        let Some(e) = subs.get_mut(&self.wd) else {
            return;
        };
        if e.id != self.id {
            return;
        }
        e.refs -= 1;
        if e.refs == 0 {
            subs.remove(&self.wd);
            self.hub.fd.get_ref().rm_watch(self.wd);
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
