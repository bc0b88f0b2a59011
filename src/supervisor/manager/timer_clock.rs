//! The kernel timers behind every timer unit: one timerfd on
//! CLOCK_MONOTONIC and one on CLOCK_REALTIME for all of them, each armed
//! at the coalesced wake-up of the timers due first on its clock, so a
//! thousand loaded timers cost two file descriptors, two tasks and no
//! wake-up besides their elapses. The realtime one carries
//! TFD_TIMER_CANCEL_ON_SET: a jump of the wall clock makes its read fail
//! with ECANCELED, which is how a clock change is noticed.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use tokio::io::unix::AsyncFd;
use tokio::runtime::Handle;
use tokio::sync::mpsc;

use crate::supervisor::timer::machine::{NextElapse, coalesce};

use super::Input;

/// Where the realtime timerfd waits when no realtime elapse is due: far
/// enough never to fire (2100-01-01), armed only so that clock jumps are
/// still reported.
const FAR_REALTIME: u64 = 4_102_444_800_000_000;

/// Where one timer unit is armed: its elapse on each clock and its
/// `AccuracySec=`, µs. Kept in the timer's body, not in a table here: a
/// table by name cost a thousand timers 150 KB.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Armed {
    /// The elapse on each clock (`Stamp`s: 16 B less per timer than
    /// `Option`s).
    pub(super) next: NextElapse,
    /// How late each elapse may be.
    pub(super) accuracy: u64,
}

impl Armed {
    /// The elapse on that clock, if any.
    pub(super) fn at(&self, realtime: bool) -> Option<u64> {
        if realtime {
            self.next.realtime.get()
        } else {
            self.next.monotonic.get()
        }
    }
}

/// The two timerfds and what they are armed for.
pub(super) struct KernelTimers {
    /// CLOCK_MONOTONIC, then CLOCK_REALTIME.
    fds: [OwnedFd; 2],
    /// On each clock, the earliest elapse and the earliest end of an
    /// accuracy window of the armed units: all a coalesced wake-up depends
    /// on, so that arming one more unit is O(1), not a pass over all.
    bounds: [Option<(u64, u64)>; 2],
    /// How many timer units are armed.
    count: usize,
    /// What each timerfd is set to now (absolute µs on its clock).
    set: [Option<u64>; 2],
    /// The per-machine offset of the coalesced wake-ups.
    perturb: u64,
}

/// CLOCK_MONOTONIC or CLOCK_REALTIME now, in µs.
pub(super) fn now(realtime: bool) -> u64 {
    let clock = if realtime {
        libc::CLOCK_REALTIME
    } else {
        libc::CLOCK_MONOTONIC
    };
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid timespec to write; both clocks always exist.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    (ts.tv_sec as u64) * 1_000_000 + (ts.tv_nsec as u64) / 1_000
}

