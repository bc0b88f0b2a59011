//! The side log: entries accepted by the writer, appended with a plain write(2) (no
//! fsync) to files beside the store before they count as accepted, and replayed into
//! the store by the next writable open after the writer died before committing them.
//!
//! The page cache outlives a killed process, so a kill -9 of the manager loses only what
//! was read from the pipes and not yet written here (the writer's byte budget), while
//! redb commits (two fsyncs each) can be few and large. A machine crash may lose the
//! side log too: then what is missing is the uncommitted redb window. The file format
//! is in docs/JOURNAL-FORMAT.md ("The side log").

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::block::{self, EncodeItem};
use super::error::{JournalError, Result};
use super::store::Staged;
use super::{NewEntry, Stream};

/// First bytes of a side log file: the name and the version of its format.
pub const MAGIC: &[u8; 8] = b"CRLSIDE1";
/// Magic and the 128-bit id of the store the file belongs to.
const HEADER_LEN: usize = 8 + 16;
/// Before each record: its payload length (u32) and the payload's hash (u64).
const RECORD_HEAD: usize = 4 + 8;
/// A file that grew past this is closed and a new one started, so that the old one
/// can be deleted as soon as a commit covers it (under a flood, there is always
/// something not yet committed in the newest file).
const ROTATE_BYTES: u64 = 8 * 1024 * 1024;
/// A record longer than this is damage (a batch is at most the writer's budget).
const MAX_RECORD: usize = 256 * 1024 * 1024;

/// The name of the side log file of `store_file` whose first record starts at `first_seq`.
fn file_name(store_file: &Path, first_seq: u64) -> PathBuf {
    let name = store_file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    store_file.with_file_name(format!("{name}.side.{first_seq:016x}"))
}

