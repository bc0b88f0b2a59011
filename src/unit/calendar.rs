//! Calendar event expressions (`OnCalendar=`, `corral calendar`) as
//! systemd.time(7) of systemd 252 defines them: parsing, the normalized form
//! `systemd-analyze calendar` prints, and the next elapse after an instant.
//!
//! The next elapse is searched field by field (year, month, day, weekday,
//! hour, minute, seconds) on broken-down civil time, normalising through the
//! expression's time zone after each step the way `mktime(3)` does for
//! systemd: a civil time that does not exist (a DST gap, the 31st of a short
//! month) normalises forward and the search goes on from there. Time zones
//! come from the tz database on the machine (/usr/share/zoneinfo) through
//! jiff; the arithmetic on civil dates is this module's own.

use std::fmt::{self, Write as _};

use jiff::Timestamp;
use jiff::tz::{AmbiguousOffset, TimeZone};

/// Microseconds per second.
const USEC_PER_SEC: i64 = 1_000_000;
/// All seven weekday bits (Monday = bit 0).
const BITS_WEEKDAYS: u8 = 127;
/// The first year an expression may name.
const MIN_YEAR: i64 = 1970;
/// The last year an expression may name; the search gives up beyond it.
const MAX_YEAR: i64 = 2199;
/// Values one field may list (systemd's CALENDARSPEC_COMPONENTS_MAX).
const COMPONENTS_MAX: usize = 240;
/// Search steps before giving up on an expression that cannot settle.
const MAX_ITERATIONS: usize = 1000;
/// Where the tz database is read from.
const ZONEINFO: &str = "/usr/share/zoneinfo";

/// Why an expression was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CalendarError {
    /// Not a calendar expression.
    #[error(
        "'{expr}' is not a calendar event: {why} (see systemd.time(7); e.g. daily, Mon *-*-* 09:00, *-*-01 04:00 UTC)"
    )]
    Invalid {
        /// The expression as given.
        expr: String,
        /// What is wrong.
        why: &'static str,
    },
    /// A number does not fit.
    #[error("'{expr}' is not a calendar event: a number is out of range")]
    Range {
        /// The expression as given.
        expr: String,
    },
    /// One field lists too many values.
    #[error("'{expr}' is not a calendar event: a field lists more than {COMPONENTS_MAX} values")]
    TooManyValues {
        /// The expression as given.
        expr: String,
    },
}

impl CalendarError {
    /// The text systemd prints for the same refusal (its errno's message).
    pub fn errno_text(&self) -> &'static str {
        match self {
            CalendarError::Invalid { .. } => "Invalid argument",
            CalendarError::Range { .. } => "Numerical result out of range",
            CalendarError::TooManyValues { .. } => "No buffer space available",
        }
    }
}

/// How parsing failed, before the expression is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fail {
    Invalid(&'static str),
    Range,
    TooMany,
}

type Parsed<T> = Result<T, Fail>;

/// One value, range or repetition of a field: `start[..stop][/repeat]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Component {
    /// The first value (microseconds for the seconds field).
    pub start: i64,
    /// The last value of a range, -1 when open.
    pub stop: i64,
    /// The step; 0 for a single value.
    pub repeat: i64,
}

/// A component as a parsed spec keeps it: once validated every value fits
/// an `i32` (years up to 2199, seconds below 60 000 000 µs), half the room
/// of [`Component`] in a spec that lives as long as its timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Packed {
    start: i32,
    stop: i32,
    repeat: i32,
}

impl Packed {
    fn get(self) -> Component {
        Component {
            start: self.start.into(),
            stop: self.stop.into(),
            repeat: self.repeat.into(),
        }
    }

    fn pack(c: &Component) -> Parsed<Packed> {
        let n = |v: i64| i32::try_from(v).map_err(|_| Fail::Range);
        Ok(Packed {
            start: n(c.start)?,
            stop: n(c.stop)?,
            repeat: n(c.repeat)?,
        })
    }
}

/// `Area/City`, loaded from the tz database when parsed.
#[derive(Debug, Clone)]
struct NamedZone(Box<str>, TimeZone);

// A named zone is the zone of that name in the tz database: the name says
// which (the database is read once per name while the manager runs).
impl PartialEq for NamedZone {
    fn eq(&self, other: &NamedZone) -> bool {
        self.0 == other.0
    }
}

impl Eq for NamedZone {}

impl std::hash::Hash for NamedZone {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

/// The parts of an expression few have, boxed only when present.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Rare {
    /// The zone it names (never with UTC).
    named: Option<NamedZone>,
    /// The local zone's abbreviation was given: standard (false) or
    /// daylight (true) time, with its name.
    dst: Option<(bool, Box<str>)>,
}

/// A parsed calendar event expression: 40 B and one allocation for most
/// (a spec lives as long as its timer: issue 12's memory budget).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CalendarSpec {
    /// The components of year, month, day, hour, minute and second (in
    /// microseconds), one field after the other: one allocation where six
    /// vectors took 144 B and three allocations for `daily`.
    components: Box<[Packed]>,
    /// A named zone or the local zone's abbreviation, when given.
    rare: Option<Box<Rare>>,
    /// Where each field's components end in `components`.
    ends: [u16; 6],
    /// Weekday bits, Monday = bit 0; 0 for every day.
    weekdays: u8,
    /// `~`: days count from the end of the month.
    end_of_month: bool,
    /// The civil times are in UTC (else the named or the local zone).
    utc: bool,
}

/// Broken-down civil time, normalised like `struct tm` (month 0-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Tm {
    year: i64,
    mon: i64,
    mday: i64,
    hour: i64,
    min: i64,
    sec: i64,
}

/// Days since 1970-01-01 of a proleptic Gregorian date (month 1-based).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date (year, month 1-based, day) of a day count since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Years a computation may reach; beyond them the zone data cannot follow.
const YEAR_LIMIT: i64 = 9000;

