//! The timer kind in the manager: its definition and body, its step
//! through `timer::machine::next`, the execution of its actions (the
//! kernel timers of `timer_clock.rs`, the start of the triggered unit,
//! the `Persistent=` stamp), and what the triggered unit tells its timers.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use jiff::tz::TimeZone;
use tokio::runtime::Handle;
use tokio::sync::{mpsc, oneshot};

use crate::ipc::proto::TimerStatus;
use crate::supervisor::lines::Line;
use crate::supervisor::state::{self, ActiveState, Event, ServiceResult};
use crate::supervisor::timer::machine::{self, Clocks, TimerState, fixed_delay_hash};
use crate::supervisor::timer::{stamp, zone};
use crate::unit::timer::TimerSection;
use crate::unit::{Unit, UnitName};

use super::entry::{Phase, UnitEntry};
use super::timer_clock::{self, Armed, KernelTimers};
use super::{Body, Def, Input, JobRequest, Manager};

/// A timer's definition: its files (the unit it starts follows from them).
#[derive(Debug, Clone)]
pub(super) struct TimerDef {
    /// The unit as loaded; its `[Timer]` is the definition (not copied:
    /// a thousand timers kept it twice).
    pub(super) unit: Arc<Unit>,
}

impl TimerDef {
    /// `[Timer]`.
    pub(super) fn section(&self) -> &TimerSection {
        self.unit.timer.as_deref().expect("load_timer checks it")
    }

    /// `Unit=`, or the service of the same name: made when asked (kept
    /// beside the unit, with the `Arc` the definition then needed, it cost
    /// a thousand timers 80 KB).
    pub(super) fn triggers(&self) -> UnitName {
        (self.section().triggered_unit(&self.unit.name)).expect("load_timer checks it")
    }

    /// Whether it triggers `unit`, without making the name (asked of every
    /// timer on each change of a unit).
    fn triggers_unit(&self, unit: &str) -> bool {
        match &self.section().unit {
            Some(u) => u.as_str() == unit,
            // The default of `triggered_unit`: the same name, `.service`.
            None => unit.strip_suffix(".service") == Some(self.unit.name.stem()),
        }
    }
}

/// The part of a timer beside its definition.
pub(super) struct TimerBody {
    /// The machine's state (`timer::machine::next`).
    pub(super) timer: machine::Timer,
    /// Why it is failed (or the verdict that stopped it).
    pub(super) result: ServiceResult,
    /// Where it is on the kernel timers, when it is.
    pub(super) armed: Option<Armed>,
}

impl Default for TimerBody {
    fn default() -> Self {
        TimerBody {
            timer: machine::Timer::default(),
            result: ServiceResult::Success,
            armed: None,
        }
    }
}

