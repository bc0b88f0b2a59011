//! `corral reload UNIT...`.

use std::path::PathBuf;

use crate::ipc::proto::Request;

use super::common::VerbError;
use super::jobs;

/// Runs `corral reload`; returns the exit code.
pub fn run(socket: Option<PathBuf>, units: Vec<String>) -> Result<u8, VerbError> {
    jobs::need_units("reload", &units)?;
    jobs::run(socket, "reload", Request::Reload { units })
}
