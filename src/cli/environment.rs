//! `corral set-environment`, `unset-environment`, `import-environment` and
//! `show-environment`: the manager's environment block, which units started
//! afterwards receive below their own Environment=.

use std::path::PathBuf;

use crate::ipc::proto::{Request, Response};
use crate::supervisor::environment::resolve_import_from_process;

use super::common::{VerbError, call};
use super::{exit, jobs};

/// Rejects an empty argument list, saying what is expected.
fn need_args(verb: &str, what: &str, args: &[String]) -> Result<(), VerbError> {
    if args.is_empty() {
        return Err(VerbError::Usage(format!(
            "{verb} needs at least one {what}, e.g. `corral {verb} DISPLAY{}`",
            if what.contains('=') { "=:0" } else { "" }
        )));
    }
    Ok(())
}

/// Sends a request that changes the block and expects no data back. A
/// refusal (an invalid entry) is printed as systemctl prints it, "Failed to
/// set environment: …", and exits 1 as systemctl does (`what` is "set
/// environment" or "import environment").
fn change(
    socket: Option<PathBuf>,
    verb: &'static str,
    what: &str,
    request: Request,
) -> Result<u8, VerbError> {
    match call(socket, &request) {
        Ok(Response::Done(notes)) => {
            for n in notes {
                eprintln!("{n}");
            }
            Ok(exit::OK)
        }
        Ok(other) => Err(jobs::unexpected(verb, &other)),
        Err(VerbError::Remote(msg)) => {
            eprintln!("Failed to {what}: {msg}");
            Ok(exit::NEGATIVE)
        }
        Err(e) => Err(e),
    }
}

/// `corral set-environment NAME=value...`.
pub fn set(socket: Option<PathBuf>, assignments: Vec<String>) -> Result<u8, VerbError> {
    need_args("set-environment", "NAME=value", &assignments)?;
    change(
        socket,
        "set-environment",
        "set environment",
        Request::SetEnvironment { assignments },
    )
}

/// `corral unset-environment NAME...`.
pub fn unset(socket: Option<PathBuf>, names: Vec<String>) -> Result<u8, VerbError> {
    need_args("unset-environment", "NAME", &names)?;
    change(
        socket,
        "unset-environment",
        "set environment",
        Request::UnsetEnvironment { names },
    )
}

/// `corral import-environment [NAME | NAME=value | NAME=]...`: bare names copy
/// this process's values (turnstile's rules); no names import everything.
pub fn import(socket: Option<PathBuf>, args: Vec<String>) -> Result<u8, VerbError> {
    let import = resolve_import_from_process(&args).map_err(|e| VerbError::Usage(e.to_string()))?;
    for n in &import.notices {
        eprintln!("{n}");
    }
    if import.set.is_empty() {
        return Ok(exit::OK);
    }
    change(
        socket,
        "import-environment",
        "import environment",
        Request::ImportEnvironment { pairs: import.set },
    )
}

/// `corral show-environment`.
pub fn show(socket: Option<PathBuf>) -> Result<u8, VerbError> {
    match call(socket, &Request::ShowEnvironment)? {
        Response::Text(t) => {
            print!("{t}");
            Ok(exit::OK)
        }
        other => Err(jobs::unexpected("show-environment", &other)),
    }
}
