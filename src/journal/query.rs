//! What a reader asks for ([`Query`]), compiled into a filter, and the time syntax of
//! `--since`/`--until`.

use chrono::{Local, NaiveDate, NaiveDateTime, NaiveTime, TimeZone};
use serde::{Deserialize, Serialize};

use super::block::{StoredRef, View};
use super::error::{JournalError, Result};
use super::{Stream, parse_cursor};

/// A journal query; serializable so it can travel over the control socket.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Query {
    /// Unit names or globs (`*`, `?`, `[...]`); empty means every unit.
    pub units: Vec<String>,
    /// Only entries at or after this realtime (µs since the epoch).
    pub since: Option<u64>,
    /// Only entries at or before this realtime (µs).
    pub until: Option<u64>,
    /// Priority range, inclusive, numeric: (most severe, least severe), e.g. (0, 3) for `-p err`.
    pub priority: Option<(u8, u8)>,
    /// Regex on the message; case-insensitive unless it contains an upper-case letter.
    pub grep: Option<String>,
    /// Only this invocation.
    pub invocation: Option<u128>,
    /// Only each matched unit's latest invocation (`-I`).
    pub latest_invocation: bool,
    /// Only this stream.
    pub stream: Option<Stream>,
    /// Start at the entry of this cursor (inclusive).
    pub cursor: Option<String>,
    /// Start after the entry of this cursor.
    pub after_cursor: Option<String>,
    /// Only the newest N matching entries.
    pub lines: Option<usize>,
    /// Newest first.
    pub reverse: bool,
    /// `-t`: only these SYSLOG_IDENTIFIERs (any of them); empty means any.
    pub identifiers: Vec<String>,
    /// `-T`: not these SYSLOG_IDENTIFIERs.
    pub exclude_identifiers: Vec<String>,
    /// Field matches `FIELD=value`, in groups separated by `+` (one inner vector per
    /// group): an entry passes when some group passes; within a group, values of the
    /// same field are alternatives and different fields must all match.
    pub field_matches: Vec<Vec<String>>,
    /// `-b`: only entries of this boot.
    pub boot_id: Option<u128>,
}

/// A [`Query`] ready to filter entries.
pub struct CompiledQuery {
    units: Vec<Glob>,
    pub(crate) since: Option<u64>,
    pub(crate) until: Option<u64>,
    pub(crate) min_seq: u64,
    pub(crate) max_seq: u64,
    priority: (u8, u8),
    grep: Option<regex::bytes::Regex>,
    /// Whether `grep` can be run over a block's messages back to back (see [`Self::select`]).
    grep_scan: bool,
    stream: Option<Stream>,
    identifiers: Vec<String>,
    exclude_identifiers: Vec<String>,
    groups: Vec<MatchGroup>,
    boot_id: Option<u128>,
    hostname: String,
}

/// One `+`-separated group of field matches: per field, the values any of which may match.
#[derive(Debug, Clone, Default)]
struct MatchGroup {
    fields: Vec<(String, Vec<Vec<u8>>)>,
}

/// The fields of an entry a match can test, by journald name.
struct FieldView<'a> {
    unit: &'a str,
    identifier: &'a str,
    comm: &'a str,
    message_id: u128,
    message: &'a [u8],
    priority: u8,
    pid: Option<u32>,
    uid: u32,
    stream: Stream,
    invocation: u128,
    boot_id: u128,
}

impl FieldView<'_> {
    /// Whether the entry has `field` with value `v` (the fields
    /// [`super::output::fields`] prints; an entry has no other field).
    fn has(&self, field: &str, v: &[u8], hostname: &str) -> bool {
        let text = |s: &str| s.as_bytes() == v;
        let num = |n: u64| std::str::from_utf8(v).is_ok_and(|s| s == n.to_string());
        match field {
            "MESSAGE" => self.message == v,
            "MESSAGE_ID" => {
                super::catalog::entry_message_id(self.stream, self.message_id, self.message)
                    .is_some_and(|id| text(&id))
            }
            "_COMM" => !self.comm.is_empty() && text(self.comm),
            "PRIORITY" => num(self.priority.into()),
            "SYSLOG_IDENTIFIER" => text(self.identifier),
            "_PID" => self.pid.is_some_and(|p| num(p.into())),
            "_UID" => num(self.uid.into()),
            "_TRANSPORT" => text(match self.stream {
                Stream::Manager => "journal",
                _ => "stdout",
            }),
            "_SYSTEMD_USER_UNIT" => text(self.unit),
            "_SYSTEMD_INVOCATION_ID" => {
                self.invocation != 0 && text(&format!("{:032x}", self.invocation))
            }
            "_BOOT_ID" => text(&format!("{:032x}", self.boot_id)),
            "_HOSTNAME" => text(hostname),
            "CORRAL_STREAM" => text(self.stream.name()),
            _ => false,
        }
    }
}

