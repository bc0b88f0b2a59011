//! `[Timer]` of `.timer` units, as systemd.timer(5) of systemd 252 defines
//! it, read into a typed [`TimerSection`], and the dependencies a timer
//! has without writing them.

use std::time::Duration;

use jiff::Timestamp;

use super::calendar::CalendarSpec;
use super::model::{Applier, ThinList, Unit, invalid, push_diag};
use super::name::{UnitKind, UnitName};
use super::syntax::Directive;
use super::values::{parse_bool, parse_timespan};
use super::zone;
use super::{Diagnostic, DiagnosticKind, Severity};

/// The default `AccuracySec=`.
pub const DEFAULT_ACCURACY: Duration = Duration::from_secs(60);

/// The target every timer is ordered before (with default dependencies).
pub const TIMERS_TARGET: &str = "timers.target";

/// Which clock point a monotonic timer counts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MonotonicBase {
    /// `OnActiveSec=`: the timer's own activation.
    Active,
    /// `OnBootSec=`: the kernel's boot.
    Boot,
    /// `OnStartupSec=`: the manager's start.
    Startup,
    /// `OnUnitActiveSec=`: the triggered unit's last activation.
    UnitActive,
    /// `OnUnitInactiveSec=`: the triggered unit's last deactivation.
    UnitInactive,
}

impl MonotonicBase {
    /// The directive that sets it.
    pub fn directive(self) -> &'static str {
        match self {
            MonotonicBase::Active => "OnActiveSec",
            MonotonicBase::Boot => "OnBootSec",
            MonotonicBase::Startup => "OnStartupSec",
            MonotonicBase::UnitActive => "OnUnitActiveSec",
            MonotonicBase::UnitInactive => "OnUnitInactiveSec",
        }
    }

    fn from_directive(key: &str) -> Option<MonotonicBase> {
        Some(match key {
            "OnActiveSec" => MonotonicBase::Active,
            "OnBootSec" => MonotonicBase::Boot,
            "OnStartupSec" => MonotonicBase::Startup,
            "OnUnitActiveSec" => MonotonicBase::UnitActive,
            "OnUnitInactiveSec" => MonotonicBase::UnitInactive,
            _ => return None,
        })
    }
}

/// One `On*Sec=` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MonotonicTimer {
    /// What it counts from.
    pub base: MonotonicBase,
    /// How long after it.
    pub offset: Duration,
}

/// `[Timer]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TimerSection {
    /// `OnActiveSec=`, `OnBootSec=`, `OnStartupSec=`, `OnUnitActiveSec=`,
    /// `OnUnitInactiveSec=`, in the order written. A `ThinList` (most
    /// timers are calendar timers) and a boxed slice below, where two
    /// `Vec`s made `[Timer]` 112 B (a section of every timer, for the
    /// manager's life).
    pub monotonic: ThinList<MonotonicTimer>,
    /// `OnCalendar=`, in the order written. Only the parsed expression is
    /// kept: `status` and `show` print its normalized form, as systemd
    /// does, never the text as written.
    pub calendar: Box<[CalendarSpec]>,
    /// `AccuracySec=`: how far an elapse may be moved to coalesce wake-ups.
    pub accuracy: Duration,
    /// `RandomizedDelaySec=`: the upper bound of a random extra delay.
    pub randomized_delay: Duration,
    /// `FixedRandomDelay=`: the random delay is the same on every run
    /// (derived from the machine, the user and the unit).
    pub fixed_random_delay: bool,
    /// `Persistent=`: a calendar elapse missed while the manager was down
    /// runs once at start.
    pub persistent: bool,
    /// `Unit=` as written; `None` for the same name with `.service`. Boxed:
    /// rarely written, and inline it made `[Timer]` 16 B bigger.
    pub unit: Option<Box<UnitName>>,
    /// `RemainAfterElapse=`: the timer stays active (elapsed) after its
    /// last elapse instead of stopping.
    pub remain_after_elapse: bool,
    /// `OnClockChange=`: a realtime clock jump triggers the unit.
    pub on_clock_change: bool,
    /// `OnTimezoneChange=`: a time zone change triggers the unit.
    pub on_timezone_change: bool,
    /// `WakeSystem=` as written (for `show`): a user manager cannot wake
    /// the machine, so it does nothing.
    pub wake_system: bool,
}

