//! Where the stdout and stderr of a unit's processes go.
//!
//! Every process the manager spawns gets pipes for stdout and stderr (never
//! the manager's own); [`attach`] is the single place their read ends are
//! handed to. Today it drains them so a service never blocks on a full pipe;
//! the journal (issue 4) takes them over here through its pipe reader, with
//! the same unit, invocation, PID and stream.

use std::os::fd::OwnedFd;

use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;

use super::state::Pid;

/// Which output stream a pipe carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// The process's fd 1.
    Stdout,
    /// The process's fd 2.
    Stderr,
}

/// Takes over the read end `fd` of a pipe a process of `unit` writes its
/// `stream` to. Must be called within the tokio runtime.
pub fn attach(unit: &str, invocation: &str, pid: Pid, stream: Stream, fd: OwnedFd) {
    let label = format!("{unit} ({invocation}) pid {pid} {stream:?}");
    let rx = match pipe::Receiver::from_owned_fd(fd) {
        Ok(rx) => rx,
        Err(e) => {
            // The fd is dropped here: the writer gets EPIPE rather than blocking forever.
            eprintln!("corrald: cannot read output of {label}: {e}");
            return;
        }
    };
    tokio::spawn(drain(rx));
}

async fn drain(mut rx: pipe::Receiver) {
    let mut buf = vec![0u8; 16 * 1024];
    while let Ok(n) = rx.read(&mut buf).await {
        if n == 0 {
            break;
        }
    }
}