impl TimerBody {
    /// When it elapses next on the wall clock (a monotonic elapse
    /// converted at the clocks' current offset), the earlier of both.
    pub(super) fn next_realtime(&self) -> Option<u64> {
        let n = self.timer.next;
        let mono = (n.monotonic.get())
            .map(|m| (timer_clock::now(true) + m).saturating_sub(timer_clock::now(false)));
        match (mono, n.realtime.get()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The timer's phase: active while waiting, running or elapsed.
    pub(super) fn phase(&self) -> Phase {
        let s = self.timer.state;
        Phase {
            active: match s {
                TimerState::Dead => ActiveState::Inactive,
                TimerState::Failed => ActiveState::Failed,
                _ => ActiveState::Active,
            },
            result: self.result,
            // An elapsed timer starts afresh, as systemd re-arms it.
            down: matches!(
                s,
                TimerState::Dead | TimerState::Failed | TimerState::Elapsed
            ),
            stop_requested: false,
            start_after_stop: false,
        }
    }
}

/// What the manager keeps for all timers.
pub(super) struct Timers {
    /// The two kernel timers.
    clocks: KernelTimers,
    /// Units started by a timer whose new invocation has not begun yet:
    /// unit → timer, for the "Triggered by" line of that invocation.
    triggered_by: HashMap<String, String>,
    /// CLOCK_MONOTONIC at the manager's start (`OnStartupSec=`).
    manager_start: u64,
    /// /etc/machine-id, for `FixedRandomDelay=`.
    machine_id: [u8; 16],
    /// Where the `Persistent=` stamps live.
    state_dir: PathBuf,
    /// The local zone of calendar values without a zone of their own.
    local: TimeZone,
    /// The file it is read from (`/etc/localtime`, see `unit::zone`).
    zone_file: PathBuf,
    /// That file's lstat mtime when the zone was read: a change is a
    /// different one (systemd's test).
    zone_stamp: Option<SystemTime>,
}

impl Timers {
    /// The kernel timers and what the timer machines need of the host.
    pub(super) fn new(
        tx: mpsc::UnboundedSender<Input>,
        rt: &Handle,
        state_dir: PathBuf,
    ) -> std::io::Result<Timers> {
        let machine_id = machine_id();
        // As sd-event: a per-machine point within the minute, so that
        // machines do not all wake at once.
        let perturb = fixed_delay_hash(&machine_id, false, 0, "") % 60_000_000;
        let zone_file = zone::localtime_path();
        Ok(Timers {
            clocks: KernelTimers::new(tx, rt, perturb)?,
            triggered_by: HashMap::new(),
            manager_start: timer_clock::now(false),
            machine_id,
            state_dir,
            local: zone::read_local(&zone_file),
            zone_stamp: zone::stamp(&zone_file),
            zone_file,
        })
    }
}

/// /etc/machine-id as 16 bytes; zeros when it cannot be read (the fixed
/// delay is then the same on every such machine, and still fixed).
fn machine_id() -> [u8; 16] {
    let mut id = [0u8; 16];
    if let Ok(text) = std::fs::read_to_string("/etc/machine-id") {
        let hex = text.trim();
        for (i, b) in id.iter_mut().enumerate() {
            if let Some(v) = hex
                .get(2 * i..2 * i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                *b = v;
            }
        }
    }
    id
}

/// A fresh random number for `RandomizedDelaySec=`.
fn random() -> u64 {
    let mut buf = [0u8; 8];
    // SAFETY: writes at most 8 bytes into buf; getrandom does not block
    // once the pool is initialised, which it is long before a user logs in.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n != 8 {
        // No entropy call: the clock's low bits still spread timers out.
        return timer_clock::now(true).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
    u64::from_ne_bytes(buf)
}

/// Where every armed timer unit is on the kernel timers.
fn armed(units: &BTreeMap<UnitName, Box<UnitEntry>>) -> impl Iterator<Item = Armed> + '_ {
    units.values().filter_map(|e| match &e.body {
        Body::Timer(b) => b.armed,
        _ => None,
    })
}

/// The lines the manager logs when a timer moves from `before` to `after`,
/// as systemd 252 words them.
fn transition_lines(before: TimerState, after: TimerState, result: ServiceResult) -> Vec<Line> {
    let was_up = !matches!(before, TimerState::Dead | TimerState::Failed);
    let is_up = !matches!(after, TimerState::Dead | TimerState::Failed);
    match (was_up, is_up, after) {
        (false, true, _) => vec![Line::Started],
        (true, false, TimerState::Failed) => vec![Line::FailedWithResult(result)],
        (true, false, _) => vec![Line::Stopped],
        _ => Vec::new(),
    }
}

impl Manager {
    /// The timer definition of `name`, when it is a loaded timer.
    fn timer_def(&self, name: &str) -> Option<TimerDef> {
        match self.units.get(name).map(|e| &e.def) {
            Some(Ok(Def::Timer(d))) => Some(d.clone()),
            _ => None,
        }
    }

    /// The clocks as the timer machine reads them, for timer `name`.
    fn timer_clocks(&self, name: &str, def: &TimerSection) -> Clocks {
        let t = &self.timer_units;
        Clocks {
            monotonic: timer_clock::now(false),
            realtime: timer_clock::now(true),
            manager_start: t.manager_start,
            boot: 0,
            local: t.local.clone(),
            random: if def.fixed_random_delay {
                fixed_delay_hash(&t.machine_id, false, nix::unistd::getuid().as_raw(), name)
            } else {
                random()
            },
        }
    }

    /// What `show` reports of a timer: systemd's Timer properties.
    pub(super) fn timer_status(&self, d: &TimerDef, b: &TimerBody) -> TimerStatus {
        let s = d.section();
        let clocks = self.timer_clocks(d.unit.name.as_str(), s);
        let waiting = b.timer.state == TimerState::Waiting;
        let (mono, cal) = machine::value_elapses(s, &b.timer, &clocks);
        let us = |v: std::time::Duration| v.as_micros() as u64;
        TimerStatus {
            unit: d.triggers().to_string(),
            monotonic: s
                .monotonic
                .iter()
                .zip(mono)
                .map(|(v, at)| {
                    let base = v.base.directive().replace("Sec", "USec");
                    (base, us(v.offset), at.filter(|_| waiting))
                })
                .collect(),
            calendar: s
                .calendar
                .iter()
                .zip(cal)
                .map(|(c, at)| (c.to_string(), at.filter(|_| waiting)))
                .collect(),
            next_realtime: b.timer.next.realtime.get(),
            next_monotonic: b.timer.next.monotonic.get(),
            last_trigger: b.timer.last_trigger_realtime.get(),
            last_trigger_monotonic: b.timer.last_trigger_monotonic.get(),
            accuracy: us(s.accuracy),
            randomized_delay: us(s.randomized_delay),
            flags: [
                s.fixed_random_delay,
                s.persistent,
                s.wake_system,
                s.remain_after_elapse,
                s.on_clock_change,
                s.on_timezone_change,
            ],
        }
    }

