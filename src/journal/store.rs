//! The redb store: compressed blocks per unit, their indexes, queries, merging and
//! retention. The tables and their meaning are specified in docs/JOURNAL-FORMAT.md.

use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::{Duration, Instant};

use redb::{
    ConcurrencyMode, Database, ReadOnlyDatabase, ReadTransaction, ReadableDatabase, ReadableTable,
    ReadableTableMetadata, TableDefinition, WriteTransaction,
};

use super::block::{self, EncodeItem, Encoder, StoredRef, View};
use super::error::{JournalError, Result};
use super::query::{CompiledQuery, Query};
use super::{Entry, NewEntry, Stream};

/// The on-disk format version this build writes (and the highest it reads).
pub const FORMAT_VERSION: u64 = 3;
/// The store file's name inside a journal directory.
pub const FILE_NAME: &str = "journal.redb";
/// A block holds at most this many entries.
pub const MAX_BLOCK_ENTRIES: usize = 2048;
/// A block holds at most this much text ([`EncodeItem::estimate`] summed), so that
/// "last 100" decodes little: lines that compress very well stop here before they
/// fill a page, at 1024 entries of 100-byte lines as before blocks were 32 KiB.
pub const MAX_BLOCK_RAW: usize = 112 * 1024;
/// redb gives a value too big to share a leaf a leaf of its own, rounded up to a power
/// of two of 4 KiB pages: a block is sized to fill such a page, not to spill into the
/// next size (a 8.2 KB block took a 16 KiB page, half of the file was that rounding).
/// 32 KiB rather than 16: one zstd frame per ~110 KB of realistic lines instead of
/// ~55 KB spends less of `-g` on frame tables, block reads and wake-ups.
pub const BLOCK_PAGE: usize = 32 * 1024;
/// The leaf's header, offsets and key beside the value, unit name aside (measured
/// at 30 bytes; the margin covers redb's tuple encoding of longer names).
const LEAF_OVERHEAD: usize = 64;

/// The largest compressed block of `unit` that fits [`BLOCK_PAGE`] with its key.
pub fn block_target(unit: &str) -> usize {
    BLOCK_PAGE - LEAF_OVERHEAD - unit.len().min(BLOCK_PAGE / 4)
}

/// Blocks under half a page are merged with their small neighbours.
fn is_small(unit: &str, stored_len: u32) -> bool {
    (stored_len as usize) < block_target(unit) / 2
}

/// Scalar facts about the store: format_version, next_seq, store_id_lo/hi, stored_bytes, entries.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// (unit, first_seq) -> block value (codec byte, raw length, zstd(postcard entries)).
const BLOCKS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("blocks");
/// (last_seq, min_rt, max_rt, watermark, count, raw_len, stored_len) of a block.
type MetaTuple = (u64, u64, u64, u64, u32, u32, u32);
/// (unit, first_seq) -> [`MetaTuple`].
const BLOCK_META: TableDefinition<(&str, u64), MetaTuple> = TableDefinition::new("block_meta");
/// (unit, watermark, first_seq) -> (): the watermark is the largest realtime of the unit up
/// to and including the block, so it is monotone in first_seq and seekable by time.
const WATERMARK: TableDefinition<(&str, u64, u64), ()> = TableDefinition::new("watermark");
/// first_seq -> unit: every block in global order, for retention (oldest first).
const SEQ_BLOCKS: TableDefinition<u64, &str> = TableDefinition::new("seq_blocks");
/// invocation -> (unit, first_seq, last_seq).
const INVOCATIONS: TableDefinition<u128, (&str, u64, u64)> = TableDefinition::new("invocations");
/// (unit, first_seq of the invocation) -> invocation: the latest invocation of a unit is its last row.
const UNIT_INVOCATIONS: TableDefinition<(&str, u64), u128> =
    TableDefinition::new("unit_invocations");
/// unit -> (entries, last_seq).
const UNITS: TableDefinition<&str, (u64, u64)> = TableDefinition::new("units");

/// redb's page cache of a read-only handle (`corral journal` reading the file). A query
/// reads each block once; what it reads again is the tables' upper pages, which this
/// holds many times over. A larger cache only fills with blocks read once, each a
/// fresh allocation: with 4 MiB, `-g` over 1 M lines took ~1550 page faults, with this
/// ~600, and 3% less CPU.
const READ_ONLY_CACHE: usize = 256 * 1024;

/// How long compaction waits for this process's read transactions to end.
const COMPACT_WAIT: Duration = Duration::from_secs(5);

/// Options of a store opened for writing.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// MaxUse: the store file is kept below this many bytes (oldest entries go first).
    pub max_use: Option<u64>,
    /// MaxRetentionSec: entries older than this are removed.
    pub max_retention: Option<Duration>,
    /// redb's page cache; the default 1 GiB would let RSS grow far past what a log needs.
    pub cache_size: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            max_use: None,
            max_retention: None,
            cache_size: 16 * 1024 * 1024,
        }
    }
}

/// What `--disk-usage` reports.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DiskUsage {
    /// Size of the store file.
    pub file_bytes: u64,
    /// Bytes of compressed blocks in it (the rest is indexes and free pages).
    pub stored_bytes: u64,
    /// Number of entries.
    pub entries: u64,
    /// Number of blocks.
    pub blocks: u64,
}

/// What `--vacuum-size`/`--vacuum-time` did ([`Store::vacuum`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VacuumReport {
    /// Entries removed.
    pub removed: u64,
    /// Usage before.
    pub before: DiskUsage,
    /// Usage after (compacted).
    pub after: DiskUsage,
}

/// The store's totals while a retention pass removes blocks.
struct Tally {
    /// `meta.stored_bytes`.
    stored: u64,
    /// `meta.entries`.
    entries: u64,
    /// Entries removed so far.
    removed: u64,
}

enum Db {
    Rw(Database),
    Ro(ReadOnlyDatabase),
    /// Between closing and reopening the writer's handle after a failed write.
    Closed,
}

impl Db {
    fn begin_read(&self) -> std::result::Result<ReadTransaction, redb::TransactionError> {
        match self {
            Db::Rw(d) => d.begin_read(),
            Db::Ro(d) => d.begin_read(),
            Db::Closed => Err(redb::TransactionError::Storage(
                redb::StorageError::DatabaseClosed,
            )),
        }
    }
}

struct Inner {
    path: PathBuf,
    db: RwLock<Db>,
    store_id: u128,
    opts: StoreOptions,
    /// Per unit, the first_seq before which blocks are already merged (saves rescans;
    /// kept only where that skips at least one of the unit's blocks). Keyed by a hash
    /// of the name (`block::unit_key`): the names cost a thousand units that logged a
    /// line 78 KB (an mmap of its own), the hashes 34; a collision would only leave
    /// some of a unit's small blocks unmerged.
    merged_upto: Mutex<HashMap<u64, u64>>,
    /// A read-only handle for queries while the writable one refuses after a failed
    /// write (redb answers PreviousIo until reopened, and reopening needs free space).
    fallback: Mutex<Option<ReadOnlyDatabase>>,
    /// Read transactions of this process that are open: redb refuses to compact
    /// under any of them, so compaction waits for them to end ([`Store::try_compact`]).
    readers: Mutex<usize>,
    /// Signalled when `readers` drops to zero.
    readers_done: Condvar,
    /// Times [`Store::drop_cache`] reopened the file, for the writer's tests.
    #[cfg(test)]
    cache_drops: std::sync::atomic::AtomicU64,
}

/// A read transaction of this process, counted in [`Inner::readers`] while it lives.
struct Snapshot {
    txn: ReadTransaction,
    // Declared after `txn`, so it is released after the transaction has ended.
    _counted: Counted,
}

impl std::ops::Deref for Snapshot {
    type Target = ReadTransaction;

    fn deref(&self) -> &ReadTransaction {
        &self.txn
    }
}

/// One count in [`Inner::readers`], given back on drop.
struct Counted(Arc<Inner>);

impl Drop for Counted {
    fn drop(&mut self) {
        let mut n = self.0.readers.lock().expect("reader count lock");
        *n -= 1;
        if *n == 0 {
            self.0.readers_done.notify_all();
        }
    }
}

/// An open journal store; cheap to clone (all clones share the file).
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

/// An entry staged for commit: a [`NewEntry`] with its sequence number and times assigned.
pub struct Staged {
    /// Assigned sequence number.
    pub seq: u64,
    /// Realtime µs.
    pub realtime: u64,
    /// Monotonic µs.
    pub monotonic: u64,
    /// Boot id.
    pub boot_id: u128,
    /// Uid.
    pub uid: u32,
    /// The producer's entry.
    pub new: NewEntry,
}

impl Staged {
    /// The fields to encode.
    pub(crate) fn item(&self) -> EncodeItem<'_> {
        EncodeItem {
            seq: self.seq,
            realtime: self.realtime,
            monotonic: self.monotonic,
            boot_id: self.boot_id,
            uid: self.uid,
            invocation: self.new.invocation,
            pid: self.new.pid,
            stream: self.new.stream,
            priority: self.new.priority,
            flags: self.new.flags,
            identifier: &self.new.identifier,
            comm: &self.new.comm,
            message_id: self.new.message_id,
            message: &self.new.message,
        }
    }
}

fn item_of<'a>(r: &StoredRef<'a>) -> EncodeItem<'a> {
    EncodeItem {
        seq: r.seq,
        realtime: r.realtime,
        monotonic: r.monotonic,
        boot_id: r.boot_id,
        uid: r.uid,
        invocation: r.invocation,
        pid: r.pid,
        stream: Stream::from_code(r.stream),
        priority: r.priority,
        flags: r.flags,
        identifier: r.identifier,
        comm: r.comm,
        message_id: r.message_id,
        message: r.message,
    }
}

/// What the side log gave back on open (see [`super::sidelog`]).
#[derive(Debug, Clone, Copy, Default)]
struct Replayed {
    entries: u64,
    bytes: u64,
    dropped: u64,
}

/// The note of an unclean end: `took` is how long redb's recovery took (`None`: it had
/// nothing to recover), `last` the last entry committed by the previous writer (`None`:
/// it holds no entries), `replayed` what its side log gave back.
fn unclean_end_message(took: Option<Duration>, last: Option<&Entry>, replayed: Replayed) -> String {
    let window = super::writer::WINDOW_BYTES / 1024;
    let commit_window = super::writer::COMMIT_WINDOW_BYTES / 1024;
    let (kept, after) = match last {
        Some(e) => {
            let when = chrono::DateTime::from_timestamp_micros(e.realtime as i64)
                .map(|t| t.format("%Y-%m-%d %H:%M:%S%.6f UTC").to_string())
                .unwrap_or_else(|| format!("@{} µs", e.realtime));
            (
                format!(
                    ", the last entry being seq {} of {} ({when})",
                    e.seq, e.unit
                ),
                ", read after that entry",
            )
        }
        None => (" (it holds no entries)".to_string(), ""),
    };
    let recovery = match took {
        Some(t) => format!(
            "redb's recovery took {} ms and kept every commit",
            t.as_millis()
        ),
        None => "the store needed no recovery".to_string(),
    };
    let dropped = match replayed.dropped {
        0 => String::new(),
        n => format!(" ({n} torn or damaged record(s) at its end dropped)"),
    };
    format!(
        "the previous writer of this journal ended without closing it (killed, crashed, \
         or the system stopped); {recovery}; {} entries ({} bytes) it had not committed \
         were replayed from its side log{dropped}{kept}. Missing, if anything: output \
         that writer had read from the services' pipes but not written to its side \
         log{after}: at most {window} KiB (plus each pipe's unfinished line), normally \
         far less; after a machine crash (power loss), also what was not yet committed, \
         at most {commit_window} KiB more",
        replayed.entries, replayed.bytes,
    )
}

