//! `corral reset-failed [UNIT...]`.

use std::path::PathBuf;

use crate::ipc::proto::Request;

use super::common::VerbError;
use super::jobs;

/// Runs `corral reset-failed`: every failed unit when none is named.
pub fn run(socket: Option<PathBuf>, units: Vec<String>) -> Result<u8, VerbError> {
    jobs::run(socket, "reset-failed", Request::ResetFailed { units })
}