    /// One event through a timer's machine: the manager's events (start,
    /// stop, verdicts) and the timer's own (`Event::TimerUnit`).
    pub(super) fn step_timer(
        &mut self,
        name: &str,
        def: Option<&Def>,
        ev: Event,
    ) -> (Vec<machine::Action>, Vec<Line>) {
        let def = match def {
            Some(Def::Timer(d)) => Some(d.clone()),
            _ => None,
        };
        let clocks = def.as_ref().map(|d| self.timer_clocks(name, d.section()));
        // A persistent timer's last trigger survives the manager: a start
        // reads it, so a missed calendar elapse is due at once.
        let mut stamp_note = None;
        let stamp = match &def {
            Some(d) if d.section().persistent && matches!(ev, Event::Start | Event::Restart) => {
                let path = stamp::stamp_path(&self.timer_units.state_dir, name);
                stamp::read(&path).unwrap_or_else(|e| {
                    stamp_note = Some(e.to_string());
                    None
                })
            }
            _ => None,
        };
        if let Some(n) = stamp_note {
            self.log(name, &n);
        }
        let Some(Body::Timer(b)) = self.units.get_mut(name).map(|e| &mut e.body) else {
            return (Vec::new(), Vec::new());
        };
        let before = b.timer.state;
        let phase = b.phase();
        if ev.verdict_applies(phase.active, phase.down) == Some(true) {
            let (active, result) = state::verdict_outcome(&ev, b.result);
            b.result = result;
            b.timer.state = if active == ActiveState::Failed {
                TimerState::Failed
            } else {
                TimerState::Dead
            };
            b.timer.next = machine::NextElapse::default();
            return (vec![machine::Action::Disarm], Vec::new());
        }
        let (Some(d), Some(clocks)) = (def, clocks) else {
            return (Vec::new(), Vec::new());
        };
        let events: &[machine::Event] = match ev {
            Event::Start => &[machine::Event::Start],
            Event::Restart => &[machine::Event::Stop, machine::Event::Start],
            Event::Stop => &[machine::Event::Stop],
            Event::TimerUnit(e) => &[e][..],
            _ => &[],
        };
        let mut actions = Vec::new();
        for &e in events {
            if e == machine::Event::Start {
                b.result = ServiceResult::Success;
                if d.section().persistent
                    && let Some(s) = stamp
                {
                    b.timer.last_trigger_realtime = s.into();
                }
            }
            let (next, a) = machine::next(d.section(), &b.timer, &clocks, e);
            b.timer = next;
            actions.extend(a);
        }
        if b.timer.state == TimerState::Failed && before != TimerState::Failed {
            b.result = ServiceResult::Resources;
        }
        (actions, transition_lines(before, b.timer.state, b.result))
    }

    /// Carries out one action of a timer's machine.
    pub(super) fn execute_timer(&mut self, name: &str, action: machine::Action) {
        let result = match action {
            machine::Action::Arm(next) => {
                let Some(d) = self.timer_def(name) else {
                    return;
                };
                let new = Armed {
                    next,
                    accuracy: d.section().accuracy.as_micros() as u64,
                };
                match self.units.get_mut(name).map(|e| &mut e.body) {
                    Some(Body::Timer(b)) => {
                        let old = b.armed.replace(new);
                        self.timer_units.clocks.arm(old, new, armed(&self.units))
                    }
                    _ => return,
                }
                .map_err(|e| format!("cannot arm the timer: {e}"))
            }
            machine::Action::Disarm => {
                let old = match self.units.get_mut(name).map(|e| &mut e.body) {
                    Some(Body::Timer(b)) => b.armed.take(),
                    _ => None,
                };
                self.timer_units
                    .clocks
                    .disarm(old, armed(&self.units))
                    .map_err(|e| format!("cannot disarm the timer: {e}"))
            }
            machine::Action::StartUnit => {
                // Queued: the timer's own transition completes first.
                let _ = self.tx.send(Input::Trigger {
                    timer: name.to_string(),
                });
                Ok(())
            }
            machine::Action::WriteStamp(at) => {
                let path = stamp::stamp_path(&self.timer_units.state_dir, name);
                stamp::write(&path, at).map_err(|e| e.to_string())
            }
        };
        if let Err(msg) = result {
            self.log(name, &msg);
        }
    }

