//! `corral calendar EXPR...`: the normalized form and next elapses of
//! calendar events, in the lines `systemd-analyze calendar` prints.

use std::io::Write;

use clap::Args;
use jiff::Timestamp;
use jiff::tz::TimeZone;

use super::exit;
use crate::unit::calendar::{
    CalendarError, CalendarSpec, format_relative, format_timestamp, is_utc_zone,
};

/// Arguments of `corral calendar`.
#[derive(Debug, Args)]
#[command(
    after_help = "Expressions are those of OnCalendar= (systemd.time(7)): daily, \
'Mon..Fri *-*-* 09:00', '*-*~01 04:00 UTC', 'weekly Europe/Berlin', ...\n\n\
Exit status: 0 when every expression parses (one that never elapses again included), \
1 when any does not."
)]
pub struct CalendarArgs {
    /// Calendar event expressions.
    #[arg(required = true, value_name = "EXPR")]
    pub exprs: Vec<String>,
    /// How many next elapses to show.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub iterations: u32,
    /// Compute from this instant instead of now: @SECONDS since the epoch
    /// (fractions allowed), or a calendar event that names one instant
    /// ('2026-12-07 10:00:00 UTC').
    #[arg(long, value_name = "TIMESTAMP", value_parser = parse_base_time)]
    pub base_time: Option<u64>,
}

/// `--base-time`: `@SECONDS[.FRACTION]`, or an expression of one instant.
fn parse_base_time(s: &str) -> Result<u64, String> {
    if let Some(n) = s.strip_prefix('@') {
        let secs: f64 = n
            .parse()
            .map_err(|_| format!("'{s}' is not @SECONDS since the epoch"))?;
        if !secs.is_finite() || secs < 0.0 {
            return Err(format!("'{s}' is not @SECONDS since the epoch"));
        }
        return Ok((secs * 1e6).round() as u64);
    }
    // An expression of one instant elapses at that instant: its first
    // elapse after the epoch.
    let spec = CalendarSpec::parse(s).map_err(|e| e.to_string())?;
    let first = spec.next_elapse(0, &TimeZone::system());
    match first {
        Some(t) if spec.next_elapse(t, &TimeZone::system()).is_none() => Ok(t),
        _ => Err(format!(
            "'{s}' is not one instant; write @SECONDS or e.g. '2026-12-07 10:00:00 UTC'"
        )),
    }
}

/// The lines systemd-analyze prints for one expression, computed from
/// `base` (microseconds) with "From now" measured from `now`, times shown
/// in `local`.
pub fn render(
    expr: &str,
    base: u64,
    now: u64,
    iterations: u32,
    local: &TimeZone,
) -> Result<String, CalendarError> {
    let now_ts = Timestamp::from_microsecond(now as i64).unwrap_or(Timestamp::UNIX_EPOCH);
    let spec = CalendarSpec::parse_with_local(expr, local, now_ts)?;
    let normalized = spec.to_string();
    let mut rows: Vec<(String, String)> = Vec::new();
    if normalized != expr {
        rows.push(("Original form".into(), expr.to_string()));
    }
    rows.push(("Normalized form".into(), normalized));
    let show_utc = !is_utc_zone(local, now_ts);
    let mut n = base;
    for i in 0..iterations {
        let Some(next) = spec.next_elapse(n, local) else {
            if i == 0 {
                rows.push(("Next elapse".into(), "never".into()));
            }
            break;
        };
        let key = if i == 0 {
            "Next elapse".to_string()
        } else {
            format!("Iter. #{}", i + 1)
        };
        rows.push((key, format_timestamp(next, local)));
        if show_utc {
            rows.push(("(in UTC)".into(), format_timestamp(next, &TimeZone::UTC)));
        }
        rows.push(("From now".into(), format_relative(next, now)));
        n = next;
    }
    let width = rows.iter().map(|(k, _)| k.len() + 1).max().unwrap_or(0);
    let mut out = String::new();
    for (k, v) in rows {
        out.push_str(&format!("{:>width$} {v}\n", format!("{k}:")));
    }
    Ok(out)
}

/// Prints each expression's block (a blank line between them) and the
/// refusals on stderr; exit 0 when all parse, 1 otherwise.
pub fn run(args: &CalendarArgs) -> u8 {
    let now = u64::try_from(Timestamp::now().as_microsecond()).unwrap_or(0);
    let base = args.base_time.unwrap_or(now);
    let local = TimeZone::system();
    let mut out = std::io::stdout().lock();
    let mut err = std::io::stderr().lock();
    let mut code = exit::OK;
    for (i, expr) in args.exprs.iter().enumerate() {
        match render(expr, base, now, args.iterations, &local) {
            // A closed pipe (`corral calendar ... | head`) ends quietly.
            Ok(block) => {
                let _ = out.write_all(block.as_bytes());
            }
            Err(e) => {
                let _ = out.flush();
                let _ = writeln!(
                    err,
                    "Failed to parse calendar specification '{}': {}",
                    crate::unit::escape_control(expr),
                    e.errno_text()
                );
                let _ = writeln!(err, "{}", crate::unit::escape_control(&e.to_string()));
                if crate::unit::values::parse_timespan(expr).is_ok() {
                    let _ = writeln!(
                        err,
                        "Hint: this expression is a time span, not a calendar event: \
                         use it in OnActiveSec= or OnUnitActiveSec=, not OnCalendar="
                    );
                }
                code = exit::NEGATIVE;
            }
        }
        if i + 1 < args.exprs.len() {
            let _ = out.write_all(b"\n");
        }
    }
    let _ = out.flush();
    code
}