/// Resolves a journal location: a directory holds [`FILE_NAME`]; a file path is used as is.
pub fn store_file(path: &Path) -> PathBuf {
    if is_directory_location(path) {
        path.join(FILE_NAME)
    } else {
        path.to_owned()
    }
}

/// Whether `path` names a journal directory rather than a store file: an existing
/// file (such as a store set aside, `journal.redb~corrupt-…`) or a new `.redb` path is
/// a file.
fn is_directory_location(path: &Path) -> bool {
    !path.is_file() && (path.is_dir() || path.extension().is_none_or(|e| e != "redb"))
}

/// Metadata of one block as read from BLOCK_META.
#[derive(Debug, Clone, Copy)]
struct BlockMeta {
    first_seq: u64,
    last_seq: u64,
    min_rt: u64,
    max_rt: u64,
    watermark: u64,
    count: u32,
    raw_len: u32,
    stored_len: u32,
}

impl BlockMeta {
    fn from_tuple(first_seq: u64, t: MetaTuple) -> BlockMeta {
        BlockMeta {
            first_seq,
            last_seq: t.0,
            min_rt: t.1,
            max_rt: t.2,
            watermark: t.3,
            count: t.4,
            raw_len: t.5,
            stored_len: t.6,
        }
    }
    /// At least the sum of [`EncodeItem::estimate`] of the block's entries (what
    /// [`MAX_BLOCK_RAW`] bounds), from its raw length: every entry takes its message
    /// and at least five bytes more in any codec (newline, length, three deltas), and
    /// the estimate counts twelve. Merging by it never makes a block the writer splits.
    fn text_bound(&self) -> usize {
        self.raw_len as usize + 7 * self.count as usize
    }

    fn tuple(&self) -> MetaTuple {
        (
            self.last_seq,
            self.min_rt,
            self.max_rt,
            self.watermark,
            self.count,
            self.raw_len,
            self.stored_len,
        )
    }
}

