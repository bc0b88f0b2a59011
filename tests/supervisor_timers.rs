//! `.timer` units in a real manager: monotonic and calendar elapses,
//! OnUnitActiveSec= repeats, Persistent= across a restart of the manager,
//! RandomizedDelaySec=, a missing triggered unit, timers.target and enable.
//! Each triggered service records when it ran in a file of the test's
//! temp directory.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{TestDaemon, wait_until};

/// Microseconds since the epoch.
fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

/// Where service `name` records its runs.
fn runs_file(td: &TestDaemon, name: &str) -> PathBuf {
    td.dir.path().join(format!("{name}.runs"))
}

/// A oneshot service that appends "start <µs>" (and, after `extra`,
/// "end <µs>") to its runs file.
fn write_recorder(td: &TestDaemon, name: &str, extra: &str) {
    let f = runs_file(td, name);
    let f = f.display();
    td.write_unit(
        &format!("{name}.service"),
        &format!(
            "[Service]\nType=oneshot\n\
             ExecStart=/bin/sh -c 'echo start $(date +%%s%%6N) >> {f}; {extra} echo end $(date +%%s%%6N) >> {f}'\n"
        ),
    );
}

/// The runs recorded so far: (start, end) in µs since the epoch.
fn runs(path: &Path) -> Vec<(u64, u64)> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut out = Vec::new();
    let mut start = None;
    for line in text.lines() {
        let mut w = line.split_whitespace();
        match (w.next(), w.next().and_then(|v| v.parse::<u64>().ok())) {
            (Some("start"), Some(t)) => start = Some(t),
            (Some("end"), Some(t)) => {
                if let Some(s) = start.take() {
                    out.push((s, t));
                }
            }
            _ => {}
        }
    }
    out
}

fn wait_runs(td: &TestDaemon, name: &str, n: usize, secs: u64) -> Vec<(u64, u64)> {
    let f = runs_file(td, name);
    wait_until(secs, &format!("{n} runs of {name}"), || runs(&f).len() >= n);
    runs(&f)
}

#[test]
fn on_active_sec_fires_once() {
    let Some(td) = TestDaemon::start_with(|td| {
        write_recorder(td, "tick", "");
        td.write_unit("tick.timer", "[Timer]\nOnActiveSec=1s\nAccuracySec=1ms\n");
    }) else {
        return;
    };
    let started = now_us();
    td.ok(&["start", "tick.timer"]);
    assert_eq!(td.prop("tick.timer", "ActiveState"), "active");
    let r = wait_runs(&td, "tick", 1, 10);
    assert!(
        r[0].0 >= started + 1_000_000,
        "ran {} µs after the start, before OnActiveSec=1s",
        r[0].0 - started
    );
    // A one-shot value: nothing more comes (the window is the test's
    // claim, three times the first delay).
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(runs(&runs_file(&td, "tick")).len(), 1, "{}", td.log());
    // RemainAfterElapse=yes (the default): active, elapsed.
    assert_eq!(td.prop("tick.timer", "SubState"), "elapsed");
    let j = td.journal("tick.service", &[]);
    assert!(j.stdout.contains("Triggered by tick.timer."), "{j:?}");
    td.ok(&["stop", "tick.timer"]);
    assert_eq!(td.prop("tick.timer", "ActiveState"), "inactive");
}

#[test]
fn on_unit_active_sec_repeats() {
    let Some(td) = TestDaemon::start_with(|td| {
        write_recorder(td, "rep", "");
        td.write_unit(
            "rep.timer",
            "[Timer]\nOnActiveSec=100ms\nOnUnitActiveSec=1s\nAccuracySec=1ms\n",
        );
    }) else {
        return;
    };
    td.ok(&["start", "rep.timer"]);
    let r = wait_runs(&td, "rep", 3, 20);
    // The recorded time is when the shell got to run, some ms after the
    // activation the timer counts from: each run's lag shifts the gap.
    for w in r.windows(2) {
        let gap = w[1].0 - w[0].0;
        assert!(
            gap >= 900_000,
            "runs {gap} µs apart, less than OnUnitActiveSec=1s: {r:?}"
        );
    }
    // Each run is an invocation of its own, started by the timer.
    let j = td.journal("rep.service", &[]);
    assert!(
        j.stdout.matches("Triggered by rep.timer.").count() >= 3,
        "{j:?}"
    );
    td.ok(&["stop", "rep.timer"]);
}

#[test]
fn on_unit_active_sec_skips_while_the_service_runs() {
    // The service runs 2 s; OnUnitActiveSec=500ms elapses during each run.
    let Some(td) = TestDaemon::start_with(|td| {
        write_recorder(td, "slow", "sleep 2;");
        td.write_unit(
            "slow.timer",
            "[Timer]\nOnActiveSec=100ms\nOnUnitActiveSec=500ms\nAccuracySec=1ms\n",
        );
    }) else {
        return;
    };
    td.ok(&["start", "slow.timer"]);
    let r = wait_runs(&td, "slow", 3, 30);
    // Never two runs at once: each starts after the previous one ended.
    for w in r.windows(2) {
        assert!(w[1].0 >= w[0].1, "a run started while one ran: {r:?}");
    }
    // The elapses missed while it ran did not pile up: one run at a time,
    // back to back, about one per 2 s.
    let span = r[2].0 - r[0].0;
    assert!(span >= 4_000_000, "three runs within {span} µs: {r:?}");
    td.ok(&["stop", "slow.timer"]);
}

