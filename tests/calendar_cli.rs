//! `corral calendar` against `systemd-analyze calendar` of systemd 252:
//! the same lines for the same expressions, base times and local zones.
//! The expressions are systemd.time(7)'s, every `OnCalendar=` of the shared
//! corpus, and edge cases (DST changes, the end of the month, fractions).
//! scripts/test installs systemd-analyze (Debian package systemd); without
//! it the comparison is skipped, a failure under CORRAL_REQUIRE_CGROUP=1.

mod common;

use std::path::Path;
use std::process::Command;

use common::corpus::corpus;

const EXPRESSIONS: &[&str] = &[
    "minutely",
    "hourly",
    "daily",
    "weekly",
    "monthly",
    "yearly",
    "annually",
    "quarterly",
    "semiannually",
    "Sat,Thu,Mon..Wed,Sat..Sun",
    "Mon,Sun 12-*-* 2,1:23",
    "Wed *-1",
    "Wed..Wed,Wed *-1",
    "Wed, 17:48",
    "Wed..Sat,Tue 12-10-15 1:2:3",
    "monday *-12-* 17:00",
    "mon,fri *-1/2-1,3 *:30:45",
    "05:40:23.4200004/3.1700005",
    "2003-02..04-05",
    "2003-03-05 05:40 UTC",
    "daily UTC",
    "weekly Pacific/Auckland",
    "*:2/3",
    "*-02~03",
    "Mon *-05~07/1",
    "*-*~1/2",
    "*-02~1..3",
    "*-*-31",
    "*-02-29 12:00",
    "Fri *-*-13",
    "*-*-* 02:30",
    "*-*-* 02:30 Europe/Berlin",
    "*-*-* 01:30 America/New_York",
    "Sun *-*-* 02:00",
    "*:0/15",
    "*:*:0/0.5",
    "*-*-* *:*:1.5..5/2",
    "*:*:59.999999",
    "12:00 CET",
    "12:00 CEST",
    "12:00 EST",
    "@1700000000",
    "2199-12-31 23:59:59",
    "*-1..3/2-1",
    "bogus",
    "5min",
    "*-*-32",
];

/// (local zone, base time): around Europe's and America's DST changes, and
/// Lord Howe's half-hour one.
const BASES: &[(&str, u64)] = &[
    ("UTC", 1_700_000_000),
    ("Europe/Berlin", 1_711_843_200),
    ("Europe/Berlin", 1_729_990_000),
    ("America/New_York", 1_730_595_600),
    ("America/New_York", 1_741_478_400),
    ("Australia/Lord_Howe", 1_712_412_000),
];

/// Every `OnCalendar=` value of the corpus's `.timer` files.
fn corpus_expressions() -> Vec<String> {
    let Some(root) = corpus() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut stack = vec![root];
    while let Some(dir) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "timer") {
                let text = std::fs::read_to_string(&p).unwrap_or_default();
                for line in text.lines() {
                    if let Some(v) = line.trim().strip_prefix("OnCalendar=") {
                        let v = v.trim().to_string();
                        if !v.is_empty() && !out.contains(&v) {
                            out.push(v);
                        }
                    }
                }
            }
        }
    }
    out
}

/// stdout and stderr's first lines, without "From now" (measured from the
/// real clock, which moves between the two runs).
fn run(program: &Path, tz: &str, base: u64, exprs: &[String]) -> (String, i32) {
    let out = Command::new(program)
        .arg("calendar")
        .arg(format!("--base-time=@{base}"))
        .arg("--iterations=4")
        .args(exprs)
        .env("TZ", tz)
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", program.display()));
    let stdout: Vec<&str> = std::str::from_utf8(&out.stdout)
        .unwrap()
        .lines()
        .filter(|l| !l.trim_start().starts_with("From now:"))
        .collect();
    (stdout.join("\n"), out.status.code().unwrap_or(-1))
}

#[test]
fn corral_calendar_prints_what_systemd_analyze_prints() {
    if !common::require(
        "comparing with systemd-analyze",
        &common::missing_tools(&["systemd-analyze"]),
    ) {
        return;
    }
    let analyze = Path::new("systemd-analyze");
    let mut exprs: Vec<String> = EXPRESSIONS.iter().map(|s| s.to_string()).collect();
    let from_corpus = corpus_expressions();
    assert!(
        corpus().is_none() || !from_corpus.is_empty(),
        "the corpus has no OnCalendar="
    );
    exprs.extend(from_corpus);
    let corral = Path::new(env!("CARGO_BIN_EXE_corral"));
    for (tz, base) in BASES {
        let want = run(analyze, tz, *base, &exprs);
        let got = run(corral, tz, *base, &exprs);
        assert_eq!(got.1, want.1, "exit status, TZ={tz} @{base}");
        let (w, g): (Vec<&str>, Vec<&str>) = (want.0.lines().collect(), got.0.lines().collect());
        for (i, (w, g)) in w.iter().zip(&g).enumerate() {
            assert_eq!(g, w, "line {i}, TZ={tz} @{base}");
        }
        assert_eq!(g.len(), w.len(), "line count, TZ={tz} @{base}");
    }
}

#[test]
fn a_bad_expression_is_reported_and_exits_1_while_the_others_print() {
    let out = Command::new(env!("CARGO_BIN_EXE_corral"))
        .args([
            "calendar",
            "--base-time=@1700000000",
            "daily",
            "5min",
            "hourly",
        ])
        .env("TZ", "UTC")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.starts_with(
        "  Original form: daily\nNormalized form: *-*-* 00:00:00\n    Next elapse: Wed 2023-11-15 00:00:00 UTC\n"
    ), "{stdout}");
    assert!(
        stdout.contains("\n\n\n  Original form: hourly\n"),
        "{stdout}"
    );
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("Failed to parse calendar specification '5min': Invalid argument"),
        "{stderr}"
    );
    assert!(stderr.contains("time span"), "{stderr}");
}