impl Store {
    /// Opens (creating if needed) the store at `path` (a journal directory or a `.redb`
    /// file) as its single writer.
    pub fn open(path: impl AsRef<Path>, opts: StoreOptions) -> Result<Store> {
        let path = path.as_ref();
        if is_directory_location(path) {
            // The journal holds everything a user's services print: it is
            // that user's alone, whatever the umask or an older version left.
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(path)
                .map_err(|e| JournalError::io("create directory", path, e))?;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| JournalError::io("restrict permissions of", path, e))?;
        }
        let file = store_file(path);
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&file)
            .map_err(|e| JournalError::io("create", &file, e))?;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| JournalError::io("restrict permissions of", &file, e))?;
        // redb calls this only when the file was not closed by its last writer (the
        // recovery flag it sets while a writer has the file open is still there).
        let repaired = Arc::new(AtomicBool::new(false));
        let flag = repaired.clone();
        let started = Instant::now();
        let db = redb::Builder::new()
            .set_cache_size(opts.cache_size)
            .set_concurrency_mode(ConcurrencyMode::SingleWriter)
            .set_repair_callback(move |_| flag.store(true, Ordering::Relaxed))
            .create(&file)
            .map_err(|e| JournalError::db(&file, "open for writing", e))?;
        let recovery = repaired.load(Ordering::Relaxed).then(|| started.elapsed());
        let store_id;
        {
            let txn = db
                .begin_write()
                .map_err(|e| JournalError::db(&file, "begin write", e))?;
            {
                let mut meta = txn
                    .open_table(META)
                    .map_err(|e| JournalError::db(&file, "open table meta", e))?;
                let version = meta
                    .get("format_version")
                    .map_err(|e| JournalError::db(&file, "read meta", e))?
                    .map(|v| v.value());
                match version {
                    Some(v) if v > FORMAT_VERSION => {
                        return Err(JournalError::UnsupportedFormat {
                            path: file,
                            found: v,
                            supported: FORMAT_VERSION,
                        });
                    }
                    Some(v) => {
                        if v < FORMAT_VERSION {
                            // v3 reads older blocks as they are; the version goes up so
                            // that an older corral refuses the v3 blocks written next.
                            meta.insert("format_version", FORMAT_VERSION).map_err(|e| {
                                JournalError::db(&file, "upgrade format version", e)
                            })?;
                        }
                        let lo = meta_get(&meta, "store_id_lo", &file)?;
                        let hi = meta_get(&meta, "store_id_hi", &file)?;
                        store_id = (hi as u128) << 64 | lo as u128;
                    }
                    None => {
                        store_id = super::random_id();
                        let put = |m: &mut redb::Table<&str, u64>, k: &str, v: u64| {
                            m.insert(k, v)
                                .map(|_| ())
                                .map_err(|e| JournalError::db(&file, "initialise meta", e))
                        };
                        put(&mut meta, "format_version", FORMAT_VERSION)?;
                        put(&mut meta, "store_id_lo", store_id as u64)?;
                        put(&mut meta, "store_id_hi", (store_id >> 64) as u64)?;
                        put(&mut meta, "next_seq", 1)?;
                        put(&mut meta, "stored_bytes", 0)?;
                        put(&mut meta, "entries", 0)?;
                    }
                }
            }
            // Every table exists from the first commit on, so readers never meet a missing one.
            open_all(&txn, &file)?;
            txn.commit()
                .map_err(|e| JournalError::db(&file, "commit", e))?;
        }
        let store = Store {
            inner: Arc::new(Inner {
                path: file,
                db: RwLock::new(Db::Rw(db)),
                store_id,
                opts,
                merged_upto: Mutex::new(HashMap::new()),
                fallback: Mutex::new(None),
                readers: Mutex::new(0),
                readers_done: Condvar::new(),
                #[cfg(test)]
                cache_drops: std::sync::atomic::AtomicU64::new(0),
            }),
        };
        let replayed = store.replay_side_log()?;
        if recovery.is_some() || replayed.is_some() {
            // The store is fine either way; failing to say so must not stop logging.
            if let Err(e) = store.note_unclean_end(recovery, replayed.unwrap_or_default()) {
                eprintln!(
                    "journal {}: cannot record that its previous writer ended without closing it: {e}",
                    store.path().display()
                );
            }
        }
        Ok(store)
    }

    /// After redb's recovery: says on stderr and in the journal (unit `corrald`,
    /// priority 4) that the previous writer ended without closing the store, what the
    /// store holds, and what may be missing (docs/JOURNAL-FORMAT.md, "What a crash
    /// loses"). Every writable open runs this, the manager's and `corral journal`'s
    /// alike, so the first one after the crash records it, once.
    fn note_unclean_end(&self, took: Option<Duration>, replayed: Replayed) -> Result<()> {
        let next = self.next_seq()?;
        let last = match next {
            1 => None,
            _ => self
                .query(&Query {
                    lines: Some(1),
                    ..Query::default()
                })?
                .pop(),
        };
        let msg = unclean_end_message(took, last.as_ref(), replayed);
        eprintln!("journal {}: {msg}", self.path().display());
        let mut e = NewEntry::manager(super::writer::MANAGER_UNIT, 0, msg);
        e.priority = 4;
        let staged = Staged {
            seq: next,
            realtime: super::realtime_now(),
            monotonic: super::monotonic_now(),
            boot_id: super::boot_id(),
            uid: nix::unistd::getuid().as_raw(),
            new: e,
        };
        let mut enc =
            Encoder::new().map_err(|e| JournalError::io("create encoder for", self.path(), e))?;
        self.commit(&[staged], &mut enc)
    }

    /// Commits what the side log of a writer that did not close the store holds past
    /// the last commit, then deletes its files; `None` when there were none. The
    /// open's redb lock makes this the only writer, so no live writer's log is taken.
    fn replay_side_log(&self) -> Result<Option<Replayed>> {
        let next = self.next_seq()?;
        let r = super::sidelog::replay(self.path(), self.inner.store_id, next)?;
        if r.files.is_empty() {
            return Ok(None);
        }
        let mut enc =
            Encoder::new().map_err(|e| JournalError::io("create encoder for", self.path(), e))?;
        // In pieces, as the writer commits: one transaction per 64 Ki entries.
        for part in r.entries.chunks(64 * 1024) {
            self.commit(part, &mut enc)?;
        }
        for f in &r.files {
            // What it holds is committed now, and a later replay skips it: a file that
            // cannot go must not keep the journal from opening.
            if let Err(e) = std::fs::remove_file(f) {
                eprintln!("journal: cannot remove side log {}: {e}", f.display());
            }
        }
        Ok(Some(Replayed {
            entries: r.entries.len() as u64,
            bytes: r.bytes,
            dropped: r.dropped,
        }))
    }

    /// Opens the store at `path` read-only, beside a writer in another process if there is one.
    pub fn open_read_only(path: impl AsRef<Path>) -> Result<Store> {
        let file = store_file(path.as_ref());
        // `exists()` would take "permission denied" (another user's journal)
        // for "no journal" and the reader would print no entries: say it.
        match file.try_exists() {
            Ok(true) => {}
            Ok(false) => {
                return Err(JournalError::io(
                    "open journal store",
                    &file,
                    std::io::Error::from(std::io::ErrorKind::NotFound),
                ));
            }
            Err(e) => return Err(JournalError::io("open journal store", &file, e)),
        }
        let db = redb::Builder::new()
            .set_cache_size(READ_ONLY_CACHE)
            .set_concurrency_mode(ConcurrencyMode::SingleWriter)
            .open_read_only(&file)
            .map_err(|e| JournalError::db(&file, "open read-only", e))?;
        let txn = db
            .begin_read()
            .map_err(|e| JournalError::db(&file, "begin read", e))?;
        let meta = txn
            .open_table(META)
            .map_err(|e| JournalError::db(&file, "open table meta", e))?;
        let version = meta_get_ro(&meta, "format_version", &file)?;
        if version > FORMAT_VERSION || version == 0 {
            return Err(JournalError::UnsupportedFormat {
                path: file,
                found: version,
                supported: FORMAT_VERSION,
            });
        }
        let lo = meta_get_ro(&meta, "store_id_lo", &file)?;
        let hi = meta_get_ro(&meta, "store_id_hi", &file)?;
        drop(meta);
        drop(txn);
        Ok(Store {
            inner: Arc::new(Inner {
                path: file,
                db: RwLock::new(Db::Ro(db)),
                store_id: (hi as u128) << 64 | lo as u128,
                opts: StoreOptions::default(),
                merged_upto: Mutex::new(HashMap::new()),
                fallback: Mutex::new(None),
                readers: Mutex::new(0),
                readers_done: Condvar::new(),
                #[cfg(test)]
                cache_drops: std::sync::atomic::AtomicU64::new(0),
            }),
        })
    }

    /// The store file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The store's random id (part of every cursor).
    pub fn store_id(&self) -> u128 {
        self.inner.store_id
    }

    /// The options it was opened with.
    pub fn options(&self) -> &StoreOptions {
        &self.inner.opts
    }

    fn db_err<E: Into<redb::Error>>(&self, what: &'static str) -> impl Fn(E) -> JournalError + '_ {
        move |e| JournalError::db(&self.inner.path, what, e)
    }

    fn read_txn(&self) -> Result<Snapshot> {
        let db = self.inner.db.read().expect("store lock poisoned");
        let txn = match db.begin_read() {
            Ok(txn) => txn,
            // After a failed write (a full disk) the writable handle refuses reads too
            // until it is reopened, and reopening waits for space: read the last commit
            // through a read-only handle meanwhile (the writer's lock is still held, so
            // it opens beside it as another process's reader would).
            Err(redb::TransactionError::Storage(
                redb::StorageError::PreviousIo | redb::StorageError::DatabaseClosed,
            )) if matches!(&*db, Db::Rw(_) | Db::Closed) => {
                drop(db);
                let mut fb = self.inner.fallback.lock().expect("fallback lock poisoned");
                if fb.is_none() {
                    let ro = redb::Builder::new()
                        .set_cache_size(4 * 1024 * 1024)
                        .set_concurrency_mode(ConcurrencyMode::SingleWriter)
                        .open_read_only(&self.inner.path)
                        .map_err(|e| JournalError::db(&self.inner.path, "open read-only", e))?;
                    *fb = Some(ro);
                }
                let ro = fb.as_ref().expect("just set");
                ro.begin_read()
                    .map_err(|e| JournalError::db(&self.inner.path, "begin read", e))?
            }
            Err(e) => return Err(JournalError::db(&self.inner.path, "begin read", e)),
        };
        // Counted while the store lock is held (or, for the fallback, while no
        // compaction can run: the writable handle is refusing), so a compaction
        // that holds it sees every reader.
        *self.inner.readers.lock().expect("reader count lock") += 1;
        Ok(Snapshot {
            txn,
            _counted: Counted(self.inner.clone()),
        })
    }

    fn write_txn(&self) -> Result<WriteTransaction> {
        let db = self.inner.db.read().expect("store lock poisoned");
        match &*db {
            Db::Rw(d) => d
                .begin_write()
                .map_err(|e| JournalError::db(&self.inner.path, "begin write", e)),
            Db::Ro(_) | Db::Closed => Err(JournalError::db(
                &self.inner.path,
                "write",
                redb::Error::Io(std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    "store is open read-only",
                )),
            )),
        }
    }

    /// Closes the file cleanly, as dropping the last handle would (the next
    /// open needs no recovery), for a process about to execve, which drops
    /// nothing; reads and writes fail after it. Call after the writer's shutdown.
    pub fn close(&self) {
        let mut db = self.inner.db.write().expect("store lock poisoned");
        self.readers_ended();
        drop(std::mem::replace(&mut *db, Db::Closed));
    }

    /// Re-opens the file after redb reported a failed write (it refuses further writes
    /// with PreviousIo until reopened); used by the writer after ENOSPC, and by
    /// [`Self::vacuum_size`] to measure the file as closing leaves it.
    pub(crate) fn reopen(&self) -> Result<()> {
        let mut db = self.inner.db.write().expect("store lock poisoned");
        if let Db::Rw(_) | Db::Closed = &*db {
            // A reader of the old handle would keep it from closing cleanly; they end on
            // their own (the write lock keeps new ones out).
            self.readers_ended();
            self.reopen_locked(&mut db)?;
            *self.inner.fallback.lock().expect("fallback lock poisoned") = None;
        }
        Ok(())
    }

    /// Closes the writable handle and opens it again, under the store's write lock.
    fn reopen_locked(&self, db: &mut Db) -> Result<()> {
        // Close first: the file lock must be released before the new handle takes it.
        drop(std::mem::replace(db, Db::Closed));
        let new = redb::Builder::new()
            .set_cache_size(self.inner.opts.cache_size)
            .set_concurrency_mode(ConcurrencyMode::SingleWriter)
            .open(&self.inner.path)
            .map_err(|e| JournalError::db(&self.inner.path, "reopen for writing", e))?;
        *db = Db::Rw(new);
        Ok(())
    }

    /// Gives back redb's page cache, by closing the file and opening it again:
    /// redb keeps every page a commit wrote or read (up to `cache_size`) for
    /// as long as the handle lives, and has no other way to drop them. For the
    /// writer once it is idle. Skipped (`false`) while a read transaction of
    /// this process is open, not to wait for it; on an error the handle stays
    /// closed, and the writer's next commit reopens it as after a failed write.
    pub(crate) fn drop_cache(&self) -> Result<bool> {
        let mut db = self.inner.db.write().expect("store lock poisoned");
        if !matches!(&*db, Db::Rw(_)) || *self.inner.readers.lock().expect("reader count lock") > 0
        {
            return Ok(false);
        }
        self.reopen_locked(&mut db)?;
        #[cfg(test)]
        self.inner.cache_drops.fetch_add(1, Ordering::Relaxed);
        Ok(true)
    }

    /// Times [`Self::drop_cache`] reopened the file.
    #[cfg(test)]
    pub(crate) fn cache_drops(&self) -> u64 {
        self.inner.cache_drops.load(Ordering::Relaxed)
    }

    /// Whether the file system of the store has room for `bytes` more and a margin for
    /// redb's copy-on-write pages (the writer waits for it after running out of space).
    pub(crate) fn has_room(&self, bytes: u64) -> bool {
        let dir = self.inner.path.parent().unwrap_or(Path::new("."));
        match nix::sys::statvfs::statvfs(dir) {
            Ok(st) => {
                let free = st.blocks_available().saturating_mul(st.fragment_size());
                free >= 2 * bytes + 1024 * 1024
            }
            // Cannot tell: let the reopen find out.
            Err(_) => true,
        }
    }

    /// The next sequence number the store will assign (1 for an empty store).
    pub fn next_seq(&self) -> Result<u64> {
        let txn = self.read_txn()?;
        let meta = txn
            .open_table(META)
            .map_err(self.db_err("open table meta"))?;
        meta_get_ro(&meta, "next_seq", &self.inner.path)
    }

    /// Writes staged entries (consecutive seqs starting at next_seq) in one durable
    /// transaction: one or more blocks per unit.
    pub fn commit(&self, staged: &[Staged], enc: &mut Encoder) -> Result<()> {
        if staged.is_empty() {
            return Ok(());
        }
        let path = &self.inner.path;
        let txn = self.write_txn()?;
        {
            let mut t = Tables::open(&txn, path)?;
            // Group by unit, keeping seq order inside each unit.
            let mut by_unit: Vec<(&str, Vec<usize>)> = Vec::new();
            for (i, s) in staged.iter().enumerate() {
                let u: &str = &s.new.unit;
                match by_unit.iter_mut().find(|(n, _)| *n == u) {
                    Some((_, v)) => v.push(i),
                    None => by_unit.push((u, vec![i])),
                }
            }
            let mut added_bytes = 0u64;
            for (unit, idx) in &by_unit {
                let wm = t.last_watermark(unit)?;
                let items: Vec<EncodeItem<'_>> = idx.iter().map(|&i| staged[i].item()).collect();
                added_bytes += write_blocks(&mut t, enc, unit, &items, wm)?;
                // Invocations: extend the range of each (unit, invocation) in this batch.
                let mut invs: Vec<(u128, u64, u64)> = Vec::new();
                for &i in idx {
                    let s = &staged[i];
                    match invs.iter_mut().find(|(inv, _, _)| *inv == s.new.invocation) {
                        Some(r) => r.2 = s.seq,
                        None => invs.push((s.new.invocation, s.seq, s.seq)),
                    }
                }
                for (inv, f, l) in invs {
                    if inv == 0 {
                        continue;
                    }
                    let existing = t
                        .invocations
                        .get(inv)
                        .map_err(self.db_err("read invocations"))?
                        .map(|g| {
                            let (u, f, _) = g.value();
                            (u.to_owned(), f)
                        });
                    match existing {
                        Some((u, f0)) if u == *unit => {
                            t.invocations
                                .insert(inv, (*unit, f0, l))
                                .map_err(self.db_err("write invocations"))?;
                        }
                        Some(_) => {
                            // The same id under another unit is a producer bug; keep the first.
                        }
                        None => {
                            t.invocations
                                .insert(inv, (*unit, f, l))
                                .map_err(self.db_err("write invocations"))?;
                            t.unit_invocations
                                .insert((*unit, f), inv)
                                .map_err(self.db_err("write unit_invocations"))?;
                        }
                    }
                }
                let (count, _) = t
                    .units
                    .get(*unit)
                    .map_err(self.db_err("read units"))?
                    .map(|g| g.value())
                    .unwrap_or((0, 0));
                let last_seq = staged[*idx.last().expect("non-empty")].seq;
                t.units
                    .insert(*unit, (count + idx.len() as u64, last_seq))
                    .map_err(self.db_err("write units"))?;
            }
            let next = staged[staged.len() - 1].seq + 1;
            t.meta_set("next_seq", next)?;
            let sb = t.meta("stored_bytes")?;
            t.meta_set("stored_bytes", sb + added_bytes)?;
            let n = t.meta("entries")?;
            t.meta_set("entries", n + staged.len() as u64)?;
        }
        txn.commit().map_err(self.db_err("commit"))?;
        Ok(())
    }

    /// Disk usage of the store.
    pub fn disk_usage(&self) -> Result<DiskUsage> {
        let file_bytes = std::fs::metadata(&self.inner.path)
            .map_err(|e| JournalError::io("stat", &self.inner.path, e))?
            .len();
        let txn = self.read_txn()?;
        let meta = txn
            .open_table(META)
            .map_err(self.db_err("open table meta"))?;
        let blocks = txn
            .open_table(SEQ_BLOCKS)
            .map_err(self.db_err("open table seq_blocks"))?
            .len()
            .map_err(self.db_err("count blocks"))?;
        Ok(DiskUsage {
            file_bytes,
            stored_bytes: meta_get_ro(&meta, "stored_bytes", &self.inner.path)?,
            entries: meta_get_ro(&meta, "entries", &self.inner.path)?,
            blocks,
        })
    }

    /// The names of all units with entries, sorted.
    pub fn units(&self) -> Result<Vec<String>> {
        let txn = self.read_txn()?;
        let units = txn
            .open_table(UNITS)
            .map_err(self.db_err("open table units"))?;
        let mut out = Vec::new();
        for r in units.iter().map_err(self.db_err("read units"))? {
            let (k, _) = r.map_err(self.db_err("read units"))?;
            out.push(k.value().to_owned());
        }
        Ok(out)
    }

    /// The latest invocation of `unit` (the one whose first entry is newest), if any.
    pub fn latest_invocation(&self, unit: &str) -> Result<Option<u128>> {
        let txn = self.read_txn()?;
        let ui = txn
            .open_table(UNIT_INVOCATIONS)
            .map_err(self.db_err("open table unit_invocations"))?;
        let last = ui
            .range((unit, 0u64)..=(unit, u64::MAX))
            .map_err(self.db_err("read unit_invocations"))?
            .next_back();
        Ok(match last {
            Some(r) => Some(r.map_err(self.db_err("read unit_invocations"))?.1.value()),
            None => None,
        })
    }

    /// The invocations of `unit`, oldest first (for `--invocation -1` style offsets).
    pub fn invocations(&self, unit: &str) -> Result<Vec<u128>> {
        let txn = self.read_txn()?;
        let ui = txn
            .open_table(UNIT_INVOCATIONS)
            .map_err(self.db_err("open table unit_invocations"))?;
        let mut out = Vec::new();
        for r in ui
            .range((unit, 0u64)..=(unit, u64::MAX))
            .map_err(self.db_err("read unit_invocations"))?
        {
            out.push(r.map_err(self.db_err("read unit_invocations"))?.1.value());
        }
        Ok(out)
    }

    /// Runs a query: the matching entries in seq order (or newest first with `reverse`),
    /// at most `lines` of them (the newest).
    /// Damaged blocks are skipped, and said on stderr.
    pub fn query(&self, q: &Query) -> Result<Vec<Entry>> {
        let mut it = self.query_iter(q)?;
        let entries = it.by_ref().collect::<Result<Vec<Entry>>>()?;
        let sk = it.skipped();
        if sk.blocks > 0 {
            eprintln!(
                "journal: skipped {} damaged block(s) holding {} entries of {}: {}",
                sk.blocks,
                sk.entries,
                self.inner.path.display(),
                sk.first_error.as_deref().unwrap_or("")
            );
        }
        Ok(entries)
    }

    /// [`Self::query`] from async code: redb reads block, so it runs on tokio's
    /// blocking pool.
    pub async fn query_async(&self, q: Query) -> Result<Vec<Entry>> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || store.query(&q))
            .await
            .map_err(|e| {
                JournalError::io(
                    "run query on",
                    &self.inner.path,
                    std::io::Error::other(e.to_string()),
                )
            })?
    }

    /// Like [`Self::query`], streaming: blocks are read and decoded as the iterator
    /// advances, on one snapshot of the store. With `lines` and without `reverse` the
    /// newest N are gathered first (they are printed oldest first).
    pub fn query_iter(&self, q: &Query) -> Result<QueryIter> {
        let cq = Arc::new(CompiledQuery::new(q)?);
        let txn = self.read_txn()?;
        let path = &self.inner.path;
        let units_t = txn
            .open_table(UNITS)
            .map_err(self.db_err("open table units"))?;
        let blocks = txn
            .open_table(BLOCKS)
            .map_err(self.db_err("open table blocks"))?;
        let bmeta = txn
            .open_table(BLOCK_META)
            .map_err(self.db_err("open table block_meta"))?;
        let wmt = txn
            .open_table(WATERMARK)
            .map_err(self.db_err("open table watermark"))?;
        let invt = txn
            .open_table(INVOCATIONS)
            .map_err(self.db_err("open table invocations"))?;
        let uinv = txn
            .open_table(UNIT_INVOCATIONS)
            .map_err(self.db_err("open table unit_invocations"))?;

        // Which units, and for each the seq window it may contribute.
        let mut units: Vec<(String, u64, u64)> = Vec::new();
        let inv_range = match q.invocation {
            Some(inv) => match invt.get(inv).map_err(self.db_err("read invocations"))? {
                Some(g) => {
                    let (u, f, l) = g.value();
                    Some((u.to_owned(), f, l))
                }
                // An unknown invocation matches nothing: an empty range.
                None => Some((String::new(), 1, 0)),
            },
            None => None,
        };
        for r in units_t.iter().map_err(self.db_err("read units"))? {
            let (k, _) = r.map_err(self.db_err("read units"))?;
            let name = k.value();
            if !cq.unit_matches(name) {
                continue;
            }
            let (mut lo, mut hi) = (cq.min_seq, cq.max_seq);
            if let Some((u, f, l)) = &inv_range {
                if u != name {
                    continue;
                }
                lo = lo.max(*f);
                hi = hi.min(*l);
            }
            if q.latest_invocation {
                let last = uinv
                    .range((name, 0u64)..=(name, u64::MAX))
                    .map_err(self.db_err("read unit_invocations"))?
                    .next_back();
                let Some(last) = last else { continue };
                let inv = last
                    .map_err(self.db_err("read unit_invocations"))?
                    .1
                    .value();
                if let Some(g) = invt.get(inv).map_err(self.db_err("read invocations"))? {
                    let (_, f, l) = g.value();
                    lo = lo.max(f);
                    hi = hi.min(l);
                }
            }
            if lo <= hi {
                units.push((name.to_owned(), lo, hi));
            }
        }

        let newest_first = q.lines.is_some() || q.reverse;
        let mut cursors = Vec::new();
        for (unit, lo, hi) in units {
            // First block: the one holding `lo`, or the first whose watermark reaches `since`.
            let mut start = 0u64;
            if lo > 0
                && let Some(r) = bmeta
                    .range((unit.as_str(), 0u64)..=(unit.as_str(), lo))
                    .map_err(self.db_err("read block_meta"))?
                    .next_back()
            {
                start = r.map_err(self.db_err("read block_meta"))?.0.value().1;
            }
            if let Some(since) = cq.since {
                match wmt
                    .range((unit.as_str(), since, 0u64)..=(unit.as_str(), u64::MAX, u64::MAX))
                    .map_err(self.db_err("read watermark"))?
                    .next()
                {
                    Some(r) => {
                        start = start.max(r.map_err(self.db_err("read watermark"))?.0.value().2)
                    }
                    None => continue,
                }
            }
            // Last block: the first whose watermark passes `until` (it may hold earlier entries).
            let mut end = hi;
            if let Some(until) = cq.until
                && let Some(r) = wmt
                    .range(
                        (unit.as_str(), until.saturating_add(1), 0u64)
                            ..=(unit.as_str(), u64::MAX, u64::MAX),
                    )
                    .map_err(self.db_err("read watermark"))?
                    .next()
            {
                end = end.min(r.map_err(self.db_err("read watermark"))?.0.value().2);
            }
            if start > end {
                continue;
            }
            let range = bmeta
                .range((unit.as_str(), start)..=(unit.as_str(), end))
                .map_err(self.db_err("read block_meta"))?;
            cursors.push(UnitCursor {
                unit,
                lo,
                hi,
                metas: range,
                raw: Vec::new(),
                slots: Vec::new(),
                ahead: VecDeque::new(),
                backward: newest_first,
                done: false,
            });
        }

        let mut it = QueryIter {
            _txn: txn,
            path: path.to_owned(),
            blocks,
            pool: if q.grep.is_some() {
                Pool::new(cq.clone())
            } else {
                None
            },
            cq,
            cursors,
            heap: BinaryHeap::new(),
            decoder: Decoder::new()
                .map_err(|e| JournalError::io("create zstd context for", path, e))?,
            backward: newest_first,
            remaining: q.lines.unwrap_or(usize::MAX),
            gathered: None,
            skipped: Skipped::default(),
        };
        for i in 0..it.cursors.len() {
            it.push_next(i)?;
        }
        if newest_first && !q.reverse {
            let mut v: Vec<Entry> = it.by_ref().collect::<Result<_>>()?;
            v.reverse();
            it.gathered = Some(v.into_iter());
        }
        Ok(it)
    }

    /// `--vacuum-time` then `--vacuum-size`: entries older than `max_age` go, then the
    /// oldest until the file fits in `max_bytes`. Needs the writable handle (in the
    /// manager, the writer thread runs it: [`super::WriterHandle::vacuum`]).
    pub fn vacuum(
        &self,
        max_bytes: Option<u64>,
        max_age: Option<Duration>,
    ) -> Result<VacuumReport> {
        let before = self.disk_usage()?;
        let mut removed = 0;
        if let Some(age) = max_age {
            removed += self.vacuum_time(age)?;
        }
        if let Some(bytes) = max_bytes {
            removed += self.vacuum_size(bytes)?;
        }
        Ok(VacuumReport {
            removed,
            before,
            after: self.disk_usage()?,
        })
    }

    /// Deletes the oldest blocks (in `seq_blocks` order) until the compacted file
    /// takes at most `max_bytes`, and no more: the newest entries that fit are kept.
    /// Returns the number of entries removed.
    ///
    /// The size is the file's, on disk, after compaction: blocks, indexes and redb's
    /// own pages, with values rounded up to redb's page sizes. It is not a linear
    /// function of the blocks kept, so it is measured, not predicted: each pass
    /// compacts, measures, and removes half of what the excess comes to in stored
    /// bytes (at the file's ratio of stored to file bytes), at least one block. The
    /// size is approached from above, and the pass that brings it under the limit
    /// removes a single block: with that block the file would not fit.
    ///
    /// A file that cannot be compacted (another process holds a read snapshot)
    /// cannot be measured: the vacuum stops there with
    /// [`JournalError::CompactionBlocked`], rather than remove entries on a guess.
    /// Free pages alone never cost an entry: a file that compacts to the limit
    /// loses nothing.
    pub fn vacuum_size(&self, max_bytes: u64) -> Result<u64> {
        let mut removed = 0;
        loop {
            if self.try_compact()?.is_none() {
                return Err(JournalError::CompactionBlocked {
                    path: self.inner.path.clone(),
                    removed,
                });
            }
            let mut usage = self.disk_usage()?;
            if usage.blocks == 0 {
                return Ok(removed);
            }
            if usage.file_bytes <= max_bytes {
                // Closing records redb's allocator state in the file (a few pages),
                // and the record of the close before is freed only after the new one
                // is written: the size that counts is the closed file's once that
                // has settled, so close twice and look again.
                self.reopen()?;
                self.reopen()?;
                usage = self.disk_usage()?;
                if usage.file_bytes <= max_bytes {
                    return Ok(removed);
                }
            }
            let excess = usage.file_bytes - max_bytes;
            let want = (excess as u128 * usage.stored_bytes as u128
                / usage.file_bytes.max(1) as u128
                / 2) as u64;
            let keep = usage.stored_bytes.saturating_sub(want);
            let mut first = true;
            removed +=
                self.remove_oldest(|stored, _| std::mem::take(&mut first) || stored > keep)?;
        }
    }

    /// Deletes blocks whose newest entry is older than `max_age` before now, then compacts.
    /// Returns the number of entries removed.
    pub fn vacuum_time(&self, max_age: Duration) -> Result<u64> {
        let removed = self.remove_older_than(max_age)?;
        if removed > 0 {
            self.compact()?;
        }
        Ok(removed)
    }

    /// Removes, per unit, the blocks whose watermark is older than `max_age`: not in
    /// global seq order, where a merged block of a unit that logs all the time (keyed
    /// by its first, old entry but holding recent ones) would hold up the old blocks of
    /// every unit behind it. A unit's watermarks never decrease along its blocks, so
    /// the old ones are a prefix of its blocks, found in the `watermark` index.
    pub(crate) fn remove_older_than(&self, max_age: Duration) -> Result<u64> {
        let cutoff = super::realtime_now().saturating_sub(max_age.as_micros() as u64);
        self.remove_blocks(|t, tally| {
            let mut old: Vec<(String, u64, u64)> = Vec::new();
            for r in t.units.iter().map_err(self.db_err("read units"))? {
                let unit = r.map_err(self.db_err("read units"))?.0.value().to_owned();
                for w in t
                    .watermark
                    .range((unit.as_str(), 0u64, 0u64)..(unit.as_str(), cutoff, 0u64))
                    .map_err(self.db_err("read watermark"))?
                {
                    let (_, wm, first_seq) = w.map_err(self.db_err("read watermark"))?.0.value();
                    old.push((unit.clone(), wm, first_seq));
                }
            }
            for (unit, wm, first_seq) in old {
                let m = t
                    .block_meta
                    .get((unit.as_str(), first_seq))
                    .map_err(self.db_err("read block_meta"))?
                    .map(|g| BlockMeta::from_tuple(first_seq, g.value()));
                let Some(m) = m else {
                    // An orphan index row: remove it and go on.
                    t.watermark
                        .remove((unit.as_str(), wm, first_seq))
                        .map_err(self.db_err("write watermark"))?;
                    continue;
                };
                t.drop_block(&unit, &m, tally)?;
            }
            Ok(())
        })
    }

    /// Background retention (the writer calls it after commits): keeps the stored bytes
    /// well under MaxUse so that freed pages are reused and the file stops growing, and
    /// drops entries past MaxRetentionSec. Returns entries removed.
    pub(crate) fn enforce_retention(&self, check_age: bool) -> Result<u64> {
        let mut removed = 0;
        if let Some(age) = self.inner.opts.max_retention.filter(|_| check_age) {
            removed += self.remove_older_than(age)?;
        }
        if let Some(max) = self.inner.opts.max_use {
            let usage = self.disk_usage()?;
            // Blocks take ~half of a copy-on-write file at most: new pages are written before
            // the old ones are freed, and index pages come on top.
            let high = max * 45 / 100;
            if usage.stored_bytes > high || usage.file_bytes > max {
                let low = max * 30 / 100;
                removed += self.remove_oldest(|stored, _| stored > low)?;
            }
        }
        Ok(removed)
    }

    /// Whether the file is over MaxUse (the writer compacts when idle then).
    pub(crate) fn over_limit(&self) -> bool {
        match self.inner.opts.max_use {
            Some(max) => std::fs::metadata(&self.inner.path).is_ok_and(|m| m.len() > max),
            None => false,
        }
    }

    /// Removes blocks in global seq order while `keep_going(stored_bytes, meta)` holds.
    fn remove_oldest(&self, mut keep_going: impl FnMut(u64, &BlockMeta) -> bool) -> Result<u64> {
        self.remove_blocks(|t, tally| {
            loop {
                let first = t
                    .seq_blocks
                    .first()
                    .map_err(self.db_err("read seq_blocks"))?
                    .map(|(k, v)| (k.value(), v.value().to_owned()));
                let Some((fs, unit)) = first else { break };
                let m = t
                    .block_meta
                    .get((unit.as_str(), fs))
                    .map_err(self.db_err("read block_meta"))?
                    .map(|g| BlockMeta::from_tuple(fs, g.value()));
                let Some(m) = m else {
                    // An orphan index row: remove it and go on.
                    t.seq_blocks
                        .remove(fs)
                        .map_err(self.db_err("write seq_blocks"))?;
                    continue;
                };
                if !keep_going(tally.stored, &m) {
                    break;
                }
                t.drop_block(&unit, &m, tally)?;
            }
            Ok(())
        })
    }

    /// One retention pass in one write transaction: `pick` drops blocks with
    /// [`Tables::drop_block`], which keeps `tally`; the totals in `meta` follow.
    /// A pass that removed nothing is aborted: no commit, so no fsync for a no-op.
    /// Returns the entries removed.
    fn remove_blocks(
        &self,
        pick: impl FnOnce(&mut Tables<'_>, &mut Tally) -> Result<()>,
    ) -> Result<u64> {
        let txn = self.write_txn()?;
        let removed = {
            let mut t = Tables::open(&txn, &self.inner.path)?;
            let mut tally = Tally {
                stored: t.meta("stored_bytes")?,
                entries: t.meta("entries")?,
                removed: 0,
            };
            pick(&mut t, &mut tally)?;
            if tally.removed > 0 {
                t.meta_set("stored_bytes", tally.stored)?;
                t.meta_set("entries", tally.entries)?;
            }
            tally.removed
        };
        if removed == 0 {
            txn.abort().map_err(self.db_err("abort"))?;
        } else {
            txn.commit().map_err(self.db_err("commit"))?;
        }
        Ok(removed)
    }

    /// Compacts the file (gives freed pages back to the file system). Waits for queries
    /// of this process to finish; returns whether anything was compacted. While a reader
    /// in another process holds a snapshot, redb refuses, and this returns `Ok(false)`:
    /// the writer tries again when next idle.
    pub fn compact(&self) -> Result<bool> {
        Ok(self.try_compact()? == Some(true))
    }

    /// [`Self::compact`], telling a refusal apart: `None` when a reader's snapshot
    /// kept redb from compacting at all. Read transactions of this process (queries,
    /// followers' pages) end on their own: it waits for them, while new ones wait
    /// for it, up to [`COMPACT_WAIT`] (a reader of this thread would never end).
    fn try_compact(&self) -> Result<Option<bool>> {
        let mut db = self.inner.db.write().expect("store lock poisoned");
        if !self.readers_ended() {
            return Ok(None);
        }
        match &mut *db {
            Db::Rw(d) => {
                let mut any = false;
                loop {
                    match d.compact() {
                        Ok(true) => any = true,
                        Ok(false) => break,
                        Err(redb::CompactionError::TransactionInProgress) if !any => {
                            return Ok(None);
                        }
                        Err(redb::CompactionError::TransactionInProgress) => break,
                        Err(e) => return Err(JournalError::db(&self.inner.path, "compact", e)),
                    }
                }
                Ok(Some(any))
            }
            Db::Ro(_) | Db::Closed => Ok(Some(false)),
        }
    }

    /// Waits, while the caller holds the write lock (so no new reader begins), for the
    /// read transactions of this process to end; false after [`COMPACT_WAIT`].
    fn readers_ended(&self) -> bool {
        let readers = self.inner.readers.lock().expect("reader count lock");
        let (_readers, wait) = self
            .inner
            .readers_done
            .wait_timeout_while(readers, COMPACT_WAIT, |n| *n > 0)
            .expect("reader count lock");
        !wait.timed_out()
    }

    /// Bytes of pages in use (the rest of the file is free pages awaiting reuse);
    /// `None` on a read-only handle.
    pub fn allocated_bytes(&self) -> Result<Option<u64>> {
        let db = self.inner.db.read().expect("store lock poisoned");
        let Db::Rw(d) = &*db else { return Ok(None) };
        let txn = d.begin_write().map_err(self.db_err("begin write"))?;
        let st = txn.stats().map_err(self.db_err("stats"))?;
        let bytes = st.allocated_pages() * st.page_size() as u64;
        txn.abort().map_err(self.db_err("abort"))?;
        Ok(Some(bytes))
    }

    /// Whether compacting is worth it: over MaxUse, or most of the file is free pages.
    pub(crate) fn worth_compacting(&self) -> Result<bool> {
        if self.over_limit() {
            return Ok(true);
        }
        let file = std::fs::metadata(&self.inner.path)
            .map_err(|e| JournalError::io("stat", &self.inner.path, e))?
            .len();
        Ok(match self.allocated_bytes()? {
            Some(used) => file > 2 * used + 8 * 1024 * 1024,
            None => false,
        })
    }

    /// Merges runs of small adjacent blocks of each unit into larger ones, touching at
    /// most `budget` blocks. Returns the number of blocks removed by merging.
    pub fn merge_small_blocks(&self, budget: usize) -> Result<usize> {
        let path = &self.inner.path;
        let units = self.units()?;
        let mut enc =
            Encoder::new().map_err(|e| JournalError::io("create encoder for", path, e))?;
        let txn = self.write_txn()?;
        let mut merged_away = 0usize;
        let mut touched = 0usize;
        let mut progress: Vec<(u64, u64)> = Vec::new();
        {
            let mut t = Tables::open(&txn, path)?;
            let upto = self.inner.merged_upto.lock().expect("merge lock").clone();
            for unit in &units {
                if touched >= budget {
                    break;
                }
                let from = upto.get(&block::unit_key(unit)).copied().unwrap_or(0);
                let metas: Vec<BlockMeta> = t
                    .block_meta
                    .range((unit.as_str(), from)..=(unit.as_str(), u64::MAX))
                    .map_err(self.db_err("read block_meta"))?
                    .map(|r| {
                        r.map(|(k, v)| BlockMeta::from_tuple(k.value().1, v.value()))
                            .map_err(self.db_err("read block_meta"))
                    })
                    .collect::<Result<_>>()?;
                // Groups of consecutive small blocks that fit together in one block.
                let mut groups: Vec<Vec<BlockMeta>> = Vec::new();
                let mut cur: Vec<BlockMeta> = Vec::new();
                let (mut n, mut stored, mut text) = (0usize, 0usize, 0usize);
                for m in &metas {
                    let small = is_small(unit, m.stored_len);
                    let fits = n + m.count as usize <= MAX_BLOCK_ENTRIES
                        && stored + m.stored_len as usize <= block_target(unit)
                        && text + m.text_bound() <= MAX_BLOCK_RAW;
                    if !small || !fits {
                        if cur.len() > 1 {
                            groups.push(std::mem::take(&mut cur));
                        }
                        cur.clear();
                        n = 0;
                        stored = 0;
                        text = 0;
                    }
                    if small {
                        cur.push(*m);
                        n += m.count as usize;
                        stored += m.stored_len as usize;
                        text += m.text_bound();
                    }
                }
                // The trailing run is merged too, and revisited next time: the unit may go on
                // logging small blocks after it.
                let mut done_upto = match cur.first() {
                    Some(m) => m.first_seq,
                    None => metas.last().map(|m| m.first_seq).unwrap_or(from),
                };
                if cur.len() > 1 {
                    groups.push(cur);
                }
                for g in groups {
                    if touched >= budget {
                        done_upto = done_upto.min(g[0].first_seq);
                        break;
                    }
                    touched += g.len();
                    merged_away += self.merge_group(&mut t, unit, &g, &mut enc)?;
                }
                // Progress that skips none of the unit's blocks saves no rescan: a
                // thousand units that logged one block each kept 34 KB of it.
                if metas.first().is_some_and(|m| done_upto > m.first_seq) {
                    progress.push((block::unit_key(unit), done_upto));
                }
            }
        }
        txn.commit().map_err(self.db_err("commit"))?;
        let mut upto = self.inner.merged_upto.lock().expect("merge lock");
        for (u, s) in progress {
            upto.insert(u, s);
        }
        Ok(merged_away)
    }

    /// Rewrites the blocks `g` as few page-sized ones (normally one); returns how many
    /// blocks fewer there are. Nothing changes when one of them is damaged: it is left
    /// as it is, for queries to skip, rather than stop all merging.
    fn merge_group(
        &self,
        t: &mut Tables<'_>,
        unit: &str,
        g: &[BlockMeta],
        enc: &mut Encoder,
    ) -> Result<usize> {
        let mut raws = Vec::with_capacity(g.len());
        for m in g {
            let bytes = t
                .blocks
                .get((unit, m.first_seq))
                .map_err(self.db_err("read block"))?
                .map(|v| v.value().to_vec());
            match bytes.as_deref().map(|b| (b[0], block::decompress(b))) {
                Some((codec, Ok(raw))) => raws.push((codec, raw)),
                _ => return Ok(0),
            }
        }
        let mut items = Vec::new();
        for ((codec, raw), m) in raws.iter().zip(g) {
            match block::view(*codec, raw) {
                Ok(decoded) if check_decoded(&decoded, m).is_ok() => items.extend(decoded.rows()),
                _ => return Ok(0),
            }
        }
        let wm = t.watermark_before(unit, g[0].first_seq)?;
        let mut old_bytes = 0u64;
        for m in g {
            t.remove_block(unit, m)?;
            old_bytes += m.stored_len as u64;
        }
        let before = t.blocks.len().map_err(self.db_err("count blocks"))?;
        let items: Vec<EncodeItem<'_>> = items.iter().map(item_of).collect();
        let added = write_blocks(t, enc, unit, &items, wm)?;
        let written = t.blocks.len().map_err(self.db_err("count blocks"))? - before;
        let sb = t.meta("stored_bytes")?;
        t.meta_set("stored_bytes", sb.saturating_sub(old_bytes) + added)?;
        Ok(g.len().saturating_sub(written as usize))
    }

    /// Number of blocks of `unit` (tests and benches look at merging with it).
    pub fn block_count(&self, unit: &str) -> Result<usize> {
        Ok(self.block_sizes(unit)?.len())
    }

    /// Per block of `unit`, in order: its entries, raw length and stored length (tests
    /// look at how blocks are sized with it).
    pub fn block_sizes(&self, unit: &str) -> Result<Vec<(u32, u32, u32)>> {
        let txn = self.read_txn()?;
        let bm = txn
            .open_table(BLOCK_META)
            .map_err(self.db_err("open table block_meta"))?;
        bm.range((unit, 0u64)..=(unit, u64::MAX))
            .map_err(self.db_err("read block_meta"))?
            .map(|r| {
                let (_, _, _, _, count, raw, stored) =
                    r.map_err(self.db_err("read block_meta"))?.1.value();
                Ok((count, raw, stored))
            })
            .collect()
    }
}

