//! Block encoding: a run of one unit's entries, compressed with zstd. Format v1 wrote
//! postcard-encoded entries (codec 1), v2 columns (codec 2); v3 writes columns with
//! `_COMM` and `MESSAGE_ID` (codec 3), and all three are read. See docs/JOURNAL-FORMAT.md.

use std::collections::HashMap;

use serde::Deserialize;

use super::{Entry, Stream};

/// Codec byte of a v1 block: zstd over postcard entries (read, no longer written).
pub const CODEC_ZSTD_POSTCARD: u8 = 1;
/// Codec byte of a v2 block: zstd over columns, messages last and contiguous (read, no
/// longer written).
pub const CODEC_ZSTD_COLUMNS: u8 = 2;
/// Codec byte of a v3 block: codec 2's columns and a `_COMM` and a `MESSAGE_ID` column.
pub const CODEC_ZSTD_COLUMNS_V3: u8 = 3;
/// Length of the block header: codec (1) + raw length (4, little endian).
pub const HEADER_LEN: usize = 5;
/// zstd level: 3 compresses realistic logs ~8% better than 1 at about half the
/// speed, still several times what ingest needs (the bench measures both).
const ZSTD_LEVEL: i32 = 3;

/// An entry decoded from a block, borrowing its strings from the decompressed buffer.
#[derive(Debug, Clone, Copy)]
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
    /// `_COMM` of the writing process; empty when unknown (blocks before v3).
    pub comm: &'a str,
    /// `MESSAGE_ID`; 0 when none (always in blocks before v3).
    pub message_id: u128,
    /// Message bytes.
    pub message: &'a [u8],
}

/// An entry of a v1 block, as postcard wrote it.
#[derive(Deserialize)]
struct V1Row<'a> {
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
    message: &'a [u8],
}

impl<'a> From<V1Row<'a>> for StoredRef<'a> {
    fn from(r: V1Row<'a>) -> StoredRef<'a> {
        StoredRef {
            seq: r.seq,
            realtime: r.realtime,
            monotonic: r.monotonic,
            boot_id: r.boot_id,
            uid: r.uid,
            invocation: r.invocation,
            pid: r.pid,
            stream: r.stream,
            priority: r.priority,
            flags: r.flags,
            identifier: r.identifier,
            comm: "",
            message_id: 0,
            message: r.message,
        }
    }
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
            comm: self.comm.to_owned(),
            message_id: self.message_id,
            message: self.message.to_vec(),
            flags: self.flags,
        }
    }
}

/// Field values of an entry to encode; borrowed so the writer need not build an [`Entry`].
#[derive(Clone, Copy)]
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
    /// `_COMM`; empty when unknown.
    pub comm: &'a str,
    /// `MESSAGE_ID`; 0 when none.
    pub message_id: u128,
    /// Message.
    pub message: &'a [u8],
}

/// Reusable encoder state (the zstd context and scratch buffers).
pub struct Encoder {
    zstd: zstd::bulk::Compressor<'static>,
    raw: Vec<u8>,
    /// Per unit, estimated raw bytes ([`EncodeItem::estimate`]) per compressed byte of
    /// its last block: the first guess at how many entries fill the next one. Keyed by
    /// 32 bits of a hash of the name ([`unit_key`]): a collision only makes a worse
    /// first guess, and names and `f64`s cost a thousand units that logged a line
    /// 45 KB more, 64-bit keys (16 B a slot with the padding) 16 KB more.
    ratios: HashMap<u32, f32>,
}

/// The key of `unit` in the store's merge progress (its low half in [`Encoder`]'s ratios).
pub(super) fn unit_key(unit: &str) -> u64 {
    use std::hash::BuildHasher;
    std::hash::BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default()
        .hash_one(unit)
}

/// The key of `unit` in [`Encoder`]'s ratios: the low half of [`unit_key`].
fn ratio_key(unit: &str) -> u32 {
    unit_key(unit) as u32
}

impl EncodeItem<'_> {
    /// About what the entry adds to a v2 payload: its message and a dozen bytes of
    /// deltas and length.
    pub fn estimate(&self) -> usize {
        self.message.len() + 12
    }
}

impl Encoder {
    /// A new encoder.
    pub fn new() -> std::io::Result<Encoder> {
        Ok(Encoder {
            zstd: zstd::bulk::Compressor::new(ZSTD_LEVEL)?,
            raw: Vec::with_capacity(256 * 1024),
            ratios: HashMap::new(),
        })
    }

    /// How well `unit`'s entries compressed last time (3 before any block).
    pub fn ratio(&self, unit: &str) -> f64 {
        self.ratios
            .get(&ratio_key(unit))
            .map_or(3.0, |r| f64::from(*r))
    }

    /// Records how well a block of `unit` compressed (see [`Self::ratio`]).
    pub fn note_ratio(&mut self, unit: &str, estimate: usize, stored: usize) {
        let key = ratio_key(unit);
        if self.ratios.len() > 4096 && !self.ratios.contains_key(&key) {
            // Units come and go (templates); a fresh guess costs a re-encode at most.
            self.ratios.clear();
        }
        self.ratios
            .insert(key, (estimate as f64 / stored.max(1) as f64) as f32);
    }

