//! Where the stdout and stderr of a unit's processes go, and the manager's
//! own messages about a unit: the journal.
//!
//! Every process the manager spawns gets pipes for stdout and stderr (never
//! the manager's own); [`Output::attach`] is the single place their read ends
//! are handed to. With a journal they go to its pipe reader (which stops
//! reading while the writer is behind, so a slow disk back-pressures the
//! service instead of dropping lines); without one (the store could not be
//! opened) they are drained so that no service blocks on a full pipe.

use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;

use crate::journal::ingest::{RateLimiter, SourceMeta, Unfinished, spawn_stoppable_pipe_reader};
use crate::journal::output::{Format, OutputOptions, write_entry};
use crate::journal::{NewEntry, Query, WriterHandle};

pub use crate::journal::Stream;

use super::fd_holder::{Client, Kept, Meta};
use super::state::Pid;

/// An fd kept by the holder: its id there, its metadata, a copy of it.
/// Who wrote into a pipe, and how to read its lines.
#[derive(Debug, Clone)]
pub struct Source {
    /// The unit's full name.
    pub unit: String,
    /// INVOCATION_ID (32 hex digits).
    pub invocation: String,
    /// The process writing.
    pub pid: Pid,
    /// Which of its streams.
    pub stream: Stream,
    /// SyslogLevel= (priority of lines without a `<N>` prefix).
    pub priority: u8,
    /// SyslogLevelPrefix=.
    pub level_prefix: bool,
    /// SyslogIdentifier=.
    pub identifier: String,
    /// `_COMM`: the command name the kernel gives the process (empty when unknown).
    pub comm: String,
    /// LogRateLimitIntervalSec=/LogRateLimitBurst= of the unit, shared by its pipes.
    pub rate_limit: Option<Arc<RateLimiter>>,
}

/// How long [`Output::drain`] waits for the pipes to reach end of file once
/// every unit has stopped: only a process that escaped its unit's cgroup with
/// a write end can keep one open that long.
const DRAIN_LIMIT: Duration = Duration::from_secs(5);

/// What the task appending the manager's messages receives.
enum ManagerMsg {
    Entry(NewEntry),
    /// Answered once every message sent before it was handed to the writer.
    Barrier(tokio::sync::oneshot::Sender<()>),
}

/// The sink of every unit's output; cheap to clone.
#[derive(Clone)]
pub struct Output {
    journal: Option<WriterHandle>,
    /// The manager's messages, appended in order by one task.
    manager: Option<tokio::sync::mpsc::UnboundedSender<ManagerMsg>>,
    /// The fd holder, which keeps a copy of every pipe for a successor.
    holder: Option<Arc<Client>>,
    /// The pipe readers still running, awaited by [`Output::drain`] so that a
    /// clean shutdown stores every line the services wrote.
    readers: Arc<Mutex<tokio::task::JoinSet<()>>>,
    /// Set by [`Output::hand_over`]: every reader stops at the end of a read.
    stop: Arc<tokio::sync::watch::Sender<bool>>,
}

/// An invocation id as the journal stores it (0 when not hex).
pub fn invocation_number(id: &str) -> u128 {
    u128::from_str_radix(id, 16).unwrap_or(0)
}

impl Output {
    /// Output into `journal`, or drained when there is none. Must be called
    /// within the tokio runtime.
    pub fn new(journal: Option<WriterHandle>) -> Output {
        let manager = journal.clone().map(|handle| {
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<ManagerMsg>();
            tokio::spawn(async move {
                while let Some(msg) = rx.recv().await {
                    match msg {
                        ManagerMsg::Entry(entry) => {
                            if let Err(e) = handle.append(entry).await {
                                eprintln!("corrald: cannot write to the journal: {e}");
                            }
                        }
                        ManagerMsg::Barrier(done) => {
                            let _ = done.send(());
                        }
                    }
                }
            });
            tx
        });
        Output {
            journal,
            manager,
            holder: None,
            readers: Arc::default(),
            stop: Arc::new(tokio::sync::watch::Sender::new(false)),
        }
    }

