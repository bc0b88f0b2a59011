//! `--vacuum-size` and `--vacuum-time` on real stores: the newest entries that fit
//! are kept, never fewer; a vacuum waits for this process's queries and refuses to
//! guess while another process holds a snapshot.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::journal::{msgs, ne, noise, open};
use corral::journal::{JournalError, Query, Store, StoreOptions};

/// A store of `commits` commits of 200 entries of one unit each (one block per
/// commit, seqs contiguous per block), units taking turns; every message starts
/// with its index.
async fn build(dir: &Path, commits: u64) {
    let (store, w) = open(dir);
    for c in 0..commits {
        let unit = ["a", "b", "c"][(c % 3) as usize];
        // Some blocks compress well, some do not: blocks of different sizes.
        let len = if c % 4 == 0 { 40 } else { 250 };
        let batch: Vec<_> = (0..200)
            .map(|i| {
                let n = c * 200 + i;
                ne(unit, &format!("{n} {}", noise(n, len)))
            })
            .collect();
        w.append_batch(batch).await.unwrap();
        w.flush().await.unwrap();
    }
    w.shutdown().await.unwrap();
    drop(w);
    drop(store);
}

/// The message index of an entry made by [`build`].
fn index(m: &str) -> u64 {
    m.split(' ').next().unwrap().parse().unwrap()
}

/// A copy of the store file at `from` in a new temp dir.
fn copy(from: &Path) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::copy(from.join("journal.redb"), d.path().join("journal.redb")).unwrap();
    d
}

fn file_len(dir: &Path) -> u64 {
    std::fs::metadata(dir.join("journal.redb")).unwrap().len()
}

#[tokio::test]
async fn vacuum_size_keeps_the_newest_entries_that_fit_and_no_fewer() {
    let orig = tempfile::tempdir().unwrap();
    let commits = 120;
    build(orig.path(), commits).await;
    let total = commits * 200;
    // The compacted size of the whole store: the reference for the limits.
    let full = {
        let d = copy(orig.path());
        let s = Store::open(d.path(), StoreOptions::default()).unwrap();
        assert!(s.compact().unwrap() || file_len(d.path()) > 0);
        s.disk_usage().unwrap()
    };
    let block = full.stored_bytes / full.blocks;
    // What an empty store takes, closed.
    let empty = {
        let d = tempfile::tempdir().unwrap();
        drop(Store::open(d.path(), StoreOptions::default()).unwrap());
        file_len(d.path())
    };
    eprintln!("store: {full:?}, {block} stored bytes per block on average");
    // The largest file footprint of one block: its stored bytes in redb pages of
    // a power-of-two size.
    let max_block = 64 * 1024;

    for percent in [100u64, 90, 75, 50, 20, 5, 1] {
        let limit = full.file_bytes * percent / 100;
        let d = copy(orig.path());
        let store = Store::open(d.path(), StoreOptions::default()).unwrap();
        let before = store.disk_usage().unwrap();
        let removed = store.vacuum_size(limit).unwrap();
        let after = store.disk_usage().unwrap();
        drop(store);
        // Closing the store does not grow it past the limit either.
        let closed = file_len(d.path());
        eprintln!(
            "limit {percent}% = {limit} B: removed {removed} of {} entries, file {} B \
             ({} B closed), {} blocks left",
            before.entries, after.file_bytes, closed, after.blocks
        );
        assert_eq!(before.entries - removed, after.entries);
        if after.entries == 0 {
            // Below what an empty store takes: everything goes, and that is all.
            assert!(
                closed <= empty.max(limit),
                "closed: {closed} B over {limit}"
            );
            continue;
        }
        assert!(after.file_bytes <= limit, "{after:?} over {limit}");
        assert!(closed <= limit, "closed: {closed} B over {limit}");
        if percent == 100 {
            assert_eq!(
                removed, 0,
                "a store that compacts to the limit loses nothing"
            );
        }
        // No fewer than fit: one more block would not have.
        assert!(
            closed + max_block > limit,
            "{after:?}: {} B under {limit}, more than one block",
            limit - closed
        );
        // The newest entries are the ones kept, all of them.
        let kept = Store::open_read_only(d.path())
            .unwrap()
            .query(&Query::default())
            .unwrap();
        let kept: Vec<u64> = msgs(&kept).iter().map(|m| index(m)).collect();
        assert_eq!(kept, (total - kept.len() as u64..total).collect::<Vec<_>>());
    }
}