    /// Encodes items (in seq order) into a v3 block value: header + compressed columns.
    /// Returns the block and the raw (uncompressed) length.
    pub fn encode<'a>(
        &mut self,
        items: impl ExactSizeIterator<Item = EncodeItem<'a>>,
    ) -> std::io::Result<(Vec<u8>, usize)> {
        let items: Vec<EncodeItem<'a>> = items.collect();
        self.raw.clear();
        put_columns(&mut self.raw, &items);
        let raw_len = self.raw.len();
        let bound = zstd::zstd_safe::compress_bound(raw_len);
        let mut block = Vec::with_capacity(HEADER_LEN + bound);
        block.push(CODEC_ZSTD_COLUMNS_V3);
        block.extend_from_slice(&(raw_len as u32).to_le_bytes());
        block.resize(HEADER_LEN + bound, 0);
        let n = self
            .zstd
            .compress_to_buffer(&self.raw, &mut block[HEADER_LEN..])?;
        block.truncate(HEADER_LEN + n);
        Ok((block, raw_len))
    }
}

/// Writes the v3 payload: the count, then each field as a column: seqs, realtimes and
/// monotonic times as deltas, the fields that change rarely (boot, uid, invocation,
/// pid, stream/priority/flags, identifier, comm, message id) as runs, the message
/// lengths, and last
/// the messages, each followed by a newline: one regex pass scans them all, and the
/// newline stops `.` at each message's end (a message may hold newlines itself: the
/// lengths delimit them, the newline only speeds the scan).
pub(crate) fn put_columns(out: &mut Vec<u8>, items: &[EncodeItem<'_>]) {
    push_varint(out, items.len() as u64);
    let mut prev = (0u64, 0u64, 0u64);
    for (i, it) in items.iter().enumerate() {
        if i == 0 {
            push_varint(out, it.seq);
        } else {
            push_varint(out, it.seq.wrapping_sub(prev.0));
        }
        prev.0 = it.seq;
    }
    for it in items {
        push_varint(out, zigzag(it.realtime.wrapping_sub(prev.1)));
        prev.1 = it.realtime;
    }
    for it in items {
        push_varint(out, zigzag(it.monotonic.wrapping_sub(prev.2)));
        prev.2 = it.monotonic;
    }
    put_runs(
        out,
        items,
        |e| e.boot_id,
        |o, v| o.extend_from_slice(&v.to_le_bytes()),
    );
    put_runs(out, items, |e| e.uid, |o, v| push_varint(o, v.into()));
    put_runs(
        out,
        items,
        |e| e.invocation,
        |o, v| o.extend_from_slice(&v.to_le_bytes()),
    );
    put_runs(
        out,
        items,
        |e| e.pid,
        |o, v| push_varint(o, v.map_or(0, |p| u64::from(p) + 1)),
    );
    put_runs(
        out,
        items,
        |e| [e.stream.code(), e.priority, e.flags],
        |o, v| o.extend_from_slice(&v),
    );
    put_runs(
        out,
        items,
        |e| e.identifier,
        |o, v| {
            push_varint(o, v.len() as u64);
            o.extend_from_slice(v.as_bytes());
        },
    );
    put_runs(
        out,
        items,
        |e| e.comm,
        |o, v| {
            push_varint(o, v.len() as u64);
            o.extend_from_slice(v.as_bytes());
        },
    );
    put_runs(
        out,
        items,
        |e| e.message_id,
        |o, v| o.extend_from_slice(&v.to_le_bytes()),
    );
    for it in items {
        push_varint(out, it.message.len() as u64);
    }
    for it in items {
        out.extend_from_slice(it.message);
        out.push(b'\n');
    }
}

/// A column as runs of equal values: the number of runs, then each run's length and value.
fn put_runs<'a, T: PartialEq + Copy>(
    out: &mut Vec<u8>,
    items: &[EncodeItem<'a>],
    get: impl Fn(&EncodeItem<'a>) -> T,
    put: impl Fn(&mut Vec<u8>, T),
) {
    let mut runs: Vec<(u64, T)> = Vec::new();
    for it in items {
        let v = get(it);
        match runs.last_mut() {
            Some((n, last)) if *last == v => *n += 1,
            _ => runs.push((1, v)),
        }
    }
    push_varint(out, runs.len() as u64);
    for (n, v) in runs {
        push_varint(out, n);
        put(out, v);
    }
}

/// Signed deltas as small unsigned numbers (a clock stepping back gives a negative one).
fn zigzag(d: u64) -> u64 {
    let d = d as i64;
    ((d << 1) ^ (d >> 63)) as u64
}

fn unzigzag(z: u64) -> u64 {
    ((z >> 1) as i64 ^ -((z & 1) as i64)) as u64
}

fn push_varint(v: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        v.push((n as u8) | 0x80);
        n >>= 7;
    }
    v.push(n as u8);
}

/// Reads a v2 payload, every length checked: a damaged block is an error, not a panic.
struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// One number; most of a block's (deltas, message lengths) take one byte.
    #[inline]
    fn varint(&mut self) -> Result<u64, String> {
        match self.b.get(self.pos) {
            Some(&b) if b < 0x80 => {
                self.pos += 1;
                Ok(u64::from(b))
            }
            _ => self.multi_byte(),
        }
    }

    /// A number of more than one byte: a message length of 128 bytes to 16 KiB, a
    /// clock delta of 64 µs to 8 ms take two, read here without a call.
    #[inline]
    fn multi_byte(&mut self) -> Result<u64, String> {
        match self.b.get(self.pos..self.pos + 2) {
            Some(&[b0, b1]) if b0 >= 0x80 && b1 < 0x80 => {
                self.pos += 2;
                Ok(u64::from(b0 & 0x7f) | u64::from(b1) << 7)
            }
            _ => self.long_varint(),
        }
    }

    /// `n` numbers, each mapped by `f` and pushed to `out`, read eight bytes at a
    /// time: eight one-byte numbers in one push, else the one-byte numbers before
    /// the first longer one (the delta and length columns are read this way: they
    /// are most of the decoding work of a `-g` scan, and one line in eight of real
    /// logs is longer than a one-byte length).
    fn numbers<T: Copy + Default>(
        &mut self,
        n: usize,
        out: &mut Vec<T>,
        mut f: impl FnMut(u64) -> T,
    ) -> Result<(), String> {
        out.reserve(n);
        let mut left = n;
        while left > 0 {
            let Some(w) = self.b.get(self.pos..self.pos + 8) else {
                out.push(f(self.varint()?));
                left -= 1;
                continue;
            };
            let w = u64::from_le_bytes(w.try_into().expect("8 bytes"));
            let high = w & 0x8080_8080_8080_8080;
            if high == 0 && left >= 8 {
                let mut eight = [T::default(); 8];
                for (k, v) in eight.iter_mut().enumerate() {
                    *v = f((w >> (8 * k)) & 0xff);
                }
                out.extend_from_slice(&eight);
                self.pos += 8;
                left -= 8;
                continue;
            }
            let short = ((high.trailing_zeros() / 8) as usize).min(left);
            // One capacity check for them all, not one per push.
            out.extend((0..short).map(|k| f((w >> (8 * k)) & 0xff)));
            self.pos += short;
            left -= short;
            if short < 8 && left > 0 {
                out.push(f(self.multi_byte()?));
                left -= 1;
            }
        }
        Ok(())
    }

    /// Passes over `n` numbers, checking them as [`Self::numbers`] does: a column
    /// whose values are read later for a few entries only ([`Clocks::Lazy`]).
    fn skip_numbers(&mut self, n: usize) -> Result<(), String> {
        let mut left = n;
        while left > 0 {
            let Some(w) = self.b.get(self.pos..self.pos + 8) else {
                self.varint()?;
                left -= 1;
                continue;
            };
            let high = u64::from_le_bytes(w.try_into().expect("8 bytes")) & 0x8080_8080_8080_8080;
            let short = ((high.trailing_zeros() / 8) as usize).min(left);
            self.pos += short;
            left -= short;
            if short < 8 && left > 0 {
                self.multi_byte()?;
                left -= 1;
            }
        }
        Ok(())
    }

    #[inline(never)]
    fn long_varint(&mut self) -> Result<u64, String> {
        let mut n = 0u64;
        for shift in (0..70).step_by(7) {
            let Some(&b) = self.b.get(self.pos) else {
                return Err("block ends inside a number".into());
            };
            self.pos += 1;
            if shift == 63 && b > 1 {
                return Err("number too large".into());
            }
            n |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(n);
            }
        }
        Err("number too long".into())
    }

    fn bytes(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.b.len())
            .ok_or("block ends inside a field")?;
        let s = &self.b[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u128(&mut self) -> Result<u128, String> {
        Ok(u128::from_le_bytes(
            self.bytes(16)?.try_into().expect("16 bytes"),
        ))
    }

    fn u32(&mut self) -> Result<u32, String> {
        u32::try_from(self.varint()?).map_err(|_| "32-bit field out of range".to_string())
    }

    /// A column written by [`put_runs`], kept as runs of an entry count of `n`.
    fn runs<T: Copy>(
        &mut self,
        n: usize,
        mut get: impl FnMut(&mut Self) -> Result<T, String>,
    ) -> Result<Runs<T>, String> {
        let count = self.varint()?;
        let (mut ends, mut values, mut one) = (Vec::new(), Vec::new(), None);
        let mut end = 0usize;
        for _ in 0..count {
            let len = self.varint()?;
            let v = get(self)?;
            if len == 0 || len > (n - end) as u64 {
                return Err("a column's runs do not add up to the entry count".into());
            }
            end += len as usize;
            if count == 1 {
                one = Some(v);
            } else {
                ends.push(end as u32);
                values.push(v);
            }
        }
        if end != n {
            return Err("a column's runs do not add up to the entry count".into());
        }
        Ok(match one {
            Some(v) => Runs::One(v),
            None => Runs::Many { ends, values },
        })
    }

    fn str(&mut self) -> Result<&'a str, String> {
        let len = self.varint()? as usize;
        std::str::from_utf8(self.bytes(len)?).map_err(|_| "a name is not UTF-8".to_string())
    }
}

