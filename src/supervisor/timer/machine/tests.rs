//! Table tests of the timer machine: each row drives it through events at
//! given clock readings and checks the state and the actions of the last.

use std::path::Path;

use super::*;
use crate::unit::loader::from_text;
use crate::unit::{SpecifierContext, UnitName};
use Event as E;
use TimerState as S;

const SEC: u64 = 1_000_000;
/// Realtime of the first event: Tue 2023-11-14 22:13:20 UTC.
const T0: u64 = 1_700_000_000 * SEC;

fn def(body: &str) -> TimerSection {
    let u = from_text(
        &UnitName::parse("t.timer").unwrap(),
        Path::new("/u/t.timer"),
        &format!("[Timer]\n{body}"),
        &SpecifierContext::current(),
    );
    assert!(u.errors().next().is_none(), "{:?}", u.diagnostics);
    u.timer.unwrap().into_inner()
}

/// Clocks `secs` seconds after the start: the manager started at
/// monotonic 100 s, the first event comes at monotonic 1000 s.
fn at(secs: u64) -> Clocks {
    Clocks {
        monotonic: (1000 + secs) * SEC,
        realtime: T0 + secs * SEC,
        manager_start: 100 * SEC,
        boot: 0,
        local: TimeZone::UTC,
        random: 0,
    }
}

fn run(d: &TimerSection, t0: Timer, steps: &[(u64, Event)]) -> (Timer, Vec<Action>) {
    let mut t = t0;
    let mut last = Vec::new();
    for (secs, e) in steps {
        let (n, a) = next(d, &t, &at(*secs), *e);
        t = n;
        last = a;
    }
    (t, last)
}

fn arm_mono(secs: u64) -> Action {
    Action::Arm(NextElapse {
        monotonic: Some((1000 + secs) * SEC).into(),
        realtime: Stamp::NONE,
    })
}

#[test]
fn on_active_sec_fires_once_then_elapses() {
    let d = def("OnActiveSec=1s\nAccuracySec=1ms\n");
    let (t, a) = run(&d, Timer::default(), &[(0, E::Start)]);
    assert_eq!((t.state, a), (S::Waiting, vec![arm_mono(1)]));
    // Woken early (coalescing never does, but a stale wake-up may): nothing.
    let (t, a) = run(&d, t, &[(0, E::Elapse)]);
    assert_eq!((t.state, a), (S::Waiting, vec![]));
    let (t, a) = run(&d, t, &[(1, E::Elapse)]);
    assert_eq!(
        (t.state, a),
        (S::Running, vec![Action::Disarm, Action::StartUnit])
    );
    let (t, _) = run(&d, t, &[(1, E::UnitActive)]);
    assert_eq!(t.state, S::Running);
    // The service ends: the one-shot value is spent, nothing is left.
    let (t, a) = run(&d, t, &[(3, E::UnitInactive)]);
    assert_eq!((t.state, a), (S::Elapsed, vec![Action::Disarm]));
    assert_eq!(*t.spent, [0]);
    // A restart of the timer arms it again.
    let (t, a) = run(&d, t, &[(10, E::Start)]);
    assert_eq!((t.state, a), (S::Waiting, vec![arm_mono(11)]));
}

#[test]
fn remain_after_elapse_no_stops_the_timer_after_its_last_elapse() {
    let d = def("OnActiveSec=1s\nRemainAfterElapse=no\n");
    let (t, a) = run(
        &d,
        Timer::default(),
        &[(0, E::Start), (1, E::Elapse), (2, E::UnitInactive)],
    );
    assert_eq!((t.state, a), (S::Dead, vec![Action::Disarm]));
}

#[test]
fn on_unit_active_sec_repeats_and_skips_while_the_unit_runs() {
    let d = def("OnActiveSec=0\nOnUnitActiveSec=10s\n");
    // Start: OnActiveSec=0 is due at once.
    let (t, a) = run(&d, Timer::default(), &[(0, E::Start)]);
    assert_eq!(
        (t.state, a),
        (S::Running, vec![Action::Disarm, Action::StartUnit])
    );
    let (t, a) = run(&d, t, &[(0, E::UnitActive)]);
    assert_eq!((t.state, a), (S::Running, vec![]));
    // Still running 25 s later: no elapse while it runs.
    let (t, a) = run(&d, t, &[(25, E::Elapse)]);
    assert_eq!((t.state, a), (S::Running, vec![]));
    // It ends: the next elapse counts from the last activation/trigger.
    let (t, a) = run(&d, t, &[(30, E::UnitInactive)]);
    assert_eq!(t.state, S::Waiting);
    assert_eq!(a, vec![arm_mono(10)]);
    // Overdue already: the manager's clock fires at once.
    let (t, a) = run(&d, t, &[(30, E::Elapse)]);
    assert_eq!(
        (t.state, a),
        (S::Running, vec![Action::Disarm, Action::StartUnit])
    );
    let (t, _) = run(&d, t, &[(30, E::UnitActive), (31, E::UnitInactive)]);
    assert_eq!(
        (t.state, t.next.monotonic),
        (S::Waiting, Some(1040 * SEC).into())
    );
}