/// Encodes `items` (one unit's, in seq order) into blocks that each fill one
/// [`BLOCK_PAGE`] without spilling over, and puts them; `wm` is the unit's watermark
/// before them. Returns the stored bytes added.
///
/// How many entries fill a block is guessed from how the unit's last block
/// compressed, then corrected: a block over the target is encoded again with fewer
/// entries, one well under it with more (at most three tries before halving).
fn write_blocks(
    t: &mut Tables<'_>,
    enc: &mut Encoder,
    unit: &str,
    items: &[EncodeItem<'_>],
    mut wm: u64,
) -> Result<u64> {
    let path = t.path;
    let target = block_target(unit);
    let mut added = 0u64;
    let mut start = 0;
    while start < items.len() {
        let rest = &items[start..];
        let max = block_fit(rest);
        let want = (target as f64 * enc.ratio(unit)) as usize;
        let (mut n, mut est) = (0, 0);
        while n < max && (est < want || n == 0) {
            est += rest[n].estimate();
            n += 1;
        }
        let mut tries = 0;
        let (bytes, raw_len) = loop {
            let (bytes, raw_len) = enc
                .encode(rest[..n].iter().copied())
                .map_err(|e| JournalError::io("compress block for", path, e))?;
            tries += 1;
            let len = bytes.len();
            let fits = len <= target;
            if (fits && (len >= target * 7 / 8 || n == max || tries >= 3)) || (!fits && n == 1) {
                break (bytes, raw_len);
            }
            let scaled = (n as f64 * target as f64 * 0.96 / len as f64) as usize;
            n = if fits {
                scaled.clamp(n + 1, max)
            } else if tries >= 3 {
                n / 2
            } else {
                scaled.clamp(1, n - 1)
            };
        };
        let chunk = &rest[..n];
        enc.note_ratio(
            unit,
            chunk.iter().map(EncodeItem::estimate).sum(),
            bytes.len(),
        );
        let min_rt = chunk.iter().map(|e| e.realtime).min().unwrap_or(0);
        let max_rt = chunk.iter().map(|e| e.realtime).max().unwrap_or(0);
        wm = wm.max(max_rt);
        let m = BlockMeta {
            first_seq: chunk[0].seq,
            last_seq: chunk[n - 1].seq,
            min_rt,
            max_rt,
            watermark: wm,
            count: n as u32,
            raw_len: raw_len as u32,
            stored_len: bytes.len() as u32,
        };
        t.put_block(unit, &m, &bytes)?;
        added += bytes.len() as u64;
        start += n;
    }
    Ok(added)
}

/// How many of `items` (at least one) one block may take: at most [`MAX_BLOCK_ENTRIES`]
/// and [`MAX_BLOCK_RAW`] of text.
fn block_fit(items: &[EncodeItem<'_>]) -> usize {
    let mut text = 0;
    let n = items
        .iter()
        .take(MAX_BLOCK_ENTRIES)
        .take_while(|e| {
            text += e.estimate();
            text <= MAX_BLOCK_RAW
        })
        .count();
    n.max(1).min(items.len())
}

/// A damaged block can still decompress and decode (zstd frames of v1 carry no
/// checksum): its entries must be the ones its index row describes.
fn check_decoded(items: &View<'_>, m: &BlockMeta) -> std::result::Result<(), String> {
    if items.len() != m.count as usize {
        return Err(format!(
            "it decodes to {} entries, its index says {}",
            items.len(),
            m.count
        ));
    }
    let n = items.len();
    let in_order = items.seqs_ascending();
    let (first, last) = (
        (n > 0).then(|| items.seq(0)),
        (n > 0).then(|| items.seq(n - 1)),
    );
    if !in_order || first != Some(m.first_seq) || last != Some(m.last_seq) {
        return Err(format!(
            "its entries are not seqs {}..={} in order",
            m.first_seq, m.last_seq
        ));
    }
    Ok(())
}

fn corrupt(path: &Path, unit: &str, first_seq: u64, detail: &str) -> JournalError {
    JournalError::CorruptBlock {
        path: path.to_owned(),
        unit: unit.to_owned(),
        first_seq,
        detail: detail.to_owned(),
    }
}

fn meta_get(t: &redb::Table<&str, u64>, k: &str, path: &Path) -> Result<u64> {
    Ok(t.get(k)
        .map_err(|e| JournalError::db(path, "read meta", e))?
        .map(|g| g.value())
        .unwrap_or(0))
}

fn meta_get_ro(t: &redb::ReadOnlyTable<&str, u64>, k: &str, path: &Path) -> Result<u64> {
    Ok(t.get(k)
        .map_err(|e| JournalError::db(path, "read meta", e))?
        .map(|g| g.value())
        .unwrap_or(0))
}

fn open_all(txn: &WriteTransaction, path: &Path) -> Result<()> {
    Tables::open(txn, path).map(|_| ())
}

/// The tables of a write transaction.
struct Tables<'t> {
    path: &'t Path,
    meta: redb::Table<'t, &'static str, u64>,
    blocks: redb::Table<'t, (&'static str, u64), &'static [u8]>,
    block_meta: redb::Table<'t, (&'static str, u64), MetaTuple>,
    watermark: redb::Table<'t, (&'static str, u64, u64), ()>,
    seq_blocks: redb::Table<'t, u64, &'static str>,
    invocations: redb::Table<'t, u128, (&'static str, u64, u64)>,
    unit_invocations: redb::Table<'t, (&'static str, u64), u128>,
    units: redb::Table<'t, &'static str, (u64, u64)>,
}