fn timerfd(clock: libc::clockid_t) -> io::Result<OwnedFd> {
    // SAFETY: plain system call; the fd is owned from here on.
    let fd = unsafe { libc::timerfd_create(clock, libc::TFD_NONBLOCK | libc::TFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd was just created and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

impl KernelTimers {
    /// Creates both timerfds and the tasks that turn their expiries into
    /// [`Input::TimerClock`].
    pub(super) fn new(
        tx: mpsc::UnboundedSender<Input>,
        rt: &Handle,
        perturb: u64,
    ) -> io::Result<KernelTimers> {
        let fds = [
            timerfd(libc::CLOCK_MONOTONIC)?,
            timerfd(libc::CLOCK_REALTIME)?,
        ];
        for (i, fd) in fds.iter().enumerate() {
            let _guard = rt.enter();
            // SAFETY: the OwnedFd is moved into the AsyncFd, which alone
            // closes it, so the descriptor stays the same open file.
            let watched = unsafe { AsyncFd::register(fd.try_clone()?) }.map_err(io::Error::from)?;
            rt.spawn(watch(watched, i == 1, tx.clone()));
        }
        Ok(KernelTimers {
            fds,
            bounds: [None, None],
            count: 0,
            set: [None, None],
            perturb,
        })
    }

    /// Puts a unit on the clocks at `new`, where it was at `old`; `all`:
    /// where every armed unit is, this one at `new` (read only when `old`
    /// was among the earliest, so loading N timers is O(N), not O(N²)).
    pub(super) fn arm(
        &mut self,
        old: Option<Armed>,
        new: Armed,
        all: impl Iterator<Item = Armed>,
    ) -> io::Result<()> {
        if old.is_some_and(|o| self.bounded_by(&o)) {
            self.recount(all);
        } else {
            self.count += usize::from(old.is_none());
            self.widen(&new);
        }
        self.program(false)
    }

    /// Takes a unit armed at `old` off the clocks; `all`: where the
    /// others are.
    pub(super) fn disarm(
        &mut self,
        old: Option<Armed>,
        all: impl Iterator<Item = Armed>,
    ) -> io::Result<()> {
        let Some(o) = old else {
            return Ok(());
        };
        if self.bounded_by(&o) {
            self.recount(all);
        } else {
            self.count -= 1;
        }
        self.program(false)
    }

    /// The timerfd of that clock fired (one-shot, so it is disarmed now),
    /// or the wall clock jumped: sets both again from `all`, where every
    /// armed unit is now.
    pub(super) fn fired(&mut self, all: impl Iterator<Item = Armed>) -> io::Result<()> {
        self.recount(all);
        self.program(true)
    }

    /// Whether a unit armed at `a` sets a bound of either clock.
    fn bounded_by(&self, a: &Armed) -> bool {
        [false, true].into_iter().zip(self.bounds).any(|(rt, b)| {
            matches!((a.at(rt), b), (Some(at), Some((first, end)))
                if at == first || at.saturating_add(a.accuracy) == end)
        })
    }

    /// Takes a unit armed at `a` into the bounds.
    fn widen(&mut self, a: &Armed) {
        for (rt, b) in [false, true].into_iter().zip(self.bounds.iter_mut()) {
            if let Some(at) = a.at(rt) {
                let end = at.saturating_add(a.accuracy);
                *b = Some(b.map_or((at, end), |(f, e)| (f.min(at), e.min(end))));
            }
        }
    }

    /// The bounds and count again from every armed unit.
    fn recount(&mut self, all: impl Iterator<Item = Armed>) {
        self.bounds = [None, None];
        self.count = 0;
        for a in all {
            self.count += 1;
            self.widen(&a);
        }
    }

    /// Sets each timerfd to the coalesced wake-up of its clock's timers;
    /// `force`: even when that did not change.
    fn program(&mut self, force: bool) -> io::Result<()> {
        for (i, realtime) in [false, true].into_iter().enumerate() {
            // One window from the earliest elapse to the earliest end
            // coalesces as all the windows would.
            let mut at = self.bounds[i]
                .and_then(|(first, end)| coalesce(&[(first, end - first)], self.perturb));
            if realtime && at.is_none() && self.count > 0 {
                at = Some(FAR_REALTIME);
            }
            if at == self.set[i] && !force {
                continue;
            }
            settime(&self.fds[i], at, realtime)?;
            self.set[i] = at;
        }
        Ok(())
    }
}

/// Arms `fd` at the absolute time `at` (µs), or disarms it.
fn settime(fd: &OwnedFd, at: Option<u64>, realtime: bool) -> io::Result<()> {
    // An it_value of zero disarms: an elapse at 0 is in the past anyway.
    let v = at.map_or(0, |u| u.max(1));
    let spec = libc::itimerspec {
        it_interval: libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        },
        it_value: libc::timespec {
            tv_sec: (v / 1_000_000) as libc::time_t,
            tv_nsec: ((v % 1_000_000) * 1_000) as libc::c_long,
        },
    };
    let mut flags = libc::TFD_TIMER_ABSTIME;
    if realtime {
        flags |= libc::TFD_TIMER_CANCEL_ON_SET;
    }
    // SAFETY: fd is a timerfd we own; spec is valid; the old value is not asked for.
    let r = unsafe { libc::timerfd_settime(fd.as_raw_fd(), flags, &spec, std::ptr::null_mut()) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Reads expiries of one timerfd and reports them to the manager.
async fn watch(fd: AsyncFd<OwnedFd>, realtime: bool, tx: mpsc::UnboundedSender<Input>) {
    loop {
        let Ok(mut guard) = fd.readable().await else {
            return;
        };
        let mut buf = [0u8; 8];
        // SAFETY: reads at most 8 bytes into buf from a timerfd we own.
        let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        let changed = if n == 8 {
            false
        } else {
            match io::Error::last_os_error().raw_os_error() {
                Some(libc::ECANCELED) => true,
                Some(libc::EAGAIN) => {
                    guard.clear_ready();
                    continue;
                }
                _ => return,
            }
        };
        if tx.send(Input::TimerClock { realtime, changed }).is_err() {
            return;
        }
    }
}
