//! What the unit verbs share: reaching the manager, mapping its answers to
//! systemctl's exit codes, and printing failures the way systemctl does.

use std::path::PathBuf;

use crate::ipc::proto::{ErrorKind, Failure, Request, Response};
use crate::ipc::{Client, IpcError};

use super::exit;

/// Errors of the unit verbs.
#[derive(Debug, thiserror::Error)]
pub enum VerbError {
    /// Talking to the manager failed (unreachable, version mismatch, ...).
    #[error(transparent)]
    Ipc(#[from] IpcError),
    /// The manager answered with an error for the request as a whole.
    #[error("{0}")]
    Remote(String),
    /// The manager answered something this verb does not expect.
    #[error(
        "unexpected answer from the corral manager to {verb}: {got}; is corrald the same version as corral?"
    )]
    Unexpected {
        /// The verb.
        verb: &'static str,
        /// A short description of the answer.
        got: String,
    },
    /// The output could not be written.
    #[error("cannot write output: {0}")]
    Output(#[from] std::io::Error),
    /// Bad command-line input that clap could not catch.
    #[error("{0}")]
    Usage(String),
}

/// The control socket to use: `--socket`, else $CORRAL_SOCKET (clap reads it),
/// else `$XDG_RUNTIME_DIR/corral/control.sock`, else `/run/user/UID/corral/control.sock`.
pub fn socket_path(explicit: Option<PathBuf>) -> PathBuf {
    if let Some(p) = explicit {
        return p;
    }
    let runtime = std::env::var_os("XDG_RUNTIME_DIR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(format!("/run/user/{}", nix::unistd::getuid())));
    runtime.join("corral").join("control.sock")
}

/// Sends one request to the manager and returns its answer.
pub fn call(socket: Option<PathBuf>, request: &Request) -> Result<Response, VerbError> {
    let (_, answer) =
        Client::<Request, Response>::connect_and_request(socket_path(socket), request)?;
    match answer {
        Response::Error(f) => Err(VerbError::Remote(f.message)),
        other => Ok(other),
    }
}

/// The exit code for a failure, as systemctl picks it.
pub fn code_of(f: &Failure) -> u8 {
    match f.kind {
        ErrorKind::NotFound => exit::NO_SUCH_UNIT,
        ErrorKind::BadRequest => exit::ERROR,
        ErrorKind::BadUnit | ErrorKind::Failed | ErrorKind::Refused | ErrorKind::Internal => {
            exit::NEGATIVE
        }
    }
}

/// A short description of a response, for [`VerbError::Unexpected`].
pub fn describe(r: &Response) -> String {
    let s = format!("{r:?}");
    s.chars().take(80).collect()
}

/// Writes to stdout; a closed pipe (`corral status | head -1`) becomes
/// [`VerbError::Output`], which [`report`] turns into a quiet exit 0.
pub fn out(args: std::fmt::Arguments<'_>) -> Result<(), VerbError> {
    use std::io::Write;
    std::io::stdout().lock().write_fmt(args)?;
    Ok(())
}

/// [`out`] with a newline.
pub fn outln(args: std::fmt::Arguments<'_>) -> Result<(), VerbError> {
    use std::io::Write;
    let mut o = std::io::stdout().lock();
    o.write_fmt(args)?;
    o.write_all(b"\n")?;
    Ok(())
}

/// Prints an error of a unit verb and returns the exit code: 0 for a reader
/// that went away (broken pipe), as journalctl does, else the error code.
pub fn report(e: &VerbError) -> u8 {
    if let VerbError::Output(io) = e
        && io.kind() == std::io::ErrorKind::BrokenPipe
    {
        return exit::OK;
    }
    eprintln!("corral: {e}");
    exit::ERROR
}
