//! Following a query in the manager (`corral journal -f` over the control socket):
//! the stored entries first, then every newly committed one that matches, with no gap
//! and no duplicate, however far the follower falls behind.
//!
//! A follower is a position (the next sequence number to look at) and a query. It
//! reads the store itself, one bounded page at a time, and waits for the writer's
//! commit counter when it has caught up. Nothing is queued for it anywhere: a client
//! that stops reading holds one page in the manager, and when it reads again it goes
//! on from its position in the store.

use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, watch};

use super::error::{JournalError, Result};
use super::query::CompiledQuery;
use super::store::{Skipped, Store};
use super::writer::WriterHandle;
use super::{Entry, Query};

/// At most this many entries in one page.
pub const PAGE_ENTRIES: usize = 256;

/// A page ends once its messages reach this many bytes (entries are up to 48 KiB
/// long: 256 of them would be 12 MiB).
pub const PAGE_BYTES: usize = 64 * 1024;

/// Pages a follower receives: the stored entries, then live ones, in seq order. The
/// channel holds one page; the follower reads the next only when it has been taken.
/// It closes when the writer stops or the receiver is dropped.
pub type FollowReceiver = mpsc::Receiver<Result<Vec<Entry>>>;

/// Starts following `query` on the store of `handle`: sends the entries `query`
/// selects now (e.g. the last N), then each new matching entry once it is committed.
pub async fn follow(handle: WriterHandle, query: Query) -> Result<FollowReceiver> {
    Ok(follow_reporting(handle, query).await?.0)
}

/// The entries `query` selects now, in pages, oldest first (not `reverse`): a
/// query answered over the control socket holds a page in the manager, not the
/// whole answer. Entries committed after the call are not included.
pub async fn query_pages(store: Store, query: Query) -> Result<FollowReceiver> {
    Ok(query_pages_reporting(store, query).await?.0)
}

/// Damaged blocks the pages of a [`follow_reporting`] or
/// [`query_pages_reporting`] passed over so far.
pub type SkippedSoFar = Arc<Mutex<Skipped>>;

/// [`follow`], also counting the damaged blocks it skips (for a warning to the client).
pub async fn follow_reporting(
    handle: WriterHandle,
    query: Query,
) -> Result<(FollowReceiver, SkippedSoFar)> {
    // Subscribed before the first read: a commit in between changes the counter,
    // so it is waited for and read, never missed.
    let committed = handle.subscribe();
    let skipped = SkippedSoFar::default();
    let rx = pages(
        handle.store().clone(),
        Some(committed),
        query,
        skipped.clone(),
    )
    .await?;
    Ok((rx, skipped))
}

/// [`query_pages`], also counting the damaged blocks it skips.
pub async fn query_pages_reporting(
    store: Store,
    query: Query,
) -> Result<(FollowReceiver, SkippedSoFar)> {
    let skipped = SkippedSoFar::default();
    let rx = pages(store, None, query, skipped.clone()).await?;
    Ok((rx, skipped))
}

