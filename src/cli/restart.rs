//! `corral restart UNIT...` and `corral try-restart UNIT...`.

use std::path::PathBuf;

use crate::ipc::proto::Request;

use super::common::VerbError;
use super::jobs;

/// Runs `corral restart`, or `try-restart` when `only_running`.
pub fn run(
    socket: Option<PathBuf>,
    units: Vec<String>,
    only_running: bool,
) -> Result<u8, VerbError> {
    let verb = if only_running {
        "try-restart"
    } else {
        "restart"
    };
    jobs::need_units(verb, &units)?;
    let request = if only_running {
        Request::TryRestart { units }
    } else {
        Request::Restart { units }
    };
    jobs::run(socket, verb, request)
}
