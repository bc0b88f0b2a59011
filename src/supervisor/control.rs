//! The control socket's request handler: it turns each request into inputs
//! for the manager thread and waits for their answers, so a slow job (a stop
//! waiting for TimeoutStopSec) holds only its own connection.
//!
//! [`ControlHandler::handle`] is the daemon's one `match` on the protocol's
//! [`Request`]: past it the manager sees only its own [`JobRequest`]s and
//! [`Query`]s, and the journal requests never reach it.

use tokio::sync::{mpsc, oneshot};

use crate::ipc::proto::{ErrorKind, Failure, JobOutcome, Request, Response};
use crate::ipc::server::{Handler, Replies};
use crate::ipc::{ErrorCode, IpcError, PeerCred};
use crate::journal::{self, WriterHandle};

use super::manager::{Input, JobRequest};

/// Answers control requests by talking to the manager thread.
pub struct ControlHandler {
    /// The manager's input queue.
    pub tx: mpsc::UnboundedSender<Input>,
    /// The journal writer, for journal queries, disk usage and vacuum (they never
    /// reach the manager thread).
    pub journal: Option<WriterHandle>,
    /// How `daemon-reexec` is asked of the manager's start-up task (None:
    /// the output pipes could not outlive this image, the request is refused).
    pub reexec: Option<Reexec>,
}

/// What the handler needs for `daemon-reexec`.
pub struct Reexec {
    /// Set once asked: the server stops accepting, the start-up task re-executes.
    pub asked: std::sync::Arc<tokio::sync::watch::Sender<bool>>,
    /// The corrald file to execute.
    pub program: std::path::PathBuf,
}

/// A question the manager thread answers at once from its state (or a
/// change to its environment block that needs no job).
#[derive(Debug)]
pub enum Query {
    /// `status` without units: the manager and every unit not inactive.
    Manager,
    /// `status UNIT...`, with each unit's last journal lines.
    Status {
        /// Unit names as typed.
        units: Vec<String>,
    },
    /// `show UNIT...` (a unit that does not exist is shown as not-found).
    Show {
        /// Unit names as typed.
        units: Vec<String>,
    },
    /// Every known unit.
    List,
    /// The files of units.
    Cat {
        /// Unit names as typed.
        units: Vec<String>,
    },
    /// `is-active`, `is-failed`.
    ActiveStates {
        /// Unit names as typed.
        units: Vec<String>,
    },
    /// Read the unit files again.
    DaemonReload,
    /// `reset-failed` without units: every unit.
    ResetFailedAll,
    /// The dependency tree of a unit.
    ListDependencies {
        /// The unit name as typed.
        unit: String,
        /// What pulls it in instead of what it pulls in.
        reverse: bool,
        /// Expand every unit, not only targets.
        all: bool,
    },
    /// `set-environment`.
    SetEnvironment {
        /// `NAME=value` assignments.
        assignments: Vec<String>,
    },
    /// `unset-environment`.
    UnsetEnvironment {
        /// Names, or `NAME=value`.
        names: Vec<String>,
    },
    /// `import-environment`.
    ImportEnvironment {
        /// Name and value pairs.
        pairs: Vec<(String, String)>,
    },
    /// `show-environment`.
    ShowEnvironment,
    /// The unit search path and runit directories.
    SearchPaths,
}

/// Entries per stream item: one frame per batch, not per entry.
const JOURNAL_BATCH: usize = 256;

fn gone() -> Failure {
    Failure {
        kind: ErrorKind::Internal,
        message: "the manager is shutting down; the job was not completed".into(),
    }
}

impl ControlHandler {
    async fn jobs(&self, units: Vec<String>, job: JobRequest) -> Response {
        let mut waiting = Vec::with_capacity(units.len());
        for unit in units {
            let (reply, rx) = oneshot::channel();
            let sent = self.tx.send(Input::Job {
                unit: unit.clone(),
                job: job.clone(),
                manual: true,
                reply,
            });
            waiting.push((unit, sent.is_ok().then_some(rx)));
        }
        let mut out = Vec::with_capacity(waiting.len());
        for (unit, rx) in waiting {
            let result = match rx {
                Some(rx) => rx.await.unwrap_or_else(|_| Err(gone())),
                None => Err(gone()),
            };
            // The full name, as systemctl reports it ("Failed to start needy.service: …").
            out.push(JobOutcome {
                unit: super::manager::normalize(&unit),
                result,
            });
        }
        Response::Jobs(out)
    }

    async fn query(&self, query: Query) -> Response {
        ask(&self.tx, query)
            .await
            .unwrap_or_else(|| Response::Error(gone()))
    }
}

