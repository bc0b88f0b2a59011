//! `corral list-dependencies UNIT [--reverse] [--all]`: systemctl's tree of
//! what a unit pulls in (or, reversed, what pulls it in), as the manager sees
//! its loaded units.

use std::path::PathBuf;

use crate::ipc::proto::{Request, Response};

use super::common::{VerbError, call};
use super::{exit, jobs};

/// Runs `corral list-dependencies`.
pub fn run(
    socket: Option<PathBuf>,
    unit: Option<String>,
    reverse: bool,
    all: bool,
) -> Result<u8, VerbError> {
    let unit = unit.unwrap_or_else(|| crate::supervisor::graph::DEFAULT_TARGET.to_string());
    match call(socket, &Request::ListDependencies { unit, reverse, all })? {
        Response::Text(t) => {
            print!("{t}");
            Ok(exit::OK)
        }
        other => Err(jobs::unexpected("list-dependencies", &other)),
    }
}
