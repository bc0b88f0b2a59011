//! `corral start UNIT...`.

use std::path::PathBuf;

use crate::ipc::proto::Request;

use super::common::VerbError;
use super::jobs;

/// Runs `corral start`; returns the exit code.
pub fn run(socket: Option<PathBuf>, units: Vec<String>) -> Result<u8, VerbError> {
    jobs::need_units("start", &units)?;
    jobs::run(socket, "start", Request::Start { units })
}
