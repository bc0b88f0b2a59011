//! The socket unit kind: what the manager needs to run a `.socket` unit.
//!
//! - [`listen`]: the listening fds made from the definition
//!   ([`crate::unit::SocketSection`]), their removal on stop, and passing
//!   them to a service (`LISTEN_FDS`/`LISTEN_PID`/`LISTEN_FDNAMES`).
//! - [`accept`]: `Accept=yes`, one connection taken and named as systemd does.
//! - [`machine`]: the unit's life cycle as a pure function, table-tested.

pub mod accept;
pub mod listen;
pub mod machine;
