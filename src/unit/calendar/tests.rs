//! Calendar expressions against systemd 252: the examples of
//! systemd.time(7) and next elapses `systemd-analyze calendar
//! --base-time=@1700000000 --iterations 3` printed (TZ as in each row).

use super::*;

/// systemd.time(7)'s "Examples for valid timestamps and their normalized
/// form" and shorthand table, in the page's order.
const MAN_EXAMPLES: &[(&str, &str)] = &[
    ("minutely", "*-*-* *:*:00"),
    ("hourly", "*-*-* *:00:00"),
    ("daily", "*-*-* 00:00:00"),
    ("monthly", "*-*-01 00:00:00"),
    ("weekly", "Mon *-*-* 00:00:00"),
    ("yearly", "*-01-01 00:00:00"),
    ("quarterly", "*-01,04,07,10-01 00:00:00"),
    ("semiannually", "*-01,07-01 00:00:00"),
    (
        "Sat,Thu,Mon..Wed,Sat..Sun",
        "Mon..Thu,Sat,Sun *-*-* 00:00:00",
    ),
    ("Mon,Sun 12-*-* 2,1:23", "Mon,Sun 2012-*-* 01,02:23:00"),
    ("Wed *-1", "Wed *-*-01 00:00:00"),
    ("Wed..Wed,Wed *-1", "Wed *-*-01 00:00:00"),
    ("Wed, 17:48", "Wed *-*-* 17:48:00"),
    (
        "Wed..Sat,Tue 12-10-15 1:2:3",
        "Tue..Sat 2012-10-15 01:02:03",
    ),
    ("*-*-7 0:0:0", "*-*-07 00:00:00"),
    ("10-15", "*-10-15 00:00:00"),
    ("monday *-12-* 17:00", "Mon *-12-* 17:00:00"),
    ("Mon,Fri *-*-3,1,2 *:30:45", "Mon,Fri *-*-01,02,03 *:30:45"),
    ("12,14,13,12:20,10,30", "*-*-* 12,13,14:10,20,30:00"),
    ("12..14:10,20,30", "*-*-* 12..14:10,20,30:00"),
    ("mon,fri *-1/2-1,3 *:30:45", "Mon,Fri *-01/2-01,03 *:30:45"),
    ("03-05 08:05:40", "*-03-05 08:05:40"),
    ("08:05:40", "*-*-* 08:05:40"),
    ("05:40", "*-*-* 05:40:00"),
    ("Sat,Sun 12-05 08:05:40", "Sat,Sun *-12-05 08:05:40"),
    ("Sat,Sun 08:05:40", "Sat,Sun *-*-* 08:05:40"),
    ("2003-03-05 05:40", "2003-03-05 05:40:00"),
    (
        "05:40:23.4200004/3.1700005",
        "*-*-* 05:40:23.420000/3.170001",
    ),
    ("2003-02..04-05", "2003-02..04-05 00:00:00"),
    ("2003-03-05 05:40 UTC", "2003-03-05 05:40:00 UTC"),
    ("2003-03-05", "2003-03-05 00:00:00"),
    ("03-05", "*-03-05 00:00:00"),
    ("hourly", "*-*-* *:00:00"),
    ("daily", "*-*-* 00:00:00"),
    ("daily UTC", "*-*-* 00:00:00 UTC"),
    ("monthly", "*-*-01 00:00:00"),
    ("weekly", "Mon *-*-* 00:00:00"),
    (
        "weekly Pacific/Auckland",
        "Mon *-*-* 00:00:00 Pacific/Auckland",
    ),
    ("yearly", "*-01-01 00:00:00"),
    ("annually", "*-01-01 00:00:00"),
    ("*:2/3", "*-*-* *:02/3:00"),
];

