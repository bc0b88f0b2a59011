//! The single writer: two dedicated threads. The first stages entries (seqs, times)
//! and appends them to the side log ([`super::sidelog`]), which gives their budget
//! back to the producers; the second commits them in groups (durable, fsync'd), tells
//! followers how far the store is committed, and runs merging and retention when idle.
//! Producers are back-pressured through a bounded byte budget.

use std::collections::{BTreeSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot, watch};

use super::NewEntry;
use super::block::Encoder;
use super::error::{JournalError, Result};
use super::sidelog::SideLog;
use super::store::{DiskUsage, Staged, Store, VacuumReport};

/// The default byte budget of lines read but not yet in the side log ([`WriterOptions::queue_bytes`]):
/// what a kill -9 of the writer's process can lose of its services' output, besides each
/// pipe's unfinished line (docs/JOURNAL-FORMAT.md, "What a crash loses").
///
/// With the side log, the budget only spans a read and its append to the side log
/// (a few reads of at most 64 KiB in flight), so it can be small without slowing ingest.
pub const WINDOW_BYTES: usize = 128 * 1024;

/// The default of [`WriterOptions::commit_bytes`]: entries in the side log but not yet
/// committed, beyond which producers keep their budget until the commit; what a machine
/// crash can lose on top of [`WINDOW_BYTES`].
pub const COMMIT_WINDOW_BYTES: usize = 4 * 1024 * 1024;

/// Tuning of the writer.
#[derive(Debug, Clone)]
pub struct WriterOptions {
    /// Commit at most this long after the first entry of a group arrived.
    pub commit_interval: Duration,
    /// Commit as soon as this many entries are pending.
    pub commit_entries: usize,
    /// One commit takes at most this many entries (what piled up during the last fsync).
    pub max_batch_entries: usize,
    /// Bytes read but not yet in the side log (or, without one, not yet committed),
    /// each entry counted as its message plus 4, at least 64; producers wait beyond it.
    /// This is the window a kill -9 of the process can lose.
    pub queue_bytes: usize,
    /// Bytes in the side log but not yet committed beyond which the budget of a new
    /// batch is given back only at its commit (as without a side log): bounds memory
    /// and what a machine crash can lose.
    pub commit_bytes: usize,
    /// Whether to keep a side log (docs/JOURNAL-FORMAT.md, "The side log"); without one,
    /// the budget is given back only when entries are committed.
    pub side_log: bool,
    /// Boot id stamped on entries (default: the kernel's).
    pub boot_id: Option<u128>,
    /// Uid stamped on entries (default: our own).
    pub uid: Option<u32>,
    /// After this long without entries, merge small blocks, enforce retention, compact.
    pub idle_after: Duration,
    /// While busy, merge small blocks this often (a unit logging a few lines per commit
    /// leaves one tiny block per commit; the writer may never be idle).
    pub merge_interval: Duration,
    /// Blocks one merge pass may rewrite while busy (bounds the pause of ingest).
    pub merge_budget: usize,
    /// Say on stderr when writing starts failing and when it works again (the
    /// manager's writer does; the journal entries about it are written either way).
    pub log_stalls: bool,
    /// The shortest time between two reopens that give redb's page cache
    /// back once idle after a burst (`WriterThread::drop_cache`): a service
    /// that logs in bursts a second apart would otherwise have the store
    /// closed and opened, three fsyncs, after each.
    pub cache_drop_interval: Duration,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions {
            commit_interval: Duration::from_millis(5),
            // A lower bound: a commit takes whatever piled up during the last one.
            commit_entries: 16 * 1024,
            max_batch_entries: 256 * 1024,
            queue_bytes: WINDOW_BYTES,
            commit_bytes: COMMIT_WINDOW_BYTES,
            side_log: true,
            boot_id: None,
            uid: None,
            idle_after: Duration::from_secs(1),
            merge_interval: Duration::from_secs(1),
            merge_budget: 4096,
            log_stalls: false,
            cache_drop_interval: Duration::from_secs(600),
        }
    }
}

/// Whether the writer is keeping up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriterStatus {
    /// Commits succeed.
    Ok,
    /// Commits fail (disk full, I/O error); producers are held back and the writer retries.
    Stalled {
        /// The last error.
        error: String,
        /// Since when, µs since the epoch.
        since_usec: u64,
        /// The units whose output waits meanwhile.
        waiting: Vec<String>,
    },
}

impl WriterStatus {
    /// One line for `corral status` when writing fails; `None` when it works.
    pub fn describe(&self) -> Option<String> {
        let WriterStatus::Stalled {
            error,
            since_usec,
            waiting,
        } = self
        else {
            return None;
        };
        let secs = super::realtime_now().saturating_sub(*since_usec) / 1_000_000;
        let mut line = format!("writes blocked for {secs} s: {error}");
        if !waiting.is_empty() {
            line.push_str(&format!("; output waiting: {}", waiting.join(", ")));
        }
        Some(line)
    }
}

/// A time when commits failed: when it began and who waited, for the message once
/// writing works again.
struct Stall {
    since: Instant,
    since_usec: u64,
    first_error: String,
    units: BTreeSet<String>,
}

/// A handle's request that the staging thread passes on as it is, in order
/// with the entries, for the committing thread to answer.
enum Ask {
    Flush(oneshot::Sender<u64>),
    Maintain(oneshot::Sender<Result<MaintenanceReport, String>>),
    DiskUsage(oneshot::Sender<Result<DiskUsage>>),
    Vacuum {
        max_bytes: Option<u64>,
        max_age: Option<Duration>,
        reply: oneshot::Sender<Result<VacuumReport>>,
    },
}