/// Parses positional `FIELD=value` matches and `+` into groups, as journalctl(1):
/// a field name is upper-case letters, digits and underscores, not starting with a digit.
pub fn parse_field_matches(args: &[String]) -> Result<Vec<Vec<String>>> {
    let mut groups = vec![Vec::new()];
    for a in args {
        if a == "+" {
            groups.push(Vec::new());
            continue;
        }
        let valid = a.split_once('=').is_some_and(|(f, _)| {
            !f.is_empty()
                && !f.starts_with(|c: char| c.is_ascii_digit())
                && f.bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        });
        if !valid {
            return Err(JournalError::BadQuery(format!(
                "failed to add match '{a}': a match is FIELD=VALUE (FIELD in capitals, \
                 e.g. _PID=1234 or SYSLOG_IDENTIFIER=sh), or + between groups"
            )));
        }
        groups
            .last_mut()
            .expect("one group at least")
            .push(a.clone());
    }
    groups.retain(|g| !g.is_empty());
    Ok(groups)
}

fn compile_group(matches: &[String]) -> MatchGroup {
    let mut g = MatchGroup::default();
    for m in matches {
        let (f, v) = m.split_once('=').unwrap_or((m, ""));
        match g.fields.iter_mut().find(|(name, _)| name == f) {
            Some((_, vs)) => vs.push(v.as_bytes().to_vec()),
            None => g.fields.push((f.to_owned(), vec![v.as_bytes().to_vec()])),
        }
    }
    g
}

impl CompiledQuery {
    /// Compiles the regex, globs and cursors of `q`.
    pub fn new(q: &Query) -> Result<CompiledQuery> {
        let grep_scan = q.grep.as_deref().is_some_and(context_free);
        let grep = match &q.grep {
            Some(p) => {
                let insensitive = !p.chars().any(|c| c.is_uppercase());
                Some(
                    regex::bytes::RegexBuilder::new(p)
                        .case_insensitive(insensitive)
                        .build()
                        .map_err(|e| {
                            JournalError::BadQuery(format!(
                                "--grep {p:?} is not a valid regex: {e}"
                            ))
                        })?,
                )
            }
            None => None,
        };
        let mut min_seq = 0;
        if let Some(c) = &q.cursor {
            min_seq = parse_cursor(c)?;
        }
        if let Some(c) = &q.after_cursor {
            min_seq = min_seq.max(parse_cursor(c)?.saturating_add(1));
        }
        let groups: Vec<MatchGroup> = q.field_matches.iter().map(|g| compile_group(g)).collect();
        let hostname = if groups
            .iter()
            .any(|g| g.fields.iter().any(|(f, _)| f == "_HOSTNAME"))
        {
            super::output::hostname()
        } else {
            String::new()
        };
        Ok(CompiledQuery {
            units: q.units.iter().flat_map(|u| unit_patterns(u)).collect(),
            since: q.since,
            until: q.until,
            min_seq,
            max_seq: u64::MAX,
            priority: q.priority.unwrap_or((0, 7)),
            grep_scan: grep_scan && !grep.as_ref().is_some_and(|g| g.is_match(b"")),
            grep,
            stream: q.stream,
            identifiers: q.identifiers.clone(),
            exclude_identifiers: q.exclude_identifiers.clone(),
            groups,
            boot_id: q.boot_id,
            hostname,
        })
    }

    /// Whether entries of `unit` are wanted.
    pub fn unit_matches(&self, unit: &str) -> bool {
        self.units.is_empty() || self.units.iter().any(|g| g.matches(unit))
    }