/// Sends `query` to the manager thread and waits for its answer; `None`
/// once the manager has gone.
pub(crate) async fn ask(tx: &mpsc::UnboundedSender<Input>, query: Query) -> Option<Response> {
    let (reply, rx) = oneshot::channel();
    tx.send(Input::Query { query, reply }).ok()?;
    rx.await.ok()
}

impl ControlHandler {
    /// `daemon-reexec`: asked before the answer goes out, so that the
    /// server stops accepting at once and the client's next connection
    /// waits in the listener's backlog for the new image.
    fn reexec(&self) -> Response {
        let refused = |message: String| {
            Response::Error(Failure {
                kind: ErrorKind::Refused,
                message,
            })
        };
        let Some(r) = &self.reexec else {
            return refused(
                "the manager has no fd holder (see its stderr): its units' output pipes \
                 would not outlive a re-execution"
                    .into(),
            );
        };
        if let Err(e) = nix::unistd::access(&r.program, nix::unistd::AccessFlags::X_OK) {
            return refused(format!("cannot execute {}: {e}", r.program.display()));
        }
        r.asked.send_replace(true);
        Response::Done(Vec::new())
    }
}

impl ControlHandler {
    /// Whether `response` holds a job the manager thread dropped because it
    /// ended for `daemon-reexec`, not for a shutdown: the client is told to
    /// ask the new image again rather than told the job failed.
    fn cut_by_reexec(&self, response: &Response) -> bool {
        let reexecuting = self.reexec.as_ref().is_some_and(|r| *r.asked.borrow());
        reexecuting
            && matches!(response, Response::Jobs(outcomes)
                if outcomes.iter().any(|o| o.result.as_ref().err() == Some(&gone())))
    }
}

/// The answer when the manager runs without a journal.
fn no_journal() -> Response {
    Response::Error(Failure {
        kind: ErrorKind::Internal,
        message: "the manager has no journal open (see its stderr); \
                  read the store with `corral journal -D DIR`"
            .into(),
    })
}

impl ControlHandler {
    /// `JournalDiskUsage`, measured by the writer thread.
    async fn journal_usage(&self) -> Response {
        let Some(handle) = &self.journal else {
            return no_journal();
        };
        match handle.disk_usage().await {
            Ok(usage) => Response::JournalUsage {
                path: handle.store().path().to_string_lossy().into_owned(),
                usage,
            },
            Err(e) => Response::Error(Failure {
                kind: ErrorKind::Internal,
                message: format!("journal disk usage failed: {e}"),
            }),
        }
    }

    /// `JournalVacuum`: the writer thread owns the write transaction, so it does
    /// the work; this task only awaits its answer.
    async fn journal_vacuum(&self, max_bytes: Option<u64>, max_age_usec: Option<u64>) -> Response {
        let Some(handle) = &self.journal else {
            return no_journal();
        };
        let max_age = max_age_usec.map(std::time::Duration::from_micros);
        match handle.vacuum(max_bytes, max_age).await {
            Ok(report) => Response::Vacuumed {
                path: handle.store().path().to_string_lossy().into_owned(),
                report,
            },
            Err(e) => Response::Error(Failure {
                kind: ErrorKind::Internal,
                message: format!("journal vacuum failed: {e}"),
            }),
        }
    }

    async fn journal(
        &self,
        query: journal::Query,
        follow: bool,
        replies: &mut Replies<'_, Response>,
    ) -> Result<(), IpcError> {
        let failure = |message: String| {
            Response::Error(Failure {
                kind: ErrorKind::Internal,
                message,
            })
        };
        let Some(handle) = self.journal.clone() else {
            return replies.reply(&no_journal()).await;
        };
        if !follow && query.reverse {
            // Newest first has no pages yet: the answer is gathered (bounded by -n).
            let entries = match handle.store().query_async(query).await {
                Ok(e) => e,
                Err(e) => {
                    return replies
                        .reply(&failure(format!("journal query failed: {e}")))
                        .await;
                }
            };
            for chunk in entries.chunks(JOURNAL_BATCH) {
                replies.item(&Response::Entries(chunk.to_vec())).await?;
            }
            return replies.end().await;
        }
        let rx = if follow {
            crate::journal::follow::follow_reporting(handle, query).await
        } else {
            crate::journal::follow::query_pages_reporting(handle.store().clone(), query).await
        };
        let what = if follow { "follow" } else { "query" };
        let (mut rx, skipped) = match rx {
            Ok(rx) => rx,
            Err(e) => {
                return replies
                    .reply(&failure(format!("journal {what} failed: {e}")))
                    .await;
            }
        };
        // Damaged blocks are said to the client as they are met, once each.
        let mut warned = 0;
        loop {
            let more = skipped_since(&skipped, &mut warned);
            if let Some(w) = more {
                replies.item(&Response::Warning(w)).await?;
            }
            tokio::select! {
                page = rx.recv() => match page {
                    // Written however long the client takes to read it: meanwhile the
                    // reader waits with its position, and nothing piles up here.
                    Some(Ok(entries)) => replies.item_unhurried(&Response::Entries(entries)).await?,
                    Some(Err(e)) => {
                        replies.item(&failure(format!("journal {what} stopped: {e}"))).await?;
                        break;
                    }
                    None => break,
                },
                // The client hung up, or the server is stopping.
                _ = replies.closed() => break,
            }
            if replies.is_closed() {
                break;
            }
        }
        if let Some(w) = skipped_since(&skipped, &mut warned)
            && !replies.is_closed()
        {
            replies.item(&Response::Warning(w)).await?;
        }
        replies.end().await
    }
}