/// (local zone, expression, the next three elapses) from @1700000000
/// (Tue 2023-11-14 22:13:20 UTC).
const NEXT_ELAPSES: &[(&str, &str, &str)] = &[
    (
        "UTC",
        "minutely",
        "Tue 2023-11-14 22:14:00 UTC|Tue 2023-11-14 22:15:00 UTC|Tue 2023-11-14 22:16:00 UTC",
    ),
    (
        "UTC",
        "hourly",
        "Tue 2023-11-14 23:00:00 UTC|Wed 2023-11-15 00:00:00 UTC|Wed 2023-11-15 01:00:00 UTC",
    ),
    (
        "UTC",
        "daily",
        "Wed 2023-11-15 00:00:00 UTC|Thu 2023-11-16 00:00:00 UTC|Fri 2023-11-17 00:00:00 UTC",
    ),
    (
        "UTC",
        "weekly",
        "Mon 2023-11-20 00:00:00 UTC|Mon 2023-11-27 00:00:00 UTC|Mon 2023-12-04 00:00:00 UTC",
    ),
    (
        "UTC",
        "monthly",
        "Fri 2023-12-01 00:00:00 UTC|Mon 2024-01-01 00:00:00 UTC|Thu 2024-02-01 00:00:00 UTC",
    ),
    (
        "UTC",
        "yearly",
        "Mon 2024-01-01 00:00:00 UTC|Wed 2025-01-01 00:00:00 UTC|Thu 2026-01-01 00:00:00 UTC",
    ),
    (
        "UTC",
        "quarterly",
        "Mon 2024-01-01 00:00:00 UTC|Mon 2024-04-01 00:00:00 UTC|Mon 2024-07-01 00:00:00 UTC",
    ),
    (
        "UTC",
        "semiannually",
        "Mon 2024-01-01 00:00:00 UTC|Mon 2024-07-01 00:00:00 UTC|Wed 2025-01-01 00:00:00 UTC",
    ),
    (
        "UTC",
        "*-02~03",
        "Tue 2024-02-27 00:00:00 UTC|Wed 2025-02-26 00:00:00 UTC|Thu 2026-02-26 00:00:00 UTC",
    ),
    (
        "UTC",
        "Mon *-05~07/1",
        "Mon 2024-05-27 00:00:00 UTC|Mon 2025-05-26 00:00:00 UTC|Mon 2026-05-25 00:00:00 UTC",
    ),
    (
        "UTC",
        "Wed, 17:48",
        "Wed 2023-11-15 17:48:00 UTC|Wed 2023-11-22 17:48:00 UTC|Wed 2023-11-29 17:48:00 UTC",
    ),
    (
        "UTC",
        "Mon,Fri *-*-3,1,2 *:30:45",
        "Fri 2023-12-01 00:30:45 UTC|Fri 2023-12-01 01:30:45 UTC|Fri 2023-12-01 02:30:45 UTC",
    ),
    (
        "UTC",
        "05:40:23.4200004/3.1700005",
        "Wed 2023-11-15 05:40:23 UTC|Wed 2023-11-15 05:40:26 UTC|Wed 2023-11-15 05:40:29 UTC",
    ),
    ("UTC", "2003-03-05", "never"),
    (
        "UTC",
        "*-02-29 12:00",
        "Thu 2024-02-29 12:00:00 UTC|Tue 2028-02-29 12:00:00 UTC|Sun 2032-02-29 12:00:00 UTC",
    ),
    (
        "UTC",
        "*-*-31",
        "Sun 2023-12-31 00:00:00 UTC|Wed 2024-01-31 00:00:00 UTC|Sun 2024-03-31 00:00:00 UTC",
    ),
    (
        "UTC",
        "Fri *-*-13",
        "Fri 2024-09-13 00:00:00 UTC|Fri 2024-12-13 00:00:00 UTC|Fri 2025-06-13 00:00:00 UTC",
    ),
    (
        "UTC",
        "weekly Pacific/Auckland",
        "Sun 2023-11-19 11:00:00 UTC|Sun 2023-11-26 11:00:00 UTC|Sun 2023-12-03 11:00:00 UTC",
    ),
    (
        "UTC",
        "*-*-* 02:30 Europe/Berlin",
        "Wed 2023-11-15 01:30:00 UTC|Thu 2023-11-16 01:30:00 UTC|Fri 2023-11-17 01:30:00 UTC",
    ),
    (
        "UTC",
        "Sun *-*-1..7 1:00:00",
        "Sun 2023-12-03 01:00:00 UTC|Sun 2024-01-07 01:00:00 UTC|Sun 2024-02-04 01:00:00 UTC",
    ),
    (
        "UTC",
        "*:00/10",
        "Tue 2023-11-14 22:20:00 UTC|Tue 2023-11-14 22:30:00 UTC|Tue 2023-11-14 22:40:00 UTC",
    ),
    (
        "UTC",
        "12:00 CET",
        "Wed 2023-11-15 11:00:00 UTC|Thu 2023-11-16 11:00:00 UTC|Fri 2023-11-17 11:00:00 UTC",
    ),
    (
        "Europe/Berlin",
        "minutely",
        "Tue 2023-11-14 23:14:00 CET|Tue 2023-11-14 23:15:00 CET|Tue 2023-11-14 23:16:00 CET",
    ),
    (
        "Europe/Berlin",
        "hourly",
        "Wed 2023-11-15 00:00:00 CET|Wed 2023-11-15 01:00:00 CET|Wed 2023-11-15 02:00:00 CET",
    ),
    (
        "Europe/Berlin",
        "daily",
        "Wed 2023-11-15 00:00:00 CET|Thu 2023-11-16 00:00:00 CET|Fri 2023-11-17 00:00:00 CET",
    ),
    (
        "Europe/Berlin",
        "weekly",
        "Mon 2023-11-20 00:00:00 CET|Mon 2023-11-27 00:00:00 CET|Mon 2023-12-04 00:00:00 CET",
    ),
    (
        "Europe/Berlin",
        "monthly",
        "Fri 2023-12-01 00:00:00 CET|Mon 2024-01-01 00:00:00 CET|Thu 2024-02-01 00:00:00 CET",
    ),
    (
        "Europe/Berlin",
        "yearly",
        "Mon 2024-01-01 00:00:00 CET|Wed 2025-01-01 00:00:00 CET|Thu 2026-01-01 00:00:00 CET",
    ),
    (
        "Europe/Berlin",
        "quarterly",
        "Mon 2024-01-01 00:00:00 CET|Mon 2024-04-01 00:00:00 CEST|Mon 2024-07-01 00:00:00 CEST",
    ),
    (
        "Europe/Berlin",
        "semiannually",
        "Mon 2024-01-01 00:00:00 CET|Mon 2024-07-01 00:00:00 CEST|Wed 2025-01-01 00:00:00 CET",
    ),
    (
        "Europe/Berlin",
        "*-02~03",
        "Tue 2024-02-27 00:00:00 CET|Wed 2025-02-26 00:00:00 CET|Thu 2026-02-26 00:00:00 CET",
    ),
    (
        "Europe/Berlin",
        "Mon *-05~07/1",
        "Mon 2024-05-27 00:00:00 CEST|Mon 2025-05-26 00:00:00 CEST|Mon 2026-05-25 00:00:00 CEST",
    ),
    (
        "Europe/Berlin",
        "Wed, 17:48",
        "Wed 2023-11-15 17:48:00 CET|Wed 2023-11-22 17:48:00 CET|Wed 2023-11-29 17:48:00 CET",
    ),
    (
        "Europe/Berlin",
        "Mon,Fri *-*-3,1,2 *:30:45",
        "Fri 2023-12-01 00:30:45 CET|Fri 2023-12-01 01:30:45 CET|Fri 2023-12-01 02:30:45 CET",
    ),
    (
        "Europe/Berlin",
        "05:40:23.4200004/3.1700005",
        "Wed 2023-11-15 05:40:23 CET|Wed 2023-11-15 05:40:26 CET|Wed 2023-11-15 05:40:29 CET",
    ),
    ("Europe/Berlin", "2003-03-05", "never"),
    (
        "Europe/Berlin",
        "*-02-29 12:00",
        "Thu 2024-02-29 12:00:00 CET|Tue 2028-02-29 12:00:00 CET|Sun 2032-02-29 12:00:00 CET",
    ),
    (
        "Europe/Berlin",
        "*-*-31",
        "Sun 2023-12-31 00:00:00 CET|Wed 2024-01-31 00:00:00 CET|Sun 2024-03-31 00:00:00 CET",
    ),
    (
        "Europe/Berlin",
        "Fri *-*-13",
        "Fri 2024-09-13 00:00:00 CEST|Fri 2024-12-13 00:00:00 CET|Fri 2025-06-13 00:00:00 CEST",
    ),
    (
        "Europe/Berlin",
        "weekly Pacific/Auckland",
        "Sun 2023-11-19 12:00:00 CET|Sun 2023-11-26 12:00:00 CET|Sun 2023-12-03 12:00:00 CET",
    ),
    (
        "Europe/Berlin",
        "*-*-* 02:30 Europe/Berlin",
        "Wed 2023-11-15 02:30:00 CET|Thu 2023-11-16 02:30:00 CET|Fri 2023-11-17 02:30:00 CET",
    ),
    (
        "Europe/Berlin",
        "Sun *-*-1..7 1:00:00",
        "Sun 2023-12-03 01:00:00 CET|Sun 2024-01-07 01:00:00 CET|Sun 2024-02-04 01:00:00 CET",
    ),
    (
        "Europe/Berlin",
        "*:00/10",
        "Tue 2023-11-14 23:20:00 CET|Tue 2023-11-14 23:30:00 CET|Tue 2023-11-14 23:40:00 CET",
    ),
    (
        "Europe/Berlin",
        "12:00 CET",
        "Wed 2023-11-15 12:00:00 CET|Thu 2023-11-16 12:00:00 CET|Fri 2023-11-17 12:00:00 CET",
    ),
];