impl Tm {
    /// Seconds since the epoch of this civil time read as UTC, with every
    /// field carried over as `timegm(3)` does; `None` far out of range.
    fn local_seconds(&self) -> Option<i64> {
        let mon_total = self.year.checked_mul(12)?.checked_add(self.mon)?;
        let year = mon_total.div_euclid(12);
        let mon = mon_total.rem_euclid(12);
        if !(-YEAR_LIMIT..=YEAR_LIMIT).contains(&year) {
            return None;
        }
        let days = days_from_civil(year, mon + 1, 1).checked_add(self.mday.checked_sub(1)?)?;
        days.checked_mul(86_400)?
            .checked_add(self.hour.checked_mul(3600)?)?
            .checked_add(self.min.checked_mul(60)?)?
            .checked_add(self.sec)
    }

    fn from_local_seconds(s: i64) -> Tm {
        let days = s.div_euclid(86_400);
        let rem = s.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        Tm {
            year: y,
            mon: m - 1,
            mday: d,
            hour: rem / 3600,
            min: rem % 3600 / 60,
            sec: rem % 60,
        }
    }

    /// Monday = 0 .. Sunday = 6, of a normalised time.
    fn weekday(&self) -> i64 {
        let days = days_from_civil(self.year, self.mon + 1, self.mday);
        (days + 3).rem_euclid(7)
    }
}

/// What `mktime(3)` needs: the zone and, when the expression named the
/// local zone's abbreviation, which of its offsets to use.
struct Zone<'a> {
    tz: Option<&'a TimeZone>,
    dst: Option<bool>,
}

impl Zone<'_> {
    fn offset_at(&self, instant: i64) -> i64 {
        match self.tz {
            None => 0,
            Some(tz) => Timestamp::from_second(instant)
                .map(|t| i64::from(tz.to_offset(t).seconds()))
                .unwrap_or(0),
        }
    }

    /// The offset of the wanted kind (standard or daylight) nearest to
    /// `around`, as glibc's `mktime` looks for one when `tm_isdst` is set
    /// and does not match the time.
    fn offset_of_kind(tz: &TimeZone, around: Timestamp, dst: bool) -> Option<i64> {
        let here = tz.to_offset_info(around);
        if here.dst().is_dst() == dst {
            return Some(i64::from(here.offset().seconds()));
        }
        let before = tz
            .preceding(around)
            .take(8)
            .find(|t| t.dst().is_dst() == dst)
            .map(|t| i64::from(t.offset().seconds()));
        before.or_else(|| {
            tz.following(around)
                .take(8)
                .find(|t| t.dst().is_dst() == dst)
                .map(|t| i64::from(t.offset().seconds()))
        })
    }

    /// `mktime(3)`/`timegm(3)`: the instant of a civil time, and that time
    /// normalised. A time in a DST gap is read with the offset before the
    /// gap (so it moves forward), one in a fold as the earlier instant.
    fn mktime(&self, tm: &Tm) -> Option<(i64, Tm)> {
        let local = tm.local_seconds()?;
        let Some(tz) = self.tz else {
            return Some((local, Tm::from_local_seconds(local)));
        };
        let offset = match self.dst {
            Some(dst) => {
                Self::offset_of_kind(tz, Timestamp::from_second(local).ok()?, dst).unwrap_or(0)
            }
            None => {
                let (y, mo, d) = civil_from_days(local.div_euclid(86_400));
                let rem = local.rem_euclid(86_400);
                let dt = jiff::civil::DateTime::new(
                    i16::try_from(y).ok()?,
                    mo as i8,
                    d as i8,
                    (rem / 3600) as i8,
                    (rem % 3600 / 60) as i8,
                    (rem % 60) as i8,
                    0,
                )
                .ok()?;
                match tz.to_ambiguous_timestamp(dt).offset() {
                    AmbiguousOffset::Unambiguous { offset } => i64::from(offset.seconds()),
                    AmbiguousOffset::Gap { before, .. } | AmbiguousOffset::Fold { before, .. } => {
                        i64::from(before.seconds())
                    }
                }
            }
        };
        let instant = local - offset;
        let back = instant + self.offset_at(instant);
        Some((instant, Tm::from_local_seconds(back)))
    }

    fn localtime(&self, instant: i64) -> Tm {
        Tm::from_local_seconds(instant + self.offset_at(instant))
    }
}

/// The local zone's standard and daylight abbreviations (glibc's
/// `tzname[0]` and `tzname[1]`), as they are around `now`.
fn local_abbreviations(tz: &TimeZone, now: Timestamp) -> [Option<String>; 2] {
    let mut out: [Option<String>; 2] = [None, None];
    let here = tz.to_offset_info(now);
    out[usize::from(here.dst().is_dst())] = Some(here.abbreviation().to_string());
    for t in tz.following(now).take(2).chain(tz.preceding(now).take(64)) {
        let slot = &mut out[usize::from(t.dst().is_dst())];
        if slot.is_none() {
            *slot = Some(t.abbreviation().to_string());
        }
        if out.iter().all(Option::is_some) {
            break;
        }
    }
    if out[1].is_none() {
        // glibc gives a zone without daylight time its one name for both.
        out[1] = out[0].clone();
    }
    out
}

/// Whether `name` is a zone of the tz database on this machine, as
/// systemd's `timezone_is_valid()` checks it: a plain relative name of a
/// readable TZif file. Returns the zone.
pub fn load_zone(name: &str) -> Option<TimeZone> {
    if name.is_empty()
        || name.starts_with('/')
        || name.ends_with('/')
        || name.contains("//")
        || name.split('/').any(|p| p == "." || p == "..")
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '-' | '_' | '+'))
    {
        return None;
    }
    let path = std::path::Path::new(ZONEINFO).join(name);
    let md = std::fs::metadata(&path).ok()?;
    if !md.is_file() || md.len() > 1 << 20 {
        return None;
    }
    let data = std::fs::read(&path).ok()?;
    if !data.starts_with(b"TZif") {
        return None;
    }
    TimeZone::tzif(name, &data).ok()
}

