//! The single writer: a dedicated thread that stages entries, commits them in groups
//! (durable, fsync'd), back-pressures producers through a bounded byte budget, tells
//! followers how far the store is committed, and runs merging and retention when idle.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot, watch};

use super::NewEntry;
use super::block::Encoder;
use super::error::{JournalError, Result};
use super::store::{DiskUsage, Staged, Store, VacuumReport};

/// Tuning of the writer.
#[derive(Debug, Clone)]
pub struct WriterOptions {
    /// Commit at most this long after the first entry of a group arrived.
    pub commit_interval: Duration,
    /// Commit as soon as this many entries are pending.
    pub commit_entries: usize,
    /// One commit takes at most this many entries (what piled up during the last fsync).
    pub max_batch_entries: usize,
    /// Bytes of messages accepted but not yet committed; producers wait beyond it.
    pub queue_bytes: usize,
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
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions {
            commit_interval: Duration::from_millis(5),
            commit_entries: 4096,
            max_batch_entries: 256 * 1024,
            queue_bytes: 8 * 1024 * 1024,
            boot_id: None,
            uid: None,
            idle_after: Duration::from_secs(1),
            merge_interval: Duration::from_secs(1),
            merge_budget: 4096,
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
    },
}

enum Cmd {
    Append(Vec<NewEntry>, Option<OwnedSemaphorePermit>),
    Flush(oneshot::Sender<u64>),
    Maintain(oneshot::Sender<Result<MaintenanceReport, String>>),
    DiskUsage(oneshot::Sender<Result<DiskUsage>>),
    Vacuum {
        max_bytes: Option<u64>,
        max_age: Option<Duration>,
        reply: oneshot::Sender<Result<VacuumReport>>,
    },
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
    tx: mpsc::Sender<Cmd>,
    permits: Arc<Semaphore>,
    queue_bytes: u32,
    committed: watch::Receiver<u64>,
    status: watch::Receiver<WriterStatus>,
    store: Store,
    thread: Arc<Mutex<Option<JoinHandle<()>>>>,
}

impl Writer {
    /// Starts the writer thread of `store` (which must be opened with [`Store::open`]).
    pub fn spawn(store: Store, opts: WriterOptions) -> Result<WriterHandle> {
        let next_seq = store.next_seq()?;
        let enc =
            Encoder::new().map_err(|e| JournalError::io("create encoder for", store.path(), e))?;
        let (tx, rx) = mpsc::channel();
        let queue_bytes = opts.queue_bytes.clamp(1024, u32::MAX as usize) as u32;
        let permits = Arc::new(Semaphore::new(queue_bytes as usize));
        let (committed_tx, committed) = watch::channel(next_seq);
        let (status_tx, status) = watch::channel(WriterStatus::Ok);
        let mut w = WriterThread {
            store: store.clone(),
            rx,
            committed: committed_tx,
            status: status_tx,
            boot_id: opts.boot_id.unwrap_or_else(super::boot_id),
            uid: opts.uid.unwrap_or_else(|| nix::unistd::getuid().as_raw()),
            opts,
            next_seq,
            enc,
            pending: Vec::new(),
            permits: Vec::new(),
            flushers: Vec::new(),
            last_retention: Instant::now(),
            last_merge: Instant::now(),
        };
        let thread = std::thread::Builder::new()
            .name("journal-writer".into())
            .spawn(move || w.run())
            .map_err(|e| JournalError::io("spawn writer thread for", store.path(), e))?;
        Ok(WriterHandle {
            tx,
            permits,
            queue_bytes,
            committed,
            status,
            store,
            thread: Arc::new(Mutex::new(Some(thread))),
        })
    }
}

fn cost(e: &NewEntry) -> usize {
    e.message.len() + 64
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
        let n = c.min(self.queue_bytes as usize) as u32;
        let permit = self
            .permits
            .clone()
            .acquire_many_owned(n)
            .await
            .map_err(|_| self.gone())?;
        self.tx
            .send(Cmd::Append(batch, Some(permit)))
            .map_err(|_| self.gone())
    }

    /// Waits until everything appended before this call is committed and durable;
    /// returns the next sequence number the store will assign.
    pub async fn flush(&self) -> Result<u64> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Cmd::Flush(tx)).map_err(|_| self.gone())?;
        rx.await.map_err(|_| self.gone())
    }

    /// Runs merging of small blocks, retention and (when over MaxUse) compaction now.
    pub async fn maintain(&self) -> Result<MaintenanceReport> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Cmd::Maintain(tx)).map_err(|_| self.gone())?;
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
        self.tx.send(Cmd::DiskUsage(tx)).map_err(|_| self.gone())?;
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
            .send(Cmd::Vacuum {
                max_bytes,
                max_age,
                reply,
            })
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