impl Default for TimerSection {
    fn default() -> Self {
        TimerSection {
            monotonic: ThinList::default(),
            calendar: Box::default(),
            accuracy: DEFAULT_ACCURACY,
            randomized_delay: Duration::ZERO,
            fixed_random_delay: false,
            persistent: false,
            unit: None,
            remain_after_elapse: true,
            on_clock_change: false,
            on_timezone_change: false,
            wake_system: false,
        }
    }
}

impl TimerSection {
    /// Whether any timer value is set (a timer without one is refused).
    pub fn has_values(&self) -> bool {
        !self.monotonic.is_empty() || !self.calendar.is_empty()
    }

    /// The unit the timer starts: `Unit=`, else `NAME.service` (an
    /// instance keeps its instance).
    pub fn triggered_unit(&self, timer: &UnitName) -> Option<UnitName> {
        match &self.unit {
            Some(u) => Some((**u).clone()),
            None => Some(timer.with_kind(UnitKind::Service)),
        }
    }
}

/// The dependencies systemd 252 gives a timer without their being written
/// (`timer_add_default_dependencies()`, `timer_add_trigger_dependencies()`):
/// for a user manager, only these.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TimerDependencies {
    /// `Before=`: the triggered unit, and with default dependencies
    /// `timers.target` and `shutdown.target`.
    pub before: Vec<UnitName>,
    /// `Conflicts=`: `shutdown.target` with default dependencies.
    pub conflicts: Vec<UnitName>,
    /// `Triggers=`: the unit the timer starts.
    pub triggers: Vec<UnitName>,
}

/// The implicit dependencies of a `.timer` unit (empty for other kinds).
pub fn implicit_dependencies(u: &Unit) -> TimerDependencies {
    let mut out = TimerDependencies::default();
    let Some(t) = &u.timer else {
        return out;
    };
    let fixed = |n: &str| UnitName::parse_strict(n).ok();
    if let Some(target) = t.triggered_unit(&u.name) {
        out.before.push(target.clone());
        out.triggers.push(target);
    }
    if u.unit.default_dependencies {
        out.before.extend(fixed(TIMERS_TARGET));
        out.before.extend(fixed("shutdown.target"));
        out.conflicts
            .extend(IMPLICIT_CONFLICTS.into_iter().filter_map(fixed));
    }
    out
}

/// What a timer with default dependencies conflicts with without saying so.
const IMPLICIT_CONFLICTS: [&str; 1] = ["shutdown.target"];

/// Whether `u` conflicts with `name` implicitly, as
/// [`implicit_dependencies`] says, without building those: a transaction
/// asks this of every loaded unit.
pub fn conflicts_implicitly(u: &Unit, name: &str) -> bool {
    u.timer.is_some() && u.unit.default_dependencies && IMPLICIT_CONFLICTS.contains(&name)
}