/// Around DST changes: (local zone, base seconds, expression, elapses).
const DST_ELAPSES: &[(&str, u64, &str, &str)] = &[
    (
        "Europe/Berlin",
        1711843200,
        "*-*-* 02:30",
        "Mon 2024-04-01 02:30:00 CEST|Tue 2024-04-02 02:30:00 CEST|Wed 2024-04-03 02:30:00 CEST",
    ),
    (
        "Europe/Berlin",
        1711843200,
        "*-*-* 02:30 Europe/Berlin",
        "Mon 2024-04-01 02:30:00 CEST|Tue 2024-04-02 02:30:00 CEST|Wed 2024-04-03 02:30:00 CEST",
    ),
    (
        "Europe/Berlin",
        1730000000,
        "*-*-* 02:30",
        "Mon 2024-10-28 02:30:00 CET|Tue 2024-10-29 02:30:00 CET|Wed 2024-10-30 02:30:00 CET",
    ),
    (
        "America/New_York",
        1730595600,
        "*-*-* 01:30",
        "Sun 2024-11-03 01:30:00 EDT|Mon 2024-11-04 01:30:00 EST|Tue 2024-11-05 01:30:00 EST",
    ),
    (
        "Europe/Berlin",
        1711843200,
        "*:0/30",
        "Sun 2024-03-31 01:30:00 CET|Sun 2024-03-31 03:00:00 CEST|Sun 2024-03-31 03:30:00 CEST",
    ),
    (
        "UTC",
        1711843200,
        "*-*-* 02:30 Europe/Berlin",
        "Mon 2024-04-01 00:30:00 UTC|Tue 2024-04-02 00:30:00 UTC|Wed 2024-04-03 00:30:00 UTC",
    ),
];

