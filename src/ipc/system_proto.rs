//! The system socket's messages: what `corral login`, `corral enable-linger`,
//! `corral --system status` and the PAM module ask `corrald --system`.
//!
//! Frames carry postcard-encoded [`SystemRequest`] / [`SystemResponse`]
//! values. Postcard encodes an enum variant as its index, so variants are only
//! ever appended, never reordered or removed; anything incompatible bumps
//! [`SYSTEM_PROTOCOL_VERSION`], which both sides exchange first.
//!
//! Every request names a uid and is authorised from the peer's SO_PEERCRED by
//! [`authorize`]: a user may act only on themselves, root on anyone.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Version of the system socket's request/response enums.
pub const SYSTEM_PROTOCOL_VERSION: u32 = 1;

/// Default path of the system manager's socket.
pub const DEFAULT_SYSTEM_SOCKET: &str = "/run/corral/system.sock";

/// A request to `corrald --system`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SystemRequest {
    /// Registers one more session of `uid`, starting its manager when needed.
    /// With `wait`, the reply comes once the manager is ready (or has failed).
    Login {
        /// The user logging in.
        uid: u32,
        /// Reply only when the user manager reports ready.
        wait: bool,
    },
    /// Ends one session of `uid`; the last one without linger stops its manager.
    Logout {
        /// The user logging out.
        uid: u32,
    },
    /// Keeps `uid`'s manager running without sessions, across reboots.
    EnableLinger {
        /// The user to linger.
        uid: u32,
    },
    /// Stops lingering; without sessions the manager is stopped.
    DisableLinger {
        /// The user to stop lingering.
        uid: u32,
    },
    /// Reports users' managers: one uid, or every user the peer may see.
    Status {
        /// Only this user; `None` means every user visible to the peer.
        uid: Option<u32>,
    },
    /// Like `Login`, but the session belongs to the calling process (the
    /// PAM module's login process): it ends by itself when that process
    /// exits without logging out, so a crashed login never leaks a session.
    OpenSession {
        /// The user logging in.
        uid: u32,
        /// Reply only when the user manager reports ready.
        wait: bool,
    },
}

impl SystemRequest {
    /// The uid a request acts on, if it names one.
    pub fn target_uid(&self) -> Option<u32> {
        match self {
            SystemRequest::Login { uid, .. }
            | SystemRequest::OpenSession { uid, .. }
            | SystemRequest::Logout { uid }
            | SystemRequest::EnableLinger { uid }
            | SystemRequest::DisableLinger { uid } => Some(*uid),
            SystemRequest::Status { uid } => *uid,
        }
    }
}

/// Why a request was refused or failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SystemErrorKind {
    /// The peer may not act on that uid.
    PermissionDenied,
    /// The uid is not in the user database.
    NoSuchUser,
    /// Logout of a uid that has no session.
    NoSession,
    /// The user manager could not be started or gave up restarting.
    ManagerFailed,
    /// The request could not be decoded or its version is unknown.
    BadRequest,
    /// The system manager failed internally (I/O on cgroups, state dir...).
    Internal,
}

/// The state of one user's manager as `status` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ManagerState {
    /// Spawned, not yet ready.
    Starting,
    /// Wrote its ready line.
    Running,
    /// Died; waiting for the backoff delay before restarting it.
    Restarting,
    /// SIGTERM sent at the last logout; waiting for it to exit.
    Stopping,
    /// Restarted too often in a short time; given up until the next login.
    Failed,
    /// Not running (no session, no linger).
    Stopped,
}

/// One cgroup of a user's subtree, with the processes directly in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgroupNode {
    /// Path relative to the system manager's cgroup root (`user-1000/manager`).
    pub path: String,
    /// PIDs in this cgroup itself (not its children).
    pub pids: Vec<u32>,
}

