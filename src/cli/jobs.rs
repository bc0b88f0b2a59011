//! The verbs that run a job on each unit named (start, stop, restart,
//! try-restart, reload, kill, reset-failed) share one shape: send the
//! request, print one line per failed unit, exit with the worst code.

use std::path::PathBuf;

use crate::ipc::proto::{Request, Response};

use super::common::{VerbError, call, code_of, describe, outln};
use super::exit;

/// Runs a job request; `verb` is the word used in messages ("start").
pub fn run(socket: Option<PathBuf>, verb: &'static str, request: Request) -> Result<u8, VerbError> {
    let Response::Jobs(outcomes) = call(socket, &request)? else {
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
