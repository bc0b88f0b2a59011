//! NOTIFY_SOCKET: the datagram socket services use to report READY=1,
//! STATUS=, MAINPID=, RELOADING=1, STOPPING=1 and ERRNO=, and to hand the
//! manager fds to keep (FDSTORE=1, FDNAME=, FDSTOREREMOVE=1) with SCM_RIGHTS.
//!
//! The socket has SO_PASSCRED set, so every datagram carries the sender's
//! PID as the kernel vouches for it; the manager maps that PID to a unit
//! through its cgroup and applies NotifyAccess= there.

use std::io::IoSliceMut;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixDatagram as StdDatagram;
use std::path::{Path, PathBuf};

use nix::sys::socket::{ControlMessageOwned, MsgFlags, UnixAddr, recvmsg, setsockopt, sockopt};
use tokio::io::Interest;
use tokio::net::UnixDatagram;

use super::SupervisorError;
use super::state::Pid;

/// One datagram's assignments, in the order sent.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Message {
    /// READY=1.
    pub ready: bool,
    /// RELOADING=1.
    pub reloading: bool,
    /// STOPPING=1.
    pub stopping: bool,
    /// STATUS=text.
    pub status: Option<String>,
    /// MAINPID=pid.
    pub main_pid: Option<Pid>,
    /// ERRNO=n.
    pub errno: Option<i32>,
    /// FDSTORE=1: keep the fds sent along.
    pub fd_store: bool,
    /// FDSTOREREMOVE=1: drop the kept fds named FDNAME=.
    pub fd_store_remove: bool,
    /// FDNAME=name, as sent (the manager checks it).
    pub fd_name: Option<String>,
}

impl Message {
    /// Parses the newline-separated KEY=VALUE assignments of a datagram;
    /// unknown keys and malformed lines are ignored, as systemd does.
    pub fn parse(data: &[u8]) -> Message {
        let mut m = Message::default();
        for line in data.split(|&b| b == b'\n') {
            let line = String::from_utf8_lossy(line);
            let Some((k, v)) = line.split_once('=') else {
                continue;
            };
            match k {
                "READY" => m.ready = v == "1",
                "RELOADING" => m.reloading = v == "1",
                "STOPPING" => m.stopping = v == "1",
                "STATUS" => m.status = Some(v.to_string()),
                "MAINPID" => m.main_pid = v.parse().ok().filter(|&p: &Pid| p > 0),
                "ERRNO" => m.errno = v.parse().ok(),
                "FDSTORE" => m.fd_store = v == "1",
                "FDSTOREREMOVE" => m.fd_store_remove = v == "1",
                "FDNAME" => m.fd_name = Some(v.to_string()),
                _ => {}
            }
        }
        m
    }
}

/// The entry point of the notify fuzz target (`fuzz/fuzz_targets/notify.rs`):
/// parses any bytes as a datagram and checks that the result is sane (no
/// newline in STATUS=, no MAINPID= of 0 or below) and that the assignments
/// it found, sent again as a datagram, parse to the same message.
pub fn fuzz_one(data: &[u8]) {
    let m = Message::parse(data);
    if let Some(s) = &m.status {
        assert!(!s.contains('\n'), "STATUS= spans lines: {s:?}");
    }
    if let Some(pid) = m.main_pid {
        assert!(pid > 0, "MAINPID={pid} accepted");
    }
    let mut again = Vec::new();
    for (key, set) in [
        ("READY=1", m.ready),
        ("RELOADING=1", m.reloading),
        ("STOPPING=1", m.stopping),
        ("FDSTORE=1", m.fd_store),
        ("FDSTOREREMOVE=1", m.fd_store_remove),
    ] {
        if set {
            again.extend_from_slice(key.as_bytes());
            again.push(b'\n');
        }
    }
    if let Some(s) = &m.status {
        again.extend_from_slice(format!("STATUS={s}\n").as_bytes());
    }
    if let Some(pid) = m.main_pid {
        again.extend_from_slice(format!("MAINPID={pid}\n").as_bytes());
    }
    if let Some(n) = &m.fd_name {
        again.extend_from_slice(format!("FDNAME={n}\n").as_bytes());
    }
    if let Some(errno) = m.errno {
        again.extend_from_slice(format!("ERRNO={errno}").as_bytes());
    }
    assert_eq!(Message::parse(&again), m, "re-sent as {again:?}");
}

