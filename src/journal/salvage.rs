//! Damaged stores. A store redb cannot open is set aside and a new one started
//! ([`open_or_set_aside`], what the manager does on start), so that a damaged file
//! never stops logging. What a damaged file still holds is found by [`salvage`]:
//! it scans the raw file for block frames (docs/JOURNAL-FORMAT.md, Blocks), which
//! needs none of redb's pages to be intact, and decodes each on its own.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use super::block::{self, HEADER_LEN};
use super::error::{JournalError, Result};
use super::store::{FILE_NAME, Store, StoreOptions, store_file};
use super::writer::{MANAGER_UNIT, Writer, WriterHandle, WriterOptions};
use super::{Entry, NewEntry};

/// The magic number that starts every zstd frame (little endian 0xFD2FB528).
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
/// A frame whose header claims more than this raw size is not one of ours: the
/// writer's blocks are ~64 KiB raw, and merged ones stay under that too.
const MAX_RAW: usize = 64 * 1024 * 1024;

/// A damaged store that was moved aside ([`open_or_set_aside`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetAside {
    /// Where it was.
    pub original: PathBuf,
    /// Where it is now (`journal.redb~corrupt-<time>`).
    pub moved_to: PathBuf,
    /// Why it could not be opened.
    pub error: String,
}

/// Whether opening a store failed because its file is damaged (rather than locked,
/// unreadable, of a newer format, or on a full disk): only then is it set aside.
pub fn is_damaged(e: &JournalError) -> bool {
    let JournalError::Db { source, .. } = e else {
        return false;
    };
    match &**source {
        redb::Error::Corrupted(_) => true,
        redb::Error::Io(io) => matches!(
            io.kind(),
            std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof
        ),
        _ => false,
    }
}

/// Opens the store at `path` for writing ([`Store::open`]); when its file is damaged,
/// renames it to `journal.redb~corrupt-<UTC time>` beside it and starts a new store.
pub fn open_or_set_aside(path: &Path, opts: StoreOptions) -> Result<(Store, Option<SetAside>)> {
    let error = match Store::open(path, opts.clone()) {
        Ok(s) => return Ok((s, None)),
        Err(e) if is_damaged(&e) => e,
        Err(e) => return Err(e),
    };
    let file = store_file(path);
    let name = file
        .file_name()
        .map_or_else(|| FILE_NAME.into(), |n| n.to_string_lossy().into_owned());
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
    let mut moved_to = file.with_file_name(format!("{name}~corrupt-{stamp}"));
    let mut n = 1;
    while moved_to.exists() {
        n += 1;
        moved_to = file.with_file_name(format!("{name}~corrupt-{stamp}-{n}"));
    }
    std::fs::rename(&file, &moved_to)
        .map_err(|e| JournalError::io("move aside the damaged store", &file, e))?;
    super::sidelog::move_with(&file, &moved_to)?;
    let store = Store::open(path, opts)?;
    Ok((
        store,
        Some(SetAside {
            original: file,
            moved_to,
            error: error.to_string(),
        }),
    ))
}

/// What [`salvage`] found in a file.
#[derive(Debug, Default)]
pub struct Salvaged {
    /// Every entry found, once each (by seq), in seq order.
    pub entries: Vec<Entry>,
    /// How many that is (`entries` may be filtered afterwards).
    pub entries_total: u64,
    /// Blocks decoded (old copies that copy-on-write left in free pages included).
    pub blocks: u64,
    /// Block frames found that could not be decoded.
    pub skipped: u64,
    /// Entries whose unit could not be found in the file's index pages (unit `?`).
    pub unknown_unit: u64,
}

/// Reads every block frame that can be found in the raw file `file` and decodes it:
/// a codec byte, a 4-byte raw length and a zstd frame ([`block`]). Units are not
/// inside blocks (they are the blocks' keys), so each block's unit is looked up in
/// the keys redb stored for it: `(len, unit, first_seq)`, found by scanning the file
/// for key bytes that end in the block's first seq. Blocks of redb's free pages
/// (older copies before a merge, or ones retention removed) are found too; an entry
/// is kept once.
pub fn salvage(file: &Path) -> Result<Salvaged> {
    let data = std::fs::read(file).map_err(|e| JournalError::io("read", file, e))?;
    let mut out = Salvaged::default();
    // seq -> (entry without its unit, the block's first seq)
    let mut found: BTreeMap<u64, (Entry, u64)> = BTreeMap::new();
    for frame in scan(&data) {
        let Some(entries) = frame.entries else {
            out.skipped += 1;
            continue;
        };
        out.blocks += 1;
        let first = entries[0].seq;
        for e in entries {
            found.entry(e.seq).or_insert((e, first));
        }
    }
    let firsts: HashMap<u64, Option<String>> = found.values().map(|(_, f)| (*f, None)).collect();
    let units = find_units(&data, firsts);
    for (_, (mut e, first)) in found {
        match units.get(&first).cloned().flatten() {
            Some(u) => e.unit = u,
            None => out.unknown_unit += 1,
        }
        out.entries.push(e);
    }
    out.entries_total = out.entries.len() as u64;
    Ok(out)
}