/// A column of runs of equal values.
enum Runs<T> {
    /// One value for every entry, the common case (a block of one process's
    /// lines): no list of runs, so a block of such columns makes 16 allocations
    /// fewer.
    One(T),
    /// Run `k` covers the entries before `ends[k]`.
    Many { ends: Vec<u32>, values: Vec<T> },
}

impl<T: Copy + Default> Runs<T> {
    /// A column of entries all `T::default()` (a field the codec does not have).
    fn absent() -> Runs<T> {
        Runs::One(T::default())
    }

    fn at(&self, i: usize) -> T {
        match self {
            Runs::One(v) => *v,
            Runs::Many { ends, values } => values[ends.partition_point(|&e| e as usize <= i)],
        }
    }
}

/// The columns of a decoded v2/v3 block. Entries are read from the columns on
/// demand: building every entry of a 1024-entry block up front costs a 128 KiB
/// allocation (page faults) and most of the decoding time, for a query that keeps
/// a few of them.
pub struct Columns<'a> {
    seqs: Seqs,
    clocks: Clocks<'a>,
    boots: Runs<u128>,
    uids: Runs<u32>,
    invocations: Runs<u128>,
    pids: Runs<Option<u32>>,
    spf: Runs<[u8; 3]>,
    idents: Runs<&'a str>,
    comms: Runs<&'a str>,
    message_ids: Runs<u128>,
    /// The messages, each followed by its newline, back to back.
    messages: &'a [u8],
    /// Where each message starts in `messages`, and its end (after the newline) last.
    starts: Vec<u32>,
}

