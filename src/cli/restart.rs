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
    if only_running {
        jobs::need_units("try-restart", &units)?;
        jobs::run(socket, "try-restart", Request::TryRestart { units })
    } else {
        jobs::need_units("restart", &units)?;
        jobs::run(socket, "restart", Request::Restart { units })
    }
}
