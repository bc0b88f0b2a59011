//! The life of one timer as a pure function, after systemd 252's timer.c:
//! [`next`] takes the definition, the timer's state, the clocks and one
//! [`Event`], and returns the new state and the [`Action`]s the manager
//! must carry out. [`compute_next`] is the "when does it elapse next"
//! part; [`coalesce`] picks when the one kernel timer of a clock wakes for
//! all timers of that clock.
//!
//! Times are microseconds: monotonic ones on CLOCK_MONOTONIC (0 = the
//! kernel's boot), realtime ones since the epoch.

use jiff::tz::TimeZone;

use crate::unit::ThinList;
use crate::unit::timer::{MonotonicBase, TimerSection};

/// The timer's state, as systemd names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimerState {
    /// Stopped.
    #[default]
    Dead,
    /// Armed, waiting for the next elapse.
    Waiting,
    /// Elapsed; the triggered unit runs (no elapse until it is inactive).
    Running,
    /// No elapse is left; kept active (`RemainAfterElapse=yes`).
    Elapsed,
    /// The triggered unit could not be started.
    Failed,
}

/// What the timer remembers between events.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Timer {
    /// Where it is.
    pub state: TimerState,
    /// Monotonic time of the timer's last activation (`OnActiveSec=`).
    pub activated: Stamp,
    /// Realtime of that activation: calendar elapses of a timer that never
    /// triggered count from it.
    pub activated_realtime: Stamp,
    /// Monotonic time the triggered unit last became active.
    pub unit_active: Stamp,
    /// Monotonic time the triggered unit last became inactive.
    pub unit_inactive: Stamp,
    /// Realtime of the last trigger (from the stamp file with
    /// `Persistent=yes`, so it survives the manager).
    pub last_trigger_realtime: Stamp,
    /// Monotonic time of the last trigger in this manager's life.
    pub last_trigger_monotonic: Stamp,
    /// One-shot values (`OnActiveSec=`, `OnBootSec=`, `OnStartupSec=`)
    /// that have elapsed, by index into the definition's `monotonic`.
    /// A `ThinList`: most timers have none (16 B less each).
    pub spent: ThinList<usize>,
    /// Where it is armed.
    pub next: NextElapse,
}

/// The next elapse on each clock; `None` where nothing is due.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NextElapse {
    /// On CLOCK_MONOTONIC.
    pub monotonic: Stamp,
    /// On CLOCK_REALTIME.
    pub realtime: Stamp,
}

/// A time or none in 8 bytes, where `Option<u64>` takes 16: a timer keeps
/// eight of them, for as long as the manager runs (issue 12's budget of
/// 1 KB per timer). `u64::MAX` is none; a time that large (584 542 years
/// of microseconds) is kept as one less, still never reached.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Stamp(u64);

impl Stamp {
    /// No time.
    pub const NONE: Stamp = Stamp(u64::MAX);

    /// The time, if any.
    pub fn get(self) -> Option<u64> {
        (self != Stamp::NONE).then_some(self.0)
    }

    /// Whether there is a time.
    pub fn is_some(self) -> bool {
        self != Stamp::NONE
    }

    /// Whether there is none.
    pub fn is_none(self) -> bool {
        self == Stamp::NONE
    }
}

impl Default for Stamp {
    fn default() -> Self {
        Stamp::NONE
    }
}

impl From<Option<u64>> for Stamp {
    fn from(v: Option<u64>) -> Self {
        v.map_or(Stamp::NONE, |t| Stamp(t.min(u64::MAX - 1)))
    }
}

impl From<u64> for Stamp {
    fn from(t: u64) -> Self {
        Some(t).into()
    }
}

impl std::fmt::Debug for Stamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.get().fmt(f)
    }
}

