use std::path::Path;

use super::*;
use crate::unit::SpecifierContext;
use crate::unit::loader::from_text;

fn load(name: &str, text: &str) -> Unit {
    let n = UnitName::parse(name).unwrap();
    from_text(
        &n,
        Path::new(&format!("/u/{name}")),
        text,
        &SpecifierContext::current(),
    )
}

fn errors(u: &Unit) -> Vec<String> {
    u.errors().map(|d| d.to_string()).collect()
}

#[test]
fn every_directive_is_typed() {
    let u = load(
        "backup.timer",
        "[Unit]\nDescription=b\n[Timer]\nOnActiveSec=1s\nOnBootSec=15min\nOnStartupSec=2h\n\
         OnUnitActiveSec=1d\nOnUnitInactiveSec=30\nOnCalendar=daily\nOnCalendar=Mon *-*-* 09:00 UTC\n\
         AccuracySec=1ms\nRandomizedDelaySec=5min\nFixedRandomDelay=yes\nPersistent=true\n\
         Unit=other.service\nRemainAfterElapse=no\nOnClockChange=yes\nOnTimezoneChange=on\n\
         [Install]\nWantedBy=timers.target\n",
    );
    assert!(errors(&u).is_empty(), "{:?}", errors(&u));
    let t = u.timer.as_ref().unwrap();
    let mono: Vec<_> = t
        .monotonic
        .iter()
        .map(|m| (m.base, m.offset.as_secs()))
        .collect();
    assert_eq!(
        mono,
        [
            (MonotonicBase::Active, 1),
            (MonotonicBase::Boot, 900),
            (MonotonicBase::Startup, 7200),
            (MonotonicBase::UnitActive, 86_400),
            (MonotonicBase::UnitInactive, 30),
        ]
    );
    let cal: Vec<_> = t.calendar.iter().map(|c| c.to_string()).collect();
    assert_eq!(cal, ["*-*-* 00:00:00", "Mon *-*-* 09:00:00 UTC"]);
    assert_eq!(t.accuracy, Duration::from_millis(1));
    assert_eq!(t.randomized_delay, Duration::from_secs(300));
    assert!(t.fixed_random_delay && t.persistent && t.on_clock_change && t.on_timezone_change);
    assert!(!t.remain_after_elapse);
    assert_eq!(t.triggered_unit(&u.name).unwrap().as_str(), "other.service");
}

#[test]
fn defaults_are_systemds() {
    let u = load("foo@bar.timer", "[Timer]\nOnCalendar=hourly\n");
    assert!(errors(&u).is_empty(), "{:?}", errors(&u));
    let t = u.timer.as_ref().unwrap();
    assert_eq!(t.accuracy, DEFAULT_ACCURACY);
    assert_eq!(t.randomized_delay, Duration::ZERO);
    assert!(t.remain_after_elapse);
    assert!(!t.persistent && !t.fixed_random_delay && !t.on_clock_change);
    assert_eq!(
        t.triggered_unit(&u.name).unwrap().as_str(),
        "foo@bar.service"
    );
}

#[test]
fn an_empty_value_resets_every_timer_value() {
    let u = load(
        "r.timer",
        "[Timer]\nOnCalendar=daily\nOnBootSec=5\nOnActiveSec=\nOnUnitActiveSec=1h\n",
    );
    let t = u.timer.as_ref().unwrap();
    assert!(t.calendar.is_empty());
    assert_eq!(t.monotonic.len(), 1);
    assert_eq!(t.monotonic[0].base, MonotonicBase::UnitActive);
    let u = load(
        "r.timer",
        "[Timer]\nOnBootSec=5\nOnCalendar=\nOnCalendar=weekly\n",
    );
    let t = u.timer.as_ref().unwrap();
    assert!(t.monotonic.is_empty());
    assert_eq!(t.calendar.len(), 1);
}

