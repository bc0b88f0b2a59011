//! `corral stop UNIT...`.

use std::path::PathBuf;

use crate::ipc::proto::Request;

use super::common::VerbError;
use super::jobs;

/// Runs `corral stop`; returns the exit code.
pub fn run(socket: Option<PathBuf>, units: Vec<String>) -> Result<u8, VerbError> {
    jobs::need_units("stop", &units)?;
    jobs::run(socket, "stop", Request::Stop { units })
}