fn zone(name: &str) -> TimeZone {
    if name == "UTC" {
        TimeZone::UTC
    } else {
        load_zone(name).unwrap_or_else(|| panic!("{name} is not in {ZONEINFO}"))
    }
}

fn elapses(tz: &str, base_secs: u64, expr: &str, n: usize) -> String {
    let local = zone(tz);
    let now = Timestamp::from_second(base_secs as i64).unwrap();
    let spec =
        CalendarSpec::parse_with_local(expr, &local, now).unwrap_or_else(|e| panic!("{expr}: {e}"));
    let mut out = Vec::new();
    let mut t = base_secs * 1_000_000;
    for _ in 0..n {
        match spec.next_elapse(t, &local) {
            Some(next) => {
                out.push(format_timestamp(next, &local));
                t = next;
            }
            None => {
                if out.is_empty() {
                    out.push("never".to_string());
                }
                break;
            }
        }
    }
    out.join("|")
}

#[test]
fn every_example_of_the_man_page_normalizes_as_systemd_does() {
    for (expr, normalized) in MAN_EXAMPLES {
        let spec = CalendarSpec::parse_with_local(expr, &TimeZone::UTC, Timestamp::UNIX_EPOCH)
            .unwrap_or_else(|e| panic!("{expr}: {e}"));
        assert_eq!(spec.to_string(), *normalized, "{expr}");
        // The normalized form is itself an expression of the same event.
        let again =
            CalendarSpec::parse_with_local(normalized, &TimeZone::UTC, Timestamp::UNIX_EPOCH)
                .unwrap();
        assert_eq!(again.to_string(), *normalized, "{normalized}");
    }
}