    /// Whether a stored entry of `unit` passes every per-entry filter.
    pub fn matches(&self, unit: &str, e: &StoredRef<'_>) -> bool {
        self.grep.as_ref().is_none_or(|g| g.is_match(e.message)) && self.matches_but_grep(unit, e)
    }

    /// Whether [`Self::select`] finds the entries of a block by one regex pass over
    /// its messages, reading only the ones it tests ([`super::block::view_for_scan`]).
    pub fn scans_messages(&self) -> bool {
        self.grep.is_some() && self.grep_scan
    }

    /// The entries of a decoded block of `unit` that pass every filter, in order.
    ///
    /// When the block's messages lie one after the other (format v2 and later) and the
    /// regex looks at no context (no anchors or word boundaries, no empty match), one
    /// search runs over all of them instead of one per entry: it stops at the earliest
    /// end of a match, the entry holding that end is tested on its own (the match may
    /// have begun in an earlier one), and the search goes on after that entry. An
    /// entry before it cannot match on its own: its match would have ended earlier.
    /// Only the entries whose message matched are read from the block's columns.
    pub fn select<'a>(&self, unit: &str, block: &View<'a>) -> Vec<StoredRef<'a>> {
        let (Some(re), true, Some((area, starts))) = (&self.grep, self.grep_scan, block.messages())
        else {
            return (0..block.len())
                .map(|i| block.get(i))
                .filter(|e| self.matches(unit, e))
                .collect();
        };
        let mut found = Vec::new();
        let mut pos = 0;
        while pos < area.len() {
            // The earliest end, not the leftmost start: `.*` would run on to the
            // block's last possible end on every search.
            let Some(end) = re.shortest_match_at(area, pos) else {
                break;
            };
            let i = starts.partition_point(|&s| (s as usize) < end) - 1;
            if re.is_match(block.message(i)) {
                found.push(i);
            }
            pos = starts[i + 1] as usize;
        }
        let mut rows = block.rows_at(&found);
        rows.retain(|e| self.matches_but_grep(unit, e));
        rows
    }

    /// [`Self::matches`] without the regex.
    fn matches_but_grep(&self, unit: &str, e: &StoredRef<'_>) -> bool {
        e.seq >= self.min_seq
            && e.seq <= self.max_seq
            && self.since.is_none_or(|s| e.realtime >= s)
            && self.until.is_none_or(|u| e.realtime <= u)
            && e.priority >= self.priority.0
            && e.priority <= self.priority.1
            && self.stream.is_none_or(|s| s.code() == e.stream)
            && self.boot_id.is_none_or(|b| b == e.boot_id)
            && self.identifier_ok(e.identifier)
            && (self.groups.is_empty()
                || self.fields_ok(&FieldView {
                    unit,
                    identifier: e.identifier,
                    comm: e.comm,
                    message_id: e.message_id,
                    message: e.message,
                    priority: e.priority,
                    pid: e.pid,
                    uid: e.uid,
                    stream: Stream::from_code(e.stream),
                    invocation: e.invocation,
                    boot_id: e.boot_id,
                }))
    }

    /// The same test on an owned entry, unit included (salvaged entries have no index).
    pub fn matches_entry(&self, e: &super::Entry) -> bool {
        self.unit_matches(&e.unit)
            && e.seq >= self.min_seq
            && e.seq <= self.max_seq
            && self.since.is_none_or(|s| e.realtime >= s)
            && self.until.is_none_or(|u| e.realtime <= u)
            && e.priority >= self.priority.0
            && e.priority <= self.priority.1
            && self.stream.is_none_or(|s| s == e.stream)
            && self.boot_id.is_none_or(|b| b == e.boot_id)
            && self.identifier_ok(&e.identifier)
            && self.grep.as_ref().is_none_or(|g| g.is_match(&e.message))
            && self.fields_ok(&FieldView {
                unit: &e.unit,
                identifier: &e.identifier,
                comm: &e.comm,
                message_id: e.message_id,
                message: &e.message,
                priority: e.priority,
                pid: e.pid,
                uid: e.uid,
                stream: e.stream,
                invocation: e.invocation,
                boot_id: e.boot_id,
            })
    }

    fn identifier_ok(&self, ident: &str) -> bool {
        (self.identifiers.is_empty() || self.identifiers.iter().any(|i| i == ident))
            && !self.exclude_identifiers.iter().any(|i| i == ident)
    }

    /// Some group has every one of its fields at one of the values given for it.
    fn fields_ok(&self, e: &FieldView<'_>) -> bool {
        self.groups.is_empty()
            || self.groups.iter().any(|g| {
                g.fields
                    .iter()
                    .all(|(f, vs)| vs.iter().any(|v| e.has(f, v, &self.hostname)))
            })
    }
}