impl<'t> Tables<'t> {
    fn open(txn: &'t WriteTransaction, path: &'t Path) -> Result<Tables<'t>> {
        let e = |what| move |e: redb::TableError| JournalError::db(path, what, e);
        Ok(Tables {
            path,
            meta: txn.open_table(META).map_err(e("open table meta"))?,
            blocks: txn.open_table(BLOCKS).map_err(e("open table blocks"))?,
            block_meta: txn
                .open_table(BLOCK_META)
                .map_err(e("open table block_meta"))?,
            watermark: txn
                .open_table(WATERMARK)
                .map_err(e("open table watermark"))?,
            seq_blocks: txn
                .open_table(SEQ_BLOCKS)
                .map_err(e("open table seq_blocks"))?,
            invocations: txn
                .open_table(INVOCATIONS)
                .map_err(e("open table invocations"))?,
            unit_invocations: txn
                .open_table(UNIT_INVOCATIONS)
                .map_err(e("open table unit_invocations"))?,
            units: txn.open_table(UNITS).map_err(e("open table units"))?,
        })
    }

    fn err<E: Into<redb::Error>>(&self, what: &'static str) -> impl Fn(E) -> JournalError + '_ {
        move |e| JournalError::db(self.path, what, e)
    }

    fn meta(&self, k: &str) -> Result<u64> {
        meta_get(&self.meta, k, self.path)
    }

    fn meta_set(&mut self, k: &str, v: u64) -> Result<()> {
        let path = self.path;
        self.meta
            .insert(k, v)
            .map_err(|e| JournalError::db(path, "write meta", e))?;
        Ok(())
    }

    fn last_watermark(&self, unit: &str) -> Result<u64> {
        let last = self
            .block_meta
            .range((unit, 0u64)..=(unit, u64::MAX))
            .map_err(self.err("read block_meta"))?
            .next_back();
        Ok(match last {
            Some(r) => r.map_err(self.err("read block_meta"))?.1.value().3,
            None => 0,
        })
    }

    /// The watermark of `unit`'s block before the one at `first_seq` (0 if none).
    fn watermark_before(&self, unit: &str, first_seq: u64) -> Result<u64> {
        let last = self
            .block_meta
            .range((unit, 0u64)..(unit, first_seq))
            .map_err(self.err("read block_meta"))?
            .next_back();
        Ok(match last {
            Some(r) => r.map_err(self.err("read block_meta"))?.1.value().3,
            None => 0,
        })
    }

    fn put_block(&mut self, unit: &str, m: &BlockMeta, bytes: &[u8]) -> Result<()> {
        let path = self.path;
        let e = |what| move |e: redb::StorageError| JournalError::db(path, what, e);
        self.blocks
            .insert((unit, m.first_seq), bytes)
            .map_err(e("write block"))?;
        self.block_meta
            .insert((unit, m.first_seq), m.tuple())
            .map_err(e("write block_meta"))?;
        self.watermark
            .insert((unit, m.watermark, m.first_seq), ())
            .map_err(e("write watermark"))?;
        self.seq_blocks
            .insert(m.first_seq, unit)
            .map_err(e("write seq_blocks"))?;
        Ok(())
    }

    /// Removes the oldest remaining block of `unit` for retention: its rows, its
    /// entries from `units`, and the invocations that ended inside it; `tally`
    /// counts it (the caller writes the totals to `meta` once, for all blocks).
    fn drop_block(&mut self, unit: &str, m: &BlockMeta, tally: &mut Tally) -> Result<()> {
        let path = self.path;
        let e = |what| move |e: redb::StorageError| JournalError::db(path, what, e);
        self.remove_block(unit, m)?;
        tally.stored = tally.stored.saturating_sub(m.stored_len as u64);
        tally.entries = tally.entries.saturating_sub(m.count as u64);
        tally.removed += m.count as u64;
        let (c, l) = self
            .units
            .get(unit)
            .map_err(self.err("read units"))?
            .map(|g| g.value())
            .unwrap_or((0, 0));
        let c = c.saturating_sub(m.count as u64);
        if c == 0 {
            self.units.remove(unit).map_err(e("write units"))?;
        } else {
            self.units.insert(unit, (c, l)).map_err(e("write units"))?;
        }
        // Invocations that ended inside what was removed are gone too.
        let gone: Vec<(u64, u128)> = self
            .unit_invocations
            .range((unit, 0u64)..=(unit, m.last_seq))
            .map_err(self.err("read unit_invocations"))?
            .filter_map(|r| r.ok().map(|(k, v)| (k.value().1, v.value())))
            .collect();
        for (f, inv) in gone {
            let last = self
                .invocations
                .get(inv)
                .map_err(self.err("read invocations"))?
                .map(|g| g.value().2);
            if last.is_none_or(|l| l <= m.last_seq) {
                self.invocations
                    .remove(inv)
                    .map_err(e("write invocations"))?;
                self.unit_invocations
                    .remove((unit, f))
                    .map_err(e("write unit_invocations"))?;
            }
        }
        Ok(())
    }

    fn remove_block(&mut self, unit: &str, m: &BlockMeta) -> Result<()> {
        let path = self.path;
        let e = |what| move |e: redb::StorageError| JournalError::db(path, what, e);
        self.blocks
            .remove((unit, m.first_seq))
            .map_err(e("remove block"))?;
        self.block_meta
            .remove((unit, m.first_seq))
            .map_err(e("remove block_meta"))?;
        self.watermark
            .remove((unit, m.watermark, m.first_seq))
            .map_err(e("remove watermark"))?;
        self.seq_blocks
            .remove(m.first_seq)
            .map_err(e("remove seq_blocks"))?;
        Ok(())
    }
}