#[test]
fn on_calendar_fires_within_accuracy() {
    let Some(td) = TestDaemon::start() else {
        return;
    };
    // A wall-clock second 2 to 3 s ahead.
    let at = (now_us() / 1_000_000 + 3) * 1_000_000;
    let when = chrono::DateTime::from_timestamp((at / 1_000_000) as i64, 0)
        .unwrap()
        .format("%Y-%m-%d %H:%M:%S UTC");
    write_recorder(&td, "cal", "");
    td.write_unit(
        "cal.timer",
        &format!("[Timer]\nOnCalendar={when}\nAccuracySec=1ms\n"),
    );
    td.ok(&["daemon-reload"]);
    td.ok(&["start", "cal.timer"]);
    // Before it elapses: the queries show when and what.
    let o = td.ok(&["list-timers"]);
    let row = o
        .stdout
        .lines()
        .find(|l| l.contains("cal.timer"))
        .unwrap_or_default();
    assert!(o.stdout.starts_with("NEXT"), "{}", o.stdout);
    assert!(
        row.ends_with("cal.service") && row.contains(" left "),
        "{}",
        o.stdout
    );
    assert!(o.stdout.contains("1 timer listed."), "{}", o.stdout);
    let o = td.ok(&["status", "cal.timer"]);
    assert!(
        o.stdout.contains("Active: active (waiting)"),
        "{}",
        o.stdout
    );
    assert!(o.stdout.contains("    Trigger: "), "{}", o.stdout);
    assert!(
        o.stdout.contains("   Triggers: cal.service"),
        "{}",
        o.stdout
    );
    let o = td.corral(&["status", "cal.service"]);
    assert!(o.stdout.contains("TriggeredBy: cal.timer"), "{o:?}");
    let r = wait_runs(&td, "cal", 1, 15);
    assert!(r[0].0 >= at, "ran {} µs early", at - r[0].0);
    // AccuracySec=1ms, plus the fork and exec of the recorder.
    assert!(
        r[0].0 - at < 500_000,
        "ran {} µs after its elapse: {}",
        r[0].0 - at,
        td.log()
    );
    // Its only elapse is spent: elapsed, not waiting.
    wait_until(5, "cal.timer elapsed", || {
        td.prop("cal.timer", "SubState") == "elapsed"
    });
}

#[test]
fn persistent_catches_up_once_after_a_restart() {
    let Some(mut td) = TestDaemon::start_with(|td| {
        write_recorder(td, "keep", "");
        td.write_unit(
            "keep.timer",
            "[Timer]\nOnCalendar=*:*:0/5\nPersistent=yes\nAccuracySec=1ms\n\
             [Install]\nWantedBy=timers.target\n",
        );
    }) else {
        return;
    };
    let units = td.units_dir();
    td.ok(&[
        "enable",
        "--units-dir",
        units.to_str().unwrap(),
        "keep.timer",
    ]);
    assert!(units.join("timers.target.wants/keep.timer").exists());
    td.ok(&["start", "keep.timer"]);
    let first = wait_runs(&td, "keep", 1, 10)[0].0;
    td.terminate();
    let stamp = td.dir.path().join("state/timers/stamp-keep.timer");
    assert!(stamp.exists(), "no stamp after a trigger");
    // Two elapses (every 5 s) pass while the manager is down.
    let missed_until = first + 11_000_000;
    std::thread::sleep(Duration::from_micros(missed_until.saturating_sub(now_us())));
    let before = runs(&runs_file(&td, "keep")).len();
    assert_eq!(before, 1);
    let restarted = now_us();
    td.relaunch();
    // timers.target started the enabled timer, and the missed run came at once.
    let r = wait_runs(&td, "keep", 2, 10);
    let catch_up = r[1].0;
    assert!(catch_up >= restarted);
    // Once: the next run is the regular one, on a 5 s boundary after it.
    let boundary = (catch_up / 5_000_000 + 1) * 5_000_000;
    std::thread::sleep(Duration::from_micros(boundary.saturating_sub(now_us())));
    let early: Vec<_> = runs(&runs_file(&td, "keep"))
        .into_iter()
        .filter(|(s, _)| *s >= restarted && *s < boundary)
        .collect();
    assert_eq!(early.len(), 1, "caught up more than once: {early:?}");
    assert_eq!(td.prop("keep.timer", "ActiveState"), "active");
    // LAST is the catch-up run's trigger.
    let o = td.ok(&["list-timers"]);
    let row = o
        .stdout
        .lines()
        .find(|l| l.contains("keep.timer"))
        .unwrap_or_default();
    assert!(row.contains(" ago "), "{}", o.stdout);
}

#[test]
fn randomized_delay_stays_in_its_bound() {
    let names = ["rnd1", "rnd2", "rnd3"];
    let Some(td) = TestDaemon::start_with(|td| {
        for n in names {
            write_recorder(td, n, "");
            td.write_unit(
                &format!("{n}.timer"),
                "[Timer]\nOnActiveSec=1s\nRandomizedDelaySec=2s\nAccuracySec=1ms\n",
            );
        }
    }) else {
        return;
    };
    let mut starts = Vec::new();
    for n in names {
        starts.push(now_us());
        td.ok(&["start", &format!("{n}.timer")]);
    }
    for (n, s) in names.iter().zip(starts) {
        let r = wait_runs(&td, n, 1, 15);
        let after = r[0].0 - s;
        // 1 s + up to 2 s of random delay, plus the fork and exec.
        assert!(
            (1_000_000..3_500_000).contains(&after),
            "{n} ran {after} µs after its start"
        );
    }
}

#[test]
fn a_timer_whose_unit_is_missing_fails_to_load() {
    let Some(td) = TestDaemon::start_with(|td| {
        td.write_unit("orphan.timer", "[Timer]\nOnActiveSec=1s\n");
    }) else {
        return;
    };
    let o = td.corral(&["start", "orphan.timer"]);
    assert_ne!(o.code, 0);
    assert!(
        o.stderr
            .contains("the unit it triggers, orphan.service, is not found"),
        "{o:?}"
    );
}
