//! Raw frames on a control socket, for the tests that speak the protocol
//! below the client: connecting, the handshake, and an error frame followed
//! by the server closing the connection.

use std::io::Read;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use corral::ipc::frame::{read_frame_blocking, write_frame_blocking};
use corral::ipc::{CORRAL_VERSION, ErrorCode, Frame, Hello, PROTOCOL_VERSION, Welcome};
use serde::Deserialize;

/// The `Hello` of this build.
pub fn hello() -> Hello {
    Hello {
        protocol: PROTOCOL_VERSION,
        client_version: CORRAL_VERSION.into(),
    }
}

/// Connects to `path`, with a read timeout as a hang guard.
pub fn raw_connect(path: &Path) -> UnixStream {
    let s = UnixStream::connect(path).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s
}

/// Connects and completes the handshake; the server must welcome our version.
pub fn raw_after_handshake(path: &Path) -> UnixStream {
    let mut s = raw_connect(path);
    write_frame_blocking(&mut s, &hello()).unwrap();
    let w: Frame<Welcome> = read_frame_blocking(&mut s).unwrap().unwrap();
    assert!(
        matches!(
            w,
            Frame::Reply(Welcome {
                protocol: PROTOCOL_VERSION,
                ..
            })
        ),
        "{w:?}"
    );
    s
}

/// No value: an error frame carries no payload of the protocol's type, so
/// any other frame fails to decode as `Frame<NoPayload>`.
#[derive(Debug, Deserialize)]
enum NoPayload {}

/// Reads an error frame with `code` and returns its message, then expects
/// the server to have closed the connection.
pub fn expect_error_then_close(s: &mut UnixStream, code: ErrorCode) -> String {
    let e = match read_frame_blocking::<Frame<NoPayload>, _>(s) {
        Ok(Some(Frame::Error(e))) => e,
        other => panic!("expected an error frame, got {other:?}"),
    };
    assert_eq!(e.code, code, "{}", e.message);
    let mut rest = Vec::new();
    // EOF, or ECONNRESET when the server closed with our bytes unread.
    match s.read_to_end(&mut rest) {
        Ok(_) => assert!(rest.is_empty()),
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset),
    }
    e.message
}