/// The entries of a query, read lazily from one snapshot ([`Store::query_iter`]).
pub struct QueryIter {
    path: PathBuf,
    blocks: redb::ReadOnlyTable<(&'static str, u64), &'static [u8]>,
    cq: Arc<CompiledQuery>,
    cursors: Vec<UnitCursor>,
    /// Decodes blocks ahead when the query filters on the message.
    pool: Option<Pool>,
    /// (order key, cursor index, decoded): per unit, the seq of its next entry, or
    /// while its next block is not decoded yet, the bound its metadata gives (last_seq
    /// walking backwards, first_seq forwards). A block is decoded only when its bound
    /// comes to the top, so units that cannot contribute are never decompressed.
    heap: BinaryHeap<(u64, usize, bool)>,
    decoder: Decoder,
    backward: bool,
    remaining: usize,
    /// The newest N, gathered and turned oldest-first.
    gathered: Option<std::vec::IntoIter<Entry>>,
    /// Blocks that could not be decoded and were passed over.
    skipped: Skipped,
    // Keeps the snapshot alive for the tables and ranges above; last, so that it
    // is released after them.
    _txn: Snapshot,
}

/// What a query passed over because it could not be decoded ([`QueryIter::skipped`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Skipped {
    /// Damaged blocks skipped.
    pub blocks: u64,
    /// Entries their index rows say they held.
    pub entries: u64,
    /// What was wrong with the first of them.
    pub first_error: Option<String>,
}

