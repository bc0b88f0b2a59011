//! `corral list [--all] [--state=STATE,...] [--failed] [--json]`: the units, as
//! `systemctl list-units` shows them.

use std::path::PathBuf;

use crate::ipc::proto::{ActiveState, LoadState, Request, Response, UnitStatus};

use super::common::{VerbError, call, out, outln};
use super::{exit, show};

/// Runs `corral list`; without `all`, only units that are not inactive;
/// with `states`, only units whose ACTIVE, SUB or LOAD word is one of them.
pub fn run(
    socket: Option<PathBuf>,
    all: bool,
    states: &[String],
    json: bool,
) -> Result<u8, VerbError> {
    let Response::Units(list) = call(socket, &Request::List)? else {
        return Err(VerbError::Unexpected {
            verb: "list",
            got: "not a unit list".into(),
        });
    };
    let units: Vec<UnitStatus> = list
        .into_iter()
        .filter_map(Result::ok)
        // As systemctl: a unit file that failed to load (unsupported type,
        // bad syntax) is inactive too, so its error row needs `--all`.
        .filter(|u| {
            if states.is_empty() {
                all || u.active != ActiveState::Inactive
            } else {
                let words = [u.active.as_str(), u.sub.as_str(), load_word(&u.load)];
                states.iter().any(|s| words.contains(&s.as_str()))
            }
        })
        .collect();
    if json {
        let v: Vec<_> = units.iter().map(show::unit_json).collect();
        outln(format_args!("{}", serde_json::Value::Array(v)))?;
        return Ok(exit::OK);
    }
    out(format_args!("{}", render(&units)))?;
    Ok(exit::OK)
}

/// systemctl's word for a load state (the LOAD column, `LoadState=`).
pub fn load_word(l: &LoadState) -> &'static str {
    match l {
        LoadState::Loaded => "loaded",
        LoadState::Masked => "masked",
        LoadState::Error(_) => "error",
        LoadState::NotFound => "not-found",
    }
}

/// The table: UNIT LOAD ACTIVE SUB DESCRIPTION, then a count.
pub fn render(units: &[UnitStatus]) -> String {
    let w = units.iter().map(|u| u.name.len()).max().unwrap_or(4).max(4);
    let lw = units
        .iter()
        .map(|u| load_word(&u.load).len())
        .max()
        .unwrap_or(6)
        .max(6);
    let mut o = format!(
        "{:w$} {:lw$} {:12} {:12} DESCRIPTION\n",
        "UNIT", "LOAD", "ACTIVE", "SUB"
    );
    for u in units {
        let load = load_word(&u.load);
        o.push_str(&format!(
            "{:w$} {:lw$} {:12} {:12} {}\n",
            u.name,
            load,
            u.active.as_str(),
            u.sub.as_str(),
            u.description
        ));
    }
    o.push_str(&format!("\n{} units listed.\n", units.len()));
    o
}