/// The realtime and monotonic columns of a decoded block.
enum Clocks<'a> {
    /// Every entry's, added up from the deltas.
    Decoded {
        realtimes: Vec<u64>,
        monotonics: Vec<u64>,
    },
    /// The columns' bytes, checked but not added up ([`view_for_scan`]): a `-g` scan
    /// reads the clocks of the few entries whose message matched, and adding up every
    /// entry's deltas into two vectors was ~3% of its CPU.
    Lazy {
        realtimes: &'a [u8],
        monotonics: &'a [u8],
    },
}

/// The values at `wanted` (ascending) of a column of zigzag deltas checked before
/// ([`Reader::skip_numbers`]). Eight one-byte deltas before the next wanted entry
/// are added up at once: a `-g` scan reads a block's clocks up to its last match.
fn sums_at(column: &[u8], wanted: &[usize]) -> Vec<u64> {
    const CHECKED: &str = "the column was checked when the block was decoded";
    let mut r = Reader { b: column, pos: 0 };
    let mut out = Vec::with_capacity(wanted.len());
    let (mut i, mut t) = (0usize, 0u64);
    for &w in wanted {
        while i <= w {
            if let Some(word) = (i + 8 <= w)
                .then(|| r.b.get(r.pos..r.pos + 8))
                .flatten()
                .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
                .filter(|word| word & 0x8080_8080_8080_8080 == 0)
            {
                t = t.wrapping_add(unzigzag_eight(word));
                r.pos += 8;
                i += 8;
                continue;
            }
            t = t.wrapping_add(unzigzag(r.varint().expect(CHECKED)));
            i += 1;
        }
        out.push(t);
    }
    out
}

/// The sum of eight one-byte zigzag numbers, one per byte of `word`, wrapping.
fn unzigzag_eight(word: u64) -> u64 {
    const LOW: u64 = 0x0101_0101_0101_0101;
    // Per byte z: z >> 1 (at most 63), counted up for even z and down, plus one,
    // for odd z (see `unzigzag`).
    let half = (word >> 1) & (LOW * 0x7f);
    let odd = word & LOW;
    let odd_bytes = odd * 0xff;
    let sum = |x: u64| {
        // Byte pairs into 16-bit lanes (at most 2 * 63), then the four lanes added.
        let pairs = (x & 0x00ff_00ff_00ff_00ff) + ((x >> 8) & 0x00ff_00ff_00ff_00ff);
        pairs.wrapping_mul(0x0001_0001_0001_0001) >> 48
    };
    sum(half & !odd_bytes)
        .wrapping_sub(sum(half & odd_bytes))
        .wrapping_sub(u64::from(odd.count_ones()))
}

impl<'a> Columns<'a> {
    /// Entry `i`, its clocks given.
    fn row(&self, i: usize, realtime: u64, monotonic: u64) -> StoredRef<'a> {
        let spf = self.spf.at(i);
        StoredRef {
            seq: self.seqs.at(i),
            realtime,
            monotonic,
            boot_id: self.boots.at(i),
            uid: self.uids.at(i),
            invocation: self.invocations.at(i),
            pid: self.pids.at(i),
            stream: spf[0],
            priority: spf[1],
            flags: spf[2],
            identifier: self.idents.at(i),
            comm: self.comms.at(i),
            message_id: self.message_ids.at(i),
            message: self.message(i),
        }
    }

    fn message(&self, i: usize) -> &'a [u8] {
        &self.messages[self.starts[i] as usize..self.starts[i + 1] as usize - 1]
    }
}