impl QueryIter {
    /// The damaged blocks passed over so far (all of them once the iterator is done).
    pub fn skipped(&self) -> &Skipped {
        &self.skipped
    }

    fn key(&self, seq: u64) -> u64 {
        if self.backward { seq } else { u64::MAX - seq }
    }

    /// Puts cursor `i` back on the heap by its next entry or its next block's bound.
    fn push_next(&mut self, i: usize) -> Result<()> {
        let backward = self.backward;
        let c = &mut self.cursors[i];
        if let Some(seq) = c.head() {
            let k = self.key(seq);
            self.heap.push((k, i, true));
        } else if let Some(bound) = c.next_bound(
            backward,
            &LoadCtx {
                blocks: &self.blocks,
                cq: &self.cq,
                path: &self.path,
                pool: self.pool.as_ref(),
            },
        )? {
            let k = self.key(bound);
            self.heap.push((k, i, false));
        }
        Ok(())
    }

    fn step(&mut self) -> Result<Option<Entry>> {
        while let Some((_, i, decoded)) = self.heap.pop() {
            if decoded {
                let e = self.cursors[i].pop();
                self.push_next(i)?;
                return Ok(Some(e));
            }
            let count = self.cursors[i].ahead.front().map_or(0, |a| a.meta.count);
            let ctx = LoadCtx {
                blocks: &self.blocks,
                cq: &self.cq,
                path: &self.path,
                pool: self.pool.as_ref(),
            };
            match self.cursors[i].load(&ctx, &mut self.decoder) {
                Ok(()) => {}
                // One damaged block must not hide the rest of the journal: it is
                // passed over and counted, and the caller says so.
                Err(e @ JournalError::CorruptBlock { .. }) => {
                    self.skipped.blocks += 1;
                    self.skipped.entries += count as u64;
                    self.skipped
                        .first_error
                        .get_or_insert_with(|| e.to_string());
                }
                Err(e) => return Err(e),
            }
            self.push_next(i)?;
        }
        Ok(None)
    }
}

impl Iterator for QueryIter {
    type Item = Result<Entry>;

    fn next(&mut self) -> Option<Result<Entry>> {
        if let Some(g) = &mut self.gathered {
            return g.next().map(Ok);
        }
        if self.remaining == 0 {
            return None;
        }
        match self.step() {
            Ok(Some(e)) => {
                self.remaining -= 1;
                Some(Ok(e))
            }
            Ok(None) => None,
            Err(err) => {
                self.remaining = 0;
                Some(Err(err))
            }
        }
    }
}

/// Walks one unit's blocks in a seq window, decoding lazily, yielding filtered entries.
struct UnitCursor {
    unit: String,
    /// This unit's seq window (cursors, invocation): blocks may reach past it.
    lo: u64,
    hi: u64,
    metas: redb::Range<'static, (&'static str, u64), MetaTuple>,
    /// The decompressed current block; `slots` point into it.
    raw: Vec<u8>,
    /// Filtered entries of the current block in reverse walking order (`pop` from the
    /// end is always next); owned entries are only built for those popped.
    slots: Vec<Slot>,
    /// The next blocks to decode, found from metadata, the first at the front.
    ahead: VecDeque<Ahead>,
    backward: bool,
    done: bool,
}

/// A block a cursor will decode next, and the pool's answer when it decodes it.
struct Ahead {
    meta: BlockMeta,
    /// Its job id in the pool.
    job: Option<u64>,
}

/// What a cursor needs to read and decode blocks.
struct LoadCtx<'a> {
    blocks: &'a redb::ReadOnlyTable<(&'static str, u64), &'static [u8]>,
    cq: &'a Arc<CompiledQuery>,
    path: &'a Path,
    pool: Option<&'a Pool>,
}

/// A decoded block's kept entries: its raw payload and, per entry, ranges into it.
struct Loaded {
    raw: Vec<u8>,
    slots: Vec<Slot>,
}

/// Decompresses and decodes block `m` of `unit` and keeps, in seq order, its entries
/// in `lo..=hi` that `cq` selects.
fn filter_block(
    bytes: &[u8],
    m: &BlockMeta,
    unit: &str,
    lo: u64,
    hi: u64,
    cq: &CompiledQuery,
    dec: &mut Decoder,
) -> std::result::Result<Loaded, String> {
    let codec = bytes.first().copied().unwrap_or(0);
    block::decompress_into(&mut dec.zstd, bytes, &mut dec.scratch)?;
    let raw = &dec.scratch;
    let items = if cq.scans_messages() {
        block::view_for_scan(codec, raw)?
    } else {
        block::view(codec, raw)?
    };
    check_decoded(&items, m)?;
    let mut kept = cq.select(unit, &items);
    kept.retain(|e| e.seq >= lo && e.seq <= hi);
    // A cursor holds its block until its entries are taken, and a query over many
    // units holds one per unit: when few entries are kept, only their bytes are, and
    // the decompression buffer is used again for the next block (a 50-unit time
    // window kept 50 whole blocks, ~5 MB of fresh pages, for 10 k entries).
    if kept.len() * 2 > items.len() {
        let slots = kept.iter().map(|e| Slot::new(raw, e)).collect();
        drop(kept);
        drop(items);
        return Ok(Loaded {
            raw: std::mem::take(&mut dec.scratch),
            slots,
        });
    }
    let size = kept
        .iter()
        .map(|e| e.identifier.len() + e.comm.len() + e.message.len())
        .sum();
    let mut compact = Vec::with_capacity(size);
    let slots = kept
        .iter()
        .map(|e| {
            let mut s = Slot::new(raw, e);
            let mut put = |b: &[u8]| {
                compact.extend_from_slice(b);
                compact.len() - b.len()..compact.len()
            };
            s.identifier = put(e.identifier.as_bytes());
            s.comm = put(e.comm.as_bytes());
            s.message = put(e.message);
            s
        })
        .collect();
    Ok(Loaded {
        raw: compact,
        slots,
    })
}

/// A thread's zstd context and the buffer it decompresses blocks into.
struct Decoder {
    zstd: zstd::bulk::Decompressor<'static>,
    scratch: Vec<u8>,
}

impl Decoder {
    fn new() -> std::io::Result<Decoder> {
        Ok(Decoder {
            zstd: zstd::bulk::Decompressor::new()?,
            scratch: Vec::new(),
        })
    }
}