/// The clocks and facts of the manager the computation needs.
#[derive(Debug, Clone)]
pub struct Clocks {
    /// CLOCK_MONOTONIC now.
    pub monotonic: u64,
    /// CLOCK_REALTIME now.
    pub realtime: u64,
    /// CLOCK_MONOTONIC at the manager's start (`OnStartupSec=`).
    pub manager_start: u64,
    /// CLOCK_MONOTONIC at boot: 0 on a host; in a container, the
    /// container's start, as systemd uses there.
    pub boot: u64,
    /// The local zone, for `OnCalendar=` without a zone.
    pub local: TimeZone,
    /// The random part of `RandomizedDelaySec=` for this arming: a fresh
    /// random number, or [`fixed_delay_hash`] with `FixedRandomDelay=yes`.
    /// Taken modulo the delay.
    pub random: u64,
}

/// What happened to the timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// `start` (or a target pulled it in).
    Start,
    /// `stop`.
    Stop,
    /// The kernel timer of its clock fired at or after its next elapse.
    Elapse,
    /// The triggered unit became active.
    UnitActive,
    /// The triggered unit became inactive (or failed).
    UnitInactive,
    /// The triggered unit could not be started (not found, refused).
    UnitStartFailed,
    /// CLOCK_REALTIME jumped (timerfd's TFD_TIMER_CANCEL_ON_SET).
    ClockChanged,
    /// The local time zone changed (/etc/localtime).
    TimezoneChanged,
}

/// What the manager must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// (Re)arm the timer at these elapses (the manager coalesces with
    /// [`coalesce`] and the timer's `AccuracySec=`).
    Arm(NextElapse),
    /// Remove the timer from the clocks.
    Disarm,
    /// Start the triggered unit ("Triggered by X.timer" in its journal).
    StartUnit,
    /// Write the stamp file with this realtime (`Persistent=yes`).
    WriteStamp(u64),
}

/// The outcome of [`compute_next`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Computed {
    /// The next elapses, random delay included.
    pub next: NextElapse,
    /// One-shot values found spent now (added to [`Timer::spent`]).
    pub spent: Vec<usize>,
    /// An `OnUnitActiveSec=`/`OnUnitInactiveSec=` value waits for the unit
    /// to run first: with nothing due the timer stays (elapsed) instead of
    /// stopping.
    pub leave_around: bool,
}

/// When the timer elapses next, as systemd's `timer_enter_waiting()`
/// computes it. `time_change`: recomputing after a clock or zone change,
/// when one-shot values are not spent again.
pub fn compute_next(def: &TimerSection, t: &Timer, c: &Clocks, time_change: bool) -> Computed {
    let mut mono: Option<u64> = None;
    let mut real: Option<u64> = None;
    let mut spent = Vec::new();
    let (monotonic, calendar) = value_elapses(def, t, c);
    for n in calendar.into_iter().flatten() {
        real = Some(real.map_or(n, |r| r.min(n)));
    }
    let leave_around = def.monotonic.iter().any(|v| {
        matches!(
            v.base,
            MonotonicBase::UnitActive | MonotonicBase::UnitInactive
        )
    });
    for (i, (v, at)) in def.monotonic.iter().zip(monotonic).enumerate() {
        if t.spent.contains(&i) {
            continue;
        }
        let Some(at) = at else {
            continue;
        };
        let one_shot = matches!(
            v.base,
            MonotonicBase::Active | MonotonicBase::Boot | MonotonicBase::Startup
        );
        if t.last_trigger_monotonic.is_some() && !time_change && at < c.monotonic && one_shot {
            // Elapsed already: a one-shot value does not come back.
            spent.push(i);
            continue;
        }
        mono = Some(mono.map_or(at, |m| m.min(at)));
    }
    let delay = def.randomized_delay.as_micros() as u64;
    let add = |v: Option<u64>| {
        v.map(|x| {
            if delay == 0 {
                x
            } else {
                x.saturating_add(c.random % delay)
            }
        })
    };
    Computed {
        next: NextElapse {
            monotonic: add(mono).into(),
            realtime: add(real).into(),
        },
        spent,
        leave_around,
    }
}

