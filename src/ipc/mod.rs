//! The control protocol: length-prefixed, versioned postcard frames over a
//! Unix stream socket, authorised from SO_PEERCRED; server and client halves.
//!
//! # Layout
//!
//! - [`frame`] — the wire format: a `u32` little-endian length, then a postcard
//!   payload of at most [`frame::MAX_FRAME`] bytes, checked before allocating.
//! - [`fuzz`] — the control-protocol fuzz target's entry point.
//! - [`peer`] — who is on the other end ([`peer::PeerCred`] from SO_PEERCRED)
//!   and the owner-or-root rule.
//! - [`socket`] — [`socket::bind_private`], the 0600-socket-in-a-0700-directory
//!   listener that refuses to steal the socket of a live manager.
//! - [`server`] — [`server::serve`], the accept loop; one task per connection,
//!   handshake, then request → [`server::Handler`] → [`server::Replies`].
//! - `slots` — connection limits in all, per uid and root's reserve, and
//!   which idle connection makes room for a newcomer.
//! - [`client`] — [`client::Client`] (blocking, for the CLI and the PAM module)
//!   and [`client::AsyncClient`] (tokio, for daemons and tests).
//!
//! The concrete request and response enums are not defined here: this module
//! is generic over any `T: Serialize + DeserializeOwned`; corral's own
//! messages live in `proto`. docs/PROTOCOL.md specifies the wire format.
//!
//! # Conversation
//!
//! ```text
//! client                                   server
//!   Hello { protocol, client_version }  ->
//!                                       <-  Frame::Reply(Welcome { protocol, server_version })
//!                                           | Frame::Error(VERSION_MISMATCH / PERMISSION_DENIED / BUSY), close
//!   Request                             ->  (the first may come right behind the Hello)
//!                                       <-  Frame::Reply(Response)
//!                                           | Frame::StreamItem(Response)* Frame::End
//!                                           | Frame::Error(ProtoError)
//!   Request ...                         ->  (one request at a time, any number per connection)
//! ```

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub mod client;
pub mod frame;
pub mod fuzz;
pub mod peer;
pub mod proto;
pub mod server;
mod slots;
pub mod socket;
pub mod system_proto;

pub use client::{AsyncClient, Client, ClientOptions};
pub use frame::{MAX_FRAME, read_frame, write_frame};
pub use peer::{PeerCred, authorize_owner};
pub use server::{Access, Handler, Replies, ServerConfig, serve};
pub use socket::bind_private;

/// Version of the wire protocol; bumped on every incompatible change to the
/// frames or to the request/response enums (postcard is not self-describing,
/// so adding an enum variant anywhere but at the end is incompatible too).
pub const PROTOCOL_VERSION: u32 = 6;

/// The version of this corral build, sent in [`Hello`] and [`Welcome`] so a
/// mismatch can name both binaries.
pub const CORRAL_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The first frame a client sends. Its layout is frozen across protocol
/// versions so that any server can read it and answer a version mismatch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The [`PROTOCOL_VERSION`] the client speaks.
    pub protocol: u32,
    /// The client's corral version, for error messages only.
    pub client_version: String,
}

/// The server's answer to an accepted [`Hello`] (sent as `Frame::Reply`).
/// Frozen across protocol versions like [`Hello`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Welcome {
    /// The [`PROTOCOL_VERSION`] the server speaks.
    pub protocol: u32,
    /// The server's corral version, for error messages only.
    pub server_version: String,
}

/// Every frame the server sends: one reply, a stream of items closed by
/// `End`, or an error. Variant order is part of the wire format (postcard
/// encodes the variant index), so new variants only ever go at the end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Frame<T> {
    /// The single answer to a request (or to the handshake: a [`Welcome`]).
    Reply(T),
    /// One item of a streamed answer (`journal -f`); more follow.
    StreamItem(T),
    /// The end of a stream of `StreamItem`s; the connection takes a new request.
    End,
    /// The request (or the connection) failed at the protocol level.
    Error(ProtoError),
}

/// A protocol-level error sent to the client. Application answers such as
/// "unit not found" belong in the response enum instead.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProtoError {
    /// What kind of failure, for programs; see [`ErrorCode`].
    pub code: ErrorCode,
    /// What failed and what to do, for people; shown verbatim by the CLI.
    pub message: String,
}

