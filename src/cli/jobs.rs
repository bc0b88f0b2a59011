//! The verbs that run a job on each unit named (start, stop, restart,
//! try-restart, reload, kill, reset-failed) share one shape: send the
//! request, print one line per failed unit, exit with the worst code.

use std::path::PathBuf;

use crate::ipc::proto::{Request, Response};
use crate::ipc::{ErrorCode, IpcError};

use super::common::{VerbError, call, code_of, describe, outln};
use super::exit;

/// Runs a job request; `verb` is the word used in messages ("start").
pub fn run(socket: Option<PathBuf>, verb: &'static str, request: Request) -> Result<u8, VerbError> {
    let Response::Jobs(outcomes) = call_across_reexec(socket, request)? else {
        return Err(VerbError::Unexpected {
            verb,
            got: "not a job answer".into(),
        });
    };
    let mut code = exit::OK;
    for o in outcomes {
        match o.result {
            Ok(notes) => {
                for n in notes {
                    outln(format_args!("{n}"))?;
                }
            }
            Err(f) => {
                eprintln!("Failed to {verb} {}: {}", o.unit, f.message);
                code = code.max(code_of(&f));
            }
        }
    }
    Ok(code)
}

/// How many times a job request is asked again of a manager that
/// re-executed itself meanwhile.
const REEXEC_RETRIES: usize = 3;

/// Sends a job request; when the manager answers that it re-executes itself
/// (`daemon-reexec`) while the jobs ran, asks the new image again: the
/// listening socket is passed across the exec, so the connection waits for
/// it. A start (or restart, whose stop is done by then) is asked again as a
/// start, which waits for the job going on; a stop as a stop: the same
/// result and exit code as without the re-execution.
fn call_across_reexec(
    socket: Option<PathBuf>,
    mut request: Request,
) -> Result<Response, VerbError> {
    for _ in 0..REEXEC_RETRIES {
        match call(socket.clone(), &request) {
            Err(VerbError::Ipc(IpcError::Remote(e))) if e.code == ErrorCode::REEXECUTING => {
                request = match request {
                    Request::Restart { units } | Request::TryRestart { units } => {
                        Request::Start { units }
                    }
                    other => other,
                };
            }
            other => return other,
        }
    }
    call(socket, &request)
}

/// Rejects an empty unit list the way systemctl does.
pub fn need_units(verb: &str, units: &[String]) -> Result<(), VerbError> {
    if units.is_empty() {
        return Err(VerbError::Usage(format!(
            "{verb} needs at least one unit name, e.g. `corral {verb} memcached`"
        )));
    }
    Ok(())
}

/// Guards against answers of the wrong kind.
pub fn unexpected(verb: &'static str, r: &Response) -> VerbError {
    VerbError::Unexpected {
        verb,
        got: describe(r),
    }
}