/// The elapse of each value without the random delay, as systemd keeps
/// it per value (`TimersMonotonic`, `TimersCalendar`): monotonic ones in
/// the order written (`None`: an `OnUnit*Sec=` whose unit has not run),
/// then calendar ones (`None`: never again).
pub fn value_elapses(
    def: &TimerSection,
    t: &Timer,
    c: &Clocks,
) -> (Vec<Option<u64>>, Vec<Option<u64>>) {
    let active = matches!(
        t.state,
        TimerState::Waiting | TimerState::Running | TimerState::Elapsed
    );
    let calendar = def
        .calendar
        .iter()
        .map(|cal| {
            // From the last trigger when known (a missed elapse is then due
            // at once: Persistent=), else from the activation.
            let since_activation = if active {
                t.activated_realtime
            } else {
                Stamp::NONE
            };
            let base = t
                .last_trigger_realtime
                .get()
                .or(since_activation.get())
                .unwrap_or(c.realtime);
            cal.next_elapse(base, &c.local)
        })
        .collect();
    let monotonic = def
        .monotonic
        .iter()
        .map(|v| {
            let base = match v.base {
                MonotonicBase::Active => match (active, t.activated.get()) {
                    (true, Some(a)) => a,
                    _ => c.monotonic,
                },
                MonotonicBase::Boot => c.boot,
                MonotonicBase::Startup => c.manager_start,
                MonotonicBase::UnitActive | MonotonicBase::UnitInactive => {
                    let unit = if v.base == MonotonicBase::UnitActive {
                        t.unit_active
                    } else {
                        t.unit_inactive
                    };
                    (unit.get())
                        .max(t.last_trigger_monotonic.get())
                        .filter(|b| *b > 0)?
                }
            };
            Some(base.saturating_add(v.offset.as_micros() as u64))
        })
        .collect();
    (monotonic, calendar)
}

/// Moves the timer into waiting (or elapsed/dead when nothing is left).
fn enter_waiting(def: &TimerSection, t: &mut Timer, c: &Clocks, time_change: bool) -> Vec<Action> {
    let computed = compute_next(def, t, c, time_change);
    if !computed.spent.is_empty() {
        // A change of the empty list would allocate it.
        t.spent.extend(computed.spent);
    }
    let nothing = computed.next.monotonic.is_none() && computed.next.realtime.is_none();
    if nothing && !def.on_clock_change && !def.on_timezone_change {
        t.next = NextElapse::default();
        t.state = if computed.leave_around || def.remain_after_elapse {
            TimerState::Elapsed
        } else {
            TimerState::Dead
        };
        return vec![Action::Disarm];
    }
    t.state = TimerState::Waiting;
    t.next = computed.next;
    vec![Action::Arm(computed.next)]
}

/// Triggers the unit: the timer runs until the unit is inactive again.
fn enter_running(def: &TimerSection, t: &mut Timer, c: &Clocks) -> Vec<Action> {
    t.state = TimerState::Running;
    t.next = NextElapse::default();
    t.last_trigger_realtime = c.realtime.into();
    t.last_trigger_monotonic = c.monotonic.into();
    let mut out = vec![Action::Disarm, Action::StartUnit];
    if def.persistent {
        out.push(Action::WriteStamp(c.realtime));
    }
    out
}

/// Whether an armed elapse is due at the clocks' now.
fn due(t: &Timer, c: &Clocks) -> bool {
    t.next.monotonic.get().is_some_and(|m| m <= c.monotonic)
        || t.next.realtime.get().is_some_and(|r| r <= c.realtime)
}

