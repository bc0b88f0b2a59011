//! `corral calendar`'s work per expression, from a fixed instant in a
//! fixed zone: parsing and normalising (`CalendarSpec::parse_with_local`
//! and its `Display`), and the next elapse (`next_elapse`) and ten of
//! them, for expressions of systemd.time(7)'s kinds (shorthands, weekday
//! ranges, lists and repetitions, `~`, seconds with fractions, a zone).
//! scripts/bench-timers.sh times the whole CLI beside
//! `systemd-analyze calendar`.

use std::hint::black_box;

use corral::unit::calendar::CalendarSpec;
use criterion::{Criterion, criterion_group, criterion_main};
use jiff::Timestamp;
use jiff::tz::TimeZone;

/// The expressions measured, by a short name.
const EXPRS: &[(&str, &str)] = &[
    ("daily", "daily"),
    ("weekdays", "Mon..Fri *-*-* 09:00"),
    ("lists", "Sat,Sun 2026..2030-01,7-1..7 00/6:00"),
    ("repeat", "*:0/15"),
    ("last-day", "*-*~01 04:00"),
    ("fraction", "*:*:12.345678"),
    ("zone", "Mon *-*-* 09:00 Europe/Berlin"),
    ("leap-day", "*-02-29 12:00"),
];

fn calendar(c: &mut Criterion) {
    let local = TimeZone::get("Europe/Berlin").expect("Europe/Berlin in the tz database");
    // 2026-12-07 10:00:00 UTC.
    let now = Timestamp::from_second(1_796_637_600).expect("a valid instant");
    let from = now.as_microsecond() as u64;
    let mut g = c.benchmark_group("calendar");
    for (name, expr) in EXPRS {
        g.bench_function(format!("parse+normalize/{name}"), |b| {
            b.iter(|| {
                let spec = CalendarSpec::parse_with_local(black_box(expr), &local, now)
                    .expect("a valid expression");
                spec.to_string()
            })
        });
        let spec = CalendarSpec::parse_with_local(expr, &local, now).expect("a valid expression");
        g.bench_function(format!("next-elapse/{name}"), |b| {
            b.iter(|| spec.next_elapse(black_box(from), &local))
        });
        g.bench_function(format!("10-elapses/{name}"), |b| {
            b.iter(|| {
                let mut t = black_box(from);
                for _ in 0..10 {
                    match spec.next_elapse(t, &local) {
                        Some(n) => t = n,
                        None => break,
                    }
                }
                t
            })
        });
    }
    g.finish();
}

criterion_group!(benches, calendar);
criterion_main!(benches);