fn strip_suffix_no_case<'a>(s: &'a str, suffix: &str) -> Option<&'a str> {
    let cut = s.len().checked_sub(suffix.len())?;
    (s.is_char_boundary(cut) && s[cut..].eq_ignore_ascii_case(suffix)).then(|| &s[..cut])
}

const fn single(v: i64) -> Component {
    Component {
        start: v,
        stop: -1,
        repeat: 0,
    }
}

/// A cursor over the expression's bytes (the grammar is ASCII).
struct Cursor<'a> {
    s: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> u8 {
        self.s.get(self.pos).copied().unwrap_or(0)
    }

    fn peek_at(&self, k: usize) -> u8 {
        self.s.get(self.pos + k).copied().unwrap_or(0)
    }

    fn at_end(&self) -> bool {
        self.pos >= self.s.len()
    }

    fn skip_spaces(&mut self) {
        while self.peek() == b' ' {
            self.pos += 1;
        }
    }

    /// Digits as an unsigned number (`strtoul` after a digit).
    fn number(&mut self) -> Parsed<i64> {
        if !self.peek().is_ascii_digit() {
            return Err(Fail::Invalid("a number was expected"));
        }
        let mut v: u64 = 0;
        let mut overflow = false;
        while self.peek().is_ascii_digit() {
            let d = u64::from(self.peek() - b'0');
            match v.checked_mul(10).and_then(|x| x.checked_add(d)) {
                Some(x) => v = x,
                None => overflow = true,
            }
            self.pos += 1;
        }
        if overflow {
            return Err(Fail::Range);
        }
        i64::try_from(v).map_err(|_| Fail::Range)
    }

    /// A field value; for seconds also a fraction, in microseconds.
    fn decimal(&mut self, usec: bool) -> Parsed<i64> {
        let mut v = self.number()?;
        if usec {
            v = v.checked_mul(USEC_PER_SEC).ok_or(Fail::Range)?;
            // One "." is a decimal point, ".." a range.
            if self.peek() == b'.' && self.peek_at(1) != b'.' {
                self.pos += 1;
                v = v.checked_add(self.fraction()?).ok_or(Fail::Range)?;
            }
        }
        if v > i64::from(i32::MAX) {
            return Err(Fail::Range);
        }
        Ok(v)
    }

    /// Six decimal places, the seventh rounding half up; more are ignored.
    fn fraction(&mut self) -> Parsed<i64> {
        let mut v: i64 = 0;
        let mut i = 0;
        while i < 6 {
            let c = self.peek();
            if !c.is_ascii_digit() {
                if i == 0 {
                    return Err(Fail::Invalid("digits must follow a decimal point"));
                }
                break;
            }
            v = v * 10 + i64::from(c - b'0');
            self.pos += 1;
            i += 1;
        }
        for _ in i..6 {
            v *= 10;
        }
        if matches!(self.peek(), b'5'..=b'9') {
            v += 1;
        }
        while self.peek().is_ascii_digit() {
            self.pos += 1;
        }
        Ok(v)
    }

    /// `start[..stop][/repeat]`, comma-separated.
    fn components(&mut self, usec: bool) -> Parsed<Vec<Component>> {
        let mut out = Vec::new();
        loop {
            if out.len() > COMPONENTS_MAX {
                return Err(Fail::TooMany);
            }
            let start = self.decimal(usec)?;
            let mut stop = -1;
            let mut repeat = 0;
            if self.peek() == b'.' && self.peek_at(1) == b'.' {
                self.pos += 2;
                stop = self.decimal(usec)?;
                repeat = if usec { USEC_PER_SEC } else { 1 };
            }
            if self.peek() == b'/' {
                self.pos += 1;
                repeat = self.decimal(usec)?;
                if repeat == 0 {
                    return Err(Fail::Range);
                }
            } else if usec && stop >= 0 && start + repeat > stop {
                // Without a step, a range of seconds moves by whole
                // seconds: one shorter than a second holds no value.
                return Err(Fail::Invalid("a range of seconds shorter than its step"));
            }
            if !matches!(self.peek(), 0 | b' ' | b',' | b'-' | b'~' | b':') {
                return Err(Fail::Invalid("unexpected character"));
            }
            out.push(Component {
                start,
                stop,
                repeat,
            });
            if self.peek() != b',' {
                return Ok(out);
            }
            self.pos += 1;
        }
    }

    /// A field: `*` or components. `*` is every value: no components,
    /// except for seconds, where it is every whole second.
    fn chain(&mut self, usec: bool) -> Parsed<Vec<Component>> {
        if self.peek() == b'*' {
            self.pos += 1;
            return Ok(if usec {
                vec![Component {
                    start: 0,
                    stop: -1,
                    repeat: USEC_PER_SEC,
                }]
            } else {
                Vec::new()
            });
        }
        self.components(usec)
    }
}

const WEEKDAY_NAMES: [(&str, u8); 14] = [
    ("Monday", 0),
    ("Mon", 0),
    ("Tuesday", 1),
    ("Tue", 1),
    ("Wednesday", 2),
    ("Wed", 2),
    ("Thursday", 3),
    ("Thu", 3),
    ("Friday", 4),
    ("Fri", 4),
    ("Saturday", 5),
    ("Sat", 5),
    ("Sunday", 6),
    ("Sun", 6),
];

const WEEKDAY_SHORT: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