/// What the handles (and the committing thread) ask of the staging thread.
enum Cmd {
    Append(Vec<NewEntry>, Option<OwnedSemaphorePermit>),
    /// A commit ended: side log files it covers can go.
    Covered,
    Ask(Ask),
    Shutdown(oneshot::Sender<()>),
}

/// What the staging thread hands to the committing thread, in order.
enum Job {
    /// Entries with their seqs, their cost, and the producer's budget when it is
    /// given back only at the commit.
    Staged(Vec<Staged>, u64, Option<OwnedSemaphorePermit>),
    Ask(Ask),
    Shutdown(oneshot::Sender<()>),
}

/// What a maintenance pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MaintenanceReport {
    /// Blocks merged away.
    pub merged_blocks: usize,
    /// Entries removed by retention.
    pub removed_entries: u64,
    /// Whether the file was compacted.
    pub compacted: bool,
}

/// Starts writers.
pub struct Writer;

/// A cloneable handle to the writer thread.
#[derive(Clone)]
pub struct WriterHandle {
    tx: tokio::sync::mpsc::UnboundedSender<Cmd>,
    permits: Arc<Semaphore>,
    queue_bytes: u32,
    committed: watch::Receiver<u64>,
    status: watch::Receiver<WriterStatus>,
    store: Store,
    thread: Arc<Mutex<Option<JoinHandle<()>>>>,
    /// Units whose producers found the byte budget used up while commits failed: they
    /// wait outside the writer's queue, where the writer would not see them.
    waiting: Arc<Mutex<BTreeSet<String>>>,
    /// The largest window of uncommitted entries seen so far.
    seen: Arc<Seen>,
    /// Idle passes after work (the test's way to know one went by).
    #[cfg(test)]
    idle_passes: watch::Receiver<u64>,
}

/// Budget taken by a pipe reader before it reads ([`WriterHandle::reserve`]), so that
/// what it reads is counted in the window from the moment it leaves the pipe.
pub struct Reservation(OwnedSemaphorePermit);

/// The largest window of uncommitted entries a writer has seen: what a crash at its worst
/// moment so far would have lost ([`WriterHandle::window_seen`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WindowSeen {
    /// Budget in use (bytes as [`WriterOptions::queue_bytes`] counts them) when a commit
    /// ended: read, not yet in the side log (what a kill -9 loses).
    pub bytes: u64,
    /// Bytes (counted alike) of the largest commit: in the side log, not yet committed
    /// (what a machine crash loses on top).
    pub commit_bytes: u64,
    /// The longest time from an entry's monotonic stamp (its read) to the end of its commit, µs.
    pub age_usec: u64,
}

#[derive(Default)]
struct Seen {
    bytes: AtomicU64,
    commit_bytes: AtomicU64,
    age_usec: AtomicU64,
}

impl Writer {
    /// Starts the writer thread of `store` (which must be opened with [`Store::open`]).
    pub fn spawn(store: Store, opts: WriterOptions) -> Result<WriterHandle> {
        let next_seq = store.next_seq()?;
        let enc =
            Encoder::new().map_err(|e| JournalError::io("create encoder for", store.path(), e))?;
        let (tx, front_rx) = tokio::sync::mpsc::unbounded_channel();
        let (back_tx, rx) = mpsc::channel();
        let unsaved = Arc::new(AtomicU64::new(0));
        let boot_id = opts.boot_id.unwrap_or_else(super::boot_id);
        let uid = opts.uid.unwrap_or_else(|| nix::unistd::getuid().as_raw());
        let queue_bytes = opts.queue_bytes.clamp(1024, u32::MAX as usize) as u32;
        let permits = Arc::new(Semaphore::new(queue_bytes as usize));
        let (committed_tx, committed) = watch::channel(next_seq);
        let (status_tx, status) = watch::channel(WriterStatus::Ok);
        let waiting = Arc::new(Mutex::new(BTreeSet::new()));
        let seen = Arc::new(Seen::default());
        #[cfg(test)]
        let (idle_passes_tx, idle_passes) = watch::channel(0);
        let mut w = WriterThread {
            waiting: waiting.clone(),
            budget: permits.clone(),
            queue_bytes,
            seen: seen.clone(),
            held: VecDeque::new(),
            stall: None,
            store: store.clone(),
            rx,
            front: tx.downgrade(),
            unsaved: unsaved.clone(),
            pending_cost: 0,
            committed: committed_tx,
            status: status_tx,
            opts: opts.clone(),
            next_seq,
            enc,
            pending: Vec::new(),
            permits: Vec::new(),
            flushers: Vec::new(),
            last_retention: Instant::now(),
            last_merge: Instant::now(),
            since_cache_drop: 0,
            last_cache_drop: None,
            #[cfg(test)]
            idle_passes: idle_passes_tx,
        };
        let spawn_err = |e| JournalError::io("spawn writer thread for", store.path(), e);
        let back = std::thread::Builder::new()
            .name("journal-commit".into())
            .spawn(move || w.run())
            .map_err(spawn_err)?;
        let front = Front {
            rx: front_rx,
            back: Some(back_tx),
            back_thread: Some(back),
            side: opts
                .side_log
                .then(|| SideLog::new(store.path(), store.store_id())),
            side_failed: false,
            log: opts.log_stalls,
            next_seq,
            boot_id,
            uid,
            unsaved,
            commit_bytes: opts.commit_bytes as u64,
            committed: committed.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("journal-writer".into())
            .spawn(move || front.run())
            .map_err(spawn_err)?;
        Ok(WriterHandle {
            tx,
            permits,
            queue_bytes,
            committed,
            status,
            store,
            thread: Arc::new(Mutex::new(Some(thread))),
            waiting,
            seen,
            #[cfg(test)]
            idle_passes,
        })
    }
}

/// What an entry counts against the budget: at least the bytes it was read from (its
/// message, a `<N>` prefix and the newline), so the budget bounds the output a crash can
/// lose; and at least 64, so that a flood of empty lines cannot pile up more than
/// budget/64 entries (each takes ~200 bytes of memory whatever its length).
fn cost(e: &NewEntry) -> usize {
    (e.message.len() + 4).max(64)
}

impl WriterHandle {
    fn gone(&self) -> JournalError {
        JournalError::WriterGone {
            path: self.store.path().to_owned(),
        }
    }