#[test]
fn bad_values_are_errors_with_file_and_line_and_are_dropped() {
    let u = load(
        "bad.timer",
        "[Timer]\nOnCalendar=5min\nOnBootSec=soon\nPersistent=maybe\nUnit=x.timer\n\
         AccuracySec=fast\nOnActiveSec=infinity\nOnCalendar=daily\nUnit=a.service\nUnit=b.service\n",
    );
    let e = errors(&u);
    assert_eq!(e.len(), 7, "{e:?}");
    assert!(
        e[0].starts_with("/u/bad.timer:2: error: OnCalendar: '5min' is not a calendar event"),
        "{}",
        e[0]
    );
    assert!(
        e[1].starts_with("/u/bad.timer:3: error: OnBootSec:"),
        "{}",
        e[1]
    );
    assert!(
        e[2].starts_with("/u/bad.timer:4: error: Persistent:"),
        "{}",
        e[2]
    );
    assert!(
        e[3].starts_with("/u/bad.timer:5: error: Unit: a timer cannot trigger x.timer"),
        "{}",
        e[3]
    );
    assert!(
        e[4].starts_with("/u/bad.timer:6: error: AccuracySec:"),
        "{}",
        e[4]
    );
    assert!(
        e[5].starts_with("/u/bad.timer:7: error: OnActiveSec:"),
        "{}",
        e[5]
    );
    assert!(
        e[6].starts_with("/u/bad.timer:10: error: Unit: more than one unit"),
        "{}",
        e[6]
    );
    // Dropped assignments do not refuse the unit; one calendar value is left.
    assert!(u.ensure_valid().is_ok());
    let t = u.timer.as_ref().unwrap();
    assert_eq!(t.calendar.len(), 1);
    assert!(!t.persistent);
    assert_eq!(t.unit.as_ref().unwrap().as_str(), "a.service");
}

#[test]
fn a_timer_without_values_is_refused() {
    let u = load("empty.timer", "[Timer]\nPersistent=yes\n");
    let err = u.ensure_valid().unwrap_err().to_string();
    assert!(err.contains("has no OnActiveSec="), "{err}");
}

#[test]
fn wake_system_is_a_warning() {
    let u = load("w.timer", "[Timer]\nOnCalendar=daily\nWakeSystem=yes\n");
    assert!(errors(&u).is_empty());
    assert!(u.diagnostics.iter().any(|d| d.directive == "WakeSystem"
        && d.severity == Severity::Warning
        && d.kind == DiagnosticKind::Unsupported));
}

#[test]
fn implicit_dependencies_reach_the_graph() {
    let u = load("sync.timer", "[Timer]\nOnCalendar=daily\n");
    let deps = implicit_dependencies(&u);
    let names = |v: &[UnitName]| v.iter().map(|n| n.to_string()).collect::<Vec<_>>();
    assert_eq!(
        names(&deps.before),
        ["sync.service", "timers.target", "shutdown.target"]
    );
    assert_eq!(names(&deps.conflicts), ["shutdown.target"]);
    assert_eq!(names(&deps.triggers), ["sync.service"]);
    let g = crate::supervisor::graph::Deps::from_unit(&u);
    assert_eq!(
        g.before,
        ["sync.service", "timers.target", "shutdown.target"]
    );
    assert_eq!(g.triggers, ["sync.service"]);
    assert_eq!(g.conflicts, ["shutdown.target"]);

    let u = load(
        "bare.timer",
        "[Unit]\nDefaultDependencies=no\nBefore=x.target\n[Timer]\nOnActiveSec=1\nUnit=job.target\n",
    );
    let g = crate::supervisor::graph::Deps::from_unit(&u);
    assert_eq!(g.before, ["x.target", "job.target"]);
    assert!(g.conflicts.is_empty());
    assert_eq!(g.triggers, ["job.target"]);
    // Other kinds have none.
    let s = load("s.service", "[Service]\nExecStart=/bin/true\n");
    assert_eq!(implicit_dependencies(&s), TimerDependencies::default());
}

/// Timers loaded with an equal `[Timer]` share one copy; the same elapses
/// written otherwise do not (`status` shows them as written), nor other
/// values; a change makes the changed timer's own copy.
#[test]
fn equal_timer_sections_are_shared_until_one_changes() {
    let text = "[Timer]\nOnCalendar=daily\nPersistent=yes\n";
    let a = load("a.timer", text);
    let b = load("b.timer", text);
    let same_elapses = load(
        "c.timer",
        "[Timer]\nOnCalendar=*-*-* 00:00:00\nPersistent=yes\n",
    );
    let other = load("d.timer", "[Timer]\nOnCalendar=daily\n");
    let section = |u: &Unit| -> *const TimerSection { &**u.timer.as_ref().unwrap() };
    assert_eq!(section(&a), section(&b));
    // Only the parsed expression is kept, and status prints its normalized
    // form: two spellings of one expression are one section.
    assert_eq!(section(&a), section(&same_elapses));
    assert_ne!(section(&a), section(&other));
    let mut changed = b.clone();
    changed.timer.as_mut().unwrap().persistent = false;
    assert_ne!(section(&changed), section(&a));
    assert!(a.timer.as_ref().unwrap().persistent);
    assert_eq!(section(&a), section(&b));
}

#[test]
fn a_timer_section_is_nine_words() {
    // A timer's own section, as long as the manager runs: issue 12's
    // memory budget.
    assert_eq!(std::mem::size_of::<TimerSection>(), 72);
}
