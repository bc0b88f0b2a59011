//! `corral daemon-reexec`.

use std::path::PathBuf;

use crate::ipc::proto::Request;

use super::common::VerbError;

/// Runs `corral daemon-reexec`: answered once the manager is about to
/// execute its binary again; the next command reaches the new image.
pub fn run(socket: Option<PathBuf>) -> Result<u8, VerbError> {
    super::daemon_reload::done(socket, &Request::DaemonReexec, "daemon-reexec")
}
