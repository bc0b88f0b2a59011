//! `corral daemon-reload`.

use std::path::PathBuf;

use crate::ipc::proto::{Request, Response};

use super::common::{VerbError, call};
use super::{exit, jobs};

/// Runs `corral daemon-reload`, printing what changed.
pub fn run(socket: Option<PathBuf>) -> Result<u8, VerbError> {
    match call(socket, &Request::DaemonReload)? {
        Response::Done(notes) => {
            for n in notes {
                eprintln!("{n}");
            }
            Ok(exit::OK)
        }
        other => Err(jobs::unexpected("daemon-reload", &other)),
    }
}