/// The seq column of a decoded block.
enum Seqs {
    /// `n` seqs from `first` on, one apart: a block one unit filled alone, the
    /// common case, whose deltas are all 1. Kept so, the column costs a check of
    /// its bytes instead of adding up `n` numbers into a vector (~1.5% of a `-g`
    /// query's CPU).
    Consecutive {
        first: u64,
        n: usize,
    },
    Listed(Vec<u64>),
}

impl Seqs {
    fn len(&self) -> usize {
        match self {
            Seqs::Consecutive { n, .. } => *n,
            Seqs::Listed(v) => v.len(),
        }
    }

    fn at(&self, i: usize) -> u64 {
        match self {
            Seqs::Consecutive { first, n } => {
                assert!(i < *n, "seq {i} of a block of {n}");
                first.wrapping_add(i as u64)
            }
            Seqs::Listed(v) => v[i],
        }
    }

    fn ascending(&self) -> bool {
        match self {
            Seqs::Consecutive { first, n } => first.checked_add(*n as u64 - 1).is_some(),
            Seqs::Listed(v) => v.windows(2).all(|p| p[0] < p[1]),
        }
    }
}

/// A decoded block: its entries, one by one.
pub enum View<'a> {
    /// A v1 block: its entries, all decoded.
    Rows(Vec<StoredRef<'a>>),
    /// A v2 or v3 block.
    Columns(Box<Columns<'a>>),
}

impl<'a> View<'a> {
    /// The number of entries.
    pub fn len(&self) -> usize {
        match self {
            View::Rows(r) => r.len(),
            View::Columns(c) => c.seqs.len(),
        }
    }

    /// Whether the block holds no entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The seq of entry `i`.
    pub fn seq(&self, i: usize) -> u64 {
        match self {
            View::Rows(r) => r[i].seq,
            View::Columns(c) => c.seqs.at(i),
        }
    }

    /// Whether each entry's seq is above the one before it.
    pub fn seqs_ascending(&self) -> bool {
        match self {
            View::Rows(r) => r.windows(2).all(|p| p[0].seq < p[1].seq),
            View::Columns(c) => c.seqs.ascending(),
        }
    }

    /// Entry `i`.
    pub fn get(&self, i: usize) -> StoredRef<'a> {
        match self {
            View::Rows(r) => r[i],
            View::Columns(c) => match &c.clocks {
                Clocks::Decoded {
                    realtimes,
                    monotonics,
                } => c.row(i, realtimes[i], monotonics[i]),
                // Adds up the deltas before it: a lazy view is for reading a few entries.
                Clocks::Lazy { .. } => self.rows_at(&[i])[0],
            },
        }
    }

    /// Entries `wanted` (ascending), each clock column read once for all of them.
    pub fn rows_at(&self, wanted: &[usize]) -> Vec<StoredRef<'a>> {
        match self {
            View::Columns(c) => {
                if let Clocks::Lazy {
                    realtimes,
                    monotonics,
                } = &c.clocks
                {
                    let (rt, mt) = (sums_at(realtimes, wanted), sums_at(monotonics, wanted));
                    return (wanted.iter().zip(rt).zip(mt))
                        .map(|((&i, rt), mt)| c.row(i, rt, mt))
                        .collect();
                }
                wanted.iter().map(|&i| self.get(i)).collect()
            }
            View::Rows(_) => wanted.iter().map(|&i| self.get(i)).collect(),
        }
    }

    /// The message of entry `i`.
    pub fn message(&self, i: usize) -> &'a [u8] {
        match self {
            View::Rows(r) => r[i].message,
            View::Columns(c) => c.message(i),
        }
    }

    /// Every entry, in seq order.
    pub fn rows(self) -> Vec<StoredRef<'a>> {
        match self {
            View::Rows(r) => r,
            c => (0..c.len()).map(|i| c.get(i)).collect(),
        }
    }

    /// The messages back to back, each followed by a newline, and where each starts
    /// (its end last), when the codec lays them out so (v2 and later): one regex pass
    /// over them finds the candidates of `-g`.
    pub fn messages(&self) -> Option<(&'a [u8], &[u32])> {
        match self {
            View::Rows(_) => None,
            View::Columns(c) => Some((c.messages, &c.starts)),
        }
    }
}

/// Whether every byte of `b` is 1, eight at a time (a seq column of consecutive seqs).
fn all_ones(b: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    let words = b.chunks_exact(8);
    let tail = words.remainder().iter().all(|&x| x == 1);
    tail && words
        .map(|w| u64::from_le_bytes(w.try_into().expect("8 bytes")))
        .fold(true, |ok, w| ok & (w == ONES))
}