#[test]
fn next_elapses_match_systemd_analyze_from_a_fixed_now() {
    for (tz, expr, want) in NEXT_ELAPSES {
        assert_eq!(elapses(tz, 1_700_000_000, expr, 3), *want, "TZ={tz} {expr}");
    }
}

#[test]
fn next_elapses_across_dst_changes_match_systemd_analyze() {
    for (tz, base, expr, want) in DST_ELAPSES {
        assert_eq!(elapses(tz, *base, expr, 3), *want, "TZ={tz} @{base} {expr}");
    }
}

#[test]
fn the_local_zone_abbreviation_picks_standard_or_daylight_time() {
    let berlin = zone("Europe/Berlin");
    let now = Timestamp::from_second(1_700_000_000).unwrap();
    let cest = CalendarSpec::parse_with_local("*-*-* 12:00 CEST", &berlin, now).unwrap();
    assert_eq!(cest.to_string(), "*-*-* 12:00:00 CEST");
    // 12:00 CEST in winter is 11:00 CET: it never exists as written
    // (systemd-analyze says "never" too).
    assert_eq!(cest.next_elapse(1_700_000_000_000_000, &berlin), None);
    let cet = CalendarSpec::parse_with_local("*-*-* 12:00 cet", &berlin, now).unwrap();
    assert_eq!(cet.to_string(), "*-*-* 12:00:00 CET");
}

#[test]
fn refusals() {
    let invalid = [
        "",
        "bogus",
        "5min",
        "UTC",
        " UTC",
        "Mon..",
        "Fri..Mon",
        "Mon-Tue-Wed",
        "Monx",
        "*-*-32",
        "*-13-01",
        "24:00",
        "*:60",
        "*:*:60",
        "1969-01-01",
        "2200-01-01",
        "*-*~29",
        "*-02~03-01",
        "12:00:00:00",
        "12",
        "12:",
        "*-*-* 12:00 Nowhere/City",
        "*-*-* 12:00 ../etc/passwd",
        "*:*:0.5..0.7",
        "*-*-1..",
        "*-04..02-01",
        "12.5:00",
        "*:*:1.",
        "daily daily",
    ];
    for e in invalid {
        let r = CalendarSpec::parse_with_local(e, &TimeZone::UTC, Timestamp::UNIX_EPOCH);
        assert!(
            matches!(r, Err(CalendarError::Invalid { .. })),
            "{e:?} gave {r:?}"
        );
    }
    for e in ["*:0/0", "99999999999999999999:00", "*:*:3000"] {
        let r = CalendarSpec::parse_with_local(e, &TimeZone::UTC, Timestamp::UNIX_EPOCH);
        assert!(
            matches!(r, Err(CalendarError::Range { .. })),
            "{e:?} gave {r:?}"
        );
    }
    let long = (0..300).map(|_| "1").collect::<Vec<_>>().join(",") + ":00";
    let r = CalendarSpec::parse_with_local(&long, &TimeZone::UTC, Timestamp::UNIX_EPOCH);
    assert!(
        matches!(r, Err(CalendarError::TooManyValues { .. })),
        "{r:?}"
    );
}