/// A query of this process holds a read snapshot, under which redb cannot
/// compact: the vacuum waits for it to end instead of failing.
#[tokio::test]
async fn vacuum_size_waits_for_queries_of_this_process() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), 30).await;
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let before = store.disk_usage().unwrap();
    let limit = before.file_bytes / 2;
    let reader = store.query_iter(&Query::default()).unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let holder = std::thread::spawn(move || {
        // Holds the snapshot until told, then reads it to its end.
        rx.recv().unwrap();
        reader.count() as u64
    });
    let s = store.clone();
    let vacuum = std::thread::spawn(move || s.vacuum_size(limit));
    // The vacuum is now waiting for the reader (or about to).
    std::thread::sleep(Duration::from_millis(200));
    tx.send(()).unwrap();
    // The reader saw its whole snapshot, the vacuum then did its work.
    assert_eq!(holder.join().unwrap(), before.entries);
    let removed = vacuum.join().unwrap().unwrap();
    let after = store.disk_usage().unwrap();
    assert!(removed > 0);
    assert!(after.file_bytes <= limit, "{after:?} over {limit}");
}

/// A `corral` process, killed and reaped when dropped.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Another process reading the store (a `corral journal --file` whose output
/// nobody reads) keeps redb from compacting: the file's size cannot be measured,
/// and the vacuum removes nothing on a guess (regression: it removed every entry).
#[tokio::test]
async fn vacuum_size_refuses_to_guess_while_another_process_reads() {
    use std::io::Read;
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), 30).await;
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let before = store.disk_usage().unwrap();
    let limit = before.file_bytes / 2;
    let mut child = Command::new(env!("CARGO_BIN_EXE_corral"))
        .args(["journal", "--no-pager", "-o", "cat", "--file"])
        .arg(dir.path().join("journal.redb"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let reader = Reaped(child);
    // Its first bytes: it is reading, in the middle of a snapshot (the output is
    // far larger than the pipe, so it stays there).
    let mut first = [0u8; 16];
    out.read_exact(&mut first).unwrap();
    match store.vacuum_size(limit) {
        Err(JournalError::CompactionBlocked { removed: 0, path }) => {
            assert_eq!(path, dir.path().join("journal.redb"));
        }
        other => panic!("vacuum under another process's snapshot: {other:?}"),
    }
    assert_eq!(store.disk_usage().unwrap().entries, before.entries);
    drop(out);
    drop(reader);
    // Once it is gone, the vacuum goes through.
    assert!(store.vacuum_size(limit).unwrap() > 0);
    assert!(store.disk_usage().unwrap().file_bytes <= limit);
}

/// `--vacuum-time`: what is older than the limit goes, per unit; whatever is
/// newer stays, however the units' blocks interleave.
#[tokio::test]
async fn vacuum_time_removes_what_is_older_and_keeps_what_is_newer() {
    let dir = tempfile::tempdir().unwrap();
    let (store, w) = open(dir.path());
    let now = corral::journal::realtime_now();
    let hour = 3_600_000_000u64;
    // Per unit, commits 10 h, 8 h, ... 0 h old; the units take turns.
    for age in [10u64, 8, 6, 4, 2, 0] {
        for unit in ["a", "b"] {
            let batch: Vec<_> = (0..100)
                .map(|i| {
                    let mut e = ne(unit, &format!("{unit} {age}h {i}"));
                    e.realtime = Some(now - age * hour - (100 - i) * 1000);
                    e
                })
                .collect();
            w.append_batch(batch).await.unwrap();
            w.flush().await.unwrap();
        }
    }
    let report = w
        .vacuum(None, Some(Duration::from_secs(5 * 3600)))
        .await
        .unwrap();
    assert_eq!(report.removed, 2 * 3 * 100, "{report:?}");
    let left = msgs(&store.query(&Query::default()).unwrap());
    assert_eq!(left.len(), 2 * 3 * 100);
    assert!(
        left.iter()
            .all(|m| ["4h", "2h", "0h"].contains(&m.split(' ').nth(1).unwrap())),
        "{left:?}"
    );
    // Nothing newer than the limit: nothing to remove.
    let report = w
        .vacuum(None, Some(Duration::from_secs(5 * 3600)))
        .await
        .unwrap();
    assert_eq!(report.removed, 0);
    assert_eq!(report.after.entries, 600);
}
