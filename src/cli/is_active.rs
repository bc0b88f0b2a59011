//! `corral is-active UNIT...` and `corral is-failed UNIT...`.

use std::path::PathBuf;

use crate::ipc::proto::{ActiveState, Request, Response};

use super::common::{VerbError, call, outln};
use super::jobs;

/// systemctl's "program is not running" code of `is-active`.
const NOT_ACTIVE: u8 = 3;

/// Runs `is-active` (or `is-failed` when `failed`): prints each unit's state
/// unless `quiet`; exit 0 when at least one unit is active (failed).
pub fn run(
    socket: Option<PathBuf>,
    units: Vec<String>,
    failed: bool,
    quiet: bool,
) -> Result<u8, VerbError> {
    let verb = if failed { "is-failed" } else { "is-active" };
    jobs::need_units(verb, &units)?;
    let Response::States(states) = call(socket, &Request::ActiveStates { units })? else {
        return Err(VerbError::Unexpected {
            verb,
            got: "not a list of states".into(),
        });
    };
    let mut hit = false;
    for (_, state) in states {
        let word = state.map_or("inactive", ActiveState::as_str);
        let yes = matches!(
            (failed, state),
            (true, Some(ActiveState::Failed))
                | (false, Some(ActiveState::Active | ActiveState::Reloading))
        );
        hit |= yes;
        if !quiet {
            outln(format_args!("{word}"))?;
        }
    }
    Ok(match (hit, failed) {
        (true, _) => 0,
        (false, true) => 1,
        (false, false) => NOT_ACTIVE,
    })
}
