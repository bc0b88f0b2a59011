//! `.timer` units in a real manager: monotonic and calendar elapses
//! (OnActiveSec=, OnBootSec=, OnStartupSec=, OnUnitActiveSec=, OnCalendar=),
//! Persistent= across a restart of the manager, RandomizedDelaySec= and
//! FixedRandomDelay=, RemainAfterElapse=, a change of the time zone
//! (OnTimezoneChange=), `show` of a timer against a golden file, a missing
//! triggered unit, timers.target and enable.
//! Each triggered service records when it ran in a file of the test's
//! temp directory.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{TestDaemon, golden, wait_until};
use corral::unit::calendar::{CalendarSpec, format_timestamp};
use jiff::tz::TimeZone;
use regex::Regex;

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
    wait_runs(&td, "rep", 3, 20);
    // Each run is an invocation of its own, started by the timer, whose
    // "Triggered by" line the manager writes when the timer elapses, just
    // before the activation the next elapse counts from. (The time each
    // run's shell records lags by as much as the machine's load: under a
    // build, two such lags made a gap look short.)
    let j = td.journal("rep.service", &["-o", "json"]);
    let triggered: Vec<u64> = j
        .stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["MESSAGE"] == "rep.service: Triggered by rep.timer.")
        .map(|v| v["__REALTIME_TIMESTAMP"].as_str().unwrap().parse().unwrap())
        .collect();
    assert!(triggered.len() >= 3, "{j:?}");
    for w in triggered.windows(2) {
        let gap = w[1] - w[0];
        // 1 ms for the realtime stamps against the monotonic timer.
        assert!(
            gap >= 999_000,
            "elapses {gap} µs apart, less than OnUnitActiveSec=1s: {triggered:?}"
        );
    }
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

