//! `Accept=yes`: one connection taken off a listening socket, and what
//! systemd 252 makes of its addresses: the instance name of the service
//! that serves it (`instance_from_socket()`), the source that
//! `MaxConnectionsPerSource=` counts, and `$REMOTE_ADDR`/`$REMOTE_PORT`.

use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use nix::errno::Errno;
use nix::sys::socket::{
    AddressFamily, SockaddrLike, SockaddrStorage, getpeername, getsockname, getsockopt, sockopt,
};

/// Why no connection could be taken.
#[derive(Debug, thiserror::Error)]
pub enum AcceptError {
    /// accept4(2) failed for another reason than "none waits".
    #[error("cannot accept a connection on {listen}: {source}")]
    Accept {
        /// The `Listen*=` entry, as systemctl writes it.
        listen: String,
        /// The errno.
        source: Errno,
    },
}

/// One accepted connection, held by the manager until its instance is gone.
#[derive(Debug)]
pub struct Connection {
    /// The connected socket (blocking, close-on-exec).
    pub fd: OwnedFd,
    /// What follows the connection number in the instance name:
    /// `127.0.0.1:7777-127.0.0.1:40000`, `PID-UID` for a unix peer,
    /// `unknown` when the kernel does not say.
    pub peer: String,
    /// The key `MaxConnectionsPerSource=` counts: the remote address, or
    /// the peer's uid on a unix socket.
    pub source: String,
    /// `$REMOTE_ADDR` and `$REMOTE_PORT` (IP connections only).
    pub remote: Option<(String, u16)>,
}

impl Connection {
    /// The instance name of connection number `nr` (systemd's `n_accepted`).
    pub fn instance(&self, nr: u64) -> String {
        format!("{nr}-{}", self.peer)
    }

    /// The variables the instance's processes get, as systemd sets them.
    pub fn env(&self) -> Vec<(String, String)> {
        self.remote
            .iter()
            .flat_map(|(addr, port)| {
                [
                    ("REMOTE_ADDR".to_string(), addr.clone()),
                    ("REMOTE_PORT".to_string(), port.to_string()),
                ]
            })
            .collect()
    }

    /// Describes the connected socket `fd` as systemd 252 does.
    pub fn new(fd: OwnedFd) -> Connection {
        let local = getsockname::<SockaddrStorage>(fd.as_raw_fd()).ok();
        let remote = getpeername::<SockaddrStorage>(fd.as_raw_fd()).ok();
        let inet = |a: &Option<SockaddrStorage>| a.as_ref().and_then(to_socket_addr);
        if let (Some(l), Some(r)) = (inet(&local), inet(&remote)) {
            let (lip, rip) = (unmapped(l.ip()), unmapped(r.ip()));
            return Connection {
                peer: format!("{lip}:{}-{rip}:{}", l.port(), r.port()),
                source: rip.to_string(),
                remote: Some((rip.to_string(), r.port())),
                fd,
            };
        }
        let unix = remote
            .as_ref()
            .is_some_and(|a| a.family() == Some(AddressFamily::Unix));
        let cred = if unix {
            getsockopt(&fd, sockopt::PeerCredentials).ok()
        } else {
            None
        };
        match cred {
            Some(c) => Connection {
                peer: format!("{}-{}", c.pid(), c.uid()),
                source: c.uid().to_string(),
                remote: None,
                fd,
            },
            None => Connection {
                peer: "unknown".to_string(),
                source: "unknown".to_string(),
                remote: None,
                fd,
            },
        }
    }
}

/// An IPv4 peer reaching an IPv6 socket, written as IPv4 (systemd's
/// `translate_ipv6`).
fn unmapped(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

fn to_socket_addr(a: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = a.as_sockaddr_in() {
        return Some(SocketAddr::from((v4.ip(), v4.port())));
    }
    a.as_sockaddr_in6()
        .map(|v6| SocketAddr::from((v6.ip(), v6.port())))
}

/// Makes the listening socket non-blocking, so that taking a connection
/// that went away meanwhile answers "none" instead of blocking the manager.
/// The socket is never passed to a service with `Accept=yes`.
pub fn set_nonblocking(fd: BorrowedFd<'_>) -> Result<(), Errno> {
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    let flags = OFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFL)?);
    fcntl(fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    Ok(())
}

/// Takes one waiting connection off the (non-blocking) listening socket
/// `fd`; `None` when none waits.
pub fn accept_one(fd: impl AsFd, listen: &str) -> Result<Option<Connection>, AcceptError> {
    loop {
        // SAFETY: a valid listening socket; no address is asked for. The
        // connection is blocking (the service reads it as inetd's did).
        let c = unsafe {
            libc::accept4(
                fd.as_fd().as_raw_fd(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                libc::SOCK_CLOEXEC,
            )
        };
        if c >= 0 {
            // SAFETY: accept4 returned a new fd that nothing else owns.
            return Ok(Some(Connection::new(unsafe { OwnedFd::from_raw_fd(c) })));
        }
        match Errno::last() {
            Errno::EINTR => continue,
            // The connection went away before it was taken (as systemd,
            // which accepts the next one when there is one).
            Errno::EAGAIN | Errno::ECONNABORTED => return Ok(None),
            source => {
                return Err(AcceptError::Accept {
                    listen: listen.to_string(),
                    source,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};
    use std::os::unix::net::{UnixListener, UnixStream};

    #[test]
    fn an_inet_connection_is_named_by_both_ends() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        set_nonblocking(l.as_fd()).unwrap();
        assert!(accept_one(&l, "test").unwrap().is_none(), "none waits yet");
        let client = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let c = accept_one(&l, "test").unwrap().expect("a connection");
        let (lp, rp) = (
            l.local_addr().unwrap().port(),
            client.local_addr().unwrap().port(),
        );
        assert_eq!(c.instance(7), format!("7-127.0.0.1:{lp}-127.0.0.1:{rp}"));
        assert_eq!(c.source, "127.0.0.1");
        assert_eq!(
            c.env(),
            [
                ("REMOTE_ADDR".to_string(), "127.0.0.1".to_string()),
                ("REMOTE_PORT".to_string(), rp.to_string())
            ]
        );
    }

    #[test]
    fn an_ipv4_peer_of_an_ipv6_socket_is_written_as_ipv4() {
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        assert_eq!(unmapped(mapped).to_string(), "127.0.0.1");
        let v6: IpAddr = "::1".parse().unwrap();
        assert_eq!(unmapped(v6).to_string(), "::1");
    }

    #[test]
    fn a_unix_connection_is_named_by_the_peer_pid_and_uid() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let l = UnixListener::bind(&path).unwrap();
        let _client = UnixStream::connect(&path).unwrap();
        let (s, _) = l.accept().unwrap();
        let c = Connection::new(OwnedFd::from(s));
        let (pid, uid) = (std::process::id(), nix::unistd::getuid());
        assert_eq!(c.instance(0), format!("0-{pid}-{uid}"));
        assert_eq!(c.source, uid.to_string());
        assert!(c.env().is_empty(), "no REMOTE_ADDR on a unix socket");
    }
}