    /// Waits until every pipe reader has read its pipe to end of file and
    /// handed its last (even unterminated) line to the writer, and every
    /// message of the manager is with the writer; for a clean shutdown, after
    /// every unit stopped and before the writer shuts down. Readers whose pipe
    /// is still open after [`DRAIN_LIMIT`] are given up, and said so.
    pub async fn drain(&self) {
        let mut readers = std::mem::take(&mut *self.readers.lock().expect("readers lock"));
        let all = async { while readers.join_next().await.is_some() {} };
        if tokio::time::timeout(DRAIN_LIMIT, all).await.is_err() {
            eprintln!(
                "corrald: {} output pipe(s) still open {}s after every unit stopped \
                 (a process outside its unit holds it); their further output is not stored",
                readers.len(),
                DRAIN_LIMIT.as_secs()
            );
            readers.abort_all();
        }
        if let Some(tx) = &self.manager {
            let (done, wait) = tokio::sync::oneshot::channel();
            if tx.send(ManagerMsg::Barrier(done)).is_ok() {
                let _ = wait.await;
            }
        }
    }

    /// For `daemon-reexec`: stops every pipe reader at the end of a read,
    /// without waiting for end of file, each leaving its unfinished line
    /// with the fd holder, which keeps the pipe for the next image; then
    /// waits until what they read and every message of the manager is with
    /// the writer. False when there is no holder: the pipes could not be
    /// kept, and nothing was stopped.
    pub async fn hand_over(&self) -> bool {
        if self.holder.is_none() {
            return false;
        }
        self.stop.send_replace(true);
        self.drain().await;
        true
    }

    /// Runs `task` as a pipe reader [`Output::drain`] waits for.
    fn track(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        let mut readers = self.readers.lock().expect("readers lock");
        // Reap the finished ones, so that the set does not grow with every restart.
        while readers.try_join_next().is_some() {}
        readers.spawn(task);
    }

    /// The fd holder, if there is one.
    pub fn holder(&self) -> Option<&Arc<Client>> {
        self.holder.as_ref()
    }

    /// The same output, with the pipes' read ends deposited in `holder`.
    pub fn with_holder(mut self, holder: Option<Arc<Client>>) -> Output {
        self.holder = holder;
        self
    }

    /// Every fd a dead predecessor left with the holder, tagged (copies:
    /// the holder keeps them until they are dropped).
    pub fn take_held(&self) -> Vec<Kept> {
        let Some(holder) = &self.holder else {
            return Vec::new();
        };
        holder.take_all().unwrap_or_else(|e| {
            eprintln!("corrald: cannot take the kept fds back from the fd holder: {e}");
            Vec::new()
        })
    }

    /// Goes on reading every pipe in `kept` (the read ends a dead
    /// predecessor left with the holder, by id and metadata), into the unit
    /// and invocation it was read for, through the rate limiter `limiter`
    /// gives for its unit; how many.
    pub fn resume(
        &self,
        kept: Vec<(u64, Meta, OwnedFd)>,
        mut limiter: impl FnMut(&str) -> Option<Arc<RateLimiter>>,
    ) -> usize {
        let n = kept.len();
        for (id, m, fd) in kept {
            let left = m.unfinished();
            let rate_limit = limiter(&m.unit);
            let src = Source {
                unit: m.unit,
                invocation: m.invocation,
                pid: m.pid,
                stream: m.stream,
                priority: m.priority,
                level_prefix: m.level_prefix,
                identifier: m.identifier,
                comm: m.comm,
                rate_limit,
            };
            self.read(src, fd, Some(id), left);
        }
        n
    }

    /// The journal writer, if there is one.
    pub fn journal(&self) -> Option<&WriterHandle> {
        self.journal.as_ref()
    }

    /// Takes over the read end `fd` of a pipe `src` writes to, a copy of
    /// it deposited with the fd holder. Must be called within the tokio runtime.
    pub fn attach(&self, src: Source, fd: OwnedFd) {
        use std::os::fd::AsFd;
        let deposited = self.holder.as_ref().and_then(|h| {
            h.deposit(fd.as_fd(), &holder_meta(&src))
                .map_err(|e| eprintln!("corrald: {}: {e}", src.unit))
                .ok()
        });
        self.read(src, fd, deposited, Unfinished::default());
    }