/// The fields an expression gives, before normalisation.
#[derive(Default)]
struct Fields {
    weekdays: u8,
    end_of_month: bool,
    utc_timestamp: bool,
    year: Vec<Component>,
    month: Vec<Component>,
    day: Vec<Component>,
    hour: Vec<Component>,
    minute: Vec<Component>,
    second: Vec<Component>,
}

impl Fields {
    fn weekdays(&mut self, c: &mut Cursor<'_>) -> Parsed<()> {
        let mut range_from: Option<u8> = None;
        let mut first = true;
        loop {
            let rest = &c.s[c.pos..];
            let hit = WEEKDAY_NAMES.iter().find(|(name, _)| {
                rest.len() >= name.len() && rest[..name.len()].eq_ignore_ascii_case(name.as_bytes())
            });
            let Some(&(name, nr)) = hit else {
                return if first {
                    Ok(())
                } else {
                    Err(Fail::Invalid("a weekday name was expected"))
                };
            };
            if !matches!(c.peek_at(name.len()), 0 | b'-' | b'.' | b',' | b' ') {
                return Err(Fail::Invalid("unknown weekday name"));
            }
            self.weekdays |= 1 << nr;
            if let Some(from) = range_from {
                if from > nr {
                    return Err(Fail::Invalid("a weekday range must go forward (Mon..Fri)"));
                }
                for j in from + 1..nr {
                    self.weekdays |= 1 << j;
                }
            }
            c.pos += name.len();
            if c.at_end() {
                return Ok(());
            }
            if c.peek() == b' ' {
                c.skip_spaces();
                return Ok(());
            }
            match c.peek() {
                b'.' => {
                    if range_from.is_some() || c.peek_at(1) != b'.' {
                        return Err(Fail::Invalid("bad weekday range"));
                    }
                    range_from = Some(nr);
                    c.pos += 2;
                }
                // "-" for ranges is kept from older versions.
                b'-' => {
                    if range_from.is_some() {
                        return Err(Fail::Invalid("bad weekday range"));
                    }
                    range_from = Some(nr);
                    c.pos += 1;
                }
                b',' => {
                    range_from = None;
                    c.pos += 1;
                }
                _ => {}
            }
            // A trailing comma is allowed, an open range is not.
            if matches!(c.peek(), 0 | b' ') {
                c.skip_spaces();
                return if range_from.is_none() {
                    Ok(())
                } else {
                    Err(Fail::Invalid("a weekday range has no end"))
                };
            }
            first = false;
        }
    }

    /// The date part; `Ok(true)` when it was `@SECONDS`, which is the
    /// whole expression.
    fn date(&mut self, c: &mut Cursor<'_>) -> Parsed<bool> {
        if c.at_end() {
            return Ok(false);
        }
        if c.peek() == b'@' {
            c.pos += 1;
            let secs = c.number()?;
            let t = Tm::from_local_seconds(secs);
            if t.year > YEAR_LIMIT {
                return Err(Fail::Range);
            }
            self.utc_timestamp = true;
            self.year = vec![single(t.year)];
            self.month = vec![single(t.mon + 1)];
            self.day = vec![single(t.mday)];
            self.hour = vec![single(t.hour)];
            self.minute = vec![single(t.min)];
            self.second = vec![single(t.sec * USEC_PER_SEC)];
            return Ok(true);
        }
        let start = c.pos;
        let first = c.chain(false)?;
        if matches!(c.peek(), 0 | b':') {
            // A time, not a date.
            c.pos = start;
            return Ok(false);
        }
        match c.peek() {
            b'~' => self.end_of_month = true,
            b'-' => {}
            _ => return Err(Fail::Invalid("a date is year-month-day or month-day")),
        }
        c.pos += 1;
        let second = c.chain(false)?;
        if matches!(c.peek(), 0 | b' ') {
            c.skip_spaces();
            self.month = first;
            self.day = second;
            return Ok(false);
        }
        if self.end_of_month {
            return Err(Fail::Invalid("'~' must come before the day"));
        }
        match c.peek() {
            b'~' => self.end_of_month = true,
            b'-' => {}
            _ => return Err(Fail::Invalid("a date is year-month-day or month-day")),
        }
        c.pos += 1;
        let third = c.chain(false)?;
        if !matches!(c.peek(), 0 | b' ') {
            return Err(Fail::Invalid("a space must follow the date"));
        }
        c.skip_spaces();
        self.year = first;
        self.month = second;
        self.day = third;
        Ok(false)
    }

    /// The time part; none at all is midnight, no seconds are :00.
    fn time(&mut self, c: &mut Cursor<'_>) -> Parsed<()> {
        if c.at_end() {
            self.hour = vec![single(0)];
            self.minute = vec![single(0)];
            self.second = vec![single(0)];
            return Ok(());
        }
        let h = c.chain(false)?;
        if c.peek() != b':' {
            return Err(Fail::Invalid("a time is hour:minute[:second]"));
        }
        c.pos += 1;
        let m = c.chain(false)?;
        let s = if c.at_end() {
            vec![single(0)]
        } else {
            if c.peek() != b':' {
                return Err(Fail::Invalid("a time is hour:minute[:second]"));
            }
            c.pos += 1;
            let s = c.chain(true)?;
            if !c.at_end() {
                return Err(Fail::Invalid("unexpected text after the time"));
            }
            s
        };
        self.hour = h;
        self.minute = m;
        self.second = s;
        Ok(())
    }

