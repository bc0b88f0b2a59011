//! Length-prefixed frames: a `u32` little-endian payload length, then that
//! many bytes of postcard.
//!
//! The length is checked against [`MAX_FRAME`] before any buffer is
//! allocated, so a hostile prefix (up to 4 GiB) costs nothing. Async
//! functions serve tokio sockets; the `_blocking` twins serve `std::io`
//! streams (the CLI); both share the encoding and checks here.

use std::any::type_name;
use std::io::{self, Read, Write};

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::{IpcError, ProtoError};

/// The largest payload either side sends or accepts (1 MiB). Long answers
/// (journal queries) are streamed as many frames instead.
pub const MAX_FRAME: usize = 1 << 20;

/// Size of the length prefix.
pub const HEADER_LEN: usize = 4;

/// Borrowing twin of [`super::Frame`] with the same variants in the same
/// order, hence the same postcard encoding, so replies are sent without a clone.
#[derive(Serialize)]
pub(crate) enum FrameRef<'a, T> {
    /// See [`super::Frame::Reply`].
    Reply(&'a T),
    /// See [`super::Frame::StreamItem`].
    StreamItem(&'a T),
    /// See [`super::Frame::End`].
    End,
    /// See [`super::Frame::Error`].
    Error(&'a ProtoError),
}

/// Encodes `value` as one complete frame (prefix included), refusing
/// payloads larger than [`MAX_FRAME`] so we never send what a peer must reject.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, IpcError> {
    let mut buf =
        postcard::to_extend(value, vec![0u8; HEADER_LEN]).map_err(|source| IpcError::Encode {
            what: type_name::<T>(),
            source,
        })?;
    let len = buf.len() - HEADER_LEN;
    if len > MAX_FRAME {
        return Err(IpcError::Oversized {
            len: len as u64,
            max: MAX_FRAME,
        });
    }
    buf[..HEADER_LEN].copy_from_slice(&(len as u32).to_le_bytes());
    Ok(buf)
}

/// Checks a length prefix against [`MAX_FRAME`] and returns the payload length.
pub fn payload_len(header: [u8; HEADER_LEN]) -> Result<usize, IpcError> {
    let len = u32::from_le_bytes(header);
    if len as usize > MAX_FRAME {
        return Err(IpcError::Oversized {
            len: u64::from(len),
            max: MAX_FRAME,
        });
    }
    Ok(len as usize)
}

/// Decodes one payload, rejecting leftover bytes (a peer with another layout).
pub fn decode<T: DeserializeOwned>(payload: &[u8]) -> Result<T, IpcError> {
    let what = type_name::<T>();
    let (value, rest) =
        postcard::take_from_bytes::<T>(payload).map_err(|source| IpcError::Malformed {
            what,
            len: payload.len(),
            source,
        })?;
    if !rest.is_empty() {
        return Err(IpcError::TrailingBytes {
            what,
            len: payload.len(),
            trailing: rest.len(),
        });
    }
    Ok(value)
}

/// Reads one frame; `Ok(None)` on a clean EOF before the first byte of a frame.
pub async fn read_frame<T, R>(reader: &mut R) -> Result<Option<T>, IpcError>
where
    T: DeserializeOwned,
    R: AsyncRead + Unpin + ?Sized,
{
    let mut header = [0u8; HEADER_LEN];
    let got = read_full_async(reader, &mut header).await?;
    if got == 0 {
        return Ok(None);
    }
    if got < HEADER_LEN {
        return Err(IpcError::Truncated {
            expected: HEADER_LEN,
            got,
        });
    }
    let len = payload_len(header)?;
    let mut payload = vec![0u8; len];
    let got = read_full_async(reader, &mut payload).await?;
    if got < len {
        return Err(IpcError::Truncated { expected: len, got });
    }
    decode(&payload).map(Some)
}

/// Writes one frame and flushes it.
pub async fn write_frame<T, W>(writer: &mut W, value: &T) -> Result<(), IpcError>
where
    T: Serialize + ?Sized,
    W: AsyncWrite + Unpin + ?Sized,
{
    let buf = encode(value)?;
    write_bytes(writer, &buf).await
}

/// Writes already-encoded frame bytes and flushes them.
pub(crate) async fn write_bytes<W>(writer: &mut W, buf: &[u8]) -> Result<(), IpcError>
where
    W: AsyncWrite + Unpin + ?Sized,
{
    writer
        .write_all(buf)
        .await
        .map_err(|e| IpcError::io("write frame", None, e))?;
    writer
        .flush()
        .await
        .map_err(|e| IpcError::io("write frame", None, e))
}

/// Blocking twin of [`read_frame`] for `std::io` streams.
pub fn read_frame_blocking<T, R>(reader: &mut R) -> Result<Option<T>, IpcError>
where
    T: DeserializeOwned,
    R: Read + ?Sized,
{
    let mut header = [0u8; HEADER_LEN];
    let got = read_full_blocking(reader, &mut header)?;
    if got == 0 {
        return Ok(None);
    }
    if got < HEADER_LEN {
        return Err(IpcError::Truncated {
            expected: HEADER_LEN,
            got,
        });
    }
    let len = payload_len(header)?;
    let mut payload = vec![0u8; len];
    let got = read_full_blocking(reader, &mut payload)?;
    if got < len {
        return Err(IpcError::Truncated { expected: len, got });
    }
    decode(&payload).map(Some)
}

/// Blocking twin of [`write_frame`] for `std::io` streams.
pub fn write_frame_blocking<T, W>(writer: &mut W, value: &T) -> Result<(), IpcError>
where
    T: Serialize + ?Sized,
    W: Write + ?Sized,
{
    let buf = encode(value)?;
    writer
        .write_all(&buf)
        .and_then(|()| writer.flush())
        .map_err(|e| IpcError::io("write frame", None, e))
}

/// Fills `buf` unless EOF comes first; returns how many bytes were read, so
/// the caller can tell a clean EOF (0) from a truncated frame.
async fn read_full_async<R>(reader: &mut R, buf: &mut [u8]) -> Result<usize, IpcError>
where
    R: AsyncRead + Unpin + ?Sized,
{
    let mut got = 0;
    while got < buf.len() {
        match reader.read(&mut buf[got..]).await {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(IpcError::io("read frame", None, e)),
        }
    }
    Ok(got)
}

/// Blocking twin of [`read_full_async`].
fn read_full_blocking<R>(reader: &mut R, buf: &mut [u8]) -> Result<usize, IpcError>
where
    R: Read + ?Sized,
{
    let mut got = 0;
    while got < buf.len() {
        match reader.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(IpcError::io("read frame", None, e)),
        }
    }
    Ok(got)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipc::{ErrorCode, Frame};

    #[test]
    fn frame_ref_encodes_like_frame() {
        let v = String::from("hello");
        let e = ProtoError {
            code: ErrorCode::MALFORMED,
            message: "x".into(),
        };
        assert_eq!(
            encode(&FrameRef::Reply(&v)).unwrap(),
            encode(&Frame::Reply(v.clone())).unwrap()
        );
        assert_eq!(
            encode(&FrameRef::StreamItem(&v)).unwrap(),
            encode(&Frame::StreamItem(v.clone())).unwrap()
        );
        assert_eq!(
            encode(&FrameRef::<String>::End).unwrap(),
            encode(&Frame::<String>::End).unwrap()
        );
        assert_eq!(
            encode(&FrameRef::<String>::Error(&e)).unwrap(),
            encode(&Frame::<String>::Error(e.clone())).unwrap()
        );
    }

    #[test]
    fn blocking_round_trip_and_clean_eof() {
        let mut buf = Vec::new();
        write_frame_blocking(&mut buf, &(7u32, "seven".to_string())).unwrap();
        assert_eq!(&buf[..4], &((buf.len() - 4) as u32).to_le_bytes());
        let mut r = &buf[..];
        let v: Option<(u32, String)> = read_frame_blocking(&mut r).unwrap();
        assert_eq!(v, Some((7, "seven".to_string())));
        let v: Option<(u32, String)> = read_frame_blocking(&mut r).unwrap();
        assert_eq!(v, None);
    }

    #[test]
    fn oversized_prefix_is_refused_before_reading_payload() {
        let buf = u32::MAX.to_le_bytes();
        let mut r = &buf[..];
        let err = read_frame_blocking::<String, _>(&mut r).unwrap_err();
        assert!(matches!(err, IpcError::Oversized { len, .. } if len == u64::from(u32::MAX)));
    }

    #[test]
    fn truncated_and_trailing_frames_are_errors() {
        let mut buf = Vec::new();
        write_frame_blocking(&mut buf, &"abcdef".to_string()).unwrap();
        let mut short = &buf[..buf.len() - 2];
        assert!(matches!(
            read_frame_blocking::<String, _>(&mut short),
            Err(IpcError::Truncated { .. })
        ));
        let mut half_header = &buf[..2];
        assert!(matches!(
            read_frame_blocking::<String, _>(&mut half_header),
            Err(IpcError::Truncated {
                expected: 4,
                got: 2
            })
        ));
        // A u8 payload of 2 bytes decodes 1 and leaves 1.
        let mut r: &[u8] = &[2, 0, 0, 0, 5, 6];
        assert!(matches!(
            read_frame_blocking::<u8, _>(&mut r),
            Err(IpcError::TrailingBytes { trailing: 1, .. })
        ));
    }

    #[test]
    fn encode_refuses_payloads_over_the_limit() {
        let big = vec![0u8; MAX_FRAME + 1];
        assert!(matches!(encode(&big), Err(IpcError::Oversized { .. })));
    }
}
