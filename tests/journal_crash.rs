//! Crash safety: a writer process flooding the store is SIGKILLed mid-way; the store
//! reopens with every acknowledged (flushed) entry intact, none duplicated, and the
//! next writer appends after them. Three rounds on the same store.
//!
//! This test has its own `main` (harness = false): run with CORRAL_JOURNAL_FLOOD=DIR it
//! is the flooding writer itself, so the test needs no other binary.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;

use common::journal::corral_journal;
use corral::journal::{NewEntry, Query, Store, StoreOptions, Stream, Writer, WriterOptions};

const FLOOD_ENV: &str = "CORRAL_JOURNAL_FLOOD";
const TOTAL: u64 = 1_000_000;
const BATCH: u64 = 1000;

fn entry(n: u64) -> NewEntry {
    NewEntry {
        unit: Arc::from(if n.is_multiple_of(3) {
            "flood-a"
        } else {
            "flood-b"
        }),
        invocation: 1,
        pid: Some(n as u32),
        stream: Stream::Stdout,
        priority: (n % 8) as u8,
        identifier: Arc::from("flood"),
        comm: Arc::from("flood"),
        message_id: 0,
        message: format!(
            "flood {n:09} lorem ipsum dolor sit amet consectetur adipiscing elit sed do"
        )
        .into_bytes(),
        flags: 0,
        realtime: None,
        monotonic: None,
    }
}

/// The child: continue the flood after what the store already holds; print
/// "acked N" (N = entries durable) after each flush.
fn flood(dir: &str) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = Store::open(dir, StoreOptions::default()).unwrap();
        let start = store.next_seq().unwrap() - 1;
        let w = Writer::spawn(store, WriterOptions::default()).unwrap();
        let mut n = start;
        while n < TOTAL {
            let batch: Vec<_> = (n..(n + BATCH).min(TOTAL)).map(entry).collect();
            n += batch.len() as u64;
            w.append_batch(batch).await.unwrap();
            if (n / BATCH).is_multiple_of(10) {
                let next = w.flush().await.unwrap();
                println!("acked {}", next - 1);
            }
        }
        let next = w.flush().await.unwrap();
        w.shutdown().await.unwrap();
        println!("acked {}", next - 1);
    });
}

/// Starts a flooding child, kills it with SIGKILL once `kill_after` entries are acked;
/// returns the highest acked count seen.
fn flood_and_kill(dir: &std::path::Path, kill_after: u64) -> u64 {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .env(FLOOD_ENV, dir)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut acked = 0;
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    while let Some(Ok(l)) = lines.next() {
        acked = l.strip_prefix("acked ").unwrap().parse().unwrap();
        if acked >= kill_after {
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGKILL,
            )
            .unwrap();
            break;
        }
    }
    let status = child.wait().unwrap();
    assert!(!status.success(), "the writer was killed, not finished");
    acked
}

fn verify(store: &Store, acked: u64) -> u64 {
    let all = store.query(&Query::default()).unwrap();
    let n = all.len() as u64;
    assert!(
        n >= acked,
        "{n} entries survived, {acked} were acknowledged"
    );
    for (i, e) in all.iter().enumerate() {
        let i = i as u64;
        assert_eq!(e.seq, i + 1, "seqs are contiguous, no duplicates");
        let want = entry(i);
        assert_eq!(e.message, want.message);
        assert_eq!(e.unit, &*want.unit);
        assert_eq!(e.pid, want.pid);
        assert_eq!(e.priority, want.priority);
    }
    assert_eq!(store.disk_usage().unwrap().entries, n);
    n
}

fn main() {
    if let Some(dir) = std::env::var_os(FLOOD_ENV) {
        flood(dir.to_str().unwrap());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut survived = 0;
    for (round, kill_after) in [150_000u64, 400_000, 700_000].into_iter().enumerate() {
        let acked = flood_and_kill(dir.path(), kill_after);
        // A plain read-only open refuses a store its writer did not close...
        match Store::open_read_only(dir.path()) {
            Err(corral::journal::JournalError::NeedsRepair { .. }) => {}
            Ok(_) => eprintln!("round {round}: read-only open after kill -9 worked directly"),
            Err(e) => panic!("unexpected error after kill -9: {e}"),
        }
        // ...so `corral journal` (manager down) recovers it first, then reads.
        let out = corral_journal(dir.path(), &["-n", "1", "-o", "cat"]);
        let last = String::from_utf8(out).unwrap();
        let last_n: u64 = last[6..15].parse().unwrap();
        assert!(
            last_n + 1 >= acked,
            "corral journal shows {last:?} after {acked} acked"
        );
        // The restarted writer: recovery, then every acked entry is there.
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        let n = verify(&store, acked);
        assert!(n >= survived);
        eprintln!(
            "round {round}: acked {acked}, survived {n} (lost unacked: {})",
            n - acked
        );
        survived = n;
    }
    // The last writer finishes the flood: appends continue right after the survivors.
    let out = Command::new(std::env::current_exe().unwrap())
        .env(FLOOD_ENV, dir.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    let store = Store::open_read_only(dir.path()).unwrap();
    assert_eq!(verify(&store, TOTAL), TOTAL);
    println!("journal_crash: ok (3 kill -9 rounds, {TOTAL} entries intact)");
    readers_beside_a_writer_process();
}

/// redb's SingleWriter mode under load: while another process floods the store, fresh
/// read-only opens and one long-lived read-only handle always see a consistent prefix.
fn readers_beside_a_writer_process() {
    let dir = tempfile::tempdir().unwrap();
    // Create the store first so readers never race its creation.
    drop(Store::open(dir.path(), StoreOptions::default()).unwrap());
    let mut child = Command::new(std::env::current_exe().unwrap())
        .env(FLOOD_ENV, dir.path())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let long = Store::open_read_only(dir.path()).unwrap();
    let (mut opens, mut last_seen, mut checks) = (0, 0, 0);
    loop {
        let done = child.try_wait().unwrap().is_some();
        let fresh = Store::open_read_only(dir.path()).unwrap();
        opens += 1;
        for s in [&fresh, &long] {
            let q = Query {
                lines: Some(500),
                ..Default::default()
            };
            let tail = s.query(&q).unwrap();
            if let Some(last) = tail.last() {
                assert!(tail.windows(2).all(|p| p[0].seq + 1 == p[1].seq));
                for e in &tail {
                    assert_eq!(e.message, entry(e.seq - 1).message);
                }
                assert!(last.seq >= last_seen, "a reader went back in time");
                last_seen = last.seq;
                checks += 1;
            }
        }
        if done {
            break;
        }
    }
    assert!(child.wait().unwrap().success());
    assert_eq!(verify(&long, TOTAL), TOTAL);
    println!(
        "journal_crash: ok ({opens} read-only opens and {checks} consistent tails beside a writer process)"
    );
}