/// A block frame found in raw bytes ([`scan`]).
#[derive(Debug)]
pub struct Frame {
    /// Where it starts: the codec byte of its header.
    pub start: usize,
    /// Where its zstd frame starts.
    pub zstd: usize,
    /// Its entries (unit `?`), or `None` when it does not decode.
    pub entries: Option<Vec<Entry>>,
}

/// Every block frame in `data`: a codec byte and a plausible raw length before a
/// zstd magic number, decoded where it can be.
pub fn scan(data: &[u8]) -> Vec<Frame> {
    let mut out = Vec::new();
    let Ok(mut zstd) = zstd::bulk::Decompressor::new() else {
        return out;
    };
    for pos in memchr::memmem::find_iter(data, &ZSTD_MAGIC) {
        let Some(start) = pos.checked_sub(HEADER_LEN) else {
            continue;
        };
        if !block::known_codec(data[start]) {
            continue;
        }
        let raw_len = u32::from_le_bytes(data[start + 1..pos].try_into().expect("4 bytes"));
        if raw_len == 0 || raw_len as usize > MAX_RAW {
            continue;
        }
        out.push(Frame {
            start,
            zstd: pos,
            entries: decode_at(data, start, pos, &mut zstd),
        });
    }
    out
}

/// Decodes the block whose header starts at `start` and whose zstd frame at `frame`;
/// `None` when it is damaged (or not a block at all).
fn decode_at(
    data: &[u8],
    start: usize,
    frame: usize,
    zstd: &mut zstd::bulk::Decompressor<'static>,
) -> Option<Vec<Entry>> {
    let len = zstd::zstd_safe::find_frame_compressed_size(&data[frame..]).ok()?;
    let raw = block::decompress_with(zstd, &data[start..frame + len]).ok()?;
    let items = block::decode(data[start], &raw).ok()?;
    let ordered = items.windows(2).all(|p| p[0].seq < p[1].seq);
    if items.is_empty() || !ordered || items[0].seq == 0 {
        return None;
    }
    Some(items.iter().map(|r| r.to_entry("?")).collect())
}

/// Finds, for each first seq, a unit name stored before it in a key `(&str, u64)`:
/// redb writes such a tuple as a length byte, the name, then the u64 little endian.
fn find_units(
    data: &[u8],
    mut firsts: HashMap<u64, Option<String>>,
) -> HashMap<u64, Option<String>> {
    if firsts.is_empty() {
        return firsts;
    }
    let name_byte = |b: u8| b.is_ascii_graphic() && b != b'/';
    let mut i = 0;
    while i + 2 < data.len() {
        let len = data[i] as usize;
        let end = i + 1 + len;
        if len == 0 || len > 253 || end + 8 > data.len() {
            i += 1;
            continue;
        }
        if !data[i + 1..end].iter().all(|&b| name_byte(b)) {
            i += 1;
            continue;
        }
        let seq = u64::from_le_bytes(data[end..end + 8].try_into().expect("8 bytes"));
        if let Some(slot @ None) = firsts.get_mut(&seq)
            && let Ok(name) = std::str::from_utf8(&data[i + 1..end])
        {
            *slot = Some(name.to_owned());
        }
        i += 1;
    }
    firsts
}

