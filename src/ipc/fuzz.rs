//! The entry point of the control-protocol fuzz target
//! (`fuzz/fuzz_targets/ipc_frames.rs`): any bytes as a stream of frames, read
//! the way servers and clients read them, of every message type of both
//! protocols. Panics only on a broken property, which is what the fuzzer
//! reports.

use std::fmt::Debug;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::frame::{decode, encode, read_frame, read_frame_blocking};
use super::proto::{Request, Response};
use super::system_proto::{SystemRequest, SystemResponse, authorize};
use super::{Frame, Hello, Welcome};

/// Reads `data[1..]` as frames of the type `data[0]` picks until the first
/// end or error, and checks for each frame that:
/// - the async reader (servers) and the blocking one (CLI, PAM module) agree
///   on every frame, error and where they stopped;
/// - a decoded value encodes again, to bytes that decode to the same value
///   and encode to the same bytes;
/// - a system request is allowed for a user only when it acts on that user.
pub fn fuzz_one(data: &[u8]) {
    let (sel, stream) = data.split_first().map_or((0, data), |(s, r)| (*s, r));
    match sel % 6 {
        0 => drop(frames::<Hello>(stream)),
        1 => drop(frames::<Frame<Welcome>>(stream)),
        2 => drop(frames::<Request>(stream)),
        3 => drop(frames::<Frame<Response>>(stream)),
        4 => {
            for request in frames::<SystemRequest>(stream) {
                check_authorize(&request);
            }
        }
        _ => drop(frames::<Frame<SystemResponse>>(stream)),
    }
}

/// Reads every frame of `stream` with both readers; returns the values.
fn frames<T>(stream: &[u8]) -> Vec<T>
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    let mut values = Vec::new();
    let mut blocking = stream;
    let mut nonblocking = stream;
    loop {
        let a = read_frame_blocking::<T, _>(&mut blocking);
        let b = ready(read_frame::<T, _>(&mut nonblocking));
        assert_eq!(blocking.len(), nonblocking.len(), "readers stopped apart");
        let value = match (a, b) {
            (Ok(Some(a)), Ok(Some(b))) => {
                assert_eq!(a, b, "readers decoded different values");
                a
            }
            (Ok(None), Ok(None)) => return values,
            (Err(a), Err(b)) => {
                assert_eq!(a.to_string(), b.to_string(), "readers failed differently");
                return values;
            }
            (a, b) => panic!("readers disagree: {a:?} vs {b:?}"),
        };
        round_trip(&value);
        values.push(value);
    }
}

/// Checks that `value` survives encoding and decoding unchanged.
fn round_trip<T>(value: &T)
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    let bytes = encode(value).expect("a decoded value encodes again");
    let back: T = decode(&bytes[super::frame::HEADER_LEN..]).expect("its encoding decodes");
    assert_eq!(&back, value, "the value changed in a round trip");
    assert_eq!(
        encode(&back).expect("encodes"),
        bytes,
        "encoding is not stable"
    );
}

/// The system socket's rule: root may do anything, a user only act on themselves.
fn check_authorize(request: &SystemRequest) {
    let target = request.target_uid();
    assert!(authorize(0, request).is_ok(), "root refused {request:?}");
    for peer in [1, 1000, 65534, u32::MAX] {
        let allowed = authorize(peer, request).is_ok();
        assert_eq!(
            allowed,
            target.is_none_or(|t| t == peer),
            "uid {peer} and {request:?}"
        );
    }
}

/// Runs a future that cannot wait (a read from a byte slice) to its end.
fn ready<F: Future>(f: F) -> F::Output {
    let mut cx = Context::from_waker(Waker::noop());
    match pin!(f).poll(&mut cx) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("a read from a byte slice waited"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipc::ProtoError;
    use crate::ipc::proto::KillWhom;

    /// Valid streams of every type, and their cuts at every byte, pass.
    #[test]
    fn valid_streams_and_every_cut_of_them_pass() {
        let mut streams: Vec<(u8, Vec<u8>)> = Vec::new();
        let hello = Hello {
            protocol: 1,
            client_version: "0.1.0".into(),
        };
        streams.push((0, encode(&hello).unwrap()));
        let kill = Request::Kill {
            units: vec!["a.service".into()],
            signal: 15,
            whom: KillWhom::All,
        };
        let mut two = encode(&kill).unwrap();
        two.extend(encode(&Request::List).unwrap());
        streams.push((2, two));
        let error = Frame::<Response>::Error(ProtoError {
            code: crate::ipc::ErrorCode::BUSY,
            message: "busy".into(),
        });
        streams.push((3, encode(&error).unwrap()));
        let login = SystemRequest::Login {
            uid: 1000,
            wait: true,
        };
        streams.push((4, encode(&login).unwrap()));
        for (sel, bytes) in streams {
            for cut in 0..=bytes.len() {
                let mut input = vec![sel];
                input.extend(&bytes[..cut]);
                fuzz_one(&input);
            }
        }
        fuzz_one(&[]);
    }

    #[test]
    fn both_readers_stop_at_an_oversized_prefix() {
        let mut input = vec![2];
        input.extend(u32::MAX.to_le_bytes());
        fuzz_one(&input);
    }
}
