//! Who is on the other end of the socket, from the kernel (SO_PEERCRED), and
//! the owner-or-root rule every user manager applies.

use std::os::fd::AsFd;

use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
use serde::{Deserialize, Serialize};

use super::IpcError;

/// The credentials the kernel recorded for the peer when it connected; they
/// cannot be forged by the peer, unlike anything it sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PeerCred {
    /// The peer's process id at connect time (for logs; it may have exited since).
    pub pid: i32,
    /// The peer's effective uid at connect time: the basis of every authorisation.
    pub uid: u32,
    /// The peer's effective gid at connect time.
    pub gid: u32,
}

impl PeerCred {
    /// Reads SO_PEERCRED from a connected Unix socket.
    pub fn from_socket<F: AsFd>(socket: &F) -> Result<PeerCred, IpcError> {
        let cred = getsockopt(socket, PeerCredentials).map_err(|e| {
            IpcError::io(
                "read SO_PEERCRED of the peer",
                None,
                std::io::Error::from(e),
            )
        })?;
        Ok(PeerCred {
            pid: cred.pid(),
            uid: cred.uid(),
            gid: cred.gid(),
        })
    }

    /// True for uid 0, which may control every manager.
    pub fn is_root(&self) -> bool {
        self.uid == 0
    }
}

/// Allows the manager's owner and root; refuses everyone else with a message
/// that names both uids.
pub fn authorize_owner(peer: &PeerCred, owner_uid: u32) -> Result<(), IpcError> {
    if peer.uid == owner_uid || peer.is_root() {
        Ok(())
    } else {
        Err(IpcError::PermissionDenied {
            peer_uid: peer.uid,
            owner_uid,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(uid: u32) -> PeerCred {
        PeerCred {
            pid: 1,
            uid,
            gid: uid,
        }
    }

    #[test]
    fn owner_and_root_pass_others_are_refused_by_name() {
        assert!(authorize_owner(&peer(1000), 1000).is_ok());
        assert!(authorize_owner(&peer(0), 1000).is_ok());
        let err = authorize_owner(&peer(1001), 1000).unwrap_err();
        assert_eq!(
            err.to_string(),
            "permission denied: uid 1001 may not control the manager of uid 1000"
        );
    }

    #[test]
    fn reads_our_own_credentials_from_a_socketpair() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let cred = PeerCred::from_socket(&a).unwrap();
        assert_eq!(cred.pid, std::process::id() as i32);
        assert_eq!(cred.uid, nix::unistd::geteuid().as_raw());
        assert_eq!(cred.gid, nix::unistd::getegid().as_raw());
    }
}
