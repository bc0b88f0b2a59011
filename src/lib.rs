//! corral: a per-user service supervisor for Linux.
//!
//! # Layout
//!
//! - [`unit`]: reads service definitions — systemd unit files (with drop-ins,
//!   templates, specifiers, masking, aliases) and runit service directories —
//!   into a typed model, and `corral verify`'s report.
//! - [`cgroup`]: our own small layer over cgroupfs (v2 only): finding the
//!   mount, creating and removing unit cgroups, listing and killing their
//!   processes, watching `cgroup.events`, delegation, and spawning a process
//!   straight into a cgroup with no escape window.
//! - [`supervisor`]: the user manager (`corrald --user`): the lifecycle state
//!   machine of each unit, the event loop that drives it (child exits, empty
//!   cgroups, notify messages, timers, bus names of Type=dbus units through
//!   a minimal D-Bus client of its own) and the handlers of control requests.
//! - [`journal`]: the embedded structured journal: pipe ingest with group
//!   commit and back-pressure, the redb block store and its indexes, queries,
//!   retention and the output formats of `corral journal`.
//! - [`cli`]: the `corral` command line, one file per verb.
//! - [`ipc`]: the control protocol: length-prefixed, versioned postcard frames
//!   over a Unix socket, authorised from SO_PEERCRED; server and client halves.
//! - [`system`]: the system manager (`corrald --system`, root): one user
//!   manager per user in a delegated subtree, started at login or by linger,
//!   restarted when it dies, removed at the last logout.
//!
//! The binaries in `src/bin/` are thin: `corrald` (the daemon) and `corral`
//! (the CLI) parse arguments and call into these modules.

pub mod cgroup;
pub mod cli;
pub mod ipc;
pub mod journal;
pub mod supervisor;
pub mod system;
pub mod unit;

/// The shared corpus locator of the integration suites, for the unit tests
/// that copy real unit files from it.
#[cfg(test)]
#[path = "../tests/common/corpus.rs"]
mod test_corpus;