    fn shorthand(&mut self, p: &str) -> bool {
        let midnight = |f: &mut Fields| {
            f.hour = vec![single(0)];
            f.minute = vec![single(0)];
            f.second = vec![single(0)];
        };
        let is = |names: &[&str]| names.iter().any(|n| p.eq_ignore_ascii_case(n));
        if is(&["minutely"]) {
            self.second = vec![single(0)];
        } else if is(&["hourly"]) {
            self.minute = vec![single(0)];
            self.second = vec![single(0)];
        } else if is(&["daily"]) {
            midnight(self);
        } else if is(&["monthly"]) {
            self.day = vec![single(1)];
            midnight(self);
        } else if is(&["annually", "yearly", "anually"]) {
            self.month = vec![single(1)];
            self.day = vec![single(1)];
            midnight(self);
        } else if is(&["weekly"]) {
            self.weekdays = 1;
            midnight(self);
        } else if is(&["quarterly"]) {
            self.month = [1, 4, 7, 10].map(single).to_vec();
            self.day = vec![single(1)];
            midnight(self);
        } else if is(&["biannually", "bi-annually", "semiannually", "semi-annually"]) {
            self.month = vec![single(1), single(7)];
            self.day = vec![single(1)];
            midnight(self);
        } else {
            return false;
        }
        true
    }
}

/// Sorts a field, drops repeats, and simplifies ranges and steps that
/// cannot repeat, as systemd normalises before printing.
fn normalize_chain(c: &mut Vec<Component>) {
    for i in c.iter_mut() {
        if i.stop > i.start && i.repeat > 0 {
            i.stop -= (i.stop - i.start) % i.repeat;
        }
        if (i.stop > i.start && i.repeat > 0 && i.start + i.repeat > i.stop) || i.start == i.stop {
            i.repeat = 0;
            i.stop = -1;
        }
    }
    c.sort();
    c.dedup();
}

/// Two-digit years: 0..69 are 2000..2069, 70..99 are 1970..1999.
fn fix_year(c: &mut [Component]) {
    for i in c {
        for v in [&mut i.start, &mut i.stop] {
            if (0..70).contains(v) {
                *v += 2000;
            } else if (70..100).contains(v) {
                *v += 1900;
            }
        }
    }
}

fn chain_valid(c: &[Component], from: i64, to: i64, end_of_month: bool) -> bool {
    // Days from the end of the month go back at most to the 28th.
    let to = if end_of_month { to - 3 } else { to };
    c.iter().all(|i| {
        if i.start < from || i.start > to || i.repeat > to - from {
            return false;
        }
        if i.stop >= 0 {
            i.stop >= from && i.stop <= to && i.start + i.repeat <= i.stop
        } else if end_of_month {
            i.start - i.repeat >= from
        } else {
            i.start + i.repeat <= to
        }
    })
}

impl CalendarSpec {
    /// Parses an expression with the machine's local zone.
    pub fn parse(expr: &str) -> Result<CalendarSpec, CalendarError> {
        CalendarSpec::parse_with_local(expr, &TimeZone::system(), Timestamp::now())
    }

    /// Parses an expression; `local` and `now` decide which abbreviations
    /// (`CET`, `CEST`) name the local zone's standard and daylight time.
    pub fn parse_with_local(
        expr: &str,
        local: &TimeZone,
        now: Timestamp,
    ) -> Result<CalendarSpec, CalendarError> {
        CalendarSpec::parse_inner(expr, local, now).map_err(|f| match f {
            Fail::Invalid(why) => CalendarError::Invalid {
                expr: expr.to_string(),
                why,
            },
            Fail::Range => CalendarError::Range {
                expr: expr.to_string(),
            },
            Fail::TooMany => CalendarError::TooManyValues {
                expr: expr.to_string(),
            },
        })
    }

    fn parse_inner(expr: &str, local: &TimeZone, now: Timestamp) -> Parsed<CalendarSpec> {
        let mut utc = false;
        let mut named = None;
        let mut dst = None;
        let mut p = expr;
        if let Some(rest) = strip_suffix_no_case(p, " UTC") {
            utc = true;
            p = rest;
        } else {
            let names = local_abbreviations(local, now);
            let hit = names.iter().enumerate().find_map(|(j, name)| {
                let name = name.as_deref().filter(|n| !n.is_empty())?;
                let rest = strip_suffix_no_case(p, name)?;
                let rest = rest.strip_suffix(' ')?;
                Some((j == 1, name.into(), rest))
            });
            if let Some((is_dst, name, rest)) = hit {
                dst = Some((is_dst, name));
                p = rest;
            } else if let Some(space) = p.rfind(' ') {
                let name = &p[space + 1..];
                if let Some(tz) = load_zone(name) {
                    if name == "UTC" {
                        utc = true;
                    } else {
                        named = Some(NamedZone(name.into(), tz));
                    }
                    p = &p[..space];
                }
            }
        }
        if p.is_empty() {
            return Err(Fail::Invalid("nothing before the time zone"));
        }
        let mut f = Fields::default();
        if !f.shorthand(p) {
            let mut c = Cursor {
                s: p.as_bytes(),
                pos: 0,
            };
            f.weekdays(&mut c)?;
            if !f.date(&mut c)? {
                f.time(&mut c)?;
            }
            if !c.at_end() {
                return Err(Fail::Invalid("unexpected text"));
            }
        }
        if f.utc_timestamp {
            utc = true;
            named = None;
        }
        let weekdays = if f.weekdays < BITS_WEEKDAYS {
            f.weekdays
        } else {
            0
        };
        let end_of_month = f.end_of_month && !f.day.is_empty();
        fix_year(&mut f.year);
        for c in [
            &mut f.year,
            &mut f.month,
            &mut f.day,
            &mut f.hour,
            &mut f.minute,
            &mut f.second,
        ] {
            normalize_chain(c);
        }
        let valid = chain_valid(&f.year, MIN_YEAR, MAX_YEAR, false)
            && chain_valid(&f.month, 1, 12, false)
            && chain_valid(&f.day, 1, 31, end_of_month)
            && chain_valid(&f.hour, 0, 23, false)
            && chain_valid(&f.minute, 0, 59, false)
            && chain_valid(&f.second, 0, 60 * USEC_PER_SEC - 1, false);
        if !valid {
            return Err(Fail::Invalid("a value is out of its field's range"));
        }
        let fields = [f.year, f.month, f.day, f.hour, f.minute, f.second];
        let mut ends = [0u16; 6];
        let mut end = 0usize;
        for (e, c) in ends.iter_mut().zip(&fields) {
            end += c.len();
            *e = u16::try_from(end).map_err(|_| Fail::Invalid("too many values"))?;
        }
        // Exactly as many as there are: collected, the vector kept room for
        // four, and shrinking 48 B to 36 left the allocator's chunk as it was
        // (64 B, where 36 B take 48), the rest being too small to split off.
        let mut components = Vec::with_capacity(end);
        for c in fields.iter().flatten() {
            components.push(Packed::pack(c)?);
        }
        let components = components.into_boxed_slice();
        let rare = (named.is_some() || dst.is_some()).then(|| Box::new(Rare { named, dst }));
        Ok(CalendarSpec {
            components,
            rare,
            ends,
            weekdays,
            end_of_month,
            utc,
        })
    }

