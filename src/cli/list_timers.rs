//! `corral list-timers [--all]`: the timers, as `systemctl list-timers`
//! shows them: NEXT, LEFT, LAST, PASSED, UNIT, ACTIVATES.

use std::path::PathBuf;

use crate::ipc::proto::{ActiveState, Request, Response, SubState, UnitStatus};

use super::common::{VerbError, call, out};
use super::exit;
use super::status::{format_span, format_time, now_usec};

/// Runs `corral list-timers`; without `all`, only timers that are not inactive.
pub fn run(socket: Option<PathBuf>, all: bool) -> Result<u8, VerbError> {
    let Response::Units(list) = call(socket, &Request::List)? else {
        return Err(VerbError::Unexpected {
            verb: "list-timers",
            got: "not a unit list".into(),
        });
    };
    let mut timers: Vec<UnitStatus> = list
        .into_iter()
        .filter_map(Result::ok)
        .filter(|u| matches!(u.sub, SubState::Timer(_)))
        .filter(|u| all || u.active != ActiveState::Inactive)
        .collect();
    // As systemctl: the next to elapse first, those with none last.
    timers.sort_by_key(|u| (u.next_elapse_usec.is_none(), u.next_elapse_usec));
    out(format_args!("{}", render(&timers, now_usec(), all)))?;
    Ok(exit::OK)
}

/// The table and its footer.
pub fn render(timers: &[UnitStatus], now: u64, all: bool) -> String {
    let rows: Vec<[String; 6]> = timers
        .iter()
        .map(|u| {
            let (next, left) = match u.next_elapse_usec {
                Some(t) => (
                    format_time(t),
                    format!("{} left", format_span(t.saturating_sub(now))),
                ),
                None => ("n/a".to_string(), "n/a".to_string()),
            };
            let (last, passed) = match u.last_trigger_usec {
                Some(t) => (
                    format_time(t),
                    format!("{} ago", format_span(now.saturating_sub(t))),
                ),
                None => ("n/a".to_string(), "n/a".to_string()),
            };
            [
                next,
                left,
                last,
                passed,
                u.name.clone(),
                u.triggers.join(" "),
            ]
        })
        .collect();
    let heads = ["NEXT", "LEFT", "LAST", "PASSED", "UNIT", "ACTIVATES"];
    let mut widths = heads.map(str::len);
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: [&str; 6]| {
        let mut l = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                l.push_str(c);
            } else {
                l.push_str(&format!("{c:w$} ", w = widths[i]));
            }
        }
        l.push('\n');
        l
    };
    let mut o = String::new();
    if !rows.is_empty() {
        o.push_str(&line(heads));
        for r in &rows {
            o.push_str(&line(r.each_ref().map(String::as_str)));
        }
        o.push('\n');
    }
    o.push_str(&format!(
        "{} timer{} listed.\n",
        rows.len(),
        if rows.len() == 1 { "" } else { "s" }
    ));
    if !all {
        o.push_str("Pass --all to see loaded but inactive timers, too.\n");
    }
    o
}