fn decode_columns<'a>(raw: &'a [u8], v3: bool, lazy: bool) -> Result<Columns<'a>, String> {
    let mut r = Reader { b: raw, pos: 0 };
    let n = r.varint()?;
    // Every entry takes at least a byte in each delta column: a larger count is damage.
    if n > raw.len() as u64 {
        return Err(format!("entry count {n} exceeds the block"));
    }
    let n = n as usize;
    let seq_column = r.pos;
    let consecutive = if n > 0 {
        let first = r.varint()?;
        let deltas = r.b.get(r.pos..r.pos + (n - 1));
        deltas.is_some_and(all_ones).then(|| {
            r.pos += n - 1;
            Seqs::Consecutive { first, n }
        })
    } else {
        None
    };
    let seqs = match consecutive {
        Some(s) => s,
        None => {
            r.pos = seq_column;
            let mut seqs = Vec::new();
            let mut seq = 0u64;
            r.numbers(n, &mut seqs, |d| {
                // The first is the seq itself, the others deltas: 0 + d is the first.
                seq = seq.wrapping_add(d);
                seq
            })?;
            Seqs::Listed(seqs)
        }
    };
    let deltas = |r: &mut Reader<'_>| -> Result<Vec<u64>, String> {
        let mut v = Vec::new();
        let mut t = 0u64;
        r.numbers(n, &mut v, |z| {
            t = t.wrapping_add(unzigzag(z));
            t
        })?;
        Ok(v)
    };
    let clocks = if lazy {
        let column = |r: &mut Reader<'a>| -> Result<&'a [u8], String> {
            let start = r.pos;
            r.skip_numbers(n)?;
            Ok(&r.b[start..r.pos])
        };
        Clocks::Lazy {
            realtimes: column(&mut r)?,
            monotonics: column(&mut r)?,
        }
    } else {
        Clocks::Decoded {
            realtimes: deltas(&mut r)?,
            monotonics: deltas(&mut r)?,
        }
    };
    let boots = r.runs(n, |r| r.u128())?;
    let uids = r.runs(n, |r| r.u32())?;
    let invocations = r.runs(n, |r| r.u128())?;
    let pids = r.runs(n, |r| {
        Ok(match r.u32()? {
            0 => None,
            p => Some(p - 1),
        })
    })?;
    let spf = r.runs(n, |r| {
        let b = r.bytes(3)?;
        Ok([b[0], b[1], b[2]])
    })?;
    let idents = r.runs(n, |r| r.str())?;
    let (comms, message_ids) = if v3 {
        (r.runs(n, |r| r.str())?, r.runs(n, |r| r.u128())?)
    } else {
        (Runs::absent(), Runs::absent())
    };
    let mut starts = Vec::with_capacity(n + 1);
    // Each message and its newline, added up in u64 (lengths are at most 2^64 - 1, so
    // the sum saturates instead of wrapping): a sum past the block is refused below.
    let mut at = 0u64;
    r.numbers(n, &mut starts, |len| {
        let start = at as u32;
        at = at.saturating_add(len).saturating_add(1);
        start
    })?;
    if at > u64::from(u32::MAX) {
        return Err("message lengths exceed the block".into());
    }
    starts.push(at as u32);
    let messages = r.bytes(at as usize)?;
    if r.pos != raw.len() {
        return Err(format!(
            "{} bytes after the last message",
            raw.len() - r.pos
        ));
    }
    // Every entry's checked without stopping at the first bad one: the loop then
    // has no exit to test per entry (it was ~1% of a `-g` scan's instructions).
    let newlines = starts[1..].iter().fold(true, |ok, &e| {
        ok & (messages.get(e as usize - 1) == Some(&b'\n'))
    });
    if !newlines {
        return Err("a message is not followed by its newline".into());
    }
    Ok(Columns {
        seqs,
        clocks,
        boots,
        uids,
        invocations,
        pids,
        spf,
        idents,
        comms,
        message_ids,
        messages,
        starts,
    })
}

/// Decompresses a block value (either codec) into its raw payload.
pub fn decompress(block: &[u8]) -> Result<Vec<u8>, String> {
    let mut d = zstd::bulk::Decompressor::new().map_err(|e| e.to_string())?;
    decompress_with(&mut d, block)
}

/// Like [`decompress`], reusing a zstd context (a query reads many blocks).
pub fn decompress_with(
    d: &mut zstd::bulk::Decompressor<'static>,
    block: &[u8],
) -> Result<Vec<u8>, String> {
    let mut raw = Vec::new();
    decompress_into(d, block, &mut raw)?;
    Ok(raw)
}