    /// The components of field `i` (0 year ... 5 second).
    fn field(&self, i: usize) -> &[Packed] {
        let start = i.checked_sub(1).map_or(0, |p| usize::from(self.ends[p]));
        &self.components[start..usize::from(self.ends[i])]
    }

    /// Whether the expression is in UTC.
    pub fn is_utc(&self) -> bool {
        self.utc
    }

    fn named(&self) -> Option<&NamedZone> {
        self.rare.as_deref().and_then(|r| r.named.as_ref())
    }

    fn dst(&self) -> Option<&(bool, Box<str>)> {
        self.rare.as_deref().and_then(|r| r.dst.as_ref())
    }

    /// The `Area/City` zone the expression names, if any.
    pub fn timezone(&self) -> Option<&str> {
        self.named().map(|z| &*z.0)
    }

    /// The next elapse strictly after `after` (microseconds since the
    /// epoch), or `None` when the expression never elapses again. `local`
    /// is the machine's zone, for expressions without one.
    pub fn next_elapse(&self, after: u64, local: &TimeZone) -> Option<u64> {
        let tz = match self.named() {
            _ if self.utc => None,
            Some(z) => Some(&z.1),
            None => Some(local),
        };
        let zone = Zone {
            tz,
            dst: self.dst().map(|(d, _)| *d),
        };
        let usec = i64::try_from(after).ok()?.checked_add(1)?;
        let mut tm = zone.localtime(usec.div_euclid(USEC_PER_SEC));
        let mut tm_usec = usec.rem_euclid(USEC_PER_SEC);
        self.find_next(&zone, &mut tm, &mut tm_usec)?;
        let (t, _) = zone.mktime(&tm)?;
        let next = t.checked_mul(USEC_PER_SEC)?.checked_add(tm_usec)?;
        u64::try_from(next).ok()
    }

    /// The earliest value of `chain` at or after `val`. `tm` is the month
    /// for days counted from its end.
    fn matching(&self, chain: &[Packed], is_day: bool, tm: &Tm, val: i64) -> Option<i64> {
        if chain.is_empty() {
            return Some(val);
        }
        let end_of_month = self.end_of_month && is_day;
        let mut best: Option<i64> = None;
        for c in chain.iter().map(|c| c.get()) {
            let (mut start, mut stop) = (c.start, c.stop);
            if end_of_month {
                start = find_end_of_month(tm, c.start);
                stop = find_end_of_month(tm, c.stop);
                if stop > 0 {
                    std::mem::swap(&mut start, &mut stop);
                }
            }
            if start >= val {
                if best.is_none_or(|b| start < b) {
                    best = Some(start);
                }
            } else if c.repeat > 0 {
                // val > start here: a ceiling division of positives.
                let k = start + c.repeat * ((val - start + c.repeat - 1) / c.repeat);
                if best.is_none_or(|b| k < b) && (stop < 0 || k <= stop) {
                    best = Some(k);
                }
            }
        }
        best
    }

    /// [`CalendarSpec::matching`] on one field of `c`: `Some(true)` when
    /// the field moved, `None` when no value is left in the field.
    fn advance(
        &self,
        chain: &[Packed],
        is_day: bool,
        c: &mut Tm,
        field: fn(&mut Tm) -> &mut i64,
        bias: i64,
    ) -> Option<bool> {
        let old = *field(c) + bias;
        let new = self.matching(chain, is_day, c, old)?;
        *field(c) = new - bias;
        Some(new != old)
    }

    fn weekday_matches(&self, zone: &Zone<'_>, tm: &Tm) -> bool {
        let bits = self.weekdays;
        if bits == 0 {
            return true;
        }
        zone.mktime(tm)
            .is_some_and(|(_, t)| bits & (1 << t.weekday()) != 0)
    }