impl fmt::Display for ProtoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// A numbered error code: a plain `u32` on the wire (not an enum) so an old
/// client can still read codes a newer server adds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ErrorCode(pub u32);

impl ErrorCode {
    /// The client's [`Hello::protocol`] is not one the server speaks; the
    /// connection is closed.
    pub const VERSION_MISMATCH: ErrorCode = ErrorCode(1);
    /// SO_PEERCRED says the peer may not use this server (or this request).
    pub const PERMISSION_DENIED: ErrorCode = ErrorCode(2);
    /// A frame could not be decoded; the connection is closed.
    pub const MALFORMED: ErrorCode = ErrorCode(3);
    /// A frame's length prefix exceeds [`MAX_FRAME`]; the connection is closed.
    pub const OVERSIZED: ErrorCode = ErrorCode(4);
    /// The server is at its connection limit; try again.
    pub const BUSY: ErrorCode = ErrorCode(5);
    /// The server is shutting down.
    pub const SHUTTING_DOWN: ErrorCode = ErrorCode(6);
    /// The handler failed without sending an answer of its own.
    pub const INTERNAL: ErrorCode = ErrorCode(7);
    /// The handshake, or the rest of a frame already begun, did not arrive
    /// in time; the connection is closed.
    pub const TIMEOUT: ErrorCode = ErrorCode(8);
    /// The manager re-executes itself (`daemon-reexec`) while the request
    /// waited for its jobs, which go on in the new image; the connection is
    /// closed: connect again and ask again (the CLI does).
    pub const REEXECUTING: ErrorCode = ErrorCode(9);
    /// Codes from this value up are free for handlers' own protocol errors.
    pub const FIRST_APPLICATION: ErrorCode = ErrorCode(1000);
}