/// Like [`decompress_with`], into `raw` (cleared first; its memory is reused).
pub fn decompress_into(
    d: &mut zstd::bulk::Decompressor<'static>,
    block: &[u8],
    raw: &mut Vec<u8>,
) -> Result<(), String> {
    if block.len() < HEADER_LEN {
        return Err(format!(
            "block of {} bytes is shorter than its header",
            block.len()
        ));
    }
    if !known_codec(block[0]) {
        return Err(format!("unknown block codec {}", block[0]));
    }
    let raw_len = u32::from_le_bytes(block[1..5].try_into().expect("4 bytes")) as usize;
    raw.clear();
    raw.reserve(raw_len);
    d.decompress_to_buffer(&block[HEADER_LEN..], raw)
        .map_err(|e| e.to_string())?;
    if raw.len() != raw_len {
        return Err(format!(
            "block decompressed to {} bytes, header says {raw_len}",
            raw.len()
        ));
    }
    Ok(())
}

/// Decodes a decompressed block of `codec` (its first byte), borrowing from `raw`.
pub fn view(codec: u8, raw: &[u8]) -> Result<View<'_>, String> {
    view_with(codec, raw, false)
}

/// Like [`view`] for a query that reads few of the block's entries, picked by their
/// messages ([`View::message`]) and then read with [`View::rows_at`]: their clocks
/// are added up only that far, not stored for every entry (reading entries one by
/// one with [`View::get`] adds up each one's from the block's first).
pub fn view_for_scan(codec: u8, raw: &[u8]) -> Result<View<'_>, String> {
    view_with(codec, raw, true)
}

fn view_with(codec: u8, raw: &[u8], lazy: bool) -> Result<View<'_>, String> {
    match codec {
        CODEC_ZSTD_POSTCARD => postcard::from_bytes::<Vec<V1Row<'_>>>(raw)
            .map(|rows| View::Rows(rows.into_iter().map(StoredRef::from).collect()))
            .map_err(|e| e.to_string()),
        CODEC_ZSTD_COLUMNS => decode_columns(raw, false, lazy).map(|c| View::Columns(Box::new(c))),
        CODEC_ZSTD_COLUMNS_V3 => {
            decode_columns(raw, true, lazy).map(|c| View::Columns(Box::new(c)))
        }
        c => Err(format!("unknown block codec {c}")),
    }
}

/// Every entry of a decompressed block of `codec`, borrowing from `raw`.
pub fn decode(codec: u8, raw: &[u8]) -> Result<Vec<StoredRef<'_>>, String> {
    view(codec, raw).map(View::rows)
}