/// The manager's notify socket.
pub struct NotifySocket {
    /// Where it is bound (the value of $NOTIFY_SOCKET).
    pub path: PathBuf,
    sock: UnixDatagram,
}

impl NotifySocket {
    /// Binds the socket at `path` (replacing a stale one) with SO_PASSCRED.
    pub fn bind(path: &Path) -> Result<NotifySocket, SupervisorError> {
        let io = |op: &'static str| {
            move |source: std::io::Error| SupervisorError::Io {
                op,
                path: path.to_path_buf(),
                source,
            }
        };
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(io("remove stale notify socket")(e));
            }
            _ => {}
        }
        let std_sock = StdDatagram::bind(path).map_err(io("bind notify socket"))?;
        NotifySocket::adopt(path, std_sock)
    }

    /// The socket bound at `path` that a previous image of this process
    /// passed (`daemon-reexec`): no datagram sent meanwhile is lost.
    pub fn inherited(
        path: &Path,
        fd: std::os::fd::OwnedFd,
    ) -> Result<NotifySocket, SupervisorError> {
        NotifySocket::adopt(path, StdDatagram::from(fd))
    }

    fn adopt(path: &Path, std_sock: StdDatagram) -> Result<NotifySocket, SupervisorError> {
        let io = |op: &'static str| {
            move |source: std::io::Error| SupervisorError::Io {
                op,
                path: path.to_path_buf(),
                source,
            }
        };
        setsockopt(&std_sock, sockopt::PassCred, &true)
            .map_err(|e| io("set SO_PASSCRED on notify socket")(e.into()))?;
        std_sock
            .set_nonblocking(true)
            .map_err(io("set notify socket non-blocking"))?;
        let sock = UnixDatagram::from_std(std_sock).map_err(io("register notify socket"))?;
        Ok(NotifySocket {
            path: path.to_path_buf(),
            sock,
        })
    }

    /// The socket's fd, for `daemon-reexec` to pass to the new image.
    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        std::os::fd::AsFd::as_fd(&self.sock)
    }

    /// Waits for the next datagram; returns the sender's PID (when the kernel
    /// attached credentials), the message and the fds sent with it
    /// (close-on-exec; dropping them closes them).
    pub async fn recv(&self) -> Result<Received, SupervisorError> {
        let mut buf = vec![0u8; 4096];
        let fd = self.sock.as_raw_fd();
        let (len, pid, fds) = self
            .sock
            .async_io(Interest::READABLE, || {
                let mut iov = [IoSliceMut::new(&mut buf)];
                // Room for the credentials and as many fds as one
                // SCM_RIGHTS message carries (the kernel's SCM_MAX_FD).
                let mut cmsg = nix::cmsg_space!(libc::ucred, [RawFd; SCM_MAX_FD]);
                let msg =
                    recvmsg::<UnixAddr>(fd, &mut iov, Some(&mut cmsg), MsgFlags::MSG_CMSG_CLOEXEC)
                        .map_err(std::io::Error::from)?;
                let mut pid = None;
                let mut fds = Vec::new();
                if let Ok(cmsgs) = msg.cmsgs() {
                    for c in cmsgs {
                        match c {
                            ControlMessageOwned::ScmCredentials(cred) => pid = Some(cred.pid()),
                            ControlMessageOwned::ScmRights(raw) => {
                                // SAFETY: the kernel just installed these fds
                                // in this process; nothing else owns them.
                                fds.extend(
                                    raw.into_iter().map(|r| unsafe { OwnedFd::from_raw_fd(r) }),
                                );
                            }
                            _ => {}
                        }
                    }
                }
                Ok((msg.bytes, pid, fds))
            })
            .await
            .map_err(|source| SupervisorError::Io {
                op: "receive from notify socket",
                path: self.path.clone(),
                source,
            })?;
        Ok(Received {
            pid,
            msg: Message::parse(&buf[..len]),
            fds,
        })
    }
}