/// The transition of one event. Events that do not apply in a state leave
/// it as it is, with no action.
pub fn next(def: &TimerSection, t: &Timer, c: &Clocks, ev: Event) -> (Timer, Vec<Action>) {
    use TimerState as S;
    let mut n = t.clone();
    let actions = match (t.state, ev) {
        (S::Dead | S::Failed | S::Elapsed, Event::Start) => {
            n.activated = c.monotonic.into();
            n.activated_realtime = c.realtime.into();
            n.spent = ThinList::default();
            // A persistent timer's stamp was read into
            // last_trigger_realtime: a missed elapse is in the past and
            // due at once.
            n.last_trigger_monotonic = Stamp::NONE;
            n.state = S::Waiting;
            let mut a = enter_waiting(def, &mut n, c, false);
            if n.state == S::Waiting && due(&n, c) {
                a = enter_running(def, &mut n, c);
            }
            a
        }
        (S::Waiting | S::Running | S::Elapsed, Event::Stop) => {
            n.state = S::Dead;
            n.next = NextElapse::default();
            vec![Action::Disarm]
        }
        (S::Failed, Event::Stop) => {
            n.state = S::Dead;
            Vec::new()
        }
        (S::Waiting, Event::Elapse) if due(t, c) => enter_running(def, &mut n, c),
        (S::Waiting, Event::ClockChanged) if def.on_clock_change => enter_running(def, &mut n, c),
        (S::Waiting, Event::TimezoneChanged) if def.on_timezone_change => {
            enter_running(def, &mut n, c)
        }
        // A changed clock or zone moves the calendar elapses.
        (S::Waiting, Event::ClockChanged | Event::TimezoneChanged) => {
            enter_waiting(def, &mut n, c, true)
        }
        (_, Event::UnitActive) => {
            n.unit_active = c.monotonic.into();
            if matches!(t.state, S::Waiting | S::Elapsed) {
                // OnUnitActiveSec= counts from this activation.
                enter_waiting(def, &mut n, c, false)
            } else {
                Vec::new()
            }
        }
        (_, Event::UnitInactive) => {
            n.unit_inactive = c.monotonic.into();
            if matches!(t.state, S::Running | S::Waiting | S::Elapsed) {
                enter_waiting(def, &mut n, c, false)
            } else {
                Vec::new()
            }
        }
        (S::Running, Event::UnitStartFailed) => {
            n.state = S::Failed;
            vec![Action::Disarm]
        }
        _ => Vec::new(),
    };
    (n, actions)
}

/// The `FixedRandomDelay=` value: a hash of the machine id, whether the
/// manager is the system's, the user and the unit name (the inputs
/// systemd hashes), stable across restarts and builds (FNV-1a with a
/// final mix, not systemd's keyed SipHash: the delay differs from
/// systemd's, and is as fixed).
pub fn fixed_delay_hash(machine_id: &[u8; 16], system: bool, uid: u32, unit: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let bytes = machine_id
        .iter()
        .copied()
        .chain([u8::from(system)])
        .chain(uid.to_le_bytes())
        .chain(unit.bytes());
    for b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    // FNV's low bits mix poorly; the delay is taken modulo a span.
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h
}

const MSEC: u64 = 1_000;
const SEC: u64 = 1_000_000;

/// When the one kernel timer of a clock wakes for its timers, as sd-event
/// coalesces them: every timer may fire anywhere in [elapse, elapse +
/// AccuracySec]; the wake-up is the latest point that is within every
/// window's end and at or after the earliest elapse, preferring a point on
/// the minute, else on 10 s, 1 s, 250 ms (each shifted by `perturb`, a
/// per-machine offset below a minute, so machines do not wake together).
/// `timers` are (elapse, accuracy) pairs; `None` when there are none.
pub fn coalesce(timers: &[(u64, u64)], perturb: u64) -> Option<u64> {
    let a = timers.iter().map(|t| t.0).min()?;
    let b = timers.iter().map(|t| t.0.saturating_add(t.1)).min()?;
    if b <= a + 1 {
        return Some(a);
    }
    for step in [60 * SEC, 10 * SEC, SEC, 250 * MSEC] {
        let mut c = b / step * step + perturb % step;
        if c >= b {
            if c < step {
                return Some(b);
            }
            c -= step;
        }
        if c >= a {
            return Some(c);
        }
    }
    Some(b)
}

#[cfg(test)]
mod tests;