    /// Hands one entry to the writer; waits while the writer is behind (back-pressure).
    pub async fn append(&self, e: NewEntry) -> Result<()> {
        self.append_batch(vec![e]).await
    }

    /// Hands a batch to the writer; waits while the writer is behind (back-pressure).
    /// Returns once queued; [`Self::flush`] waits for durability.
    pub async fn append_batch(&self, batch: Vec<NewEntry>) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let c: usize = batch.iter().map(cost).sum();
        let permit = self.acquire(c, batch.iter().map(|e| &*e.unit)).await?;
        self.tx
            .send(Cmd::Append(batch, Some(permit)))
            .map_err(|_| self.gone())
    }

    /// Takes `bytes` of the budget (at least 1, at most all of it), waiting while the
    /// writer is behind. A pipe reader of `unit` reserves what it is about to read
    /// before reading it: while it waits, the output stays in the pipe, where a crash of
    /// this process does not lose it, and the service blocks on the full pipe.
    pub async fn reserve(&self, unit: &str, bytes: usize) -> Result<Reservation> {
        self.acquire(bytes.max(1), std::iter::once(unit))
            .await
            .map(Reservation)
    }

    /// Hands a batch read under `r` to the writer. The reservation is trimmed to what
    /// the batch costs (bytes that went into an unfinished line are not counted: each
    /// pipe's line being assembled is outside the budget). A batch of short lines may
    /// cost more than the bytes reserved for it: it takes the rest if it is free, else
    /// it goes anyway and the call waits until the writer has that much room, holding
    /// nothing meanwhile (readers waiting while holding part of the budget could
    /// block each other for good).
    pub async fn append_reserved(&self, batch: Vec<NewEntry>, r: Reservation) -> Result<()> {
        let Reservation(mut permit) = r;
        if batch.is_empty() {
            return Ok(());
        }
        let need = batch
            .iter()
            .map(cost)
            .sum::<usize>()
            .min(self.queue_bytes as usize);
        let held = permit.num_permits();
        let mut debt = 0;
        if need < held {
            drop(permit.split(held - need));
        } else if need > held {
            match self
                .permits
                .clone()
                .try_acquire_many_owned((need - held) as u32)
            {
                Ok(more) => permit.merge(more),
                Err(_) => debt = need - held,
            }
        }
        self.tx
            .send(Cmd::Append(batch, Some(permit)))
            .map_err(|_| self.gone())?;
        if debt > 0 {
            drop(
                self.permits
                    .acquire_many(debt as u32)
                    .await
                    .map_err(|_| self.gone())?,
            );
        }
        Ok(())
    }

    /// Takes `bytes` of the budget (at most all of it) for entries of `units`; noting
    /// them as waiting when commits fail and the budget is used up.
    async fn acquire(
        &self,
        bytes: usize,
        units: impl Iterator<Item = &str>,
    ) -> Result<OwnedSemaphorePermit> {
        let n = bytes.min(self.queue_bytes as usize) as u32;
        match self.permits.clone().try_acquire_many_owned(n) {
            Ok(p) => Ok(p),
            Err(_) => {
                if matches!(*self.status.borrow(), WriterStatus::Stalled { .. }) {
                    let mut w = self.waiting.lock().expect("waiting lock poisoned");
                    w.extend(units.map(str::to_string));
                }
                self.permits
                    .clone()
                    .acquire_many_owned(n)
                    .await
                    .map_err(|_| self.gone())
            }
        }
    }

    /// The largest window of uncommitted entries this writer has seen so far.
    pub fn window_seen(&self) -> WindowSeen {
        WindowSeen {
            bytes: self.seen.bytes.load(Ordering::Relaxed),
            commit_bytes: self.seen.commit_bytes.load(Ordering::Relaxed),
            age_usec: self.seen.age_usec.load(Ordering::Relaxed),
        }
    }

    /// Waits until everything appended before this call is committed and durable;
    /// returns the next sequence number the store will assign.
    pub async fn flush(&self) -> Result<u64> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Cmd::Ask(Ask::Flush(tx)))
            .map_err(|_| self.gone())?;
        rx.await.map_err(|_| self.gone())
    }

    /// Runs merging of small blocks, retention and (when over MaxUse) compaction now.
    pub async fn maintain(&self) -> Result<MaintenanceReport> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Cmd::Ask(Ask::Maintain(tx)))
            .map_err(|_| self.gone())?;
        match rx.await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => Err(JournalError::Maintenance(e)),
            Err(_) => Err(self.gone()),
        }
    }

    /// The store's disk usage, measured on the writer thread (so never in the middle of
    /// a vacuum or a commit).
    pub async fn disk_usage(&self) -> Result<DiskUsage> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Cmd::Ask(Ask::DiskUsage(tx)))
            .map_err(|_| self.gone())?;
        rx.await.map_err(|_| self.gone())?
    }

    /// `--vacuum-time`/`--vacuum-size` for a client of the manager ([`Store::vacuum`]):
    /// the writer thread commits what is pending, then vacuums. Producers wait on the
    /// byte budget meanwhile; nothing they hand in is lost.
    pub async fn vacuum(
        &self,
        max_bytes: Option<u64>,
        max_age: Option<Duration>,
    ) -> Result<VacuumReport> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Cmd::Ask(Ask::Vacuum {
                max_bytes,
                max_age,
                reply,
            }))
            .map_err(|_| self.gone())?;
        rx.await.map_err(|_| self.gone())?
    }

    /// How far the store is committed: every entry below the value is in it. Followers
    /// (`-f`) wait on this and read the entries from the store, so a follower that does
    /// not keep up costs no memory here (nothing is queued for it).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.committed.clone()
    }

    /// Whether commits currently succeed.
    pub fn status(&self) -> watch::Receiver<WriterStatus> {
        self.status.clone()
    }

    /// What `corral status` says about the journal: `None` while commits succeed.
    pub fn problem(&self) -> Option<String> {
        self.status.borrow().describe()
    }

    /// The store this writer writes.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Commits what is pending and stops the writer thread (other handles then fail).
    pub async fn shutdown(&self) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Cmd::Shutdown(tx)).is_ok() {
            let _ = rx.await;
        }
        let t = self.thread.lock().expect("writer thread lock").take();
        if let Some(t) = t {
            tokio::task::spawn_blocking(move || t.join())
                .await
                .map_err(|_| self.gone())?
                .map_err(|_| self.gone())?;
        }
        Ok(())
    }
}