struct WriterThread {
    store: Store,
    rx: mpsc::Receiver<Cmd>,
    /// The next seq after the last commit, published for followers.
    committed: watch::Sender<u64>,
    status: watch::Sender<WriterStatus>,
    boot_id: u128,
    uid: u32,
    opts: WriterOptions,
    next_seq: u64,
    enc: Encoder,
    pending: Vec<Staged>,
    permits: Vec<OwnedSemaphorePermit>,
    flushers: Vec<oneshot::Sender<u64>>,
    last_retention: Instant,
    last_merge: Instant,
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
            match self.rx.recv_timeout(timeout) {
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
                            self.status.send_replace(WriterStatus::Stalled {
                                error: e.to_string(),
                            });
                        }
                        if !idle_done {
                            release_memory(&mut self.pending);
                        }
                        idle_done = true;
                    }
                }
                Err(RecvTimeoutError::Disconnected) => {
                    self.commit();
                    return;
                }
            }
            // Take whatever else is already queued (it piled up during the last commit).
            while self.pending.len() < self.opts.max_batch_entries && shutdown.is_none() {
                match self.rx.try_recv() {
                    Ok(cmd) => self.handle(cmd, &mut force, &mut shutdown),
                    Err(_) => break,
                }
            }
            let due = deadline.is_some_and(|d| Instant::now() >= d);
            if force || due || self.pending.len() >= self.opts.commit_entries || shutdown.is_some()
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

    fn handle(&mut self, cmd: Cmd, force: &mut bool, shutdown: &mut Option<oneshot::Sender<()>>) {
        match cmd {
            Cmd::Append(batch, permit) => {
                let now_rt = super::realtime_now();
                let now_mono = super::monotonic_now();
                for e in batch {
                    self.pending.push(Staged {
                        seq: self.next_seq,
                        realtime: e.realtime.unwrap_or(now_rt),
                        monotonic: e.monotonic.unwrap_or(now_mono),
                        boot_id: self.boot_id,
                        uid: self.uid,
                        new: e,
                    });
                    self.next_seq += 1;
                }
                self.permits.extend(permit);
            }
            Cmd::Flush(tx) => {
                self.flushers.push(tx);
                *force = true;
            }
            Cmd::Maintain(tx) => {
                self.commit();
                let r = self.maintain().map_err(|e| e.to_string());
                let _ = tx.send(r);
            }
            Cmd::DiskUsage(tx) => {
                let _ = tx.send(self.store.disk_usage());
            }
            Cmd::Vacuum {
                max_bytes,
                max_age,
                reply,
            } => {
                // What was handed in before the request is vacuumed like the rest.
                self.commit();
                let _ = reply.send(self.store.vacuum(max_bytes, max_age));
            }
            Cmd::Shutdown(tx) => *shutdown = Some(tx),
        }
    }

    /// Commits the pending entries, retrying until it succeeds: producers stay blocked
    /// on the byte budget meanwhile, so nothing is dropped.
    fn commit(&mut self) {
        if !self.pending.is_empty() {
            let mut backoff = Duration::from_millis(20);
            loop {
                match self.store.commit(&self.pending, &mut self.enc) {
                    Ok(()) => break,
                    Err(e) => {
                        self.status.send_replace(WriterStatus::Stalled {
                            error: e.to_string(),
                        });
                        // No event tells us that space came back: retry on a timer.
                        std::thread::sleep(backoff);
                        backoff = (backoff * 2).min(Duration::from_secs(1));
                        let _ = self.store.reopen();
                        // A commit that failed late may still have landed: never write it twice.
                        if self.store.next_seq().is_ok_and(|n| n > self.pending[0].seq) {
                            break;
                        }
                    }
                }
            }
            if *self.status.borrow() != WriterStatus::Ok {
                self.status.send_replace(WriterStatus::Ok);
            }
            self.committed.send_replace(self.next_seq);
            self.pending.clear();
            self.permits.clear();
            // Size is checked after every commit (a stat and a read): the file must not
            // outgrow MaxUse between checks. Age is checked twice a second.
            if self.last_merge.elapsed() >= self.opts.merge_interval {
                self.last_merge = Instant::now();
                if let Err(e) = self.store.merge_small_blocks(self.opts.merge_budget) {
                    self.status.send_replace(WriterStatus::Stalled {
                        error: e.to_string(),
                    });
                }
            }
            let age_due = self.last_retention.elapsed() >= Duration::from_millis(500);
            if self.store.options().max_use.is_some() || age_due {
                if age_due {
                    self.last_retention = Instant::now();
                }
                if let Err(e) = self.store.enforce_retention(age_due) {
                    self.status.send_replace(WriterStatus::Stalled {
                        error: e.to_string(),
                    });
                }
            }
        }
        for f in self.flushers.drain(..) {
            let _ = f.send(self.next_seq);
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
