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
use std::sync::Arc;

use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;

use crate::journal::ingest::{RateLimiter, SourceMeta, spawn_pipe_reader};
use crate::journal::output::{Format, OutputOptions, write_entry};
use crate::journal::{NewEntry, Query, WriterHandle};

pub use crate::journal::Stream;

use super::fd_holder::{Client, Meta};
use super::state::Pid;

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

/// The sink of every unit's output; cheap to clone.
#[derive(Clone, Default)]
pub struct Output {
    journal: Option<WriterHandle>,
    /// The manager's messages, appended in order by one task.
    manager: Option<tokio::sync::mpsc::UnboundedSender<NewEntry>>,
    /// The fd holder, which keeps a copy of every pipe for a successor.
    holder: Option<Arc<Client>>,
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
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<NewEntry>();
            tokio::spawn(async move {
                while let Some(entry) = rx.recv().await {
                    if let Err(e) = handle.append(entry).await {
                        eprintln!("corrald: cannot write to the journal: {e}");
                    }
                }
            });
            tx
        });
        Output {
            journal,
            manager,
            holder: None,
        }
    }

    /// The same output, with the pipes' read ends deposited in `holder`.
    pub fn with_holder(mut self, holder: Option<Arc<Client>>) -> Output {
        self.holder = holder;
        self
    }

    /// Goes on reading every pipe a dead predecessor left with the holder,
    /// into the unit and invocation it was read for, through the rate
    /// limiter `limiter` gives for its unit; how many.
    pub fn resume(&self, mut limiter: impl FnMut(&str) -> Option<Arc<RateLimiter>>) -> usize {
        let Some(holder) = &self.holder else {
            return 0;
        };
        let kept = match holder.take_all() {
            Ok(k) => k,
            Err(e) => {
                eprintln!("corrald: cannot take the output pipes back from the fd holder: {e}");
                return 0;
            }
        };
        let n = kept.len();
        for (id, m, fd) in kept {
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
            self.read(src, fd, Some(id));
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
            let meta = Meta {
                unit: src.unit.clone(),
                invocation: src.invocation.clone(),
                identifier: src.identifier.clone(),
                comm: src.comm.clone(),
                pid: src.pid,
                stream: src.stream,
                priority: src.priority,
                level_prefix: src.level_prefix,
            };
            h.deposit(fd.as_fd(), &meta)
                .map_err(|e| eprintln!("corrald: {}: {e}", src.unit))
                .ok()
        });
        self.read(src, fd, deposited);
    }

    /// Reads `fd` into the journal; `deposited`: its id with the holder, to
    /// drop it by at EOF.
    fn read(&self, src: Source, fd: OwnedFd, deposited: Option<u64>) {
        let holder = deposited.and(self.holder.clone());
        let dropped = move || {
            if let (Some(h), Some(id)) = (holder, deposited) {
                h.drop_fd(id);
            }
        };
        let Some(handle) = self.journal.clone() else {
            match pipe::Receiver::from_owned_fd(fd) {
                Ok(rx) => {
                    tokio::spawn(async move {
                        drain(rx).await;
                        dropped();
                    });
                }
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
        let task = spawn_pipe_reader(fd, meta, handle);
        tokio::spawn(async move {
            match task.await {
                Ok(Ok(_)) => {}
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
            let _ = tx.send(entry);
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

async fn drain(mut rx: pipe::Receiver) {
    let mut buf = vec![0u8; 16 * 1024];
    while let Ok(n) = rx.read(&mut buf).await {
        if n == 0 {
            break;
        }
    }
}