/// The side log files of `store_file`, in the order they were started.
fn files_of(store_file: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let dir = match store_file.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let prefix = format!(
        "{}.side.",
        store_file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    );
    let rd = std::fs::read_dir(dir).map_err(|e| JournalError::io("list", dir, e))?;
    let mut out = Vec::new();
    for de in rd {
        let de = de.map_err(|e| JournalError::io("list", dir, e))?;
        let name = de.file_name();
        let Some(hex) = name.to_str().and_then(|n| n.strip_prefix(&prefix)) else {
            continue;
        };
        if hex.len() == 16
            && let Ok(first) = u64::from_str_radix(hex, 16)
        {
            out.push((first, de.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// A checksum of a record's payload: catches a torn or zeroed tail, or stale bytes,
/// not an adversary. Four independent lanes of 8-byte words (the multiplies of one
/// lane wait for each other, four run side by side), so it costs little beside the
/// copy into the page cache.
fn hash(data: &[u8]) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let seed = (data.len() as u64).wrapping_mul(K) ^ 0x5157_4944_454c_4f47;
    let mut lanes = [seed, seed ^ 1, seed ^ 2, seed ^ 3];
    let mut blocks = data.chunks_exact(32);
    for b in &mut blocks {
        for (i, lane) in lanes.iter_mut().enumerate() {
            let v = u64::from_le_bytes(b[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
            *lane = (*lane ^ v).wrapping_mul(K).rotate_left(29);
        }
    }
    let mut h = lanes
        .iter()
        .fold(seed, |h, l| (h ^ l).wrapping_mul(K).rotate_left(29));
    let mut words = blocks.remainder().chunks_exact(8);
    for w in &mut words {
        let v = u64::from_le_bytes(w.try_into().expect("8 bytes"));
        h = (h ^ v).wrapping_mul(K).rotate_left(29);
    }
    let mut tail = [0u8; 8];
    tail[..words.remainder().len()].copy_from_slice(words.remainder());
    h = (h ^ u64::from_le_bytes(tail)).wrapping_mul(K);
    h ^ (h >> 32)
}

/// An open side log file.
struct Current {
    path: PathBuf,
    file: File,
    len: u64,
    /// The last seq written to it (0: none yet).
    last_seq: u64,
}

/// The writer's side log: appends batches, deletes what commits have covered.
pub struct SideLog {
    store_file: PathBuf,
    store_id: u128,
    cur: Option<Current>,
    /// Files closed (rotated, or abandoned after a failed write) and their last seq:
    /// deleted once a commit covers it.
    older: Vec<(PathBuf, u64)>,
    record: Vec<u8>,
}

impl SideLog {
    /// The side log of the store file `store_file` with id `store_id`; files are created
    /// on the first append.
    pub fn new(store_file: &Path, store_id: u128) -> SideLog {
        SideLog {
            store_file: store_file.to_owned(),
            store_id,
            cur: None,
            older: Vec::new(),
            record: Vec::new(),
        }
    }

    /// Appends one record holding `staged` (consecutive seqs). On an error the file is
    /// abandoned (a torn record may be at its end: replay stops there) and the next
    /// append starts a new one.
    pub fn append(&mut self, staged: &[Staged]) -> Result<()> {
        let (Some(first), Some(last)) = (staged.first(), staged.last()) else {
            return Ok(());
        };
        self.encode(staged);
        if self.cur.as_ref().is_some_and(|c| c.len >= ROTATE_BYTES) {
            let c = self.cur.take().expect("checked");
            self.older.push((c.path, c.last_seq));
        }
        if self.cur.is_none() {
            self.cur = Some(self.create(first.seq)?);
        }
        let cur = self.cur.as_mut().expect("just set");
        match cur.file.write_all(&self.record) {
            Ok(()) => {
                cur.len += self.record.len() as u64;
                cur.last_seq = last.seq;
                Ok(())
            }
            Err(e) => {
                let c = self.cur.take().expect("set above");
                // Part of the record may be in: cut it off, so that the file ends with
                // a whole record (replay would stop there anyway).
                let _ = c.file.set_len(c.len);
                let err = JournalError::io("append to", &c.path, e);
                self.older.push((c.path, c.last_seq));
                Err(err)
            }
        }
    }

    /// Encodes `staged` into `self.record`: the record head, then the payload, a u32
    /// count of groups and per group (a run of one unit's entries) the unit's name and
    /// the entries as block columns, each prefixed by its u32 length.
    fn encode(&mut self, staged: &[Staged]) {
        let r = &mut self.record;
        r.clear();
        r.resize(RECORD_HEAD + 4, 0);
        let mut groups = 0u32;
        let mut i = 0;
        while i < staged.len() {
            let unit = &staged[i].new.unit;
            let n = staged[i..]
                .iter()
                .take_while(|s| Arc::ptr_eq(&s.new.unit, unit) || s.new.unit == *unit)
                .count();
            let items: Vec<EncodeItem<'_>> = staged[i..i + n].iter().map(Staged::item).collect();
            r.extend_from_slice(&(unit.len() as u32).to_le_bytes());
            r.extend_from_slice(unit.as_bytes());
            // The columns go straight into the record, their length filled in after.
            let at = r.len();
            r.extend_from_slice(&[0; 4]);
            block::put_columns(r, &items);
            let cols = (r.len() - at - 4) as u32;
            r[at..at + 4].copy_from_slice(&cols.to_le_bytes());
            groups += 1;
            i += n;
        }
        r[RECORD_HEAD..RECORD_HEAD + 4].copy_from_slice(&groups.to_le_bytes());
        let payload_len = (r.len() - RECORD_HEAD) as u32;
        let h = hash(&r[RECORD_HEAD..]);
        r[..4].copy_from_slice(&payload_len.to_le_bytes());
        r[4..RECORD_HEAD].copy_from_slice(&h.to_le_bytes());
    }

    fn create(&self, first_seq: u64) -> Result<Current> {
        let path = file_name(&self.store_file, first_seq);
        // Appending: after `covered` empties the file, writes must start at its end.
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| JournalError::io("create side log", &path, e))?;
        // A file of this name left by a writer whose side log could not be deleted
        // holds nothing the store lacks (replay ran before this writer started).
        file.set_len(0)
            .map_err(|e| JournalError::io("empty side log", &path, e))?;
        let mut head = Vec::with_capacity(HEADER_LEN);
        head.extend_from_slice(MAGIC);
        head.extend_from_slice(&self.store_id.to_le_bytes());
        if let Err(e) = file.write_all(&head) {
            // A file without its header holds nothing; it must not linger.
            let _ = std::fs::remove_file(&path);
            return Err(JournalError::io("write side log header to", &path, e));
        }
        Ok(Current {
            path,
            file,
            len: HEADER_LEN as u64,
            last_seq: 0,
        })
    }

    /// Every entry below `next_seq` is committed (durable): deletes the closed files
    /// that hold nothing else, and empties the current one if it holds nothing else.
    pub fn covered(&mut self, next_seq: u64) {
        self.older.retain(|(path, last)| {
            if *last < next_seq {
                // A file that cannot be deleted stays; replay skips what it covers.
                let _ = std::fs::remove_file(path);
                false
            } else {
                true
            }
        });
        if let Some(c) = &mut self.cur
            && c.len > HEADER_LEN as u64
            && c.last_seq < next_seq
        {
            match c.file.set_len(HEADER_LEN as u64) {
                Ok(()) => c.len = HEADER_LEN as u64,
                Err(_) => {
                    let c = self.cur.take().expect("checked");
                    self.older.push((c.path, c.last_seq));
                }
            }
        }
    }

    /// The store is closed cleanly with everything committed: removes every file.
    pub fn remove_all(&mut self) {
        if let Some(c) = self.cur.take() {
            self.older.push((c.path, c.last_seq));
        }
        self.covered(u64::MAX);
    }
}

/// Renames the side log files of `store_file` to go with `moved_to` (a damaged store
/// set aside): they belong to its store id, and a new store must not meet them.
pub fn move_with(store_file: &Path, moved_to: &Path) -> Result<()> {
    for (first, path) in files_of(store_file)? {
        let to = file_name(moved_to, first);
        std::fs::rename(&path, &to).map_err(|e| JournalError::io("move aside", &path, e))?;
    }
    Ok(())
}

/// What replaying the side log found.
#[derive(Default)]
pub struct Replay {
    /// The entries past the store's last commit, in seq order, contiguous from its next seq.
    pub entries: Vec<Staged>,
    /// Their message bytes.
    pub bytes: u64,
    /// Records dropped: a torn or damaged record ends its file (its checksum or length
    /// does not hold), and one that does not continue the seqs ends the replay.
    pub dropped: u64,
    /// The files read (to be deleted once the replayed entries are committed).
    pub files: Vec<PathBuf>,
    /// Side log files of another store (left alone).
    pub foreign: usize,
}

/// Reads the side log of `store_file` (id `store_id`): the entries from `next_seq` on,
/// as long as their seqs continue without a gap.
pub fn replay(store_file: &Path, store_id: u128, next_seq: u64) -> Result<Replay> {
    let mut out = Replay::default();
    let mut next = next_seq;
    let mut ended = false;
    for (_, path) in files_of(store_file)? {
        let data = std::fs::read(&path).map_err(|e| JournalError::io("read side log", &path, e))?;
        if data.len() >= 8 && &data[..8] == MAGIC {
            if data.len() >= HEADER_LEN
                && u128::from_le_bytes(data[8..HEADER_LEN].try_into().expect("16 bytes"))
                    != store_id
            {
                out.foreign += 1;
                continue;
            }
        } else if data.len() >= 8 {
            // Not a side log of any version this build knows: not ours to delete.
            out.foreign += 1;
            continue;
        }
        out.files.push(path);
        let mut pos = HEADER_LEN.min(data.len());
        while pos < data.len() {
            let Some(rec) = record_at(&data, pos) else {
                out.dropped += 1;
                break;
            };
            pos += RECORD_HEAD + rec.len();
            if ended {
                out.dropped += 1;
                continue;
            }
            match decode_record(rec, &mut next, &mut out) {
                Ok(true) => {}
                Ok(false) => {
                    // A gap: a record was lost (its pages were not written back before
                    // a machine crash); what follows would leave a hole.
                    ended = true;
                    out.dropped += 1;
                }
                Err(_) => out.dropped += 1,
            }
        }
    }
    Ok(out)
}

/// The payload of the record at `pos` if its length and checksum hold.
fn record_at(data: &[u8], pos: usize) -> Option<&[u8]> {
    let head = data.get(pos..pos + RECORD_HEAD)?;
    let len = u32::from_le_bytes(head[..4].try_into().expect("4 bytes")) as usize;
    let h = u64::from_le_bytes(head[4..].try_into().expect("8 bytes"));
    if len > MAX_RECORD {
        return None;
    }
    let payload = data.get(pos + RECORD_HEAD..pos + RECORD_HEAD + len)?;
    (hash(payload) == h).then_some(payload)
}

/// Takes the entries of one record from `*next` on into `out`; false if the record
/// starts past `*next` (a gap).
fn decode_record(
    rec: &[u8],
    next: &mut u64,
    out: &mut Replay,
) -> std::result::Result<bool, String> {
    let mut r = Cut(rec);
    let groups = r.u32()?;
    let mut rows: Vec<Staged> = Vec::new();
    for _ in 0..groups {
        let ulen = r.u32()? as usize;
        let unit: Arc<str> =
            Arc::from(std::str::from_utf8(r.take(ulen)?).map_err(|_| "unit name is not UTF-8")?);
        let clen = r.u32()? as usize;
        let view = block::view(block::CODEC_ZSTD_COLUMNS_V3, r.take(clen)?)?;
        for i in 0..view.len() {
            let e = view.get(i);
            rows.push(Staged {
                seq: e.seq,
                realtime: e.realtime,
                monotonic: e.monotonic,
                boot_id: e.boot_id,
                uid: e.uid,
                new: NewEntry {
                    unit: unit.clone(),
                    invocation: e.invocation,
                    pid: e.pid,
                    stream: Stream::from_code(e.stream),
                    priority: e.priority,
                    identifier: Arc::from(e.identifier),
                    comm: Arc::from(e.comm),
                    message_id: e.message_id,
                    message: e.message.to_vec(),
                    flags: e.flags,
                    realtime: Some(e.realtime),
                    monotonic: Some(e.monotonic),
                },
            });
        }
    }
    rows.sort_by_key(|s| s.seq);
    for s in rows {
        if s.seq < *next {
            continue;
        }
        if s.seq != *next {
            return Ok(false);
        }
        *next += 1;
        out.bytes += s.new.message.len() as u64;
        out.entries.push(s);
    }
    Ok(true)
}

/// A cursor over a record's payload.
struct Cut<'a>(&'a [u8]);

impl<'a> Cut<'a> {
    fn take(&mut self, n: usize) -> std::result::Result<&'a [u8], String> {
        if n > self.0.len() {
            return Err("record ends inside a field".into());
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }

    fn u32(&mut self) -> std::result::Result<u32, String> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Entries `from..from + n`, alternating between two units.
    fn batch(from: u64, n: u64) -> Vec<Staged> {
        (from..from + n)
            .map(|seq| {
                let unit = if seq % 2 == 0 { "a" } else { "b" };
                let mut new = NewEntry::manager(unit, 5, format!("line {seq}"));
                new.pid = Some(seq as u32);
                Staged {
                    seq,
                    realtime: 1_000_000 + seq,
                    monotonic: seq,
                    boot_id: 9,
                    uid: 1000,
                    new,
                }
            })
            .collect()
    }

    fn seqs(r: &Replay) -> Vec<u64> {
        r.entries.iter().map(|s| s.seq).collect()
    }

    /// A record cut short (the process died inside its write, or the machine before its
    /// pages were written) fails its length or checksum: it is dropped and counted, the
    /// records before it come back whole, and what the store already has is skipped.
    #[test]
    fn replay_drops_a_torn_last_record() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("journal.redb");
        let mut log = SideLog::new(&store, 7);
        log.append(&batch(1, 3)).unwrap();
        log.append(&batch(4, 5)).unwrap();
        let files = files_of(&store).unwrap();
        assert_eq!(files.len(), 1);
        let path = &files[0].1;

        let whole = replay(&store, 7, 1).unwrap();
        assert_eq!(seqs(&whole), (1..=8).collect::<Vec<_>>());
        assert_eq!(whole.dropped, 0);
        let e = &whole.entries[3];
        assert_eq!(&*e.new.unit, "a");
        assert_eq!(e.new.message, b"line 4");
        assert_eq!(e.new.pid, Some(4));
        assert_eq!(
            (e.realtime, e.monotonic, e.boot_id, e.uid),
            (1_000_004, 4, 9, 1000)
        );
        assert_eq!(e.new.realtime, Some(1_000_004));

        let len = std::fs::metadata(path).unwrap().len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .unwrap()
            .set_len(len - 3)
            .unwrap();
        let torn = replay(&store, 7, 1).unwrap();
        assert_eq!(seqs(&torn), vec![1, 2, 3]);
        assert_eq!(torn.dropped, 1);
        assert_eq!(torn.bytes, 3 * 6);
        assert_eq!(torn.files, vec![path.clone()]);
        // The store already holds seqs 1 and 2.
        assert_eq!(seqs(&replay(&store, 7, 3).unwrap()), vec![3]);

        // Zeroes where the last record was (a file extended, its pages never written).
        let mut data = std::fs::read(path).unwrap();
        let cut = data.len() - 10;
        data[cut..].fill(0);
        std::fs::write(path, &data).unwrap();
        let zeroed = replay(&store, 7, 1).unwrap();
        assert_eq!(seqs(&zeroed), vec![1, 2, 3]);
        assert_eq!(zeroed.dropped, 1);

        // Another store's side log is not replayed, nor to be deleted.
        let other = replay(&store, 8, 1).unwrap();
        assert!(other.entries.is_empty() && other.files.is_empty());
        assert_eq!(other.foreign, 1);
    }

    /// A file that does not continue the seqs (one lost in between) ends the replay:
    /// no hole is ever made in the store.
    #[test]
    fn replay_stops_at_a_gap() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("journal.redb");
        SideLog::new(&store, 7).append(&batch(1, 2)).unwrap();
        SideLog::new(&store, 7).append(&batch(10, 2)).unwrap();
        SideLog::new(&store, 7).append(&batch(12, 2)).unwrap();
        let r = replay(&store, 7, 1).unwrap();
        assert_eq!(seqs(&r), vec![1, 2]);
        assert_eq!(r.dropped, 2);
        assert_eq!(r.files.len(), 3);
        // Contiguous from the store's next seq: all of the last two.
        assert_eq!(seqs(&replay(&store, 7, 10).unwrap()), vec![10, 11, 12, 13]);
    }

    /// What commits cover goes: the current file is emptied, closed ones deleted, and a
    /// clean end leaves no file.
    #[test]
    fn covered_entries_leave_the_side_log() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("journal.redb");
        let mut log = SideLog::new(&store, 7);
        log.append(&batch(1, 4)).unwrap();
        log.covered(3);
        assert_eq!(seqs(&replay(&store, 7, 3).unwrap()), vec![3, 4]);
        log.covered(5);
        assert!(replay(&store, 7, 1).unwrap().entries.is_empty());
        log.append(&batch(5, 1)).unwrap();
        assert_eq!(seqs(&replay(&store, 7, 5).unwrap()), vec![5]);
        log.remove_all();
        assert!(files_of(&store).unwrap().is_empty());
    }
}
