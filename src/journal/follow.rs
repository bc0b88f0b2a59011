//! Following a query in the manager (`corral journal -f` over the control socket):
//! the stored entries first, then every newly committed one that matches, with no gap
//! and no duplicate between the two, even when the follower falls behind.

use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;

use super::error::{JournalError, Result};
use super::query::CompiledQuery;
use super::writer::WriterHandle;
use super::{Entry, Query};

/// Entries a follower receives: stored ones, then live ones. The channel closes when
/// the writer stops or the receiver is dropped.
pub type FollowReceiver = mpsc::Receiver<Result<Entry>>;

/// Starts following `query` on the store of `handle`: sends the entries `query`
/// selects now (e.g. the last N), then each new matching entry as it is committed.
pub async fn follow(handle: WriterHandle, query: Query) -> Result<FollowReceiver> {
    // Subscribe before the first query: whatever commits in between is seen twice at
    // worst, and the seq check below drops the second copy.
    let mut sub = handle.subscribe();
    let cq = CompiledQuery::new(&query)?;
    let store = handle.store().clone();
    let start = store.next_seq()?;
    let first = store.query_async(query.clone()).await?;
    let (tx, rx) = mpsc::channel(1024);
    tokio::spawn(async move {
        // Entries below `next` have been sent (or were before the follow began).
        let mut next = first.last().map(|e| e.seq + 1).unwrap_or(start).max(start);
        for e in first {
            if tx.send(Ok(e)).await.is_err() {
                return;
            }
        }
        loop {
            match sub.recv().await {
                Ok(batch) => {
                    for e in batch.iter() {
                        if e.seq >= next && cq.matches_entry(e) {
                            next = e.seq + 1;
                            if tx.send(Ok(e.clone())).await.is_err() {
                                return;
                            }
                        }
                    }
                }
                Err(RecvError::Lagged(_)) => {
                    // Fell behind the broadcast: catch up from the store, then go on.
                    let mut q = query.clone();
                    q.lines = None;
                    q.reverse = false;
                    q.cursor = Some(format!("i={next:x}"));
                    q.after_cursor = None;
                    match store.query_async(q).await {
                        Ok(es) => {
                            for e in es {
                                next = e.seq + 1;
                                if tx.send(Ok(e)).await.is_err() {
                                    return;
                                }
                            }
                        }
                        Err(e) => {
                            let _ = tx.send(Err(e)).await;
                            return;
                        }
                    }
                }
                Err(RecvError::Closed) => {
                    let _ = tx
                        .send(Err(JournalError::WriterGone {
                            path: store.path().to_owned(),
                        }))
                        .await;
                    return;
                }
            }
        }
    });
    Ok(rx)
}