    /// The timers waiting for an elapse.
    fn waiting_timers(&self) -> Vec<String> {
        self.units
            .iter()
            .filter(
                |(_, e)| matches!(&e.body, Body::Timer(b) if b.timer.state == TimerState::Waiting),
            )
            .map(|(n, _)| n.to_string())
            .collect()
    }

    /// Watches the local zone's file for changes (`OnTimezoneChange=`, and
    /// calendar elapses move with the zone).
    pub(super) fn watch_zone(&mut self) {
        let file = &self.timer_units.zone_file;
        // Kept for the manager's life: the registration is not cancelled.
        if let Err(e) = self.watches.zone_file(file) {
            eprintln!(
                "corrald: cannot watch {} for time zone changes: {e}; timers keep the zone they started with",
                file.display()
            );
        }
    }

    /// The zone's file changed: when it is another file now (its lstat
    /// mtime differs, as systemd tests), the zone is read again and every
    /// waiting timer recomputes, or triggers with `OnTimezoneChange=yes`.
    pub(super) fn zone_file_changed(&mut self) {
        let t = &mut self.timer_units;
        let now = zone::stamp(&t.zone_file);
        if now == t.zone_stamp {
            return;
        }
        t.zone_stamp = now;
        t.local = zone::read_local(&t.zone_file);
        for n in self.waiting_timers() {
            self.feed(&n, Event::TimerUnit(machine::Event::TimezoneChanged));
        }
    }

    /// A timerfd fired (`changed`: the wall clock jumped): the timers due
    /// on that clock elapse, or every active timer recomputes.
    pub(super) fn timer_clock(&mut self, realtime: bool, changed: bool) {
        let names: Vec<String> = if changed {
            self.waiting_timers()
        } else {
            let now = timer_clock::now(realtime);
            self.units
                .iter()
                .filter(|(_, e)| {
                    matches!(&e.body, Body::Timer(b)
                        if b.armed.and_then(|a| a.at(realtime)).is_some_and(|at| at <= now))
                })
                .map(|(n, _)| n.to_string())
                .collect()
        };
        let ev = if changed {
            machine::Event::ClockChanged
        } else {
            machine::Event::Elapse
        };
        for n in names {
            self.feed(&n, Event::TimerUnit(ev));
        }
        if let Err(e) = self.timer_units.clocks.fired(armed(&self.units)) {
            eprintln!("corrald: cannot set the timers' kernel clock: {e}");
        }
    }

    /// Starts the unit timer `timer` triggers, as a start job.
    pub(super) fn trigger(&mut self, timer: &str) {
        let running = matches!(
            self.units.get(timer).map(|e| &e.body),
            Some(Body::Timer(b)) if b.timer.state == TimerState::Running
        );
        let Some(d) = self.timer_def(timer).filter(|_| running) else {
            return;
        };
        let unit = d.triggers().to_string();
        self.timer_units
            .triggered_by
            .insert(unit.clone(), timer.to_string());
        let (reply, mut answer) = oneshot::channel();
        self.job(&unit, JobRequest::Start, false, reply);
        if let Ok(Err(f)) = answer.try_recv() {
            self.timer_units.triggered_by.remove(&unit);
            self.log(timer, &format!("Failed to start {unit}: {}", f.message));
            self.feed(timer, Event::TimerUnit(machine::Event::UnitStartFailed));
            return;
        }
        // Running already: this trigger started no invocation of its own.
        if self
            .units
            .get(unit.as_str())
            .is_some_and(|e| e.inv().is_some())
        {
            self.timer_units.triggered_by.remove(&unit);
        }
    }

    /// A new invocation of `unit` began: says which timer started it.
    pub(super) fn log_triggered(&mut self, unit: &str) {
        if let Some(timer) = self.timer_units.triggered_by.remove(unit) {
            self.log(unit, &format!("Triggered by {timer}."));
        }
    }

    /// The timers that trigger `unit`.
    pub(super) fn timers_of(&self, unit: &str) -> Vec<String> {
        self.units
            .iter()
            .filter(|(_, e)| matches!(&e.def, Ok(Def::Timer(d)) if d.triggers_unit(unit)))
            .map(|(n, _)| n.to_string())
            .collect()
    }

    /// `unit` left or entered inactive/failed: its timers count
    /// `OnUnitActiveSec=`/`OnUnitInactiveSec=` from now, and a running
    /// timer waits again once the unit is down.
    pub(super) fn tell_timers(&mut self, unit: &str, up: bool) {
        let ev = if up {
            machine::Event::UnitActive
        } else {
            machine::Event::UnitInactive
        };
        for t in self.timers_of(unit) {
            self.feed(&t, Event::TimerUnit(ev));
        }
    }
}