    /// systemd's `find_next()`: moves `tm` forward field by field to the
    /// first time that matches; `None` when none does before 2200.
    fn find_next(&self, zone: &Zone<'_>, tm: &mut Tm, tm_usec: &mut i64) -> Option<()> {
        let mut c = *tm;
        let mut usec = *tm_usec;
        for _ in 0..MAX_ITERATIONS {
            if let Some((_, n)) = zone.mktime(&c) {
                c = n;
            }
            if self.advance(self.field(0), false, &mut c, |t| &mut t.year, 0)? {
                c.mon = 0;
                c.mday = 1;
                (c.hour, c.min, c.sec, usec) = (0, 0, 0, 0);
            }
            if within_bounds(zone, &mut c) != Bounds::Same {
                return None;
            }

            let r = self.advance(self.field(1), false, &mut c, |t| &mut t.mon, 1);
            if r == Some(true) {
                c.mday = 1;
                (c.hour, c.min, c.sec, usec) = (0, 0, 0, 0);
            }
            match r.map(|_| within_bounds(zone, &mut c)) {
                None | Some(Bounds::Backward) => {
                    c.year += 1;
                    c.mon = 0;
                    c.mday = 1;
                    (c.hour, c.min, c.sec, usec) = (0, 0, 0, 0);
                    continue;
                }
                Some(Bounds::Moved) => continue,
                Some(Bounds::Same) => {}
            }

            let r = self.advance(self.field(2), true, &mut c, |t| &mut t.mday, 0);
            if r == Some(true) {
                (c.hour, c.min, c.sec, usec) = (0, 0, 0, 0);
            }
            match r.map(|_| within_bounds(zone, &mut c)) {
                None | Some(Bounds::Backward) => {
                    c.mon += 1;
                    c.mday = 1;
                    (c.hour, c.min, c.sec, usec) = (0, 0, 0, 0);
                    continue;
                }
                Some(Bounds::Moved) => continue,
                Some(Bounds::Same) => {}
            }

            if !self.weekday_matches(zone, &c) {
                c.mday += 1;
                (c.hour, c.min, c.sec, usec) = (0, 0, 0, 0);
                continue;
            }

            let r = self.advance(self.field(3), false, &mut c, |t| &mut t.hour, 0);
            if r == Some(true) {
                (c.min, c.sec, usec) = (0, 0, 0);
            }
            match r.map(|_| within_bounds(zone, &mut c)) {
                None | Some(Bounds::Backward) => {
                    c.mday += 1;
                    (c.hour, c.min, c.sec, usec) = (0, 0, 0, 0);
                    continue;
                }
                // The hour may not exist in a DST change: search again
                // from the normalised time.
                Some(Bounds::Moved) => continue,
                Some(Bounds::Same) => {}
            }

            let r = self.advance(self.field(4), false, &mut c, |t| &mut t.min, 0);
            if r == Some(true) {
                (c.sec, usec) = (0, 0);
            }
            match r.map(|_| within_bounds(zone, &mut c)) {
                None | Some(Bounds::Backward) => {
                    c.hour += 1;
                    (c.min, c.sec, usec) = (0, 0, 0);
                    continue;
                }
                Some(Bounds::Moved) => continue,
                Some(Bounds::Same) => {}
            }

            let sec = c.sec * USEC_PER_SEC + usec;
            let r = self.matching(self.field(5), false, &c, sec);
            let sec = r.unwrap_or(sec);
            usec = sec % USEC_PER_SEC;
            c.sec = sec / USEC_PER_SEC;
            match r.map(|_| within_bounds(zone, &mut c)) {
                None | Some(Bounds::Backward) => {
                    c.min += 1;
                    (c.sec, usec) = (0, 0);
                    continue;
                }
                Some(Bounds::Moved) => continue,
                Some(Bounds::Same) => {}
            }

            *tm = c;
            *tm_usec = usec;
            return Some(());
        }
        None
    }
}

/// What normalising a candidate time did to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bounds {
    /// It exists as written.
    Same,
    /// It did not exist and moved forward (the candidate is updated).
    Moved,
    /// It moved backward, or past the last year: no use.
    Backward,
}

/// Whether `tm` exists as written in the zone. A time that normalises
/// forward (the 31st of April, a DST gap) is replaced by the normalised
/// one with the next smaller field reset, so nothing in between is skipped.
fn within_bounds(zone: &Zone<'_>, tm: &mut Tm) -> Bounds {
    if tm.year > MAX_YEAR {
        return Bounds::Backward;
    }
    let Some((_, mut t)) = zone.mktime(tm) else {
        return Bounds::Backward;
    };
    use std::cmp::Ordering;
    let cmp = if t.year != tm.year {
        let c = t.year.cmp(&tm.year);
        t.mon = 0;
        c
    } else if t.mon != tm.mon {
        let c = t.mon.cmp(&tm.mon);
        t.mday = 1;
        c
    } else if t.mday != tm.mday {
        let c = t.mday.cmp(&tm.mday);
        t.hour = 0;
        c
    } else if t.hour != tm.hour {
        let c = t.hour.cmp(&tm.hour);
        t.min = 0;
        c
    } else if t.min != tm.min {
        let c = t.min.cmp(&tm.min);
        t.sec = 0;
        c
    } else {
        t.sec.cmp(&tm.sec)
    };
    match cmp {
        Ordering::Less => Bounds::Backward,
        Ordering::Equal => Bounds::Same,
        Ordering::Greater => {
            *tm = t;
            Bounds::Moved
        }
    }
}

/// The day of `tm`'s month that is `day` days before its end (1 = the
/// last day), or -1 when that falls outside the month.
fn find_end_of_month(tm: &Tm, day: i64) -> i64 {
    let t = Tm {
        mon: tm.mon + 1,
        mday: 1 - day,
        ..*tm
    };
    match t.local_seconds() {
        Some(s) => {
            let n = Tm::from_local_seconds(s);
            if n.mon == tm.mon.rem_euclid(12) {
                n.mday
            } else {
                -1
            }
        }
        None => -1,
    }
}

fn format_chain(out: &mut String, width: usize, c: &[Packed], usec: bool) {
    let d = if usec { USEC_PER_SEC } else { 1 };
    let all = || c.iter().map(|p| p.get());
    let star = c.is_empty()
        || (usec && all().any(|i| i.start == 0 && i.stop < 0 && i.repeat == USEC_PER_SEC));
    if star {
        out.push('*');
        return;
    }
    for (n, i) in all().enumerate() {
        if n > 0 {
            out.push(',');
        }
        let _ = write!(out, "{:0width$}", i.start / d);
        if i.start % d > 0 {
            let _ = write!(out, ".{:06}", i.start % d);
        }
        if i.stop > 0 {
            let _ = write!(out, "..{:0width$}", i.stop / d);
        }
        if i.stop % d > 0 {
            let _ = write!(out, ".{:06}", i.stop % d);
        }
        if i.repeat > 0 && !(i.stop > 0 && i.repeat == d) {
            let _ = write!(out, "/{}", i.repeat / d);
        }
        if i.repeat % d > 0 {
            let _ = write!(out, ".{:06}", i.repeat % d);
        }
    }
}

