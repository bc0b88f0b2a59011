//! Block encoding (format v1): a run of one unit's entries, postcard-encoded and
//! compressed with zstd. See docs/JOURNAL-FORMAT.md.

use serde::{Deserialize, Serialize, Serializer};

use super::{Entry, Stream};

/// Codec byte of a v1 block: zstd over postcard.
pub const CODEC_ZSTD_POSTCARD: u8 = 1;
/// Length of the block header: codec (1) + raw length (4, little endian).
pub const HEADER_LEN: usize = 5;
/// zstd level: 1 is fast enough for > 1 M lines/s and compresses logs ~10x.
const ZSTD_LEVEL: i32 = 1;

/// Serializes a byte slice with `serialize_bytes`: the same postcard wire format as a
/// sequence of u8 (varint length + bytes), without a call per byte.
struct Bytes<'a>(&'a [u8]);

impl Serialize for Bytes<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

/// An entry as written into a block (the unit is the block's key, not repeated).
#[derive(Serialize)]
struct StoredOut<'a> {
    seq: u64,
    realtime: u64,
    monotonic: u64,
    boot_id: u128,
    uid: u32,
    invocation: u128,
    pid: Option<u32>,
    stream: u8,
    priority: u8,
    flags: u8,
    identifier: &'a str,
    message: Bytes<'a>,
}

/// An entry decoded from a block, borrowing its strings from the decompressed buffer.
#[derive(Deserialize, Debug)]
pub struct StoredRef<'a> {
    /// Sequence number.
    pub seq: u64,
    /// Realtime µs.
    pub realtime: u64,
    /// Monotonic µs.
    pub monotonic: u64,
    /// Boot id.
    pub boot_id: u128,
    /// Uid.
    pub uid: u32,
    /// Invocation id.
    pub invocation: u128,
    /// Pid, where known.
    pub pid: Option<u32>,
    /// Stream code ([`Stream::code`]).
    pub stream: u8,
    /// Priority.
    pub priority: u8,
    /// Flags.
    pub flags: u8,
    /// Identifier.
    pub identifier: &'a str,
    /// Message bytes.
    pub message: &'a [u8],
}

impl StoredRef<'_> {
    /// Builds the owned entry of `unit`.
    pub fn to_entry(&self, unit: &str) -> Entry {
        Entry {
            seq: self.seq,
            realtime: self.realtime,
            monotonic: self.monotonic,
            boot_id: self.boot_id,
            uid: self.uid,
            unit: unit.to_owned(),
            invocation: self.invocation,
            pid: self.pid,
            stream: Stream::from_code(self.stream),
            priority: self.priority,
            identifier: self.identifier.to_owned(),
            message: self.message.to_vec(),
            flags: self.flags,
        }
    }
}

/// Field values of an entry to encode; borrowed so the writer need not build an [`Entry`].
pub struct EncodeItem<'a> {
    /// Sequence number.
    pub seq: u64,
    /// Realtime µs.
    pub realtime: u64,
    /// Monotonic µs.
    pub monotonic: u64,
    /// Boot id.
    pub boot_id: u128,
    /// Uid.
    pub uid: u32,
    /// Invocation id.
    pub invocation: u128,
    /// Pid.
    pub pid: Option<u32>,
    /// Stream.
    pub stream: Stream,
    /// Priority.
    pub priority: u8,
    /// Flags.
    pub flags: u8,
    /// Identifier.
    pub identifier: &'a str,
    /// Message.
    pub message: &'a [u8],
}

/// Reusable encoder state (the zstd context and scratch buffers).
pub struct Encoder {
    zstd: zstd::bulk::Compressor<'static>,
    raw: Vec<u8>,
}

impl Encoder {
    /// A new encoder.
    pub fn new() -> std::io::Result<Encoder> {
        Ok(Encoder {
            zstd: zstd::bulk::Compressor::new(ZSTD_LEVEL)?,
            raw: Vec::with_capacity(256 * 1024),
        })
    }

    /// Encodes items into a block value: header + compressed postcard `Vec<StoredOut>`.
    /// Returns the block and the raw (uncompressed) length.
    pub fn encode<'a>(
        &mut self,
        items: impl ExactSizeIterator<Item = EncodeItem<'a>>,
    ) -> std::io::Result<(Vec<u8>, usize)> {
        self.raw.clear();
        push_varint(&mut self.raw, items.len() as u64);
        for it in items {
            let out = StoredOut {
                seq: it.seq,
                realtime: it.realtime,
                monotonic: it.monotonic,
                boot_id: it.boot_id,
                uid: it.uid,
                invocation: it.invocation,
                pid: it.pid,
                stream: it.stream.code(),
                priority: it.priority,
                flags: it.flags,
                identifier: it.identifier,
                message: Bytes(it.message),
            };
            let raw = std::mem::take(&mut self.raw);
            self.raw = postcard::to_extend(&out, raw).map_err(std::io::Error::other)?;
        }
        let raw_len = self.raw.len();
        let bound = zstd::zstd_safe::compress_bound(raw_len);
        let mut block = Vec::with_capacity(HEADER_LEN + bound);
        block.push(CODEC_ZSTD_POSTCARD);
        block.extend_from_slice(&(raw_len as u32).to_le_bytes());
        block.resize(HEADER_LEN + bound, 0);
        let n = self
            .zstd
            .compress_to_buffer(&self.raw, &mut block[HEADER_LEN..])?;
        block.truncate(HEADER_LEN + n);
        Ok((block, raw_len))
    }
}

fn push_varint(v: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        v.push((n as u8) | 0x80);
        n >>= 7;
    }
    v.push(n as u8);
}

/// Decompresses a block value into its raw postcard bytes.
pub fn decompress(block: &[u8]) -> Result<Vec<u8>, String> {
    let mut d = zstd::bulk::Decompressor::new().map_err(|e| e.to_string())?;
    decompress_with(&mut d, block)
}

/// Like [`decompress`], reusing a zstd context (a query reads many blocks).
pub fn decompress_with(
    d: &mut zstd::bulk::Decompressor<'static>,
    block: &[u8],
) -> Result<Vec<u8>, String> {
    if block.len() < HEADER_LEN {
        return Err(format!(
            "block of {} bytes is shorter than its header",
            block.len()
        ));
    }
    if block[0] != CODEC_ZSTD_POSTCARD {
        return Err(format!("unknown block codec {}", block[0]));
    }
    let raw_len = u32::from_le_bytes(block[1..5].try_into().expect("4 bytes")) as usize;
    let raw = d
        .decompress(&block[HEADER_LEN..], raw_len)
        .map_err(|e| e.to_string())?;
    if raw.len() != raw_len {
        return Err(format!(
            "block decompressed to {} bytes, header says {raw_len}",
            raw.len()
        ));
    }
    Ok(raw)
}

/// Decodes the entries of a decompressed block, borrowing from `raw`.
pub fn decode(raw: &[u8]) -> Result<Vec<StoredRef<'_>>, String> {
    postcard::from_bytes::<Vec<StoredRef<'_>>>(raw).map_err(|e| e.to_string())
}