#[test]
fn on_unit_inactive_sec_waits_for_the_unit_to_have_run() {
    let d = def("OnUnitInactiveSec=1min\n");
    // Never ran: nothing to count from, the timer stays around, elapsed.
    let (t, a) = run(&d, Timer::default(), &[(0, E::Start)]);
    assert_eq!((t.state, a), (S::Elapsed, vec![Action::Disarm]));
    // Started by hand and ended: counts from its end.
    let (t, a) = run(&d, t, &[(5, E::UnitActive), (7, E::UnitInactive)]);
    assert_eq!((t.state, a), (S::Waiting, vec![arm_mono(67)]));
}

#[test]
fn boot_and_startup_count_from_the_kernel_and_the_manager() {
    let d = def("OnBootSec=2000s\n");
    let (t, a) = run(&d, Timer::default(), &[(0, E::Start)]);
    assert_eq!(
        (t.state, a),
        (
            S::Waiting,
            vec![Action::Arm(NextElapse {
                monotonic: Some(2000 * SEC).into(),
                realtime: Stamp::NONE
            })]
        )
    );
    // OnStartupSec=5min after a manager started at 100 s: overdue at 1000 s.
    let d = def("OnStartupSec=5min\n");
    let (t, a) = run(&d, Timer::default(), &[(0, E::Start)]);
    assert_eq!(
        (t.state, a),
        (S::Running, vec![Action::Disarm, Action::StartUnit])
    );
}

#[test]
fn on_calendar_arms_the_realtime_clock_and_fires_within_accuracy() {
    let d = def("OnCalendar=*-*-* 22:15:00 UTC\nAccuracySec=1ms\n");
    let (t, a) = run(&d, Timer::default(), &[(0, E::Start)]);
    let elapse = T0 + 100 * SEC;
    assert_eq!(
        (t.state, a),
        (
            S::Waiting,
            vec![Action::Arm(NextElapse {
                monotonic: Stamp::NONE,
                realtime: Some(elapse).into()
            })]
        )
    );
    // The one kernel timer wakes within [elapse, elapse + 1ms].
    let wake = coalesce(&[(elapse, d.accuracy.as_micros() as u64)], 17).unwrap();
    assert!((elapse..=elapse + 1000).contains(&wake), "{wake}");
    let (t, a) = run(&d, t, &[(100, E::Elapse)]);
    assert_eq!(
        (t.state, a),
        (S::Running, vec![Action::Disarm, Action::StartUnit])
    );
    assert_eq!(t.last_trigger_realtime.get(), Some(elapse));
    // After the run, the next day.
    let (t, a) = run(&d, t, &[(160, E::UnitInactive)]);
    assert_eq!(
        (t.state, a),
        (
            S::Waiting,
            vec![Action::Arm(NextElapse {
                monotonic: Stamp::NONE,
                realtime: Some(elapse + 86_400 * SEC).into()
            })]
        )
    );
}

#[test]
fn persistent_catches_up_once_after_a_missed_elapse() {
    let d = def("OnCalendar=*-*-* 12:00:00 UTC\nPersistent=yes\n");
    // The stamp says it last ran yesterday's noon; today's noon
    // (2023-11-14 12:00, before T0) was missed while the manager was down.
    let yesterday_noon = T0 - (10 * 3600 + 13 * 60 + 20) * SEC - 86_400 * SEC;
    let t = Timer {
        last_trigger_realtime: yesterday_noon.into(),
        ..Timer::default()
    };
    let (t, a) = run(&d, t, &[(0, E::Start)]);
    assert_eq!(
        (t.state, a),
        (
            S::Running,
            vec![Action::Disarm, Action::StartUnit, Action::WriteStamp(T0)]
        )
    );
    // Once: after that run the next elapse is tomorrow's noon.
    let (t, _) = run(&d, t, &[(5, E::UnitInactive)]);
    let tomorrow_noon = yesterday_noon + 3 * 86_400 * SEC - 86_400 * SEC;
    assert_eq!(
        (t.state, t.next.realtime),
        (S::Waiting, Some(tomorrow_noon).into())
    );
    // Without a stamp (first start), nothing is missed.
    let (t, _) = run(&d, Timer::default(), &[(0, E::Start)]);
    assert_eq!(t.state, S::Waiting);
}