    /// Reads `fd` into the journal, starting with the unfinished line
    /// `resume`; `deposited`: its id with the holder, to drop it by at EOF
    /// (or to leave the unfinished line with when stopped by [`Output::hand_over`]).
    fn read(&self, src: Source, fd: OwnedFd, deposited: Option<u64>, resume: Unfinished) {
        let holder = deposited.and(self.holder.clone());
        let held = holder.clone();
        let dropped = move || {
            if let (Some(h), Some(id)) = (holder, deposited) {
                h.drop_fd(id);
            }
        };
        let mut stop = self.stop.subscribe();
        let Some(handle) = self.journal.clone() else {
            match pipe::Receiver::from_owned_fd(fd) {
                Ok(rx) => self.track(async move {
                    // Stopped, the pipe stays with the holder; there is no line to leave.
                    tokio::select! {
                        biased;
                        Ok(_) = stop.wait_for(|s| *s) => {}
                        () = drain(rx) => dropped(),
                    }
                }),
                // The fd is dropped here: the writer gets EPIPE rather than blocking forever.
                Err(e) => {
                    eprintln!(
                        "corrald: {}: cannot read the output of pid {}: {e}",
                        src.unit, src.pid
                    );
                    dropped();
                }
            }
            return;
        };
        let label = format!("{} pid {} {}", src.unit, src.pid, src.stream.name());
        let mut kept = holder_meta(&src);
        let meta = SourceMeta {
            unit: Arc::from(src.unit.as_str()),
            invocation: invocation_number(&src.invocation),
            pid: u32::try_from(src.pid).ok(),
            stream: src.stream,
            default_priority: src.priority,
            level_prefix: src.level_prefix,
            identifier: Arc::from(src.identifier.as_str()),
            comm: Arc::from(src.comm.as_str()),
            rate_limit: src.rate_limit,
        };
        let task = spawn_stoppable_pipe_reader(fd, meta, handle, stop, resume);
        self.track(async move {
            // A reader given up by drain() must stop, not write to a closed writer.
            let _stop = AbortOnDrop(task.abort_handle());
            match task.await {
                Ok(Ok(stats)) => {
                    if let Some(left) = stats.left {
                        // Stopped for a re-execution: the holder keeps the pipe
                        // and the line it ends in, for the next image.
                        kept.set_unfinished(&left);
                        if let (Some(h), Some(id)) = (held, deposited)
                            && let Err(e) = h.update(id, &kept)
                        {
                            eprintln!("corrald: {label}: its unfinished line is lost: {e}");
                        }
                        return;
                    }
                }
                Ok(Err(e)) => eprintln!("corrald: journal ingest of {label} failed: {e}"),
                Err(e) => eprintln!("corrald: journal ingest of {label} ended: {e}"),
            }
            dropped();
        });
    }

    /// The manager shuts down cleanly: the holder exits.
    pub fn quit_holder(&self) {
        if let Some(h) = &self.holder {
            h.quit();
        }
    }

    /// Records a message of the manager about `unit` (started, stopped, failed...),
    /// with its MESSAGE_ID (0 for none), in the order of the calls.
    pub fn manager_entry(
        &self,
        unit: &str,
        invocation: &str,
        priority: u8,
        message_id: u128,
        message: String,
    ) {
        if let Some(tx) = &self.manager {
            let mut entry = NewEntry::manager(unit, invocation_number(invocation), message);
            entry.priority = priority;
            entry.message_id = message_id;
            let _ = tx.send(ManagerMsg::Entry(entry));
        }
    }

    /// The last `n` journal lines of `unit`, formatted as `corral journal` shows them.
    pub fn last_lines(&self, unit: &str, n: usize) -> Vec<String> {
        let Some(handle) = &self.journal else {
            return Vec::new();
        };
        let store = handle.store();
        let q = Query {
            units: vec![unit.to_string()],
            lines: Some(n),
            ..Query::default()
        };
        let Ok(entries) = store.query(&q) else {
            return Vec::new();
        };
        let opts = OutputOptions::new(Format::Short, store.store_id());
        entries
            .iter()
            .filter_map(|e| {
                let mut buf = Vec::new();
                write_entry(&mut buf, e, &opts).ok()?;
                Some(String::from_utf8_lossy(&buf).trim_end().to_string())
            })
            .collect()
    }
}

/// What the holder keeps with a pipe `src` writes to.
fn holder_meta(src: &Source) -> Meta {
    Meta {
        unit: src.unit.clone(),
        invocation: src.invocation.clone(),
        identifier: src.identifier.clone(),
        comm: src.comm.clone(),
        pid: src.pid,
        stream: src.stream,
        priority: src.priority,
        level_prefix: src.level_prefix,
        partial: String::new(),
        continuing: false,
    }
}

/// Aborts a task when its owner is dropped (or aborted).
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn drain(mut rx: pipe::Receiver) {
    let mut buf = vec![0u8; 16 * 1024];
    while let Ok(n) = rx.read(&mut buf).await {
        if n == 0 {
            break;
        }
    }
}
