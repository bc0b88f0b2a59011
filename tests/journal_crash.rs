//! Crash safety: a writer process flooding the store is SIGKILLed mid-way; the store
//! reopens with every acknowledged (flushed) entry intact, none duplicated, the next
//! writer appends after them, and the first writable open after each kill records
//! one note saying so. Three rounds on the same store. Then:
//!
//! - the window: 20 floods through a pipe into a reader and writer in another
//!   process, each killed at a random line of 1 M; the pipe's read end is kept here
//!   (as the manager's pipes outlive it), so what the killed process had read is
//!   known exactly: only a tail of it may be missing, at most the writer's budget;
//! - vacuum: kill -9 while the writer vacuums (compacting) the store, ten rounds:
//!   every round reopens, nothing acknowledged and newer than what the vacuum
//!   removes is lost, seqs have no duplicate, and each unit keeps a suffix.
//!
//! This test has its own `main` (harness = false): run with CORRAL_JOURNAL_FLOOD=DIR
//! (or the other `*_ENV` variables below) it is the writer process itself, so the test
//! needs no other binary.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use corral::journal::ingest::{MAX_LINE, SourceMeta, spawn_pipe_reader};
use corral::journal::writer::{MANAGER_UNIT, WINDOW_BYTES};
use corral::journal::{Entry, NewEntry, Query, Store, StoreOptions, Stream, Writer, WriterOptions};

const FLOOD_ENV: &str = "CORRAL_JOURNAL_FLOOD";
/// The child reads its stdin (a pipe) into the store in DIR, as the manager does.
const PIPE_ENV: &str = "CORRAL_JOURNAL_PIPE";
/// The child floods the store in DIR and vacuums it now and then.
const VACUUM_ENV: &str = "CORRAL_JOURNAL_VACUUM";
/// What the unclean-end note says.
const UNCLEAN: &str = "ended without closing it";
const FLOOD_UNITS: [&str; 2] = ["flood-a", "flood-b"];
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

/// The number of the next flood entry: one after the newest flood entry in the store
/// (the store also holds the notes of unclean ends, so its next seq is not it).
fn next_flood(store: &Store) -> u64 {
    let q = Query {
        units: FLOOD_UNITS.map(String::from).to_vec(),
        lines: Some(1),
        ..Default::default()
    };
    match store.query(&q).unwrap().pop() {
        Some(e) => flood_number(&e) + 1,
        None => 0,
    }
}

/// The n of a flood entry (`flood {n:09} ...`).
fn flood_number(e: &Entry) -> u64 {
    std::str::from_utf8(&e.message[6..15])
        .unwrap()
        .parse()
        .unwrap()
}

/// The child: continue the flood after what the store already holds; print
/// "acked N" (N = entries durable) after each flush.
fn flood(dir: &str) {
    common::rt().block_on(async {
        let store = Store::open(dir, StoreOptions::default()).unwrap();
        let start = next_flood(&store);
        let w = Writer::spawn(store, WriterOptions::default()).unwrap();
        let mut n = start;
        while n < TOTAL {
            let batch: Vec<_> = (n..(n + BATCH).min(TOTAL)).map(entry).collect();
            n += batch.len() as u64;
            w.append_batch(batch).await.unwrap();
            if (n / BATCH).is_multiple_of(10) {
                w.flush().await.unwrap();
                println!("acked {n}");
            }
        }
        w.flush().await.unwrap();
        w.shutdown().await.unwrap();
        println!("acked {n}");
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
            kill9(&child);
            break;
        }
    }
    let status = child.wait().unwrap();
    assert!(!status.success(), "the writer was killed, not finished");
    acked
}

fn kill9(child: &std::process::Child) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
}

/// Checks the whole store: seqs 1..=n with no hole and no duplicate; the flood
/// entries are 0.. in order, at least `acked` of them; every other entry is a note of
/// an unclean end, `notes` of them. Returns the number of flood entries.
fn verify(store: &Store, acked: u64, notes: usize) -> u64 {
    let all = store.query(&Query::default()).unwrap();
    let mut flood = 0u64;
    let mut seen_notes = 0;
    for (i, e) in all.iter().enumerate() {
        assert_eq!(e.seq, i as u64 + 1, "seqs are contiguous, no duplicates");
        if e.unit == MANAGER_UNIT {
            let msg = String::from_utf8_lossy(&e.message);
            assert!(msg.contains(UNCLEAN), "{msg}");
            assert_eq!(e.priority, 4);
            seen_notes += 1;
            continue;
        }
        let want = entry(flood);
        assert_eq!(e.message, want.message);
        assert_eq!(e.unit, &*want.unit);
        assert_eq!(e.pid, want.pid);
        assert_eq!(e.priority, want.priority);
        flood += 1;
    }
    assert!(
        flood >= acked,
        "{flood} entries survived, {acked} were acknowledged"
    );
    assert_eq!(seen_notes, notes, "one note per unclean end");
    assert_eq!(store.disk_usage().unwrap().entries, all.len() as u64);
    flood
}