/// Everything that can go wrong in the control protocol.
#[derive(Debug, thiserror::Error)]
pub enum IpcError {
    /// A length prefix announced more than [`MAX_FRAME`] bytes; nothing was allocated.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    Oversized {
        /// The announced length.
        len: u64,
        /// The limit.
        max: usize,
    },
    /// The payload was not a valid postcard encoding of the expected type.
    #[error("malformed {what} frame ({len} bytes): {source}")]
    Malformed {
        /// The expected type, e.g. `corral::ipc::Hello`.
        what: &'static str,
        /// The payload length.
        len: usize,
        /// Postcard's reason.
        source: postcard::Error,
    },
    /// The payload decoded but bytes were left over: a peer with another layout.
    #[error("malformed {what} frame: {trailing} bytes left over after decoding {len} bytes")]
    TrailingBytes {
        /// The expected type.
        what: &'static str,
        /// The payload length.
        len: usize,
        /// How many bytes were not consumed.
        trailing: usize,
    },
    /// The peer closed the connection in the middle of a frame.
    #[error("connection closed in the middle of a frame ({got} of {expected} bytes read)")]
    Truncated {
        /// Bytes expected (header or payload).
        expected: usize,
        /// Bytes received before EOF.
        got: usize,
    },
    /// A value could not be encoded (a bug in a `Serialize` impl, or too large).
    #[error("cannot encode {what}: {source}")]
    Encode {
        /// The type being encoded.
        what: &'static str,
        /// Postcard's reason.
        source: postcard::Error,
    },
    /// A system call on the socket failed.
    #[error("{op}{}: {source}", at(path))]
    Io {
        /// The operation, e.g. "read frame", "bind socket".
        op: &'static str,
        /// The socket or directory path, where known.
        path: Option<PathBuf>,
        /// The OS error.
        source: io::Error,
    },
    /// A write to the peer did not complete in time: the peer is not reading.
    #[error(
        "peer did not read a reply within {timeout:?}{}; dropping the connection",
        at(path)
    )]
    WriteTimeout {
        /// The configured write timeout.
        timeout: Duration,
        /// The socket path, where known.
        path: Option<PathBuf>,
    },
    /// No answer arrived in time.
    #[error(
        "no answer from the corral manager{} within {timeout:?}; it may be hung — check its journal or restart it",
        at(path)
    )]
    ReadTimeout {
        /// The configured timeout.
        timeout: Duration,
        /// The socket path, where known.
        path: Option<PathBuf>,
    },
    /// The client could not connect to the manager's socket.
    #[error("cannot reach the corral manager at {}: {reason} — {hint}", path.display())]
    Unreachable {
        /// The socket path.
        path: PathBuf,
        /// What went wrong, in words.
        reason: String,
        /// What to do about it.
        hint: String,
        /// The OS error.
        source: io::Error,
    },
    /// Client and server speak different protocol versions.
    #[error(
        "protocol version mismatch: this corral {client_version} speaks protocol {client_protocol}, \
         the manager{} (corrald {server_version}) speaks protocol {server_protocol}; \
         use the corral binary that matches the running corrald, or restart corrald after upgrading",
        at(path)
    )]
    VersionMismatch {
        /// The client's protocol version.
        client_protocol: u32,
        /// The client's corral version.
        client_version: String,
        /// The server's protocol version.
        server_protocol: u32,
        /// The server's corral version.
        server_version: String,
        /// The socket path, where known.
        path: Option<PathBuf>,
    },
    /// A peer that is neither the owner nor root.
    #[error("permission denied: uid {peer_uid} may not control the manager of uid {owner_uid}")]
    PermissionDenied {
        /// The uid on the other end of the socket.
        peer_uid: u32,
        /// The uid that owns the manager.
        owner_uid: u32,
    },
    /// The server answered with an error frame.
    #[error("{0}")]
    Remote(ProtoError),
    /// The server closed the connection before answering.
    #[error(
        "the corral manager{} closed the connection without answering; it may have crashed or be shutting down — check its journal",
        at(path)
    )]
    Closed {
        /// The socket path, where known.
        path: Option<PathBuf>,
    },
    /// The peer sent a frame that is valid but not allowed at this point.
    #[error("protocol violation: {0}")]
    Unexpected(String),
    /// The client hung up (or the server is shutting down) while a reply was being sent.
    #[error("the client went away")]
    ClientGone,
    /// A reply was sent after the request had already been answered.
    #[error("handler bug: {0}")]
    ReplyState(&'static str),
    /// Another process is serving on the socket path.
    #[error(
        "another corral manager is already listening on {} (it accepted a connection); \
         stop it first, or give this one another socket path",
        path.display()
    )]
    AlreadyRunning {
        /// The socket path.
        path: PathBuf,
    },
    /// The socket path or its directory is unusable.
    #[error("cannot use {} for the control socket: {reason}", path.display())]
    UnsafePath {
        /// The offending path.
        path: PathBuf,
        /// Why, and what to do.
        reason: String,
    },
}

/// Formats an optional path as " at PATH" for error messages.
fn at(path: &Option<PathBuf>) -> String {
    match path {
        Some(p) => format!(" at {}", p.display()),
        None => String::new(),
    }
}

impl IpcError {
    /// Attaches the socket path to errors that can carry one and have none yet.
    pub fn at_path(mut self, p: &Path) -> Self {
        match &mut self {
            IpcError::Io { path, .. }
            | IpcError::WriteTimeout { path, .. }
            | IpcError::ReadTimeout { path, .. }
            | IpcError::VersionMismatch { path, .. }
            | IpcError::Closed { path }
                if path.is_none() =>
            {
                *path = Some(p.to_path_buf());
            }
            _ => {}
        }
        self
    }

    /// The error code to send to a peer for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            IpcError::Oversized { .. } => ErrorCode::OVERSIZED,
            IpcError::Malformed { .. } | IpcError::TrailingBytes { .. } => ErrorCode::MALFORMED,
            IpcError::VersionMismatch { .. } => ErrorCode::VERSION_MISMATCH,
            IpcError::PermissionDenied { .. } => ErrorCode::PERMISSION_DENIED,
            IpcError::Remote(e) => e.code,
            _ => ErrorCode::INTERNAL,
        }
    }

    /// Builds an I/O error with its operation and optional path.
    pub(crate) fn io(op: &'static str, path: Option<&Path>, source: io::Error) -> Self {
        IpcError::Io {
            op,
            path: path.map(Path::to_path_buf),
            source,
        }
    }
}