/// Weekday bits as systemd prints them: runs of three or more as `A..B`.
fn format_weekdays(out: &mut String, bits: u8) {
    let mut need_comma = false;
    let mut run_start: Option<usize> = None;
    let close = |out: &mut String, l: usize, x: usize| {
        if x > l + 1 {
            out.push_str(if x > l + 2 { ".." } else { "," });
            out.push_str(WEEKDAY_SHORT[x - 1]);
        }
    };
    for (x, day) in WEEKDAY_SHORT.iter().enumerate() {
        if bits & (1 << x) != 0 {
            if run_start.is_none() {
                if need_comma {
                    out.push(',');
                }
                need_comma = true;
                out.push_str(day);
                run_start = Some(x);
            }
        } else if let Some(l) = run_start.take() {
            close(out, l, x);
        }
    }
    if let Some(l) = run_start {
        close(out, l, 7);
    }
}

impl fmt::Display for CalendarSpec {
    /// The normalized form, as `systemd-analyze calendar` prints it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::with_capacity(32);
        if self.weekdays != 0 {
            format_weekdays(&mut out, self.weekdays);
            out.push(' ');
        }
        format_chain(&mut out, 4, self.field(0), false);
        out.push('-');
        format_chain(&mut out, 2, self.field(1), false);
        out.push(if self.end_of_month { '~' } else { '-' });
        format_chain(&mut out, 2, self.field(2), false);
        out.push(' ');
        format_chain(&mut out, 2, self.field(3), false);
        out.push(':');
        format_chain(&mut out, 2, self.field(4), false);
        out.push(':');
        format_chain(&mut out, 2, self.field(5), true);
        if self.utc {
            out.push_str(" UTC");
        } else if let Some(name) = self.named().map(|z| &z.0).or(self.dst().map(|d| &d.1)) {
            out.push(' ');
            out.push_str(name);
        }
        f.write_str(&out)
    }
}

/// `Mon 2026-12-07 11:00:00 UTC`: a realtime instant (microseconds) in
/// `tz`, as systemd's `format_timestamp()` writes it.
pub fn format_timestamp(usec: u64, tz: &TimeZone) -> String {
    let secs = i64::try_from(usec / USEC_PER_SEC as u64).unwrap_or(i64::MAX);
    let Ok(ts) = Timestamp::from_second(secs) else {
        return "n/a".to_string();
    };
    let info = tz.to_offset_info(ts);
    let t = Tm::from_local_seconds(secs + i64::from(info.offset().seconds()));
    format!(
        "{} {:04}-{:02}-{:02} {:02}:{:02}:{:02} {}",
        WEEKDAY_SHORT[t.weekday() as usize],
        t.year,
        t.mon + 1,
        t.mday,
        t.hour,
        t.min,
        t.sec,
        info.abbreviation()
    )
}

/// `2 days left`, `3min 5s ago`: the distance from `now` to `t`
/// (microseconds), as systemd's `format_timestamp_relative()` writes it.
pub fn format_relative(t: u64, now: u64) -> String {
    const SEC: u64 = 1_000_000;
    const MIN: u64 = 60 * SEC;
    const HOUR: u64 = 60 * MIN;
    const DAY: u64 = 24 * HOUR;
    const WEEK: u64 = 7 * DAY;
    const MONTH: u64 = 2_629_800 * SEC;
    const YEAR: u64 = 31_557_600 * SEC;
    let (d, s) = if t > now {
        (t - now, "left")
    } else {
        (now - t, "ago")
    };
    let plural = |n: u64, one: &str| {
        if n == 1 {
            format!("{n} {one}")
        } else {
            format!("{n} {one}s")
        }
    };
    if d >= YEAR {
        format!(
            "{} {} {s}",
            plural(d / YEAR, "year"),
            plural(d % YEAR / MONTH, "month")
        )
    } else if d >= MONTH {
        format!(
            "{} {} {s}",
            plural(d / MONTH, "month"),
            plural(d % MONTH / DAY, "day")
        )
    } else if d >= WEEK {
        format!(
            "{} {} {s}",
            plural(d / WEEK, "week"),
            plural(d % WEEK / DAY, "day")
        )
    } else if d >= 2 * DAY {
        format!("{} days {s}", d / DAY)
    } else if d >= 25 * HOUR {
        format!("1 day {}h {s}", (d - DAY) / HOUR)
    } else if d >= 6 * HOUR {
        format!("{}h {s}", d / HOUR)
    } else if d >= HOUR {
        format!("{}h {}min {s}", d / HOUR, d % HOUR / MIN)
    } else if d >= 5 * MIN {
        format!("{}min {s}", d / MIN)
    } else if d >= MIN {
        format!("{}min {}s {s}", d / MIN, d % MIN / SEC)
    } else if d >= SEC {
        format!("{}s {s}", d / SEC)
    } else if d >= 1000 {
        format!("{}ms {s}", d / 1000)
    } else if d > 0 {
        format!("{d}us {s}")
    } else {
        "now".to_string()
    }
}

/// Whether `tz` is UTC for every instant (systemd's `in_utc_timezone()`).
pub fn is_utc_zone(tz: &TimeZone, now: Timestamp) -> bool {
    tz.to_offset(now).seconds() == 0
        && tz
            .preceding(now)
            .next()
            .is_none_or(|t| t.offset().seconds() == 0)
        && tz.following(now).next().is_none()
}

#[cfg(test)]
mod tests;