/// A block handed to the [`Pool`]: redb's guard of its bytes (the decoding thread
/// reads the page; the block is not copied on the reading thread) and the window
/// of its cursor.
struct Job {
    id: u64,
    bytes: redb::AccessGuard<'static, &'static [u8]>,
    meta: BlockMeta,
    unit: String,
    lo: u64,
    hi: u64,
}

impl Job {
    fn run(&self, cq: &CompiledQuery, dec: &mut Decoder) -> std::result::Result<Loaded, String> {
        filter_block(
            self.bytes.value(),
            &self.meta,
            &self.unit,
            self.lo,
            self.hi,
            cq,
            dec,
        )
    }
}

/// The pool's queue and answers, behind one mutex held only to move a job or an answer.
#[derive(Default)]
struct PoolState {
    queue: VecDeque<Job>,
    done: Vec<(u64, std::result::Result<Loaded, String>)>,
    /// Pool threads asleep for want of a job: only then does `submit` wake one.
    idle: usize,
    /// The reading thread is asleep for want of an answer.
    waiting: bool,
    closed: bool,
    next_id: u64,
}

struct PoolShared {
    state: Mutex<PoolState>,
    work: Condvar,
    answered: Condvar,
    cq: Arc<CompiledQuery>,
}

impl PoolShared {
    fn lock(&self) -> std::sync::MutexGuard<'_, PoolState> {
        // A panicking decoder leaves its job unanswered, never the state half made.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Threads that decode blocks ahead of a query that filters on the message (`-g`):
/// then decompressing is most of the query's time, most entries are dropped, and
/// blocks are independent of each other. One thread per CPU but one: the query's own
/// thread reads the blocks from redb, decodes queued blocks itself rather than wait
/// for the one it needs, and merges the results in order. A thread per CPU beside
/// the reading thread made it sleep and wake for nearly every block, and the pool
/// threads be preempted by it, ~10% of the query's CPU in context switches.
struct Pool {
    shared: Arc<PoolShared>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Pool {
    /// Blocks a cursor keeps handed to the pool ahead of the one it reads.
    const AHEAD: usize = 8;

    /// A pool of one thread per CPU but one; `None` on a single CPU or if no thread
    /// starts.
    fn new(cq: Arc<CompiledQuery>) -> Option<Pool> {
        let n = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
        let shared = Arc::new(PoolShared {
            state: Mutex::new(PoolState::default()),
            work: Condvar::new(),
            answered: Condvar::new(),
            cq,
        });
        let mut threads = Vec::new();
        for _ in 1..n {
            let Ok(mut decoder) = Decoder::new() else {
                break;
            };
            let sh = shared.clone();
            let t = std::thread::Builder::new()
                .name("journal-decode".into())
                .spawn(move || {
                    while let Some(job) = sh.next_job() {
                        // A panic must not leave the reading thread waiting for
                        // this answer; the thread then ends and the reading
                        // thread decodes what is left itself.
                        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            job.run(&sh.cq, &mut decoder)
                        }));
                        let ok = r.is_ok();
                        sh.answer(
                            job.id,
                            r.unwrap_or_else(|_| Err("the decoding thread panicked".into())),
                        );
                        if !ok {
                            return;
                        }
                    }
                });
            match t {
                Ok(t) => threads.push(t),
                Err(_) => break,
            }
        }
        (!threads.is_empty()).then_some(Pool { shared, threads })
    }

    /// Queues a block; its answer is taken with [`Self::take`] and the id returned.
    fn submit(
        &self,
        bytes: redb::AccessGuard<'static, &'static [u8]>,
        meta: BlockMeta,
        unit: &str,
        lo: u64,
        hi: u64,
    ) -> u64 {
        let mut st = self.shared.lock();
        let id = st.next_id;
        st.next_id += 1;
        st.queue.push_back(Job {
            id,
            bytes,
            meta,
            unit: unit.to_owned(),
            lo,
            hi,
        });
        // Woken after the unlock: a thread woken under the lock finds it held, sleeps
        // on the mutex and is woken once more (two futex calls per block under load).
        let wake = st.idle > 0;
        drop(st);
        if wake {
            self.shared.work.notify_one();
        }
        id
    }

    /// The answer for job `id`: decoded here if no thread took it yet; while a thread
    /// decodes it, the other queued jobs are decoded here, and only when none is left
    /// does this thread sleep.
    fn take(&self, id: u64, dec: &mut Decoder) -> std::result::Result<Loaded, String> {
        let sh = &*self.shared;
        let mut st = sh.lock();
        loop {
            if let Some(k) = st.done.iter().position(|(j, _)| *j == id) {
                return st.done.swap_remove(k).1;
            }
            if let Some(k) = st.queue.iter().position(|j| j.id == id) {
                let job = st.queue.remove(k).expect("position is in the queue");
                drop(st);
                return job.run(&sh.cq, dec);
            }
            if let Some(job) = st.queue.pop_front() {
                drop(st);
                let r = job.run(&sh.cq, dec);
                st = sh.lock();
                st.done.push((job.id, r));
                continue;
            }
            st.waiting = true;
            st = sh.answered.wait(st).unwrap_or_else(|p| p.into_inner());
            st.waiting = false;
        }
    }
}

impl PoolShared {
    /// A pool thread's next job; `None` once the pool is dropped.
    fn next_job(&self) -> Option<Job> {
        let mut st = self.lock();
        loop {
            if let Some(job) = st.queue.pop_front() {
                return Some(job);
            }
            if st.closed {
                return None;
            }
            st.idle += 1;
            st = self.work.wait(st).unwrap_or_else(|p| p.into_inner());
            st.idle -= 1;
        }
    }

    fn answer(&self, id: u64, r: std::result::Result<Loaded, String>) {
        let mut st = self.lock();
        st.done.push((id, r));
        let wake = st.waiting;
        drop(st);
        if wake {
            self.answered.notify_one();
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.work.notify_all();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// A decoded entry whose strings are ranges of the cursor's raw block.
struct Slot {
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
    identifier: std::ops::Range<usize>,
    comm: std::ops::Range<usize>,
    message_id: u128,
    message: std::ops::Range<usize>,
}

fn range_in(raw: &[u8], part: &[u8]) -> std::ops::Range<usize> {
    // An absent field (an older codec's) is a `""` that does not point into `raw`.
    if part.is_empty() {
        return 0..0;
    }
    let start = part.as_ptr() as usize - raw.as_ptr() as usize;
    start..start + part.len()
}

impl Slot {
    fn new(raw: &[u8], r: &StoredRef<'_>) -> Slot {
        Slot {
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
            identifier: range_in(raw, r.identifier.as_bytes()),
            comm: range_in(raw, r.comm.as_bytes()),
            message_id: r.message_id,
            message: range_in(raw, r.message),
        }
    }
}

impl UnitCursor {
    /// The seq of the next decoded entry, if any.
    fn head(&self) -> Option<u64> {
        self.slots.last().map(|e| e.seq)
    }

    /// Finds the next block that may hold matches (metadata only) and returns its bound.
    /// With a pool, the blocks after it (up to [`Pool::AHEAD`]) are handed to it to
    /// decode meanwhile.
    fn next_bound(&mut self, backward: bool, ctx: &LoadCtx<'_>) -> Result<Option<u64>> {
        self.backward = backward;
        let want = if ctx.pool.is_some() { Pool::AHEAD } else { 1 };
        while self.ahead.len() < want && !self.done {
            let next = if backward {
                self.metas.next_back()
            } else {
                self.metas.next()
            };
            let Some(r) = next else {
                self.done = true;
                break;
            };
            let (k, v) = r.map_err(|e| JournalError::db(ctx.path, "read block_meta", e))?;
            let m = BlockMeta::from_tuple(k.value().1, v.value());
            if m.last_seq < self.lo || m.first_seq > self.hi {
                continue;
            }
            if ctx.cq.since.is_some_and(|since| m.max_rt < since) {
                continue;
            }
            if ctx.cq.until.is_some_and(|until| m.min_rt > until) {
                if !backward {
                    self.done = true;
                }
                continue;
            }
            let job = match ctx.pool {
                Some(pool) => self.submit(pool, &m, ctx)?,
                None => None,
            };
            self.ahead.push_back(Ahead { meta: m, job });
        }
        Ok(self.ahead.front().map(|a| {
            if backward {
                a.meta.last_seq
            } else {
                a.meta.first_seq
            }
        }))
    }

    /// Hands block `m` to the pool; `None` (decoded in [`Self::load`], which reports
    /// it) when its row is missing.
    fn submit(&self, pool: &Pool, m: &BlockMeta, ctx: &LoadCtx<'_>) -> Result<Option<u64>> {
        // The guard goes to the decoding thread: it owns the block's page, so the
        // block is not copied on the reading thread.
        let Some(bytes) = ctx
            .blocks
            .get((self.unit.as_str(), m.first_seq))
            .map_err(|e| JournalError::db(ctx.path, "read block", e))?
        else {
            return Ok(None);
        };
        Ok(Some(pool.submit(bytes, *m, &self.unit, self.lo, self.hi)))
    }

    /// Decodes the block found by [`Self::next_bound`] (or takes what the pool made
    /// of it), keeping the matching entries.
    fn load(&mut self, ctx: &LoadCtx<'_>, dec: &mut Decoder) -> Result<()> {
        let Some(Ahead { meta: m, job }) = self.ahead.pop_front() else {
            return Ok(());
        };
        let (path, unit) = (ctx.path, self.unit.as_str());
        let loaded = match (job, ctx.pool) {
            (Some(id), Some(pool)) => pool.take(id, dec),
            _ => {
                let bytes = ctx
                    .blocks
                    .get((unit, m.first_seq))
                    .map_err(|e| JournalError::db(path, "read block", e))?
                    .ok_or_else(|| corrupt(path, unit, m.first_seq, "block row missing"))?;
                filter_block(bytes.value(), &m, unit, self.lo, self.hi, ctx.cq, dec)
            }
        }
        .map_err(|d| corrupt(path, unit, m.first_seq, &d))?;
        self.raw = loaded.raw;
        // Kept in reverse walking order, so the next entry is always at the end.
        self.slots = loaded.slots;
        if !self.backward {
            self.slots.reverse();
        }
        Ok(())
    }

    fn pop(&mut self) -> Entry {
        let s = self.slots.pop().expect("peek said an entry is there");
        Entry {
            seq: s.seq,
            realtime: s.realtime,
            monotonic: s.monotonic,
            boot_id: s.boot_id,
            uid: s.uid,
            unit: self.unit.clone(),
            invocation: s.invocation,
            pid: s.pid,
            stream: Stream::from_code(s.stream),
            priority: s.priority,
            identifier: String::from_utf8_lossy(&self.raw[s.identifier]).into_owned(),
            comm: String::from_utf8_lossy(&self.raw[s.comm]).into_owned(),
            message_id: s.message_id,
            message: self.raw[s.message].to_vec(),
            flags: s.flags,
        }
    }
}
