//! `corral list-sockets [--all]`: the listening sockets, as `systemctl
//! list-sockets` shows them.

use std::path::PathBuf;

use crate::ipc::proto::{ActiveState, Request, Response, UnitStatus};

use super::common::{VerbError, call, out};
use super::exit;

/// Runs `corral list-sockets`; without `all`, only active socket units.
pub fn run(socket: Option<PathBuf>, all: bool) -> Result<u8, VerbError> {
    let Response::Units(list) = call(socket, &Request::List)? else {
        return Err(VerbError::Unexpected {
            verb: "list-sockets",
            got: "not a unit list".into(),
        });
    };
    let units: Vec<UnitStatus> = list
        .into_iter()
        .filter_map(Result::ok)
        .filter(|u| !u.listen.is_empty() && (all || u.active == ActiveState::Active))
        .collect();
    out(format_args!("{}", render(&units)))?;
    Ok(exit::OK)
}

/// The table: LISTEN UNIT ACTIVATES, one line per `Listen*=` entry, then a count.
pub fn render(units: &[UnitStatus]) -> String {
    let rows: Vec<(&str, &str, String)> = units
        .iter()
        .flat_map(|u| {
            let activates = u.triggers.join(" ");
            u.listen.iter().map(move |l| {
                let value = l.split_once('=').map_or(l.as_str(), |(_, v)| v);
                (value, u.name.as_str(), activates.clone())
            })
        })
        .collect();
    let lw = rows.iter().map(|r| r.0.len()).max().unwrap_or(6).max(6);
    let uw = rows.iter().map(|r| r.1.len()).max().unwrap_or(4).max(4);
    let mut o = format!("{:lw$} {:uw$} ACTIVATES\n", "LISTEN", "UNIT");
    for (l, u, a) in &rows {
        o.push_str(format!("{l:lw$} {u:uw$} {a}").trim_end());
        o.push('\n');
    }
    o.push_str(&format!("\n{} sockets listed.\n", rows.len()));
    o
}