#[test]
fn randomized_delay_stays_within_its_bound() {
    let d = def("OnActiveSec=10s\nRandomizedDelaySec=30s\n");
    for random in [
        0,
        1,
        29_999_999,
        30_000_000,
        u64::MAX,
        0x1234_5678_9abc_def0,
    ] {
        let c = Clocks { random, ..at(0) };
        let got = compute_next(&d, &Timer::default(), &c, false)
            .next
            .monotonic
            .get()
            .unwrap();
        let base = (1000 + 10) * SEC;
        assert!((base..base + 30 * SEC).contains(&got), "{random}: {got}");
    }
    // FixedRandomDelay=: the same inputs give the same delay; another unit another.
    let id = [7u8; 16];
    assert_eq!(
        fixed_delay_hash(&id, false, 1000, "a.timer"),
        fixed_delay_hash(&id, false, 1000, "a.timer")
    );
    assert_ne!(
        fixed_delay_hash(&id, false, 1000, "a.timer"),
        fixed_delay_hash(&id, false, 1000, "b.timer")
    );
    assert_ne!(
        fixed_delay_hash(&id, false, 1000, "a.timer"),
        fixed_delay_hash(&id, false, 1001, "a.timer")
    );
}

#[test]
fn clock_and_zone_changes() {
    let d = def("OnCalendar=*-*-* 22:15:00\n");
    let (t, _) = run(&d, Timer::default(), &[(0, E::Start)]);
    // The clock jumps an hour back: the same elapse, recomputed, is still 22:15.
    let (t2, a) = run(&d, t.clone(), &[(0, E::ClockChanged)]);
    assert_eq!((t2.state, a.len()), (S::Waiting, 1));
    // A zone change moves a local calendar time.
    let mut c = at(0);
    c.local = crate::unit::calendar::load_zone("Europe/Berlin").unwrap();
    let (t3, _) = next(&d, &t, &c, E::TimezoneChanged);
    assert_eq!(
        t3.next.realtime,
        Some(T0 + 86_400 * SEC - 3600 * SEC + 100 * SEC).into()
    );
    // With OnClockChange= / OnTimezoneChange= the change triggers the unit.
    let d = def("OnCalendar=daily\nOnClockChange=yes\nOnTimezoneChange=yes\n");
    let (t, _) = run(&d, Timer::default(), &[(0, E::Start)]);
    let (t, a) = run(&d, t, &[(1, E::ClockChanged)]);
    assert_eq!(
        (t.state, a),
        (S::Running, vec![Action::Disarm, Action::StartUnit])
    );
    let (t, _) = run(&d, t, &[(2, E::UnitInactive)]);
    let (_, a) = run(&d, t, &[(3, E::TimezoneChanged)]);
    assert_eq!(a, vec![Action::Disarm, Action::StartUnit]);
}

#[test]
fn stop_and_failure() {
    let d = def("OnActiveSec=1s\n");
    let (t, a) = run(&d, Timer::default(), &[(0, E::Start), (0, E::Stop)]);
    assert_eq!((t.state, a), (S::Dead, vec![Action::Disarm]));
    let (t, a) = run(
        &d,
        Timer::default(),
        &[(0, E::Start), (1, E::Elapse), (1, E::UnitStartFailed)],
    );
    assert_eq!((t.state, a), (S::Failed, vec![Action::Disarm]));
    // A failed timer starts again.
    let (t, _) = run(&d, t, &[(5, E::Start)]);
    assert_eq!(t.state, S::Waiting);
    // Events that do not apply change nothing.
    let (t, a) = run(&d, Timer::default(), &[(0, E::Elapse)]);
    assert_eq!((t.state, a), (S::Dead, vec![]));
}

#[test]
fn coalescing_wakes_once_for_timers_whose_windows_overlap() {
    const MIN: u64 = 60 * SEC;
    // Two timers due at 10:00:05 and 10:00:40 with the default minute of
    // accuracy: one wake-up serves both, inside both windows.
    let t0 = 1_700_000_000 * SEC / MIN * MIN;
    let timers = [(t0 + 5 * SEC, MIN), (t0 + 40 * SEC, MIN)];
    let w = coalesce(&timers, 0).unwrap();
    assert_eq!(w, t0 + MIN);
    assert!(timers.iter().all(|(e, a)| *e <= w + 35 * SEC && w <= e + a));
    // The per-machine perturbation shifts the point within the window.
    assert_eq!(coalesce(&timers, 3 * SEC).unwrap(), t0 + MIN + 3 * SEC);
    // Windows without a whole second in common: the latest allowed point.
    assert_eq!(coalesce(&[(t0 + 100, 10)], 0), Some(t0 + 110));
    // 1us accuracy: exactly at the elapse.
    assert_eq!(coalesce(&[(t0 + 7, 1)], 0), Some(t0 + 7));
    assert_eq!(coalesce(&[], 0), None);
}
