//! One request to the system socket from inside a PAM module: corral's
//! blocking [`Client`] (std socket with timeouts, no runtime), with SIGPIPE
//! held back so a daemon that hangs up cannot kill the login process.

use std::path::Path;
use std::time::Duration;

use corral::ipc::system_proto::{SystemRequest, SystemResponse};
use corral::ipc::{Client, ClientOptions, IpcError};
use nix::sys::signal::{SigSet, SigmaskHow, Signal, pthread_sigmask};

/// Sends `request` and waits for its answer, all of it (connect, handshake,
/// answer) within `timeout`: a hung daemon, even one whose listen queue is
/// full, never holds the login longer. `sent` is set once the request may
/// have reached the daemon (it then counts the session).
pub fn call(
    socket: &Path,
    timeout: Duration,
    request: &SystemRequest,
    sent: &mut bool,
) -> Result<SystemResponse, IpcError> {
    let _guard = SigpipeGuard::new();
    let options = ClientOptions {
        handshake_timeout: timeout,
        reply_timeout: Some(timeout),
        total_timeout: Some(timeout),
        hint: "corrald --system is not running".to_string(),
        ..ClientOptions::default()
    };
    let mut client: Client<SystemRequest, SystemResponse> = Client::connect_with(socket, options)?;
    *sent = true;
    client.request(request)
}

/// Blocks SIGPIPE on this thread for its lifetime and swallows one raised
/// meanwhile, unless one was already pending for the host program.
struct SigpipeGuard {
    old: Option<SigSet>,
    was_pending: bool,
}

impl SigpipeGuard {
    fn new() -> Self {
        let mut pipe = SigSet::empty();
        pipe.add(Signal::SIGPIPE);
        let mut old = SigSet::empty();
        let blocked = pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&pipe), Some(&mut old)).is_ok();
        let was_pending = pending_sigpipe();
        SigpipeGuard {
            old: blocked.then_some(old),
            was_pending,
        }
    }
}

fn pending_sigpipe() -> bool {
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: sigpending fills the set we own.
    unsafe { libc::sigpending(&mut set) == 0 && libc::sigismember(&set, libc::SIGPIPE) == 1 }
}

impl Drop for SigpipeGuard {
    fn drop(&mut self) {
        let Some(old) = self.old else { return };
        if !self.was_pending && pending_sigpipe() {
            let mut pipe = SigSet::empty();
            pipe.add(Signal::SIGPIPE);
            let zero = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            // SAFETY: consumes the SIGPIPE our write raised, without waiting.
            unsafe { libc::sigtimedwait(pipe.as_ref(), std::ptr::null_mut(), &zero) };
        }
        let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&old), None);
    }
}