/// [`follow`] with `committed`, [`query_pages`] without.
async fn pages(
    store: Store,
    mut committed: Option<watch::Receiver<u64>>,
    query: Query,
    skipped: SkippedSoFar,
) -> Result<FollowReceiver> {
    // A query ends where the store ended when it was asked.
    let end = match committed {
        Some(_) => u64::MAX,
        None => {
            let s = store.clone();
            blocking(&store, move || s.next_seq()).await?
        }
    };
    let mut next = CompiledQuery::new(&query)?.min_seq;
    if let Some(n) = query.lines {
        let (s, q) = (store.clone(), query.clone());
        next = next.max(blocking(&store, move || first_of_newest(&s, &q, n, end)).await?);
    }
    let (tx, rx) = mpsc::channel(1);
    tokio::spawn(async move {
        loop {
            let (s, q, sk) = (store.clone(), query.clone(), skipped.clone());
            let read = move || match read_page(&s, &q, next, end, &sk) {
                // The disk filled while this page's snapshot was open: a new one
                // reads the last commit through the store's fallback.
                Err(e) if e.is_previous_io() => read_page(&s, &q, next, end, &sk),
                r => r,
            };
            let page = match blocking(&store, read).await {
                Ok(p) => p,
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            };
            next = page.next;
            if !page.entries.is_empty() && tx.send(Ok(page.entries)).await.is_err() {
                return;
            }
            if page.full {
                continue;
            }
            let Some(committed) = committed.as_mut() else {
                return;
            };
            // Caught up with the snapshot: wait for a commit past it.
            let gone = tokio::select! {
                r = committed.wait_for(|&c| c > page.next) => r.is_err(),
                // The client is gone: nothing to wait for.
                _ = tx.closed() => return,
            };
            if gone {
                let _ = tx
                    .send(Err(JournalError::WriterGone {
                        path: store.path().to_owned(),
                    }))
                    .await;
                return;
            }
        }
    });
    Ok(rx)
}

/// Runs a store read on tokio's blocking pool (redb reads block).
async fn blocking<T: Send + 'static>(
    store: &Store,
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        JournalError::io("follow", store.path(), std::io::Error::other(e.to_string()))
    })?
}

/// The seq of the oldest of the newest `n` entries `query` matches below `end`
/// (where `-n N` starts), found newest first without keeping the entries.
fn first_of_newest(store: &Store, query: &Query, n: usize, end: u64) -> Result<u64> {
    let committed = store.next_seq()?;
    let q = Query {
        lines: None,
        reverse: true,
        ..query.clone()
    };
    let mut first = committed.min(end);
    let mut seen = 0;
    if n == 0 {
        return Ok(first);
    }
    for e in store.query_iter(&q)? {
        let e = e?;
        if e.seq >= end {
            continue;
        }
        first = e.seq;
        seen += 1;
        if seen == n {
            break;
        }
    }
    Ok(first)
}

/// One page of a follow.
struct Page {
    /// Matching entries from the position on, oldest first.
    entries: Vec<Entry>,
    /// Where the next page starts.
    next: u64,
    /// Whether the page was cut at its limits (more may be stored already).
    full: bool,
}

/// Reads the entries `query` matches from seq `from` on and below `end`, at most a
/// page of them.
fn read_page(
    store: &Store,
    query: &Query,
    from: u64,
    end: u64,
    skipped: &Mutex<Skipped>,
) -> Result<Page> {
    // Everything below this is in the snapshot the query below reads (it begins later).
    let committed = store.next_seq()?;
    let q = Query {
        cursor: Some(format!("i={from:x}")),
        after_cursor: None,
        lines: None,
        reverse: false,
        ..query.clone()
    };
    let mut entries = Vec::new();
    let mut bytes = 0;
    let mut it = store.query_iter(&q)?;
    while entries.len() < PAGE_ENTRIES && bytes < PAGE_BYTES {
        match it
            .next()
            .filter(|e| e.as_ref().is_ok_and(|e| e.seq < end) || e.is_err())
        {
            Some(e) => {
                let e = e?;
                bytes += e.message.len();
                entries.push(e);
            }
            None => {
                add_skipped(skipped, it.skipped());
                let next = entries.last().map_or(from, |e| e.seq + 1);
                return Ok(Page {
                    entries,
                    next: next.max(committed),
                    full: false,
                });
            }
        }
    }
    add_skipped(skipped, it.skipped());
    let next = entries.last().map_or(from, |e| e.seq + 1);
    Ok(Page {
        entries,
        next,
        full: true,
    })
}

/// Adds what one page's read passed over to the follow's total.
fn add_skipped(total: &Mutex<Skipped>, page: &Skipped) {
    if page.blocks == 0 {
        return;
    }
    let mut t = total.lock().expect("skipped lock poisoned");
    t.blocks += page.blocks;
    t.entries += page.entries;
    if t.first_error.is_none() {
        t.first_error = page.first_error.clone();
    }
}