/// Entries committed since the last [`WriterThread::drop_cache`] beyond which
/// the next idle moment gives redb's page cache back.
const CACHE_DROP_ENTRIES: usize = 64;

/// Whether an idle writer gives redb's cache back now: after a burst (not a
/// trickle), and not within `interval` of the last time (`since_last`).
fn cache_drop_due(entries: usize, since_last: Option<Duration>, interval: Duration) -> bool {
    entries >= CACHE_DROP_ENTRIES && since_last.is_none_or(|d| d >= interval)
}

/// After a burst: the staging buffer grew to the largest batch (up to
/// `max_batch_entries`, tens of MB) and the entries of the burst left the
/// allocator's free lists full of small chunks it does not give back by itself.
/// Both are returned to the system once the writer is idle.
fn release_memory(pending: &mut Vec<Staged>) {
    *pending = Vec::new();
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only returns free memory of glibc's arenas to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The staging thread: assigns seqs and times, appends each batch to the side log, and
/// hands it to the committing thread ([`WriterThread`]); everything else passes through
/// in order.
struct Front {
    rx: tokio::sync::mpsc::UnboundedReceiver<Cmd>,
    /// `None` once closed: the committing thread then commits what it has and ends.
    back: Option<mpsc::Sender<Job>>,
    back_thread: Option<JoinHandle<()>>,
    side: Option<SideLog>,
    /// The last append to the side log failed (said once on stderr).
    side_failed: bool,
    log: bool,
    next_seq: u64,
    boot_id: u128,
    uid: u32,
    /// Cost of the entries staged and not yet committed (shared with the committing thread).
    unsaved: Arc<AtomicU64>,
    commit_bytes: u64,
    committed: watch::Receiver<u64>,
}

impl Front {
    fn run(mut self) {
        while let Some(cmd) = self.rx.blocking_recv() {
            let job = match cmd {
                Cmd::Append(batch, permit) => match self.stage(batch, permit) {
                    Some(job) => job,
                    None => continue,
                },
                Cmd::Covered => {
                    let next = *self.committed.borrow();
                    if let Some(side) = &mut self.side {
                        side.covered(next);
                    }
                    continue;
                }
                Cmd::Shutdown(tx) => {
                    let (done, wait) = oneshot::channel();
                    self.send(Job::Shutdown(done));
                    let _ = wait.blocking_recv();
                    self.finish();
                    let _ = tx.send(());
                    return;
                }
                Cmd::Ask(ask) => Job::Ask(ask),
            };
            self.send(job);
        }
        self.finish();
    }

    fn send(&self, job: Job) {
        // The committing thread only ends after this one closed its channel (or on a
        // panic, after which every reply sender is dropped and the callers see it gone).
        if let Some(back) = &self.back {
            let _ = back.send(job);
        }
    }

    /// Assigns seqs and times, appends to the side log; the producer's budget is given
    /// back now if the side log has the batch and the commits are not too far behind,
    /// else it travels with the batch and is given back at its commit.
    fn stage(
        &mut self,
        batch: Vec<NewEntry>,
        mut permit: Option<OwnedSemaphorePermit>,
    ) -> Option<Job> {
        if batch.is_empty() {
            return None;
        }
        let now_rt = super::realtime_now();
        let now_mono = super::monotonic_now();
        let mut cost_sum = 0u64;
        let staged: Vec<Staged> = batch
            .into_iter()
            .map(|e| {
                cost_sum += cost(&e) as u64;
                let s = Staged {
                    seq: self.next_seq,
                    realtime: e.realtime.unwrap_or(now_rt),
                    monotonic: e.monotonic.unwrap_or(now_mono),
                    boot_id: self.boot_id,
                    uid: self.uid,
                    new: e,
                };
                self.next_seq += 1;
                s
            })
            .collect();
        let logged = match &mut self.side {
            Some(side) => match side.append(&staged) {
                Ok(()) => {
                    if std::mem::take(&mut self.side_failed) && self.log {
                        eprintln!("corrald: journal: the side log works again");
                    }
                    true
                }
                Err(e) => {
                    if !std::mem::replace(&mut self.side_failed, true) && self.log {
                        eprintln!(
                            "corrald: journal: {e}; until it works again, output read is \
                             held back until it is committed"
                        );
                    }
                    false
                }
            },
            None => false,
        };
        let unsaved = self.unsaved.fetch_add(cost_sum, Ordering::Relaxed);
        if logged && unsaved + cost_sum <= self.commit_bytes {
            permit = None;
        }
        Some(Job::Staged(staged, cost_sum, permit))
    }

    /// Closes the committing thread's channel, waits for it to commit what it has and
    /// end, then removes the side log files its commits covered (all of them unless it
    /// died).
    fn finish(&mut self) {
        self.back = None;
        if let Some(t) = self.back_thread.take() {
            let _ = t.join();
        }
        let next = *self.committed.borrow();
        if let Some(side) = &mut self.side {
            if next >= self.next_seq {
                side.remove_all();
            } else {
                side.covered(next);
            }
        }
    }
}

struct WriterThread {
    /// Shared with the handles: producers that wait for the budget during a stall.
    waiting: Arc<Mutex<BTreeSet<String>>>,
    /// The producers' budget, to measure how much of it is in use at each commit.
    budget: Arc<Semaphore>,
    queue_bytes: u32,
    seen: Arc<Seen>,
    /// Jobs that arrived while a commit kept failing and must wait for it
    /// (appends, flushes, shutdown): taken before the channel, in order.
    held: VecDeque<Job>,
    /// Set while commits fail.
    stall: Option<Stall>,
    store: Store,
    rx: mpsc::Receiver<Job>,
    /// The staging thread, for the journal's own entries and for [`Cmd::Covered`]; weak,
    /// so that the handles going away still ends it.
    front: tokio::sync::mpsc::WeakUnboundedSender<Cmd>,
    /// Cost of the entries staged and not yet committed (shared with the staging thread).
    unsaved: Arc<AtomicU64>,
    /// The part of `unsaved` in `pending`.
    pending_cost: u64,
    /// The next seq after the last commit, published for followers.
    committed: watch::Sender<u64>,
    status: watch::Sender<WriterStatus>,
    opts: WriterOptions,
    next_seq: u64,
    enc: Encoder,
    pending: Vec<Staged>,
    permits: Vec<OwnedSemaphorePermit>,
    flushers: Vec<oneshot::Sender<u64>>,
    last_retention: Instant,
    last_merge: Instant,
    /// Entries committed since redb's page cache was last given back ([`Self::drop_cache`]).
    since_cache_drop: usize,
    /// When that was, if it was.
    last_cache_drop: Option<Instant>,
    /// Counts the idle passes after work, for tests to wait on.
    #[cfg(test)]
    idle_passes: watch::Sender<u64>,
}

impl WriterThread {
    fn run(&mut self) {
        let mut deadline: Option<Instant> = None;
        let mut idle_done = false;
        loop {
            let timeout = match deadline {
                Some(d) => d.saturating_duration_since(Instant::now()),
                // Idle work done: sleep until something arrives, or until entries may
                // have aged past MaxRetentionSec.
                None if idle_done => match self.store.options().max_retention {
                    Some(_) => Duration::from_secs(60),
                    None => Duration::from_secs(24 * 3600),
                },
                None => self.opts.idle_after,
            };
            let mut shutdown = None;
            let mut force = false;
            let next = match self.held.pop_front() {
                Some(cmd) => Ok(cmd),
                None => self.rx.recv_timeout(timeout),
            };
            match next {
                Ok(cmd) => {
                    idle_done = false;
                    self.handle(cmd, &mut force, &mut shutdown);
                    if deadline.is_none() && !self.pending.is_empty() {
                        deadline = Some(Instant::now() + self.opts.commit_interval);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    if self.pending.is_empty() {
                        // Idle: the time to merge trickle blocks and enforce limits.
                        if let Err(e) = self.maintain() {
                            self.report(&e);
                        }
                        if !idle_done {
                            self.drop_cache();
                            release_memory(&mut self.pending);
                            #[cfg(test)]
                            self.idle_passes.send_modify(|n| *n += 1);
                        }
                        idle_done = true;
                    }
                }
                Err(RecvTimeoutError::Disconnected) => {
                    self.commit();
                    return;
                }
            }
            // Take whatever else is already queued (it piled up during the last commit,
            // or arrived during the idle pass just made: work that still needs an idle
            // pass after it, so the next wait is `idle_after`, not the long idle sleep).
            while self.pending.len() < self.opts.max_batch_entries && shutdown.is_none() {
                let next = match self.held.pop_front() {
                    Some(cmd) => Ok(cmd),
                    None => self.rx.try_recv(),
                };
                match next {
                    Ok(cmd) => {
                        idle_done = false;
                        self.handle(cmd, &mut force, &mut shutdown);
                    }
                    Err(_) => break,
                }
            }
            let due = deadline.is_some_and(|d| Instant::now() >= d);
            // The budget nearly used up: producers are about to wait for it, commit now
            // rather than at the interval. Not sooner: a commit costs two fsyncs
            // whatever its size, while the readers refill the budget far faster, so
            // the throughput a window allows is best with commits of most of it.
            let full = self.budget.available_permits() < self.queue_bytes as usize / 8;
            if force
                || due
                || full
                || self.pending.len() >= self.opts.commit_entries
                || shutdown.is_some()
            {
                self.commit();
                deadline = None;
            }
            if let Some(s) = shutdown {
                let _ = s.send(());
                return;
            }
        }
    }

    fn handle(&mut self, job: Job, force: &mut bool, shutdown: &mut Option<oneshot::Sender<()>>) {
        match job {
            Job::Staged(staged, cost, permit) => {
                if let Some(last) = staged.last() {
                    self.next_seq = last.seq + 1;
                }
                self.pending.extend(staged);
                self.pending_cost += cost;
                self.permits.extend(permit);
            }
            Job::Ask(Ask::Flush(tx)) => {
                self.flushers.push(tx);
                *force = true;
            }
            Job::Ask(Ask::Maintain(tx)) => {
                self.commit();
                let r = self.maintain().map_err(|e| e.to_string());
                let _ = tx.send(r);
            }
            Job::Ask(Ask::DiskUsage(tx)) => {
                let _ = tx.send(self.store.disk_usage());
            }
            Job::Ask(Ask::Vacuum {
                max_bytes,
                max_age,
                reply,
            }) => {
                // What was handed in before the request is vacuumed like the rest.
                self.commit();
                let _ = reply.send(self.store.vacuum(max_bytes, max_age));
            }
            Job::Shutdown(tx) => *shutdown = Some(tx),
        }
    }

    /// Commits the pending entries, retrying until it succeeds: producers stay blocked
    /// on the byte budget meanwhile, so nothing is dropped.
    fn commit(&mut self) {
        if !self.pending.is_empty() {
            let mut backoff = Duration::from_millis(20);
            // Out of space: redb refuses everything until reopened, and reopening a file
            // it failed to write needs a repair, which writes; on a full disk that fails
            // and gives up the file lock, after which not even readers could open the
            // store. So nothing is tried until the file system has room again.
            let mut wait_for_room = false;
            loop {
                if wait_for_room {
                    self.publish_stall(None);
                } else {
                    match self.store.commit(&self.pending, &mut self.enc) {
                        Ok(()) => break,
                        Err(e) => {
                            // PreviousIo: an earlier write of this handle failed (idle
                            // maintenance on a full disk); check for room the same way.
                            wait_for_room = is_no_space(&e) || is_previous_io(&e);
                            self.stalled(&e);
                        }
                    }
                }
                // No event tells us that space came back: retry on a timer, answering
                // meanwhile what needs no write.
                self.serve_stalled(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(1));
                if wait_for_room && !self.store.has_room(self.pending_bytes()) {
                    continue;
                }
                if let Err(e) = self.store.reopen() {
                    wait_for_room = is_no_space(&e);
                    self.stalled(&e);
                    continue;
                }
                wait_for_room = false;
                // A commit that failed late may still have landed: never write it twice.
                if self.store.next_seq().is_ok_and(|n| n > self.pending[0].seq) {
                    break;
                }
            }
            match self.stall.take() {
                Some(stall) => self.resumed(stall),
                // Names a maintenance failure's status left there are not a stall's.
                None => self.waiting.lock().expect("waiting lock poisoned").clear(),
            }
            if *self.status.borrow() != WriterStatus::Ok {
                self.status.send_replace(WriterStatus::Ok);
            }
            self.committed.send_replace(self.next_seq);
            self.note_window();
            self.since_cache_drop += self.pending.len();
            self.pending.clear();
            self.permits.clear();
            self.unsaved.fetch_sub(self.pending_cost, Ordering::Relaxed);
            self.pending_cost = 0;
            if let Some(front) = self.front.upgrade() {
                let _ = front.send(Cmd::Covered);
            }
            // Size is checked after every commit (a stat and a read): the file must not
            // outgrow MaxUse between checks. Age is checked twice a second.
            if self.last_merge.elapsed() >= self.opts.merge_interval {
                self.last_merge = Instant::now();
                if let Err(e) = self.store.merge_small_blocks(self.opts.merge_budget) {
                    self.report(&e);
                }
            }
            let age_due = self.last_retention.elapsed() >= Duration::from_millis(500);
            if self.store.options().max_use.is_some() || age_due {
                if age_due {
                    self.last_retention = Instant::now();
                }
                if let Err(e) = self.store.enforce_retention(age_due) {
                    self.report(&e);
                }
            }
        }
        for f in self.flushers.drain(..) {
            let _ = f.send(self.next_seq);
        }
    }

    /// Once idle after a burst, gives back the pages redb's cache kept of it
    /// (up to `cache_size`, 16 MiB: 340 KB after a thousand units logged a
    /// line each), which it would otherwise hold until the manager ends. The
    /// cache matters while commits come (it is also redb's write buffer),
    /// not for the few reads while idle. Not after a trickle of entries
    /// (their commits touch the same few pages): reopening costs three
    /// fsyncs; and not more often than `cache_drop_interval`, so that the
    /// first burst (a manager's start-up) is given back at once and later
    /// ones cost at most one reopen in that time.
    fn drop_cache(&mut self) {
        if !cache_drop_due(
            self.since_cache_drop,
            self.last_cache_drop.map(|t| t.elapsed()),
            self.opts.cache_drop_interval,
        ) {
            return;
        }
        match self.store.drop_cache() {
            Ok(true) => {
                self.since_cache_drop = 0;
                self.last_cache_drop = Some(Instant::now());
            }
            // A reader of this process is open: next time.
            Ok(false) => {}
            Err(e) => self.report(&e),
        }
    }

    /// Records the window a crash right before this commit ended would have lost: the
    /// budget in use and the age of the oldest entry committed.
    fn note_window(&self) {
        let used = u64::from(self.queue_bytes) - self.budget.available_permits() as u64;
        self.seen.bytes.fetch_max(used, Ordering::Relaxed);
        self.seen
            .commit_bytes
            .fetch_max(self.pending_cost, Ordering::Relaxed);
        if let Some(oldest) = self.pending.iter().map(|s| s.monotonic).min() {
            let age = super::monotonic_now().saturating_sub(oldest);
            self.seen.age_usec.fetch_max(age, Ordering::Relaxed);
        }
    }

    /// Shows a failed maintenance pass in the status (it is retried when next idle).
    fn report(&self, e: &JournalError) {
        self.status.send_replace(WriterStatus::Stalled {
            error: e.to_string(),
            since_usec: super::realtime_now(),
            waiting: Vec::new(),
        });
    }

    fn pending_bytes(&self) -> u64 {
        self.pending.iter().map(|s| cost(&s.new) as u64).sum()
    }

    /// A commit failed: said once on stderr when a stall begins; the status names the
    /// error and the units waiting.
    fn stalled(&mut self, e: &JournalError) {
        let error = e.to_string();
        let stall = self.stall.get_or_insert_with(|| {
            if self.opts.log_stalls {
                eprintln!(
                    "corrald: journal: cannot write {}: {error}; the services' output waits \
                     (nothing is dropped) until writing works again",
                    self.store.path().display()
                );
            }
            Stall {
                since: Instant::now(),
                since_usec: super::realtime_now(),
                first_error: error.clone(),
                units: BTreeSet::new(),
            }
        });
        stall
            .units
            .extend(self.pending.iter().map(|s| s.new.unit.to_string()));
        self.publish_stall(Some(error));
    }

    /// Puts the stall into the status: `error`, or the last one when `None`.
    fn publish_stall(&mut self, error: Option<String>) {
        let Some(stall) = &mut self.stall else { return };
        stall
            .units
            .append(&mut self.waiting.lock().expect("waiting lock poisoned"));
        let error = error.unwrap_or_else(|| match &*self.status.borrow() {
            WriterStatus::Stalled { error, .. } => error.clone(),
            WriterStatus::Ok => stall.first_error.clone(),
        });
        self.status.send_replace(WriterStatus::Stalled {
            error,
            since_usec: stall.since_usec,
            waiting: stall.units.iter().cloned().collect(),
        });
    }

    /// Waits `wait` between two attempts of a failing commit, answering `--disk-usage`
    /// from the last commit and refusing vacuum and maintenance (they would have to
    /// write); whatever must follow the commit is held until it succeeds.
    fn serve_stalled(&mut self, wait: Duration) {
        let until = Instant::now() + wait;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            let job = match self.rx.recv_timeout(left) {
                Ok(job) => job,
                Err(_) => return,
            };
            let blocked = || {
                let error = match &*self.status.borrow() {
                    WriterStatus::Stalled { error, .. } => error.clone(),
                    WriterStatus::Ok => String::new(),
                };
                JournalError::Blocked {
                    path: self.store.path().to_owned(),
                    error,
                }
            };
            match job {
                Job::Ask(Ask::DiskUsage(tx)) => {
                    let _ = tx.send(self.store.disk_usage());
                }
                Job::Ask(Ask::Maintain(tx)) => {
                    let _ = tx.send(Err(blocked().to_string()));
                }
                Job::Ask(Ask::Vacuum { reply, .. }) => {
                    let _ = reply.send(Err(blocked()));
                }
                other => {
                    if let (Job::Staged(batch, ..), Some(stall)) = (&other, &mut self.stall) {
                        stall
                            .units
                            .extend(batch.iter().map(|s| s.new.unit.to_string()));
                    }
                    self.held.push_back(other);
                }
            }
        }
    }

    /// Commits work again: said on stderr, and in the journal, under `corrald` and in
    /// the journal of each unit that waited, how long and why.
    fn resumed(&mut self, mut stall: Stall) {
        stall
            .units
            .append(&mut self.waiting.lock().expect("waiting lock poisoned"));
        let took = stall.since.elapsed().as_secs_f64();
        let units: Vec<String> = stall.units.into_iter().collect();
        let error = stall.first_error;
        let summary = format!(
            "journal writes were blocked for {took:.1} s ({error}); output waited, nothing was lost; units that waited: {}",
            if units.is_empty() {
                "none".to_string()
            } else {
                units.join(", ")
            }
        );
        if self.opts.log_stalls {
            eprintln!("corrald: journal: writing works again: {summary}");
        }
        let warn = |unit: &str, msg: String| {
            let mut e = NewEntry::manager(unit, 0, msg);
            e.priority = 4;
            e
        };
        let mut batch = vec![warn(MANAGER_UNIT, summary)];
        for u in &units {
            batch.push(warn(
                u,
                format!(
                    "journal writes were blocked for {took:.1} s ({error}); this unit's output waited, nothing was lost"
                ),
            ));
        }
        // Staged like any append, so that it is committed in order after what waited.
        if let Some(front) = self.front.upgrade() {
            let _ = front.send(Cmd::Append(batch, None));
        }
    }

    fn maintain(&mut self) -> Result<MaintenanceReport> {
        let mut r = MaintenanceReport {
            removed_entries: self.store.enforce_retention(true)?,
            ..Default::default()
        };
        loop {
            let n = self.store.merge_small_blocks(1024)?;
            r.merged_blocks += n;
            if n == 0 {
                break;
            }
        }
        if self.store.worth_compacting()? {
            r.compacted = self.store.compact()?;
        }
        Ok(r)
    }
}

/// The unit name under which the manager journals what concerns no unit (the journal
/// itself): `corral journal -u corrald`.
pub const MANAGER_UNIT: &str = "corrald";

/// Whether redb refused because an earlier write of the handle failed.
fn is_previous_io(e: &JournalError) -> bool {
    matches!(e, JournalError::Db { source, .. } if matches!(**source, redb::Error::PreviousIo))
}

/// Whether a failed write ran out of space (the file system's, or the user's quota).
fn is_no_space(e: &JournalError) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && matches!(io.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT))
        {
            return true;
        }
        if let Some(redb::Error::Io(io)) = err.downcast_ref::<redb::Error>()
            && matches!(io.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT))
        {
            return true;
        }
        cur = err.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::StoreOptions;

    /// A batch of short lines costs more than the bytes reserved for it, and the rest of
    /// the budget is held by another reader that waits for nothing: the batch still goes
    /// in (holding nothing while it waits for its difference), so readers cannot block
    /// each other for good; and everything reserved comes back once committed.
    #[tokio::test]
    async fn a_batch_over_its_reservation_cannot_deadlock_the_budget() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        let opts = WriterOptions {
            queue_bytes: 4096,
            ..WriterOptions::default()
        };
        let w = Writer::spawn(store.clone(), opts).unwrap();
        let other = w.reserve("a", 3000).await.unwrap();
        let mine = w.reserve("b", 1000).await.unwrap();
        // 20 entries cost 20 × 64 = 1280: 280 more than reserved, 96 free.
        let batch: Vec<NewEntry> = (0..20)
            .map(|i| NewEntry::manager("b", 0, format!("{i}")))
            .collect();
        // A guard against a hang, not a measure: it takes milliseconds.
        tokio::time::timeout(Duration::from_secs(60), w.append_reserved(batch, mine))
            .await
            .expect("append_reserved waits for the budget while holding part of it")
            .unwrap();
        w.flush().await.unwrap();
        assert_eq!(store.disk_usage().unwrap().entries, 20);
        drop(other);
        assert_eq!(w.permits.available_permits(), 4096, "all given back");
        let seen = w.window_seen();
        assert!(seen.bytes <= 4096, "{seen:?}");
        w.shutdown().await.unwrap();
    }

    /// A writer on a fresh store that goes idle 20 ms after work, with
    /// `cache_drop_interval` between reopens.
    fn quickly_idle_writer(
        cache_drop_interval: Duration,
    ) -> (tempfile::TempDir, Store, WriterHandle) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        let opts = WriterOptions {
            idle_after: Duration::from_millis(20),
            cache_drop_interval,
            ..WriterOptions::default()
        };
        let w = Writer::spawn(store.clone(), opts).unwrap();
        (dir, store, w)
    }

    /// The count of the writer's idle passes after work so far.
    fn idle_passes(w: &WriterHandle) -> u64 {
        *w.idle_passes.borrow()
    }

    /// Waits (at most 10 s) for the writer's first idle pass after `before`
    /// (a count taken before the work it follows was sent).
    async fn idle_after(w: &WriterHandle, before: u64) {
        let mut rx = w.idle_passes.clone();
        tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|n| *n > before))
            .await
            .expect("the writer went idle within 10 s")
            .expect("the writer runs");
    }

    #[test]
    fn a_cache_drop_is_due_after_a_burst_and_not_within_the_interval() {
        let min = Duration::from_secs(60);
        let bursts = CACHE_DROP_ENTRIES;
        // (entries since the last drop, time since it, due)
        let table = [
            (bursts - 1, None, false),
            (bursts, None, true),
            (10 * bursts, None, true),
            (bursts, Some(Duration::from_secs(59)), false),
            (bursts, Some(min), true),
            (bursts - 1, Some(Duration::from_secs(3600)), false),
        ];
        for (entries, since, due) in table {
            assert_eq!(
                cache_drop_due(entries, since, min),
                due,
                "{entries} {since:?}"
            );
        }
        assert!(cache_drop_due(bursts, Some(Duration::ZERO), Duration::ZERO));
    }

    /// Idle after a burst, the writer reopens the store to give redb's page
    /// cache back; after a trickle it does not (not until the trickle adds
    /// up). Across the reopens nothing is lost, writing goes on, and the
    /// file stays locked against a second writer.
    #[tokio::test]
    async fn an_idle_writer_gives_back_the_cache_of_a_burst() {
        let (dir, store, w) = quickly_idle_writer(Duration::ZERO);
        let line = |i: usize| NewEntry::manager(&format!("u{i}.timer"), 0, format!("line {i}"));
        for i in 0..10 {
            let before = idle_passes(&w);
            w.append(line(i)).await.unwrap();
            w.flush().await.unwrap();
            idle_after(&w, before).await;
        }
        // Idle after each: a trickle is not worth a reopen.
        assert_eq!(store.cache_drops(), 0);
        let before = idle_passes(&w);
        let burst: Vec<NewEntry> = (10..10 + CACHE_DROP_ENTRIES).map(line).collect();
        w.append_batch(burst).await.unwrap();
        w.flush().await.unwrap();
        idle_after(&w, before).await;
        assert_eq!(store.cache_drops(), 1);
        assert!(
            matches!(
                Store::open(dir.path(), StoreOptions::default()),
                Err(JournalError::Locked { .. })
            ),
            "the reopened store is locked against another writer"
        );
        let before = idle_passes(&w);
        let burst: Vec<NewEntry> = (0..2 * CACHE_DROP_ENTRIES).map(line).collect();
        w.append_batch(burst).await.unwrap();
        w.flush().await.unwrap();
        idle_after(&w, before).await;
        assert_eq!(store.cache_drops(), 2);
        let all = 10 + 3 * CACHE_DROP_ENTRIES as u64;
        assert_eq!(store.disk_usage().unwrap().entries, all);
        let q = crate::journal::Query::default();
        assert_eq!(store.query(&q).unwrap().len() as u64, all);
        w.shutdown().await.unwrap();
    }

    /// After one reopen, the bursts that follow within `cache_drop_interval`
    /// are written without another.
    #[tokio::test]
    async fn bursts_within_the_interval_cost_one_reopen() {
        let (_dir, store, w) = quickly_idle_writer(WriterOptions::default().cache_drop_interval);
        let line = |i: usize| NewEntry::manager("burst.service", 0, format!("line {i}"));
        for _ in 0..4 {
            let before = idle_passes(&w);
            let burst: Vec<NewEntry> = (0..2 * CACHE_DROP_ENTRIES).map(line).collect();
            w.append_batch(burst).await.unwrap();
            w.flush().await.unwrap();
            idle_after(&w, before).await;
            // The first idle pass reopens; the next ones are within the interval.
            assert_eq!(store.cache_drops(), 1);
        }
        assert_eq!(
            store.disk_usage().unwrap().entries,
            8 * CACHE_DROP_ENTRIES as u64
        );
        w.shutdown().await.unwrap();
    }
}