impl Applier<'_> {
    /// Applies one directive of a `[Timer]` section.
    pub fn apply_timer(&mut self, unit: &mut Unit, d: &Directive) {
        let key = d.key.as_str();
        let is_value = key == "OnCalendar" || MonotonicBase::from_directive(key).is_some();
        if is_value && d.value.is_empty() {
            // systemd: an empty value resets every timer value so far,
            // monotonic and calendar ones alike.
            let t = timer(unit);
            t.monotonic = ThinList::default();
            t.calendar = Box::default();
            return;
        }
        if let Some(base) = MonotonicBase::from_directive(key) {
            let Some(v) = self.expand(unit, d) else {
                return;
            };
            match parse_timespan(&v) {
                Ok(Some(offset)) => timer(unit).monotonic.push(MonotonicTimer { base, offset }),
                Ok(None) => invalid(
                    unit,
                    d,
                    "'infinity' never elapses; directive ignored".to_string(),
                ),
                Err(e) => invalid(unit, d, format!("{e}; directive ignored")),
            }
            return;
        }
        match key {
            "OnCalendar" => {
                let Some(v) = self.expand(unit, d) else {
                    return;
                };
                match CalendarSpec::parse_with_local(&v, &zone::current_local(), Timestamp::now()) {
                    Ok(spec) => {
                        let t = timer(unit);
                        // Rarely more than one: a copy each is cheaper than
                        // the room a `Vec` keeps.
                        let mut all = std::mem::take(&mut t.calendar).into_vec();
                        all.push(spec);
                        t.calendar = all.into_boxed_slice();
                    }
                    Err(e) => invalid(
                        unit,
                        d,
                        format!("{e}; try `corral calendar '{v}'`; directive ignored"),
                    ),
                }
            }
            "AccuracySec" | "RandomizedDelaySec" => {
                let span = match parse_timespan(&d.value) {
                    Ok(v) => v.unwrap_or(Duration::MAX),
                    Err(e) => return invalid(unit, d, format!("{e}; directive ignored")),
                };
                let t = timer(unit);
                if key == "AccuracySec" {
                    t.accuracy = span;
                } else {
                    t.randomized_delay = span;
                }
            }
            "FixedRandomDelay" | "Persistent" | "RemainAfterElapse" | "OnClockChange"
            | "OnTimezoneChange" => {
                let Some(b) = parse_bool(&d.value) else {
                    return invalid(
                        unit,
                        d,
                        format!(
                            "'{}' is not a boolean (use yes or no); directive ignored",
                            d.value
                        ),
                    );
                };
                let t = timer(unit);
                let field = match key {
                    "FixedRandomDelay" => &mut t.fixed_random_delay,
                    "Persistent" => &mut t.persistent,
                    "RemainAfterElapse" => &mut t.remain_after_elapse,
                    "OnClockChange" => &mut t.on_clock_change,
                    _ => &mut t.on_timezone_change,
                };
                *field = b;
            }
            "Unit" => self.trigger_unit(unit, d),
            "WakeSystem" => {
                timer(unit).wake_system = parse_bool(&d.value).unwrap_or(false);
                push_diag(
                    unit,
                    d,
                    Severity::Warning,
                    DiagnosticKind::Unsupported,
                    "unsupported: a user manager cannot wake the system from suspend; ignored"
                        .to_string(),
                );
                unit.unsupported.push(d.clone());
            }
            _ => self.unsupported(unit, d),
        }
    }

    fn expand(&self, unit: &mut Unit, d: &Directive) -> Option<String> {
        match self
            .spec
            .expand(&d.value, &unit.name, unit.fragment().as_deref())
        {
            Ok(v) => Some(v),
            Err(e) => {
                invalid(unit, d, format!("{e}; directive ignored"));
                None
            }
        }
    }

    fn trigger_unit(&self, unit: &mut Unit, d: &Directive) {
        let Some(v) = self.expand(unit, d) else {
            return;
        };
        let name = match UnitName::parse_strict(&v) {
            Ok(n) => n,
            Err(e) => return invalid(unit, d, format!("{e}; directive ignored")),
        };
        if name.kind() == UnitKind::Timer || name.is_template() {
            return invalid(
                unit,
                d,
                format!(
                    "a timer cannot trigger {name} (a timer or a template); name a service or another unit; directive ignored"
                ),
            );
        }
        let t = timer(unit);
        if t.unit.as_ref().is_some_and(|u| **u != name) {
            return invalid(
                unit,
                d,
                "more than one unit to trigger; a timer triggers one unit; directive ignored"
                    .to_string(),
            );
        }
        t.unit = Some(Box::new(name));
    }

    /// The checks of a whole `.timer` unit, after every file.
    pub(crate) fn finish_timer(&mut self, unit: &mut Unit) {
        if unit.kind() != UnitKind::Timer {
            return;
        }
        let t = timer(unit);
        // Kept for the manager's life: the first push made room for four
        // (not through an empty one, which would allocate it).
        if !t.monotonic.is_empty() {
            t.monotonic.shrink_to_fit();
        }
        if t.accuracy.is_zero() {
            // As fine as the kernel timer goes.
            t.accuracy = Duration::from_micros(1);
        }
        if t.has_values() {
            return;
        }
        let file = unit
            .fragment()
            .or_else(|| unit.dropins.first().cloned())
            .unwrap_or_else(|| unit.name.as_str().into());
        unit.diagnostics.push(Diagnostic {
            file,
            line: 0,
            directive: "[Timer]".to_string(),
            severity: Severity::Error,
            kind: DiagnosticKind::Invalid,
            message: "the timer has no OnActiveSec=, OnBootSec=, OnStartupSec=, OnUnitActiveSec=, OnUnitInactiveSec= or OnCalendar=; add when it should elapse".to_string(),
            fatal: true,
        });
    }
}

fn timer(unit: &mut Unit) -> &mut TimerSection {
    unit.timer
        .get_or_insert_with(|| TimerSection::default().into())
}

#[cfg(test)]
mod tests;