#[test]
fn on_boot_sec_already_past_fires_at_once() {
    // The machine booted long before the test: as systemd, a boot-relative
    // value in the past elapses at the timer's start.
    let Some(td) = TestDaemon::start_with(|td| {
        write_recorder(td, "boot", "");
        td.write_unit("boot.timer", "[Timer]\nOnBootSec=1s\nAccuracySec=1ms\n");
    }) else {
        return;
    };
    let started = now_us();
    td.ok(&["start", "boot.timer"]);
    let r = wait_runs(&td, "boot", 1, 10);
    assert!(r[0].0 >= started, "{r:?}");
    // Spent: nothing is left to elapse, and RemainAfterElapse=yes keeps it.
    wait_until(5, "boot.timer elapsed", || {
        td.prop("boot.timer", "SubState") == "elapsed"
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(runs(&runs_file(&td, "boot")).len(), 1, "{}", td.log());
}

#[test]
fn on_startup_sec_counts_from_the_manager_start() {
    let before = now_us();
    let Some(td) = TestDaemon::start_with(|td| {
        write_recorder(td, "up", "");
        td.write_unit("up.timer", "[Timer]\nOnStartupSec=3s\nAccuracySec=1ms\n");
    }) else {
        return;
    };
    let ready = now_us();
    // Started 1.5 s after the manager: it still elapses 3 s after the
    // manager's start, not 3 s after its own.
    std::thread::sleep(Duration::from_millis(1500));
    let started = now_us();
    td.ok(&["start", "up.timer"]);
    let r = wait_runs(&td, "up", 1, 15);
    assert!(
        r[0].0 >= before + 3_000_000,
        "ran {} µs after the manager was launched, before OnStartupSec=3s",
        r[0].0 - before
    );
    assert!(
        r[0].0 < ready + 4_000_000 && r[0].0 < started + 3_000_000,
        "ran {} µs after the timer's start: counted from the timer, not the manager",
        r[0].0 - started
    );
}

#[test]
fn remain_after_elapse_no_goes_inactive_after_the_last_elapse() {
    let Some(td) = TestDaemon::start_with(|td| {
        for (name, remain) in [("stay", "yes"), ("go", "no")] {
            write_recorder(td, name, "");
            td.write_unit(
                &format!("{name}.timer"),
                &format!(
                    "[Timer]\nOnActiveSec=300ms\nAccuracySec=1ms\nRemainAfterElapse={remain}\n"
                ),
            );
        }
    }) else {
        return;
    };
    td.ok(&["start", "stay.timer", "go.timer"]);
    wait_runs(&td, "stay", 1, 10);
    wait_runs(&td, "go", 1, 10);
    wait_until(5, "go.timer inactive", || {
        td.prop("go.timer", "ActiveState") == "inactive"
    });
    assert_eq!(td.prop("go.timer", "SubState"), "dead");
    assert_eq!(td.prop("go.timer", "Result"), "success");
    wait_until(5, "stay.timer elapsed", || {
        td.prop("stay.timer", "SubState") == "elapsed"
    });
    assert_eq!(td.prop("stay.timer", "ActiveState"), "active");
    // A start arms the gone one afresh.
    td.ok(&["start", "go.timer"]);
    wait_runs(&td, "go", 2, 10);
}

#[test]
fn fixed_random_delay_is_the_same_across_manager_restarts() {
    // A day of random delay on an elapse far ahead: the fixed one lands on
    // the same second after a restart, a fresh one (almost surely) not.
    let Some(mut td) = TestDaemon::start_with(|td| {
        for (name, fixed) in [("fixed", "yes"), ("fresh", "no")] {
            write_recorder(td, name, "");
            td.write_unit(
                &format!("{name}.timer"),
                &format!(
                    "[Timer]\nOnCalendar=2099-01-01 00:00:00 UTC\n\
                     RandomizedDelaySec=1d\nFixedRandomDelay={fixed}\n"
                ),
            );
        }
    }) else {
        return;
    };
    let next = |td: &TestDaemon| {
        td.ok(&["start", "fixed.timer", "fresh.timer"]);
        (
            td.prop("fixed.timer", "NextElapseUSecRealtime"),
            td.prop("fresh.timer", "NextElapseUSecRealtime"),
        )
    };
    let first = next(&td);
    td.restart();
    let second = next(&td);
    assert_eq!(first.0, second.0, "FixedRandomDelay=yes moved the elapse");
    assert_ne!(first.1, second.1, "a fresh random delay came out the same");
    // Within its bound: from the elapse to a day after it.
    let base = 4_070_908_800_000_000u64; // 2099-01-01 00:00:00 UTC
    let tz = TimeZone::system();
    let within = (0..86_400u64)
        .map(|s| format_timestamp(base + s * 1_000_000, &tz))
        .any(|t| t == first.0);
    assert!(within, "{} is not within a day after {base}", first.0);
}

/// Makes `link` name `zone` of the tz database, as timedatectl replaces
/// /etc/localtime: a new symlink renamed over the old one.
fn set_zone(link: &Path, zone: &str) {
    let tmp = link.with_extension("new");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(Path::new("/usr/share/zoneinfo").join(zone), &tmp).unwrap();
    std::fs::rename(&tmp, link).unwrap();
}

/// The next 03:00 in `zone` after now, as `show` prints it.
fn next_3am(zone: &str) -> String {
    let spec = CalendarSpec::parse(&format!("*-*-* 03:00:00 {zone}")).unwrap();
    let at = spec.next_elapse(now_us(), &TimeZone::UTC).unwrap();
    format_timestamp(at, &TimeZone::system())
}

#[test]
fn a_time_zone_change_moves_calendar_elapses_and_triggers_on_timezone_change() {
    // The manager reads its zone from a file of the test's (never the
    // machine's /etc/localtime), named by CORRAL_LOCALTIME.
    let zones = tempfile::tempdir().unwrap();
    let link = zones.path().join("localtime");
    set_zone(&link, "Europe/Berlin");
    let Some(td) = TestDaemon::start_configured(
        |td| {
            for (name, on_change) in [("tzt", "yes"), ("tzc", "no")] {
                write_recorder(td, name, "");
                td.write_unit(
                    &format!("{name}.timer"),
                    &format!(
                        "[Timer]\nOnCalendar=*-*-* 03:00:00\nAccuracySec=1ms\n\
                         OnTimezoneChange={on_change}\n"
                    ),
                );
            }
        },
        &[],
        |cmd| {
            cmd.env("CORRAL_LOCALTIME", &link).env_remove("TZ");
        },
    ) else {
        return;
    };
    td.ok(&["start", "tzt.timer", "tzc.timer"]);
    // 03:00 without a zone is the manager's zone's.
    assert_eq!(
        td.prop("tzc.timer", "NextElapseUSecRealtime"),
        next_3am("Europe/Berlin")
    );
    set_zone(&link, "Asia/Tokyo");
    // OnTimezoneChange=yes: the change triggers the unit.
    let r = wait_runs(&td, "tzt", 1, 10);
    assert_eq!(r.len(), 1);
    // Both now elapse at 03:00 in Tokyo.
    wait_until(5, "tzc.timer recomputed in Asia/Tokyo", || {
        td.prop("tzc.timer", "NextElapseUSecRealtime") == next_3am("Asia/Tokyo")
    });
    wait_until(5, "tzt.timer waiting in Asia/Tokyo", || {
        td.prop("tzt.timer", "NextElapseUSecRealtime") == next_3am("Asia/Tokyo")
    });
    assert!(runs(&runs_file(&td, "tzc")).is_empty(), "{}", td.log());
    let j = td.journal("tzt.service", &[]);
    assert!(j.stdout.contains("Triggered by tzt.timer."), "{j:?}");
    // Touching other files of the directory is no change of zone.
    std::fs::write(zones.path().join("other"), "x").unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(runs(&runs_file(&td, "tzt")).len(), 1, "{}", td.log());
}

#[test]
fn show_of_a_timer_has_systemds_timer_properties() {
    let Some(td) = TestDaemon::start_with(|td| {
        write_recorder(td, "work", "");
        td.write_unit(
            "gold.timer",
            "[Timer]\nOnActiveSec=1h\nOnUnitActiveSec=30min\n\
             OnCalendar=2099-01-01 00:00:00 UTC\nOnCalendar=Mon 12:00\n\
             AccuracySec=5s\nRandomizedDelaySec=90s\nPersistent=yes\n\
             RemainAfterElapse=no\nOnClockChange=yes\nWakeSystem=yes\n\
             Unit=work.service\n",
        );
    }) else {
        return;
    };
    td.ok(&["start", "gold.timer"]);
    let props = "Unit,TimersMonotonic,TimersCalendar,OnClockChange,OnTimezoneChange,\
                 NextElapseUSecRealtime,NextElapseUSecMonotonic,LastTriggerUSec,\
                 LastTriggerUSecMonotonic,Result,AccuracyUSec,RandomizedDelayUSec,\
                 FixedRandomDelay,Persistent,WakeSystem,RemainAfterElapse,Id,ActiveState,SubState";
    let o = td.ok(&["show", "gold.timer", "-p", props]);
    let mut s = o.stdout;
    // What moves from run to run: instants (the random delay, the
    // calendar's next Monday) and boot-relative spans.
    for (re, rep) in [
        (
            r"[A-Z][a-z]{2} \d{4}-\d\d-\d\d \d\d:\d\d:\d\d \S+",
            "<TIME>",
        ),
        // A span that is not "0" (a value never computed).
        (r"next_elapse=[1-9][^}]*\}", "next_elapse=<SPAN> }"),
        (
            r"(?m)^NextElapseUSecMonotonic=\d.*$",
            "NextElapseUSecMonotonic=<SPAN>",
        ),
    ] {
        s = Regex::new(re).unwrap().replace_all(&s, rep).into_owned();
    }
    golden("show-timer.txt", &s);
    // --json keeps every value of the repeated properties.
    let j: serde_json::Value =
        serde_json::from_str(&td.ok(&["show", "gold.timer", "--json"]).stdout).unwrap();
    let calendar = j[0]["TimersCalendar"].as_array().expect("an array");
    assert_eq!(calendar.len(), 2, "{j}");
    assert!(
        calendar[0]
            .as_str()
            .unwrap()
            .contains("OnCalendar=2099-01-01 00:00:00 UTC"),
        "{j}"
    );
    assert!(
        calendar[1]
            .as_str()
            .unwrap()
            .contains("OnCalendar=Mon *-*-* 12:00:00"),
        "{j}"
    );
    assert_eq!(
        j[0]["TimersMonotonic"].as_array().map(Vec::len),
        Some(2),
        "{j}"
    );
}