/// Opens the manager's journal in `dir` with its writer (which says on stderr when
/// writing fails and works again). A damaged store is set aside and a new one
/// started; that is said on stderr and, as unit `corrald`, in the new journal.
pub async fn open_for_manager(dir: &Path) -> Result<WriterHandle> {
    let (store, set_aside) = open_or_set_aside(dir, StoreOptions::default())?;
    let opts = WriterOptions {
        log_stalls: true,
        ..WriterOptions::default()
    };
    let w = Writer::spawn(store, opts)?;
    if let Some(s) = set_aside {
        let msg = format!(
            "the journal store {} could not be opened ({}); moved it aside to {} and started a new one; `corral journal --file {}` shows what it still holds",
            s.original.display(),
            s.error,
            s.moved_to.display(),
            s.moved_to.display()
        );
        eprintln!("corrald: {msg}");
        let mut e = NewEntry::manager(MANAGER_UNIT, 0, msg);
        e.priority = 3;
        w.append(e).await?;
    }
    Ok(w)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::Stream;
    use crate::journal::block::{EncodeItem, Encoder};

    fn block_of(seqs: std::ops::Range<u64>) -> Vec<u8> {
        let msgs: Vec<String> = seqs.clone().map(|s| format!("message {s}")).collect();
        let items = seqs.zip(&msgs).map(|(seq, m)| EncodeItem {
            seq,
            realtime: 1_000_000 + seq,
            monotonic: seq,
            boot_id: 7,
            uid: 1000,
            invocation: 9,
            pid: Some(42),
            stream: Stream::Stdout,
            priority: 6,
            flags: 0,
            identifier: "t",
            comm: "",
            message_id: 0,
            message: m.as_bytes(),
        });
        let items: Vec<EncodeItem<'_>> = items.collect();
        Encoder::new().unwrap().encode(items.into_iter()).unwrap().0
    }

    /// A key `(unit, first_seq)` as redb stores it: length byte, name, u64 LE.
    fn key(unit: &str, seq: u64) -> Vec<u8> {
        let mut k = vec![unit.len() as u8];
        k.extend_from_slice(unit.as_bytes());
        k.extend_from_slice(&seq.to_le_bytes());
        k
    }

    #[test]
    fn blocks_are_found_among_other_bytes_with_their_units() {
        let mut data = vec![0xa5u8; 300];
        data.extend(key("web.service", 10));
        data.extend([0u8; 77]);
        data.extend(block_of(10..20));
        data.extend([0x11u8; 50]);
        // A block whose key is nowhere: unit unknown.
        data.extend(block_of(20..25));
        // A damaged block: header and magic intact, the frame broken.
        let mut bad = block_of(25..30);
        let n = bad.len();
        for b in &mut bad[HEADER_LEN + 8..n - 2] {
            *b ^= 0x5a;
        }
        data.extend(bad);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, &data).unwrap();
        let s = salvage(&file).unwrap();
        assert_eq!(s.blocks, 2);
        assert_eq!(s.skipped, 1);
        assert_eq!(s.entries_total, 15);
        let seqs: Vec<u64> = s.entries.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, (10..25).collect::<Vec<_>>());
        assert!(s.entries[..10].iter().all(|e| e.unit == "web.service"));
        assert!(s.entries[10..].iter().all(|e| e.unit == "?"));
        assert_eq!(s.unknown_unit, 5);
        assert_eq!(s.entries[3].message, b"message 13");
    }

    #[test]
    fn an_old_copy_of_a_block_gives_its_entries_once() {
        let mut data = key("a", 1);
        data.extend(block_of(1..4));
        data.extend(block_of(1..4));
        data.extend(block_of(4..6));
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, &data).unwrap();
        let s = salvage(&file).unwrap();
        assert_eq!(s.blocks, 3);
        let seqs: Vec<u64> = s.entries.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, vec![1, 2, 3, 4, 5]);
    }

    #[test]
    fn only_damage_sets_a_store_aside() {
        let damaged = JournalError::db(
            Path::new("/j"),
            "open",
            redb::Error::Io(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "magic",
            )),
        );
        assert!(is_damaged(&damaged));
        let full = JournalError::db(
            Path::new("/j"),
            "open",
            redb::Error::Io(std::io::Error::from_raw_os_error(libc::ENOSPC)),
        );
        assert!(!is_damaged(&full));
        let denied = JournalError::db(
            Path::new("/j"),
            "open",
            redb::Error::Io(std::io::Error::from_raw_os_error(libc::EACCES)),
        );
        assert!(!is_damaged(&denied));
        assert!(!is_damaged(&JournalError::Locked { path: "/j".into() }));
        assert!(!is_damaged(&JournalError::UnsupportedFormat {
            path: "/j".into(),
            found: 2,
            supported: 1,
        }));
    }
}