/// Whether a match of `pattern` depends only on the bytes it covers: no anchors,
/// word boundaries or other look-around (all spelled with `^`, `$` or a `\b`, `\B`,
/// `\A`, `\z`, `\<`, `\>` escape). Conservative: a `$` inside a class counts too.
fn context_free(pattern: &str) -> bool {
    if pattern.contains(['^', '$']) {
        return false;
    }
    let mut escaped = false;
    for c in pattern.chars() {
        if escaped {
            if matches!(c, 'b' | 'B' | 'A' | 'z' | '<' | '>') {
                return false;
            }
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        }
    }
    true
}

/// The globs `-u NAME` matches: the name as given and, as journalctl does,
/// `NAME.service` when the name has no unit suffix and no glob characters.
fn unit_patterns(name: &str) -> Vec<Glob> {
    const SUFFIXES: [&str; 11] = [
        ".service",
        ".target",
        ".socket",
        ".timer",
        ".path",
        ".slice",
        ".scope",
        ".mount",
        ".automount",
        ".swap",
        ".device",
    ];
    let mut v = vec![Glob::new(name)];
    let has_suffix = SUFFIXES.iter().any(|s| name.ends_with(s));
    if !has_suffix && !name.contains(['*', '?', '[']) {
        v.push(Glob::new(&format!("{name}.service")));
    }
    v
}

/// A shell-style glob (`*`, `?`, `[abc]`, `[a-z]`, `[!x]`); a name without them is literal.
#[derive(Debug, Clone)]
pub struct Glob {
    pat: Vec<char>,
}

impl Glob {
    /// Compiles a glob.
    pub fn new(p: &str) -> Glob {
        Glob {
            pat: p.chars().collect(),
        }
    }

    /// Whether `s` matches.
    pub fn matches(&self, s: &str) -> bool {
        let s: Vec<char> = s.chars().collect();
        glob_match(&self.pat, &s)
    }
}