fn main() {
    if let Some(dir) = std::env::var_os(FLOOD_ENV) {
        flood(dir.to_str().unwrap());
        return;
    }
    if let Some(dir) = std::env::var_os(PIPE_ENV) {
        pipe_child(dir.to_str().unwrap());
        return;
    }
    if let Some(dir) = std::env::var_os(VACUUM_ENV) {
        vacuum_child(dir.to_str().unwrap());
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
        // ...so `corral journal` (manager down) recovers it first, which records the
        // unclean end (in the store and on its stderr), then reads.
        let out = Command::new(env!("CARGO_BIN_EXE_corral"))
            .args(["journal", "-D"])
            .arg(dir.path())
            .args(["-n", "1", "-o", "cat", "-u", "flood-*"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", common::show(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            stderr.matches(UNCLEAN).count(),
            1,
            "corral journal says once that the writer did not close the store: {stderr}"
        );
        let last = String::from_utf8(out.stdout).unwrap();
        let last_n: u64 = last[6..15].parse().unwrap();
        assert!(
            last_n + 1 >= acked,
            "corral journal shows {last:?} after {acked} acked"
        );
        // The restarted writer: no second note (the store was closed since), and every
        // acked entry is there.
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        let n = verify(&store, acked, round + 1);
        assert!(n >= survived);
        eprintln!(
            "round {round}: acked {acked}, survived {n} (lost unacked: {})",
            n - acked
        );
        survived = n;
    }
    // The last writer finishes the flood: appends continue right after the survivors,
    // and its clean shutdown leaves no note behind.
    let out = Command::new(std::env::current_exe().unwrap())
        .env(FLOOD_ENV, dir.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    assert_eq!(verify(&store, TOTAL, 3), TOTAL);
    drop(store);
    println!("journal_crash: ok (3 kill -9 rounds, {TOTAL} entries intact, one note each)");
    readers_beside_a_writer_process();
    window_of_a_killed_pipe_reader();
    kill_during_vacuum();
}

/// The pipe child: what the manager does with a service's stdout, on fd 0.
fn pipe_child(dir: &str) {
    common::rt().block_on(async {
        let store = Store::open(dir, StoreOptions::default()).unwrap();
        let w = Writer::spawn(store, WriterOptions::default()).unwrap();
        println!("ready");
        let fd = std::io::stdin().as_fd().try_clone_to_owned().unwrap();
        let meta = SourceMeta {
            unit: Arc::from("pipe"),
            invocation: 1,
            pid: None,
            stream: Stream::Stdout,
            default_priority: 6,
            level_prefix: true,
            identifier: Arc::from("pipe"),
            comm: Arc::from("pipe"),
            rate_limit: None,
        };
        spawn_pipe_reader(fd, meta, w.clone())
            .await
            .unwrap()
            .unwrap();
        w.flush().await.unwrap();
        w.shutdown().await.unwrap();
    });
}

fn pipe_line(n: u64) -> String {
    format!("line {n:09} lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod\n")
}

/// Writes `data` into the non-blocking `w`, waiting (poll) while the pipe is full;
/// panics if `child` ends meanwhile (nothing would read the pipe any more).
fn write_all(w: &OwnedFd, mut data: &[u8], child: &mut std::process::Child) {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    while !data.is_empty() {
        match nix::unistd::write(w, data) {
            Ok(n) => data = &data[n..],
            Err(nix::errno::Errno::EAGAIN) => {
                let mut fds = [PollFd::new(w.as_fd(), PollFlags::POLLOUT)];
                poll(&mut fds, PollTimeout::from(1000u16)).unwrap();
                if let Some(st) = child.try_wait().unwrap() {
                    panic!("the pipe reader ended on its own: {st}");
                }
            }
            Err(e) => panic!("write to the pipe: {e}"),
        }
    }
}

/// Bytes left in the non-blocking pipe end `r` (read and discarded).
fn drain(r: &OwnedFd) -> u64 {
    let mut buf = vec![0u8; 1 << 16];
    let mut n = 0;
    loop {
        match nix::unistd::read(r, &mut buf) {
            Ok(0) | Err(nix::errno::Errno::EAGAIN) => return n,
            Ok(k) => n += k as u64,
            Err(e) => panic!("drain the pipe: {e}"),
        }
    }
}

/// A random number below `n` (not for cryptography: kill points).
fn below(n: u64) -> u64 {
    (corral::journal::random_id() as u64) % n
}

fn median(v: &mut [u64]) -> u64 {
    v.sort_unstable();
    v[v.len() / 2]
}

/// 20 pipe floods of 1 M lines, each killed at a random line. This process keeps a
/// read end of the pipe, as the manager's pipes outlive it, so after the kill the
/// bytes still in the pipe tell exactly how much the killed reader had taken out of
/// it. The store must hold lines 1..=m and nothing else of the flood, and what was
/// read beyond line m is the lost tail: at most the writer's window (plus the line
/// the reader was in the middle of).
fn window_of_a_killed_pipe_reader() {
    const ROUNDS: usize = 20;
    const LINES: u64 = 1_000_000;
    let (mut lost_bytes, mut lost_lines, mut reopen_ms) = (vec![], vec![], vec![]);
    for round in 0..ROUNDS {
        let dir = tempfile::tempdir().unwrap();
        let (r, w) = common::pipe();
        let keep = r.try_clone().unwrap();
        nix::fcntl::fcntl(
            &w,
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
        )
        .unwrap();
        let mut child = Command::new(std::env::current_exe().unwrap())
            .env(PIPE_ENV, dir.path())
            .stdin(Stdio::from(r))
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        // The store exists (a kill before would leave nothing to recover).
        let mut ready = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut ready)
            .unwrap();
        assert_eq!(ready, "ready\n");
        let kill_at = 1 + below(LINES - 1);
        let (mut n, mut written) = (1u64, 0u64);
        let mut chunk = Vec::with_capacity(1 << 16);
        while n <= kill_at {
            chunk.clear();
            while n <= kill_at && chunk.len() < (1 << 16) - 200 {
                chunk.extend_from_slice(pipe_line(n).as_bytes());
                n += 1;
            }
            write_all(&w, &chunk, &mut child);
            written += chunk.len() as u64;
        }
        kill9(&child);
        let status = child.wait().unwrap();
        assert!(!status.success(), "the reader was killed, not finished");
        nix::fcntl::fcntl(
            &keep,
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
        )
        .unwrap();
        let read_by_child = written - drain(&keep);
        let t0 = Instant::now();
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        reopen_ms.push(t0.elapsed().as_millis() as u64);
        let all = store.query(&Query::default()).unwrap();
        let mut committed = 0u64;
        let mut m = 0u64;
        for (i, e) in all.iter().enumerate() {
            assert_eq!(e.seq, i as u64 + 1, "round {round}: no hole, no duplicate");
            if e.unit == MANAGER_UNIT {
                assert!(String::from_utf8_lossy(&e.message).contains(UNCLEAN));
                assert_eq!(i + 1, all.len(), "the note comes last");
                continue;
            }
            m += 1;
            let want = pipe_line(m);
            assert_eq!(
                e.message,
                want.as_bytes()[..want.len() - 1],
                "round {round}: lines 1..=m in order"
            );
            committed += want.len() as u64;
        }
        assert!(
            all.last().is_some_and(|e| e.unit == MANAGER_UNIT),
            "round {round}: the unclean end is noted"
        );
        assert!(
            committed <= read_by_child,
            "round {round}: stored {committed} bytes, the reader took {read_by_child}"
        );
        let lost = read_by_child - committed;
        assert!(
            lost <= (WINDOW_BYTES + MAX_LINE) as u64,
            "round {round}: lost {lost} bytes read but not committed, over the window"
        );
        lost_bytes.push(lost);
        lost_lines.push(lost / pipe_line(1).len() as u64);
        drop(store);
    }
    let (min, max) = (
        *lost_bytes.iter().min().unwrap(),
        *lost_bytes.iter().max().unwrap(),
    );
    let mut lines = lost_lines.clone();
    println!(
        "journal_crash: ok ({ROUNDS} pipe floods killed at random lines: lost tail {min}/{}/{max} bytes \
         (min/median/max; window {WINDOW_BYTES}), median {} whole lines; reopen {}/{}/{} ms)",
        median(&mut lost_bytes),
        median(&mut lines),
        reopen_ms.iter().min().unwrap(),
        median(&mut reopen_ms.clone()),
        reopen_ms.iter().max().unwrap(),
    );
}

/// The vacuum child: opens the store in DIR, floods it (continuing the flood, "acked N"
/// after each flush), and vacuums it to half its size now and then ("vacuum start",
/// then "vacuum done US" with how long it took).
fn vacuum_child(dir: &str) {
    common::rt().block_on(async {
        let store = Store::open(dir, StoreOptions::default()).unwrap();
        let mut n = next_flood(&store);
        let w = Writer::spawn(store.clone(), WriterOptions::default()).unwrap();
        let mut out = std::io::stdout();
        for step in 0u64.. {
            let batch: Vec<_> = (n..n + BATCH).map(entry).collect();
            n += BATCH;
            w.append_batch(batch).await.unwrap();
            if step % 20 == 19 {
                w.flush().await.unwrap();
                writeln!(out, "acked {n}").unwrap();
            }
            if step % 200 == 199 {
                let size = std::fs::metadata(store.path()).unwrap().len();
                writeln!(out, "vacuum start").unwrap();
                let t0 = Instant::now();
                w.vacuum(Some(size / 2), None).await.unwrap();
                writeln!(out, "vacuum done {}", t0.elapsed().as_micros()).unwrap();
            }
        }
    });
}

/// kill -9 during a vacuum (which removes blocks and compacts, in several
/// transactions), ten rounds on one store. After each: the store opens (recovered,
/// noted), seqs never repeat, each unit's flood entries are a suffix of its own
/// (a vacuum removes a unit's oldest blocks), the newest acknowledged entry is there,
/// and the counts of `meta` match the entries.
fn kill_during_vacuum() {
    const ROUNDS: usize = 10;
    let dir = tempfile::tempdir().unwrap();
    let mut took = Duration::from_millis(300);
    let mut mid_vacuum = 0;
    for round in 0..ROUNDS {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .env(VACUUM_ENV, dir.path())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut acked = 0;
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut in_vacuum = false;
        while let Some(Ok(l)) = lines.next() {
            if let Some(a) = l.strip_prefix("acked ") {
                acked = a.parse().unwrap();
            } else if let Some(us) = l.strip_prefix("vacuum done ") {
                took = Duration::from_micros(us.parse().unwrap());
            } else if l == "vacuum start" {
                // Somewhere inside the vacuum, judged by how long the last one took.
                std::thread::sleep(took.mul_f64((below(1000) as f64) / 1000.0));
                kill9(&child);
                in_vacuum = true;
                break;
            }
        }
        // Whether the kill came before the vacuum ended: it had not said "done".
        let done = lines
            .map_while(Result::ok)
            .find_map(|l| l.strip_prefix("vacuum done ").map(|us| us.parse().unwrap()));
        if let Some(us) = done {
            took = Duration::from_micros(us);
        }
        let done = done.is_some();
        assert!(!child.wait().unwrap().success());
        if in_vacuum && !done {
            mid_vacuum += 1;
        }
        let t0 = Instant::now();
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        let reopen = t0.elapsed();
        let all = store.query(&Query::default()).unwrap();
        assert!(
            all.windows(2).all(|p| p[0].seq < p[1].seq),
            "round {round}: no duplicate seq"
        );
        assert_eq!(store.disk_usage().unwrap().entries, all.len() as u64);
        let mut newest = 0;
        for unit in FLOOD_UNITS {
            let mine: Vec<&Entry> = all.iter().filter(|e| e.unit == unit).collect();
            let q = Query {
                units: vec![unit.to_string()],
                ..Default::default()
            };
            assert_eq!(store.query(&q).unwrap().len(), mine.len());
            // A unit's entries are every third number (a) or the others (b): consecutive
            // ones of the unit, none missing after the first kept.
            for p in mine.windows(2) {
                let (x, y) = (flood_number(p[0]), flood_number(p[1]));
                let step = if unit == "flood-a" {
                    3
                } else if x % 3 == 1 {
                    1
                } else {
                    2
                };
                assert_eq!(y, x + step, "round {round}: {unit} keeps a suffix");
                assert_eq!(p[1].message, entry(y).message);
            }
            newest = newest.max(mine.last().map_or(0, |e| flood_number(e) + 1));
        }
        assert!(
            newest >= acked,
            "round {round}: {acked} acknowledged, the newest kept is {newest}"
        );
        eprintln!(
            "vacuum round {round}: acked {acked}, {} entries kept, reopened in {} ms{}",
            all.len(),
            reopen.as_millis(),
            if in_vacuum && !done {
                ", killed mid-vacuum"
            } else {
                ""
            }
        );
    }
    assert!(
        mid_vacuum > 0,
        "not one of {ROUNDS} kills came during a vacuum"
    );
    println!(
        "journal_crash: ok ({ROUNDS} kill -9 during vacuum, {mid_vacuum} of them before it ended)"
    );
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
    assert_eq!(verify(&long, TOTAL, 0), TOTAL);
    println!(
        "journal_crash: ok ({opens} read-only opens and {checks} consistent tails beside a writer process)"
    );
}