/// One user as `corral --system status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserStatus {
    /// The user's uid.
    pub uid: u32,
    /// The user's login name.
    pub name: String,
    /// Open sessions (PAM or `corral login`).
    pub sessions: u32,
    /// Whether the user lingers.
    pub linger: bool,
    /// The manager's state.
    pub state: ManagerState,
    /// The manager's PID while it runs.
    pub manager_pid: Option<u32>,
    /// Times the manager was restarted after dying since the last login.
    pub restarts: u32,
    /// The user's runtime directory (XDG_RUNTIME_DIR).
    pub runtime_dir: PathBuf,
    /// The user's delegated cgroup and everything below it, parents first.
    pub cgroups: Vec<CgroupNode>,
    /// Why the manager last died or was given up, with where its output went.
    pub last_error: Option<String>,
}

/// A reply of `corrald --system`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SystemResponse {
    /// The session is registered.
    LoggedIn {
        /// The user's sessions, this one included.
        sessions: u32,
        /// The directory to export as XDG_RUNTIME_DIR.
        runtime_dir: PathBuf,
        /// Whether the manager is ready (always true after a successful wait).
        ready: bool,
    },
    /// The session is closed.
    LoggedOut {
        /// Sessions left.
        sessions: u32,
        /// Whether this logout stops the user's manager.
        stopping: bool,
    },
    /// The user's linger setting after the request.
    Linger {
        /// Whether the user now lingers.
        enabled: bool,
    },
    /// The users the peer may see.
    Status(Vec<UserStatus>),
    /// The request was refused or failed.
    Error {
        /// What kind of failure.
        kind: SystemErrorKind,
        /// A sentence saying what failed, on what, and what to do.
        message: String,
    },
}

/// Decides whether a peer with uid `peer_uid` may send `request`.
///
/// A user may act only on their own uid; root may act on anyone. `Status`
/// without a uid is allowed to everyone and filtered by the server.
pub fn authorize(peer_uid: u32, request: &SystemRequest) -> Result<(), SystemResponse> {
    match request.target_uid() {
        Some(uid) if peer_uid != 0 && peer_uid != uid => Err(SystemResponse::Error {
            kind: SystemErrorKind::PermissionDenied,
            message: format!(
                "permission denied: uid {peer_uid} may not act on uid {uid}; \
                 only root may act on other users"
            ),
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_act_only_on_themselves() {
        let login = SystemRequest::Login {
            uid: 1000,
            wait: true,
        };
        assert!(authorize(1000, &login).is_ok());
        assert!(authorize(0, &login).is_ok());
        match authorize(1001, &login) {
            Err(SystemResponse::Error { kind, message }) => {
                assert_eq!(kind, SystemErrorKind::PermissionDenied);
                assert!(
                    message.contains("1001") && message.contains("1000"),
                    "{message}"
                );
            }
            other => panic!("uid 1001 logging in uid 1000 was allowed: {other:?}"),
        }
        for req in [
            SystemRequest::OpenSession {
                uid: 5,
                wait: false,
            },
            SystemRequest::Logout { uid: 5 },
            SystemRequest::EnableLinger { uid: 5 },
            SystemRequest::DisableLinger { uid: 5 },
            SystemRequest::Status { uid: Some(5) },
        ] {
            assert!(authorize(6, &req).is_err(), "{req:?}");
            assert!(authorize(5, &req).is_ok(), "{req:?}");
        }
        assert!(authorize(6, &SystemRequest::Status { uid: None }).is_ok());
    }

    #[test]
    fn variant_indices_are_stable_on_the_wire() {
        // Appending variants keeps old peers working; reordering would not.
        let bytes = postcard::to_allocvec(&SystemRequest::Logout { uid: 1 }).unwrap();
        assert_eq!(bytes, [1, 1]);
        let bytes = postcard::to_allocvec(&SystemRequest::Status { uid: None }).unwrap();
        assert_eq!(bytes, [4, 0]);
        let back: SystemRequest = postcard::from_bytes(&[0, 0xe8, 0x07, 1]).unwrap();
        assert_eq!(
            back,
            SystemRequest::Login {
                uid: 1000,
                wait: true
            }
        );
    }
}