fn glob_match(p: &[char], s: &[char]) -> bool {
    // Iterative matcher with single-star backtracking: linear for typical unit globs.
    let (mut pi, mut si) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while si < s.len() {
        if pi < p.len() {
            match p[pi] {
                '*' => {
                    star = Some(pi);
                    mark = si;
                    pi += 1;
                    continue;
                }
                '?' => {
                    pi += 1;
                    si += 1;
                    continue;
                }
                '[' => {
                    if let Some((ok, len)) = class_match(&p[pi..], s[si]) {
                        if ok {
                            pi += len;
                            si += 1;
                            continue;
                        }
                    } else if s[si] == '[' {
                        pi += 1;
                        si += 1;
                        continue;
                    }
                }
                c if c == s[si] => {
                    pi += 1;
                    si += 1;
                    continue;
                }
                _ => {}
            }
        }
        match star {
            Some(st) => {
                pi = st + 1;
                mark += 1;
                si = mark;
            }
            None => return false,
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Matches a `[...]` class at the start of `p` against `c`: (matched, pattern length).
fn class_match(p: &[char], c: char) -> Option<(bool, usize)> {
    let mut i = 1;
    let neg = matches!(p.get(i), Some('!') | Some('^'));
    if neg {
        i += 1;
    }
    let mut hit = false;
    let mut first = true;
    while i < p.len() {
        if p[i] == ']' && !first {
            return Some((hit != neg, i + 1));
        }
        first = false;
        if i + 2 < p.len() && p[i + 1] == '-' && p[i + 2] != ']' {
            if p[i] <= c && c <= p[i + 2] {
                hit = true;
            }
            i += 3;
        } else {
            if p[i] == c {
                hit = true;
            }
            i += 1;
        }
    }
    None
}

/// Parses `-p`: one level (`err` = 0..3) or a range `warning..err` / `3..4`.
pub fn parse_priority_range(s: &str) -> Result<(u8, u8)> {
    let bad = || {
        JournalError::BadQuery(format!(
            "priority {s:?} is not a level (emerg alert crit err warning notice info debug, or 0-7) or a range like err..warning"
        ))
    };
    match s.split_once("..") {
        Some((a, b)) => {
            let a = if a.is_empty() {
                0
            } else {
                super::parse_priority(a).ok_or_else(bad)?
            };
            let b = if b.is_empty() {
                7
            } else {
                super::parse_priority(b).ok_or_else(bad)?
            };
            Ok((a.min(b), a.max(b)))
        }
        None => Ok((0, super::parse_priority(s).ok_or_else(bad)?)),
    }
}

/// Parses a time of `--since`/`--until` into µs since the epoch, relative to `now_us`:
/// `now`, `today`, `yesterday`, `tomorrow`, `-1h`, `+5min`, `2 days ago`, `@EPOCH`,
/// `YYYY-MM-DD [HH:MM[:SS[.frac]]]`, `HH:MM[:SS]` (today), in local time.
pub fn parse_time(s: &str, now_us: u64) -> Result<u64> {
    let t = s.trim();
    let bad = |why: &str| {
        JournalError::BadQuery(format!(
            "time {s:?} not understood ({why}); use e.g. \"2026-11-23 10:00:00\", \"10:00\", today, yesterday, -1h, \"2 days ago\" or @1700000000"
        ))
    };
    let midnight = |days_back: i64| -> Result<u64> {
        let now = Local
            .timestamp_micros(now_us as i64)
            .single()
            .ok_or_else(|| bad("clock out of range"))?;
        let d = now.date_naive() - chrono::Duration::days(days_back);
        local_to_us(d.and_time(NaiveTime::MIN)).ok_or_else(|| bad("no such local time"))
    };
    match t {
        "now" => return Ok(now_us),
        "today" => return midnight(0),
        "yesterday" => return midnight(1),
        "tomorrow" => return midnight(-1),
        _ => {}
    }
    if let Some(e) = t.strip_prefix('@') {
        // Exact to the microsecond: no float on the way.
        let (secs, frac) = e.split_once('.').unwrap_or((e, ""));
        let secs: u64 = secs.parse().map_err(|_| bad("bad epoch seconds"))?;
        if frac.len() > 6 || !frac.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad("at most 6 fractional digits"));
        }
        let us: u64 = format!("{frac:0<6}").parse().unwrap_or(0);
        return Ok(secs * 1_000_000 + us);
    }
    if let Some(rest) = t.strip_suffix(" ago") {
        let d = parse_span(rest).ok_or_else(|| bad("bad time span"))?;
        return Ok(now_us.saturating_sub(d));
    }
    if let Some(rest) = t.strip_prefix('-') {
        let d = parse_span(rest).ok_or_else(|| bad("bad time span"))?;
        return Ok(now_us.saturating_sub(d));
    }
    if let Some(rest) = t.strip_prefix('+') {
        let d = parse_span(rest).ok_or_else(|| bad("bad time span"))?;
        return Ok(now_us.saturating_add(d));
    }
    let t2 = t.replace('T', " ");
    for f in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(dt) = NaiveDateTime::parse_from_str(&t2, f) {
            return local_to_us(dt).ok_or_else(|| bad("no such local time"));
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        return local_to_us(d.and_time(NaiveTime::MIN)).ok_or_else(|| bad("no such local time"));
    }
    for f in ["%H:%M:%S%.f", "%H:%M:%S", "%H:%M"] {
        if let Ok(tm) = NaiveTime::parse_from_str(t, f) {
            let now = Local
                .timestamp_micros(now_us as i64)
                .single()
                .ok_or_else(|| bad("clock out of range"))?;
            return local_to_us(now.date_naive().and_time(tm))
                .ok_or_else(|| bad("no such local time"));
        }
    }
    Err(bad("unknown format"))
}

fn local_to_us(dt: NaiveDateTime) -> Option<u64> {
    Local
        .from_local_datetime(&dt)
        .earliest()
        .map(|d| d.timestamp_micros().max(0) as u64)
}

/// Parses a time span like `1h`, `5min 30s`, `2 days`, `1h30m` into µs.
pub fn parse_span(s: &str) -> Option<u64> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        rest = rest.trim_start();
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_end == 0 {
            return None;
        }
        let n: f64 = rest[..num_end].parse().ok()?;
        rest = rest[num_end..].trim_start();
        let unit_end = rest
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(rest.len());
        let mult = match &rest[..unit_end] {
            "us" | "usec" | "µs" => 1.0,
            "ms" | "msec" => 1e3,
            "" | "s" | "sec" | "second" | "seconds" => 1e6,
            "m" | "min" | "minute" | "minutes" => 60e6,
            "h" | "hr" | "hour" | "hours" => 3600e6,
            "d" | "day" | "days" => 86400e6,
            "w" | "week" | "weeks" => 7.0 * 86400e6,
            "M" | "month" | "months" => 30.44 * 86400e6,
            "y" | "year" | "years" => 365.25 * 86400e6,
            _ => return None,
        };
        total += n * mult;
        rest = &rest[unit_end..];
    }
    Some(total as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::block::{self, EncodeItem, Encoder};

    /// A block of `msgs` as this version writes it, decompressed.
    fn block_of(msgs: &[&[u8]]) -> Vec<u8> {
        let items = msgs.iter().enumerate().map(|(i, m)| EncodeItem {
            seq: i as u64 + 1,
            realtime: 1_000 + i as u64,
            monotonic: 5 + i as u64,
            boot_id: 7,
            uid: 1000,
            invocation: 0,
            pid: None,
            stream: Stream::Stdout,
            priority: 6,
            flags: 0,
            identifier: "x",
            comm: "",
            message_id: 0,
            message: m,
        });
        let items: Vec<_> = items.collect();
        let (b, _) = Encoder::new().unwrap().encode(items.into_iter()).unwrap();
        block::decompress(&b).unwrap()
    }

    #[test]
    fn one_regex_pass_over_a_block_selects_what_matching_each_entry_does() {
        let msgs: Vec<&[u8]> = vec![
            b"ERROR [db] timeout after 5s",
            b"ERROR [db] ok",
            b"late timeout",
            b"",
            b"foo\nbar",
            b"foo",
            b"bar",
            b"bin\x00ary\xff timeout",
            b"Error: Timeout",
            b"error timeout",
            b"x foo y bar z",
            b"",
            b"timeout",
        ];
        let raw = block_of(&msgs);
        let view = block::view(block::CODEC_ZSTD_COLUMNS_V3, &raw).unwrap();
        let scan = block::view_for_scan(block::CODEC_ZSTD_COLUMNS_V3, &raw).unwrap();
        let items = block::decode(block::CODEC_ZSTD_COLUMNS_V3, &raw).unwrap();
        assert_eq!(items.iter().map(|e| e.message).collect::<Vec<_>>(), msgs);
        let rows = View::Rows(items.clone());
        for pattern in [
            "ERROR.*timeout",
            "error.*timeout",
            "timeout",
            "foo.*bar",
            "(?s)foo.*bar",
            "(?s)ERROR.*late",
            "(?-u)\\xff",
            "ary.*timeout",
            "^foo",
            "bar$",
            "\\bfoo\\b",
            "x*",
            "nothing here",
            "Timeout|ok$",
        ] {
            let cq = CompiledQuery::new(&Query {
                grep: Some(pattern.into()),
                ..Query::default()
            })
            .unwrap();
            let key = |e: &StoredRef<'_>| (e.seq, e.realtime, e.monotonic);
            let each: Vec<_> = (items.iter())
                .filter(|e| cq.matches("u", e))
                .map(key)
                .collect();
            let seqs = |v: &View<'_>| cq.select("u", v).iter().map(key).collect::<Vec<_>>();
            assert_eq!(seqs(&view), each, "{pattern}");
            assert_eq!(seqs(&scan), each, "{pattern}");
            assert_eq!(seqs(&rows), each, "{pattern}");
        }
    }

    #[test]
    fn smart_case_as_journalctl_any_capital_makes_it_case_sensitive() {
        let m = |pattern: &str, msg: &[u8]| {
            let cq = CompiledQuery::new(&Query {
                grep: Some(pattern.into()),
                ..Query::default()
            })
            .unwrap();
            cq.grep.as_ref().unwrap().is_match(msg)
        };
        assert!(m("error", b"ERROR x"));
        assert!(m("error", b"Error x"));
        assert!(!m("Error", b"ERROR x"));
        assert!(m("Error", b"Error x"));
        // \S has a capital letter: journalctl's test is on the pattern text.
        assert!(!m("e\\S", b"EX"));
        assert!(m("(?i)Error", b"ERROR"));
        assert!(!context_free("^x"));
        assert!(!context_free("x\\b"));
        assert!(context_free("a\\\\b"));
        assert!(context_free("ERROR.*timeout"));
    }

    #[test]
    fn a_bare_unit_name_means_its_service_as_in_journalctl() {
        let q = |u: &str| {
            CompiledQuery::new(&Query {
                units: vec![u.into()],
                ..Query::default()
            })
            .unwrap()
        };
        assert!(q("talker").unit_matches("talker.service"));
        assert!(q("talker").unit_matches("talker"));
        assert!(!q("talker").unit_matches("talker.target"));
        assert!(q("default.target").unit_matches("default.target"));
        assert!(!q("default.target").unit_matches("default.target.service"));
        assert!(!q("talk*").unit_matches("walker.service"));
        assert!(q("talk*").unit_matches("talker.service"));
    }

    #[test]
    fn queries_travel_as_postcard() {
        let q = Query {
            units: vec!["a*".into()],
            since: Some(1),
            until: Some(2),
            priority: Some((0, 3)),
            grep: Some("x".into()),
            invocation: Some(u128::MAX),
            latest_invocation: true,
            stream: Some(Stream::Stderr),
            cursor: Some("i=1".into()),
            after_cursor: None,
            lines: Some(10),
            reverse: true,
            identifiers: vec!["sh".into()],
            exclude_identifiers: vec!["run".into()],
            field_matches: vec![vec!["_PID=1".into()], vec!["PRIORITY=3".into()]],
            boot_id: Some(7),
        };
        let bytes = postcard::to_allocvec(&q).unwrap();
        assert_eq!(postcard::from_bytes::<Query>(&bytes).unwrap(), q);
    }

    #[test]
    fn globs() {
        assert!(Glob::new("memcached@*").matches("memcached@11212"));
        assert!(!Glob::new("memcached@*").matches("memcache"));
        assert!(Glob::new("unit0[1-3]").matches("unit02"));
        assert!(!Glob::new("unit0[!1-3]").matches("unit02"));
        assert!(Glob::new("a?c").matches("abc"));
        assert!(Glob::new("*").matches(""));
        assert!(Glob::new("plain").matches("plain"));
    }

    #[test]
    fn priorities() {
        assert_eq!(parse_priority_range("err").unwrap(), (0, 3));
        assert_eq!(parse_priority_range("err..warning").unwrap(), (3, 4));
        assert_eq!(parse_priority_range("6..2").unwrap(), (2, 6));
        assert!(parse_priority_range("loud").is_err());
    }

    #[test]
    fn times() {
        let now = 1_700_000_000_000_000;
        assert_eq!(parse_time("-1h", now).unwrap(), now - 3_600_000_000);
        assert_eq!(
            parse_time("2 days ago", now).unwrap(),
            now - 2 * 86_400_000_000
        );
        assert_eq!(parse_time("@1700000000", now).unwrap(), now);
        assert_eq!(parse_time("@1700000000.000123", now).unwrap(), now + 123);
        let today = parse_time("today", now).unwrap();
        assert!(today <= now && now - today < 86_400_000_000);
        assert_eq!(
            parse_time("yesterday", now).unwrap() + 86_400_000_000,
            today
        );
        let t = parse_time("2023-11-14 22:13:20", now).unwrap();
        assert_eq!(parse_time("2023-11-14T22:13:20", now).unwrap(), t);
        assert!(parse_time("the other day", now).is_err());
        assert_eq!(parse_span("1h30m"), Some(5_400_000_000));
    }
}