/// What the damaged blocks skipped since the last warning amount to, said as
/// the direct reader says it; `None` when there are none new.
fn skipped_since(total: &crate::journal::follow::SkippedSoFar, warned: &mut u64) -> Option<String> {
    let t = total.lock().expect("skipped lock poisoned");
    if t.blocks == *warned {
        return None;
    }
    *warned = t.blocks;
    Some(format!(
        "skipped {} damaged block(s) holding {} entries so far; the rest is shown ({})",
        t.blocks,
        t.entries,
        t.first_error.as_deref().unwrap_or("no detail")
    ))
}

impl Handler for ControlHandler {
    type Request = Request;
    type Response = Response;

    async fn handle(
        &self,
        _peer: &PeerCred,
        request: Request,
        replies: &mut Replies<'_, Response>,
    ) -> Result<(), IpcError> {
        // The socket only admits our own uid and root (ServerConfig::owner).
        let response = match request {
            Request::Journal { query, follow } => {
                return self.journal(*query, follow, replies).await;
            }
            Request::Start { units } => self.jobs(units, JobRequest::Start).await,
            Request::Stop { units } => self.jobs(units, JobRequest::Stop).await,
            Request::Restart { units } => self.jobs(units, JobRequest::Restart).await,
            Request::TryRestart { units } => self.jobs(units, JobRequest::TryRestart).await,
            Request::Reload { units } => self.jobs(units, JobRequest::Reload).await,
            Request::ReloadOrRestart { units } => {
                let job = JobRequest::ReloadOrRestart {
                    only_running: false,
                };
                self.jobs(units, job).await
            }
            Request::TryReloadOrRestart { units } => {
                let job = JobRequest::ReloadOrRestart { only_running: true };
                self.jobs(units, job).await
            }
            Request::Kill {
                units,
                signal,
                whom,
            } => self.jobs(units, JobRequest::Kill { signal, whom }).await,
            Request::ResetFailed { units } if units.is_empty() => {
                self.query(Query::ResetFailedAll).await
            }
            Request::ResetFailed { units } => self.jobs(units, JobRequest::ResetFailed).await,
            Request::JournalDiskUsage => self.journal_usage().await,
            Request::JournalVacuum {
                max_bytes,
                max_age_usec,
            } => self.journal_vacuum(max_bytes, max_age_usec).await,
            Request::Status { units } if units.is_empty() => self.query(Query::Manager).await,
            Request::Status { units } => self.query(Query::Status { units }).await,
            Request::Show { units } => self.query(Query::Show { units }).await,
            Request::List => self.query(Query::List).await,
            Request::Cat { units } => self.query(Query::Cat { units }).await,
            Request::ActiveStates { units } => self.query(Query::ActiveStates { units }).await,
            Request::DaemonReload => self.query(Query::DaemonReload).await,
            Request::ListDependencies { unit, reverse, all } => {
                self.query(Query::ListDependencies { unit, reverse, all })
                    .await
            }
            Request::SetEnvironment { assignments } => {
                self.query(Query::SetEnvironment { assignments }).await
            }
            Request::UnsetEnvironment { names } => {
                self.query(Query::UnsetEnvironment { names }).await
            }
            Request::ImportEnvironment { pairs } => {
                self.query(Query::ImportEnvironment { pairs }).await
            }
            Request::ShowEnvironment => self.query(Query::ShowEnvironment).await,
            Request::SearchPaths => self.query(Query::SearchPaths).await,
            Request::DaemonReexec => self.reexec(),
        };
        if self.cut_by_reexec(&response) {
            let message = "the corral manager re-executes itself (daemon-reexec); the job goes on \
                           in the new image: ask again to wait for it"
                .to_string();
            return replies.error(ErrorCode::REEXECUTING, message).await;
        }
        replies.reply(&response).await
    }
}
