//! `corral enable-linger` / `corral disable-linger`: keep a user's manager
//! running without a login, and start it at boot.

use clap::Args;

use super::exit;
use super::login::{SystemSocket, call, report, resolve_uid};
use crate::ipc::system_proto::{SystemRequest, SystemResponse};

/// Arguments of `corral enable-linger` and `corral disable-linger`.
#[derive(Debug, Clone, Args)]
pub struct LingerArgs {
    /// The user (name or uid); yourself when omitted. Only root may name another user.
    pub user: Option<String>,
    /// Where the system manager listens.
    #[command(flatten)]
    pub socket: SystemSocket,
}

/// Runs `corral enable-linger` (`enable`) or `corral disable-linger`.
pub fn run(args: LingerArgs, enable: bool) -> u8 {
    let verb = if enable {
        "enable-linger"
    } else {
        "disable-linger"
    };
    let uid = match resolve_uid(args.user.as_deref()) {
        Ok(uid) => uid,
        Err(e) => {
            eprintln!("corral {verb}: {e}");
            return exit::ERROR;
        }
    };
    let request = if enable {
        SystemRequest::EnableLinger { uid }
    } else {
        SystemRequest::DisableLinger { uid }
    };
    match report(verb, call(&args.socket, &request, None)) {
        Some(SystemResponse::Linger { enabled }) => {
            let now = if enabled {
                "lingers"
            } else {
                "no longer lingers"
            };
            println!("uid {uid} {now}");
            exit::OK
        }
        Some(other) => {
            eprintln!("corral {verb}: unexpected answer from corrald --system: {other:?}");
            exit::ERROR
        }
        None => exit::ERROR,
    }
}
