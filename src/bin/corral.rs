//! `corral`: the command-line client.
//!
//! Started for every command, so std's runtime set-up is skipped
//! (`#![no_main]`): it reads /proc/self/maps to place a guard page for the
//! main thread's stack and installs handlers that turn a stack overflow into
//! a message, a dozen system calls that were a tenth of `corral start`'s
//! start-up (docs/ARCHITECTURE.md). What the CLI relies on of it is done
//! here: stdio fds that are open, SIGPIPE ignored, a panic's exit code.
// A test build keeps std's main: the test harness is that main.
#![cfg_attr(not(test), no_main)]

#[cfg(not(test))]
use std::ffi::{c_char, c_int};

#[cfg(not(test))]
#[unsafe(no_mangle)]
extern "C" fn main(_argc: c_int, _argv: *const *const c_char) -> c_int {
    open_stdio();
    // SAFETY: sets the disposition of a signal no other code of the process handles.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    // std::process::exit flushes stdout; returning from this main would not.
    match std::panic::catch_unwind(corral::cli::main) {
        Ok(code) => std::process::exit(code.into()),
        // As a panic in std's main: the hook has printed the message.
        Err(_) => std::process::exit(101),
    }
}

/// Opens /dev/null on a closed fd 0, 1 or 2, as std does: otherwise the
/// control socket could get fd 1 and the command's output would go to it.
#[cfg(not(test))]
fn open_stdio() {
    let mut fds = [0, 1, 2].map(|fd| libc::pollfd {
        fd,
        events: 0,
        revents: 0,
    });
    // SAFETY: polls three valid pollfd structs, with no timeout.
    if unsafe { libc::poll(fds.as_mut_ptr(), 3, 0) } < 0 {
        return;
    }
    for p in fds {
        if p.revents & libc::POLLNVAL != 0 {
            // SAFETY: opens a constant path; the fd is meant to stay open for the process.
            unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR) };
        }
    }
}
