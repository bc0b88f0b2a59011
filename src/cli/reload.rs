//! `corral reload UNIT...`, `corral reload-or-restart UNIT...` and
//! `corral try-reload-or-restart UNIT...`.

use std::path::PathBuf;

use crate::ipc::proto::Request;

use super::common::VerbError;
use super::jobs;

/// Runs `corral reload`; returns the exit code.
pub fn run(socket: Option<PathBuf>, units: Vec<String>) -> Result<u8, VerbError> {
    jobs::need_units("reload", &units)?;
    jobs::run(socket, "reload", Request::Reload { units })
}

/// Runs `corral reload-or-restart`, or `try-reload-or-restart` when
/// `only_running`: the manager reloads the units that can and restarts the
/// others.
pub fn or_restart(
    socket: Option<PathBuf>,
    units: Vec<String>,
    only_running: bool,
) -> Result<u8, VerbError> {
    let verb = if only_running {
        "try-reload-or-restart"
    } else {
        "reload-or-restart"
    };
    jobs::need_units(verb, &units)?;
    let request = if only_running {
        Request::TryReloadOrRestart { units }
    } else {
        Request::ReloadOrRestart { units }
    };
    jobs::run(socket, verb, request)
}
