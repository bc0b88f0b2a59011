//! `corral daemon-reload`.

use std::path::PathBuf;

use crate::ipc::proto::{Request, Response};

use super::common::{VerbError, call};
use super::{exit, jobs};

/// Runs `corral daemon-reload`, printing what changed.
pub fn run(socket: Option<PathBuf>) -> Result<u8, VerbError> {
    done(socket, &Request::DaemonReload, "daemon-reload")
}

/// Sends `request`, answered `Done` with notes (printed) by the `verb` it is.
pub(super) fn done(
    socket: Option<PathBuf>,
    request: &Request,
    verb: &'static str,
) -> Result<u8, VerbError> {
    match call(socket, request)? {
        Response::Done(notes) => {
            for n in notes {
                eprintln!("{n}");
            }
            Ok(exit::OK)
        }
        other => Err(jobs::unexpected(verb, &other)),
    }
}