/// Whether `codec` is one this version reads.
pub fn known_codec(codec: u8) -> bool {
    matches!(
        codec,
        CODEC_ZSTD_POSTCARD | CODEC_ZSTD_COLUMNS | CODEC_ZSTD_COLUMNS_V3
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A one-byte stdout line of `sh` at the given seq and clocks, the rest
    /// of its fields at their plainest.
    fn plain_item(seq: u64, realtime: u64, monotonic: u64) -> EncodeItem<'static> {
        EncodeItem {
            seq,
            realtime,
            monotonic,
            boot_id: 1,
            uid: 0,
            invocation: 0,
            pid: None,
            stream: Stream::Stdout,
            priority: 6,
            flags: 0,
            identifier: "sh",
            comm: "sh",
            message_id: 0,
            message: b"x",
        }
    }

    /// `items` encoded as one block: the block and its decompressed columns.
    fn encoded(items: &[EncodeItem<'_>]) -> (Vec<u8>, Vec<u8>) {
        let (b, _) = Encoder::new()
            .unwrap()
            .encode(items.iter().copied())
            .unwrap();
        let raw = decompress(&b).unwrap();
        (b, raw)
    }

    #[test]
    fn columns_round_trip_every_field_and_refuse_damage() {
        let idents = ["web", "web", "sh", "web"];
        let msgs: [&[u8]; 4] = [b"one", b"", b"three\nlines\n", b"bin\x00\xff"];
        let items: Vec<EncodeItem<'_>> = (0..4)
            .map(|i| EncodeItem {
                seq: 10 + i as u64 * 3,
                // The wall clock steps back between the second and the third.
                realtime: [5_000, 9_000, 1_000, 1_000][i],
                monotonic: 100 + i as u64,
                boot_id: if i < 3 { 1 << 100 } else { 2 },
                uid: 1000,
                invocation: [0, 7, 7, 8][i],
                pid: [None, Some(0), Some(42), Some(u32::MAX - 1)][i],
                stream: [
                    Stream::Stdout,
                    Stream::Stderr,
                    Stream::Manager,
                    Stream::Stdout,
                ][i],
                priority: i as u8,
                flags: [0, 1, 2, 4][i],
                identifier: idents[i],
                comm: ["web", "", "sh", "a-fifteen-bytes"][i],
                message_id: [0, 0, 0x39f5_3479_d3a0_45ac_8e11_7862_4823_1fbf, 0][i],
                message: msgs[i],
            })
            .collect();
        let (b, raw_len) = Encoder::new()
            .unwrap()
            .encode(items.iter().copied())
            .unwrap();
        assert_eq!(b[0], CODEC_ZSTD_COLUMNS_V3);
        let raw = decompress(&b).unwrap();
        assert_eq!(raw.len(), raw_len);
        let got = decode(b[0], &raw).unwrap();
        assert_eq!(got.len(), 4);
        for (g, w) in got.iter().zip(&items) {
            assert_eq!(
                (
                    g.seq,
                    g.realtime,
                    g.monotonic,
                    g.boot_id,
                    g.uid,
                    g.invocation,
                    g.pid
                ),
                (
                    w.seq,
                    w.realtime,
                    w.monotonic,
                    w.boot_id,
                    w.uid,
                    w.invocation,
                    w.pid
                )
            );
            assert_eq!(
                (g.stream, g.priority, g.flags, g.identifier, g.message),
                (
                    w.stream.code(),
                    w.priority,
                    w.flags,
                    w.identifier,
                    w.message
                )
            );
            assert_eq!((g.comm, g.message_id), (w.comm, w.message_id));
        }
        // Every cut of the payload is refused, never a panic.
        for cut in 0..raw.len() {
            assert!(decode(b[0], &raw[..cut]).is_err(), "cut at {cut}");
        }
        let mut extra = raw.clone();
        extra.push(b'x');
        assert!(decode(b[0], &extra).is_err());
        assert!(decode(9, &raw).is_err());
    }

    #[test]
    fn a_scan_view_reads_the_clocks_a_full_view_does() {
        // One-byte deltas in runs longer and shorter than eight, longer ones between
        // them, and a clock stepping back: every path of the eight-byte reading.
        let realtimes: Vec<u64> = (0..300u64)
            .scan(1_000_000u64, |t, i| {
                *t = match i % 37 {
                    0 => *t + 70_000,
                    5 => *t - 900,
                    _ if i % 11 < 3 => *t + 200,
                    _ => *t + i % 9,
                };
                Some(*t)
            })
            .collect();
        let items: Vec<EncodeItem<'_>> = (realtimes.iter().enumerate())
            .map(|(i, &realtime)| {
                plain_item(
                    1 + i as u64,
                    realtime,
                    realtime / 3 + (i as u64 % 5) * 1_000,
                )
            })
            .collect();
        let (b, raw) = encoded(&items);
        let (full, scan) = (
            view(b[0], &raw).unwrap(),
            view_for_scan(b[0], &raw).unwrap(),
        );
        fn clocks(e: StoredRef<'_>) -> (u64, u64, u64, &[u8]) {
            (e.seq, e.realtime, e.monotonic, e.message)
        }
        let want: Vec<_> = items
            .iter()
            .map(|w| (w.seq, w.realtime, w.monotonic, w.message))
            .collect();
        let every: Vec<usize> = (0..items.len()).collect();
        for picked in [vec![], vec![0], vec![299], vec![5, 6, 7, 150, 298], every] {
            let got: Vec<_> = scan.rows_at(&picked).into_iter().map(clocks).collect();
            let full_rows: Vec<_> = full.rows_at(&picked).into_iter().map(clocks).collect();
            let expected: Vec<_> = picked.iter().map(|&i| want[i]).collect();
            assert_eq!(got, expected, "{picked:?}");
            assert_eq!(full_rows, expected, "{picked:?}");
        }
        assert_eq!(clocks(scan.get(200)), want[200]);
        // Eight one-byte deltas added up at once, each byte value in each place.
        for z in 0..128u64 {
            for k in 0..8 {
                let word = (0x0d3a_7f00_4511_6c02 & !(0xff << (8 * k))) | (z << (8 * k));
                let one_by_one = (0..8).fold(0u64, |t, b| {
                    t.wrapping_add(unzigzag((word >> (8 * b)) & 0xff))
                });
                assert_eq!(unzigzag_eight(word), one_by_one, "{word:#x}");
            }
        }
        // Damage is refused by a scan's view as by a full one.
        for cut in 0..raw.len() {
            assert!(view_for_scan(b[0], &raw[..cut]).is_err(), "cut at {cut}");
        }
    }

    /// A block one unit filled alone keeps its seqs as a first and a count; any
    /// other seq column as a list: both give the seqs written, and the order check
    /// refuses a run that would pass u64::MAX.
    #[test]
    fn consecutive_and_listed_seqs_decode_alike() {
        let cases: [&[u64]; 6] = [
            &[5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15],
            &[7],
            &[5, 6, 8, 9],
            &[u64::MAX - 1, u64::MAX],
            &[u64::MAX, 0],
            &[3, 3],
        ];
        for seqs in cases {
            let items: Vec<EncodeItem<'_>> =
                seqs.iter().map(|&seq| plain_item(seq, 1, 1)).collect();
            let (b, raw) = encoded(&items);
            let v = view(b[0], &raw).unwrap();
            let View::Columns(c) = &v else {
                panic!("a v3 block is read as columns")
            };
            let consecutive = seqs.windows(2).all(|p| p[1] == p[0].wrapping_add(1));
            assert_eq!(
                matches!(c.seqs, Seqs::Consecutive { .. }),
                consecutive,
                "{seqs:?}"
            );
            assert_eq!((0..v.len()).map(|i| v.seq(i)).collect::<Vec<_>>(), seqs);
            assert_eq!(v.seqs_ascending(), seqs.windows(2).all(|p| p[0] < p[1]));
        }
    }
}