/// The most fds one SCM_RIGHTS message carries (the kernel's SCM_MAX_FD).
const SCM_MAX_FD: usize = 253;

/// One datagram on the notify socket.
#[derive(Debug)]
pub struct Received {
    /// The sender, when the kernel attached its credentials.
    pub pid: Option<Pid>,
    /// Its assignments.
    pub msg: Message,
    /// The fds sent along (SCM_RIGHTS).
    pub fds: Vec<OwnedFd>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_assignments() {
        let m = Message::parse(b"READY=1\nSTATUS=Serving 3 clients\nMAINPID=42\nbogus\nERRNO=2\n");
        assert_eq!(
            m,
            Message {
                ready: true,
                status: Some("Serving 3 clients".into()),
                main_pid: Some(42),
                errno: Some(2),
                ..Message::default()
            }
        );
        assert!(Message::parse(b"RELOADING=1").reloading);
        assert!(Message::parse(b"STOPPING=1").stopping);
        assert_eq!(Message::parse(b"MAINPID=-3").main_pid, None);
        assert!(!Message::parse(b"READY=0").ready);
        let m = Message::parse(b"FDSTORE=1\nFDNAME=db\n");
        assert!(m.fd_store && !m.fd_store_remove);
        assert_eq!(m.fd_name.as_deref(), Some("db"));
        assert!(Message::parse(b"FDSTOREREMOVE=1").fd_store_remove);
    }

    #[test]
    fn the_fuzz_checks_hold_for_odd_datagrams() {
        for d in [
            &b""[..],
            b"READY=1\nSTATUS=a=b\r\nMAINPID=0\nERRNO=-1",
            b"STATUS=\xff\xfe\nREADY=1\nREADY=0",
            b"MAINPID=+7\nMAINPID=99999999999\n\n=\nSTATUS",
        ] {
            fuzz_one(d);
        }
    }

    /// A notify socket in a temp dir (kept while the socket is used), its
    /// path, and an unbound client socket.
    fn bound() -> (tempfile::TempDir, PathBuf, NotifySocket, StdDatagram) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let sock = NotifySocket::bind(&path).unwrap();
        (dir, path, sock, StdDatagram::unbound().unwrap())
    }

    #[tokio::test]
    async fn receives_with_sender_credentials() {
        let (_dir, path, sock, client) = bound();
        client.send_to(b"READY=1\nSTATUS=up", &path).unwrap();
        let r = sock.recv().await.unwrap();
        assert_eq!(r.pid, Some(std::process::id() as i32));
        assert!(r.msg.ready);
        assert_eq!(r.msg.status.as_deref(), Some("up"));
        assert!(r.fds.is_empty());
    }

    #[tokio::test]
    async fn receives_the_fds_sent_along() {
        use nix::sys::socket::{ControlMessage, sendmsg};
        use std::io::{IoSlice, Read, Write};
        let (_dir, path, sock, client) = bound();
        let (r, w) = nix::unistd::pipe().unwrap();
        let data = b"FDSTORE=1\nFDNAME=pipe";
        let fds = [r.as_raw_fd()];
        let addr = UnixAddr::new(&path).unwrap();
        sendmsg(
            client.as_raw_fd(),
            &[IoSlice::new(data)],
            &[ControlMessage::ScmRights(&fds)],
            MsgFlags::empty(),
            Some(&addr),
        )
        .unwrap();
        drop(r);
        let got = sock.recv().await.unwrap();
        assert!(got.msg.fd_store);
        assert_eq!(got.msg.fd_name.as_deref(), Some("pipe"));
        assert_eq!(got.fds.len(), 1);
        // The received fd is the pipe's read end: what is written comes out.
        std::fs::File::from(w).write_all(b"kept").unwrap();
        let mut s = String::new();
        std::fs::File::from(got.fds.into_iter().next().unwrap())
            .read_to_string(&mut s)
            .unwrap();
        assert_eq!(s, "kept");
    }
}
