//! `corral login` / `corral logout`: register or end a session with the
//! system manager, as the PAM module does, for logins that do not go through
//! PAM (a container's entry point, a cron job, a test).

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::exit;
use crate::ipc::system_proto::{DEFAULT_SYSTEM_SOCKET, SystemRequest, SystemResponse};
use crate::ipc::{Client, ClientOptions, IpcError};

/// Where to reach `corrald --system`; shared by the system verbs.
#[derive(Debug, Clone, Args)]
pub struct SystemSocket {
    /// The system manager's socket.
    #[arg(
        long = "system-socket",
        env = "CORRAL_SYSTEM_SOCKET",
        default_value = DEFAULT_SYSTEM_SOCKET
    )]
    pub path: PathBuf,
}

/// Arguments of `corral login`.
#[derive(Debug, Clone, Args)]
pub struct LoginArgs {
    /// Return only once the user manager is ready (or has failed).
    #[arg(long)]
    pub wait: bool,
    /// Give up waiting after this many seconds (the session stays registered).
    #[arg(long, default_value_t = 30.0, requires = "wait")]
    pub timeout: f64,
    /// The user to log in (name or uid); only root may name another user.
    pub user: Option<String>,
    /// Where the system manager listens.
    #[command(flatten)]
    pub socket: SystemSocket,
}

/// Arguments of `corral logout`.
#[derive(Debug, Clone, Args)]
pub struct LogoutArgs {
    /// The user to log out (name or uid); only root may name another user.
    pub user: Option<String>,
    /// Where the system manager listens.
    #[command(flatten)]
    pub socket: SystemSocket,
}

/// Resolves a user name or uid; `None` means the caller.
pub(crate) fn resolve_uid(user: Option<&str>) -> Result<u32, String> {
    let Some(user) = user else {
        return Ok(nix::unistd::getuid().as_raw());
    };
    if let Ok(uid) = user.parse::<u32>() {
        return Ok(uid);
    }
    match nix::unistd::User::from_name(user) {
        Ok(Some(u)) => Ok(u.uid.as_raw()),
        Ok(None) => Err(format!("no user named {user:?} in the user database")),
        Err(e) => Err(format!("looking up user {user:?}: {e}")),
    }
}

/// Sends one request to the system manager and returns its answer.
pub(crate) fn call(
    socket: &SystemSocket,
    request: &SystemRequest,
    reply_timeout: Option<Duration>,
) -> Result<SystemResponse, IpcError> {
    let options = ClientOptions {
        reply_timeout,
        hint: "is corrald --system running? Start it as root, or point \
               --system-socket/CORRAL_SYSTEM_SOCKET at its system.sock"
            .to_string(),
        ..ClientOptions::default()
    };
    let mut client: Client<SystemRequest, SystemResponse> =
        Client::connect_with(&socket.path, options)?;
    client.request(request)
}

/// Prints a failed answer the same way for every system verb.
pub(crate) fn report(
    verb: &str,
    result: Result<SystemResponse, IpcError>,
) -> Option<SystemResponse> {
    match result {
        Ok(SystemResponse::Error { message, .. }) => {
            eprintln!("corral {verb}: {message}");
            None
        }
        Ok(response) => Some(response),
        Err(e) => {
            eprintln!("corral {verb}: {e}");
            None
        }
    }
}

/// Runs `corral login`.
pub fn login(args: LoginArgs) -> u8 {
    let uid = match resolve_uid(args.user.as_deref()) {
        Ok(uid) => uid,
        Err(e) => {
            eprintln!("corral login: {e}");
            return exit::ERROR;
        }
    };
    let timeout = args
        .wait
        .then(|| Duration::from_secs_f64(args.timeout.max(0.001)));
    let request = SystemRequest::Login {
        uid,
        wait: args.wait,
    };
    let answer = match call(&args.socket, &request, timeout) {
        Err(IpcError::ReadTimeout { .. }) => {
            eprintln!(
                "corral login: uid {uid}'s manager was not ready within {}s; the session is \
                 registered (`corral logout` ends it); see `corral --system status`",
                args.timeout
            );
            return exit::ERROR;
        }
        other => other,
    };
    match report("login", answer) {
        Some(SystemResponse::LoggedIn {
            sessions,
            runtime_dir,
            ready,
        }) => {
            let state = if ready { "ready" } else { "starting" };
            println!(
                "uid {uid}: {sessions} session(s), manager {state}, XDG_RUNTIME_DIR={}",
                runtime_dir.display()
            );
            exit::OK
        }
        Some(other) => {
            eprintln!("corral login: unexpected answer from corrald --system: {other:?}");
            exit::ERROR
        }
        None => exit::ERROR,
    }
}

/// Runs `corral logout`.
pub fn logout(args: LogoutArgs) -> u8 {
    let uid = match resolve_uid(args.user.as_deref()) {
        Ok(uid) => uid,
        Err(e) => {
            eprintln!("corral logout: {e}");
            return exit::ERROR;
        }
    };
    match report(
        "logout",
        call(&args.socket, &SystemRequest::Logout { uid }, None),
    ) {
        Some(SystemResponse::LoggedOut { sessions, stopping }) => {
            if stopping {
                println!("uid {uid}: last session closed; stopping the user manager");
            } else {
                println!("uid {uid}: {sessions} session(s) left");
            }
            exit::OK
        }
        Some(other) => {
            eprintln!("corral logout: unexpected answer from corrald --system: {other:?}");
            exit::ERROR
        }
        None => exit::ERROR,
    }
}