#[test]
fn a_spec_is_five_words() {
    // A spec lives as long as its timer, one per `OnCalendar=`: issue 12's
    // memory budget.
    assert_eq!(std::mem::size_of::<CalendarSpec>(), 40);
}

#[test]
fn an_epoch_timestamp_with_a_zone_is_still_in_utc() {
    let spec = CalendarSpec::parse_with_local(
        "@1700000000 Europe/Berlin",
        &TimeZone::UTC,
        Timestamp::UNIX_EPOCH,
    )
    .unwrap();
    assert_eq!(spec.to_string(), "2023-11-14 22:13:20 UTC");
    assert!(spec.is_utc());
    assert_eq!(spec.timezone(), None);
}

#[test]
fn an_epoch_timestamp_is_one_instant_in_utc() {
    let spec = CalendarSpec::parse_with_local("@1700000000", &TimeZone::UTC, Timestamp::UNIX_EPOCH)
        .unwrap();
    assert_eq!(spec.to_string(), "2023-11-14 22:13:20 UTC");
    assert_eq!(
        spec.next_elapse(0, &TimeZone::UTC),
        Some(1_700_000_000_000_000)
    );
    assert_eq!(
        spec.next_elapse(1_700_000_000_000_000, &TimeZone::UTC),
        None
    );
}

#[test]
fn fractions_of_seconds_elapse_to_the_microsecond() {
    let spec = CalendarSpec::parse_with_local("*:*:0/0.25", &TimeZone::UTC, Timestamp::UNIX_EPOCH)
        .unwrap();
    assert_eq!(spec.to_string(), "*-*-* *:*:00/0.250000");
    let base = 1_700_000_000_000_000;
    assert_eq!(spec.next_elapse(base, &TimeZone::UTC), Some(base + 250_000));
    assert_eq!(
        spec.next_elapse(base + 999_999, &TimeZone::UTC),
        Some(base + 1_000_000)
    );
}

#[test]
fn relative_times_read_as_systemd_writes_them() {
    const S: u64 = 1_000_000;
    let cases = [
        (0, "now"),
        (500, "500us left"),
        (145_000, "145ms left"),
        (14 * S, "14s left"),
        (74 * S, "1min 14s left"),
        (300 * S, "5min left"),
        (3_900 * S, "1h 5min left"),
        (23 * 3600 * S, "23h left"),
        (47 * 3600 * S, "1 day 23h left"),
        (3 * 86_400 * S, "3 days left"),
        (7 * 86_400 * S, "1 week 0 days left"),
        (15 * 86_400 * S, "2 weeks 1 day left"),
        (80 * 86_400 * S, "2 months 19 days left"),
        (430 * 86_400 * S, "1 year 2 months left"),
    ];
    let now = 1_700_000_000 * S;
    for (d, want) in cases {
        assert_eq!(format_relative(now + d, now), want, "{d}");
    }
    assert_eq!(format_relative(now - 74 * S, now), "1min 14s ago");
}

#[test]
fn the_epoch_and_leap_days_convert_both_ways() {
    for days in [-719_468, -1, 0, 1, 11_016, 19_782, 2_932_896] {
        let (y, m, d) = civil_from_days(days);
        assert_eq!(days_from_civil(y, m, d), days);
    }
    assert_eq!(civil_from_days(0), (1970, 1, 1));
    assert_eq!(civil_from_days(19_782), (2024, 2, 29));
}
