//! Pipe ingest from real child processes into the real store: fields and order, two
//! sources interleaved, binary and very long lines, priority prefixes, rate limits.

mod common;

use std::os::fd::OwnedFd;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use common::journal::{msgs, open, open_with};
use corral::journal::ingest::{MAX_LINE, RateLimiter, SourceMeta, spawn_pipe_reader};
use corral::journal::{Query, Stream, WriterHandle, flags};

fn meta(unit: &str, stream: Stream, pid: u32, inv: u128) -> SourceMeta {
    SourceMeta {
        unit: Arc::from(unit),
        invocation: inv,
        pid: Some(pid),
        stream,
        default_priority: 6,
        level_prefix: true,
        identifier: Arc::from(format!("{unit}-id").as_str()),
        comm: Arc::from("writer"),
        rate_limit: None,
    }
}

/// Runs `sh -c script` with stdout and stderr as pipes read into the journal as `unit`.
async fn run_unit(w: &WriterHandle, unit: &str, inv: u128, script: &str) -> u32 {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(script)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out: OwnedFd = child.stdout.take().unwrap().into();
    let err: OwnedFd = child.stderr.take().unwrap().into();
    let a = spawn_pipe_reader(out, meta(unit, Stream::Stdout, pid, inv), w.clone());
    let b = spawn_pipe_reader(err, meta(unit, Stream::Stderr, pid, inv), w.clone());
    a.await.unwrap().unwrap();
    b.await.unwrap().unwrap();
    tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    pid
}

#[tokio::test]
async fn fields_and_order_from_a_real_process() {
    let dir = tempfile::tempdir().unwrap();
    let (store, w) = open(dir.path());
    let pid = run_unit(
        &w,
        "echo.service",
        7,
        "for i in 1 2 3 4 5; do echo out$i; echo err$i >&2; done; printf 'no newline'",
    )
    .await;
    w.flush().await.unwrap();
    let all = store.query(&Query::default()).unwrap();
    let out: Vec<_> = all.iter().filter(|e| e.stream == Stream::Stdout).collect();
    let err: Vec<_> = all.iter().filter(|e| e.stream == Stream::Stderr).collect();
    assert_eq!(
        out.iter().map(|e| e.message.as_slice()).collect::<Vec<_>>(),
        vec![
            &b"out1"[..],
            b"out2",
            b"out3",
            b"out4",
            b"out5",
            b"no newline"
        ]
    );
    assert_eq!(
        err.iter().map(|e| e.message.as_slice()).collect::<Vec<_>>(),
        vec![&b"err1"[..], b"err2", b"err3", b"err4", b"err5"]
    );
    for e in &all {
        assert_eq!(e.unit, "echo.service");
        assert_eq!(e.identifier, "echo.service-id");
        assert_eq!(e.pid, Some(pid));
        assert_eq!(e.invocation, 7);
        assert_eq!(e.priority, 6);
    }
    assert_eq!(out.last().unwrap().flags, flags::NO_NEWLINE);
    // Sequence numbers are unique and increasing; times never go backwards within a stream.
    assert!(all.windows(2).all(|p| p[0].seq < p[1].seq));
    assert!(out.windows(2).all(|p| p[0].realtime <= p[1].realtime));
}

#[tokio::test]
async fn two_units_interleaved_keep_their_own_order() {
    let dir = tempfile::tempdir().unwrap();
    let (store, w) = open(dir.path());
    let script =
        |tag: &str| format!("i=0; while [ $i -lt 3000 ]; do echo {tag}-$i; i=$((i+1)); done");
    let (sa, sb) = (script("a"), script("b"));
    let (a, b) = tokio::join!(
        run_unit(&w, "a.service", 1, &sa),
        run_unit(&w, "b.service", 2, &sb),
    );
    assert_ne!(a, b);
    w.flush().await.unwrap();
    for (unit, tag) in [("a.service", "a"), ("b.service", "b")] {
        let got = store
            .query(&Query {
                units: vec![unit.into()],
                ..Default::default()
            })
            .unwrap();
        assert_eq!(
            msgs(&got),
            (0..3000).map(|i| format!("{tag}-{i}")).collect::<Vec<_>>()
        );
    }
    let all = store.query(&Query::default()).unwrap();
    assert_eq!(all.len(), 6000);
    // They did interleave (both were running at once), and seqs are global.
    let switches = all.windows(2).filter(|p| p[0].unit != p[1].unit).count();
    eprintln!("interleave: {switches} unit switches in seq order");
    assert!(all.windows(2).all(|p| p[0].seq + 1 == p[1].seq));
}

#[tokio::test]
async fn binary_and_very_long_lines() {
    let dir = tempfile::tempdir().unwrap();
    let (store, w) = open(dir.path());
    // 120000 'x' then newline: split at 48 KiB into 3 entries; then binary bytes.
    run_unit(
        &w,
        "bin.service",
        0,
        "head -c 120000 /dev/zero | tr '\\0' x; echo; printf 'a\\000b\\377\\376\\001z\\n'; printf '\\033[31mred\\n'",
    )
    .await;
    w.flush().await.unwrap();
    let all = store.query(&Query::default()).unwrap();
    assert_eq!(
        all.len(),
        5,
        "{:?}",
        all.iter().map(|e| e.message.len()).collect::<Vec<_>>()
    );
    assert_eq!(all[0].message.len(), MAX_LINE);
    assert_eq!(all[0].flags, flags::SPLIT);
    assert_eq!(all[1].message.len(), MAX_LINE);
    assert_eq!(all[1].flags, flags::SPLIT | flags::CONTINUED);
    assert_eq!(all[2].message.len(), 120000 - 2 * MAX_LINE);
    assert_eq!(all[2].flags, flags::CONTINUED);
    assert!(
        all[..3]
            .iter()
            .all(|e| e.message.iter().all(|&b| b == b'x'))
    );
    assert_eq!(all[3].message, b"a\0b\xff\xfe\x01z");
    assert_eq!(all[4].message, b"\x1b[31mred");
}

#[tokio::test]
async fn priority_prefixes() {
    let dir = tempfile::tempdir().unwrap();
    let (store, w) = open(dir.path());
    run_unit(
        &w,
        "prio.service",
        0,
        "printf '<0>emerg\\n<3>err\\n<4>warn\\n<7>debug\\nplain\\n<8>eight\\n <3>indented\\n'",
    )
    .await;
    w.flush().await.unwrap();
    let all = store.query(&Query::default()).unwrap();
    let got: Vec<(String, u8)> = all
        .iter()
        .map(|e| (String::from_utf8_lossy(&e.message).into_owned(), e.priority))
        .collect();
    let want: Vec<(String, u8)> = [
        ("emerg", 0),
        ("err", 3),
        ("warn", 4),
        ("debug", 7),
        ("plain", 6),
        ("<8>eight", 6),
        (" <3>indented", 6),
    ]
    .iter()
    .map(|(m, p)| (m.to_string(), *p))
    .collect();
    assert_eq!(got, want);
    let errs = store
        .query(&Query {
            priority: Some((0, 3)),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(msgs(&errs), vec!["emerg", "err"]);
}

#[tokio::test]
async fn rate_limit_drops_with_one_notice() {
    let dir = tempfile::tempdir().unwrap();
    let (store, w) = open(dir.path());
    let mut child = Command::new("sh")
        .arg("-c")
        .arg("i=0; while [ $i -lt 500 ]; do echo l$i; i=$((i+1)); done")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut m = meta("loud.service", Stream::Stdout, child.id(), 0);
    m.rate_limit = Some(RateLimiter::new(Duration::from_secs(3600), 100));
    let stats = spawn_pipe_reader(child.stdout.take().unwrap().into(), m, w.clone())
        .await
        .unwrap()
        .unwrap();
    child.wait().unwrap();
    w.flush().await.unwrap();
    let all = store.query(&Query::default()).unwrap();
    assert_eq!(stats.suppressed, 400);
    assert_eq!(all.len(), 101);
    assert_eq!(msgs(&all)[99], "l99");
    assert_eq!(msgs(&all)[100], "Suppressed 400 messages from loud.service");
    assert_eq!(all[100].stream, Stream::Manager);
}

#[tokio::test]
async fn a_slow_writer_stops_the_reader_and_loses_nothing() {
    // A 64 KiB budget against a 4 MB burst: the pipe reader must wait for commits, the
    // child must block on a full pipe, and every line must arrive.
    let dir = tempfile::tempdir().unwrap();
    let (store, w) = open_with(
        dir.path(),
        Default::default(),
        corral::journal::WriterOptions {
            queue_bytes: 64 * 1024,
            ..Default::default()
        },
    );
    run_unit(
        &w,
        "flood.service",
        0,
        "i=0; while [ $i -lt 40000 ]; do echo 'flood line '$i' padding padding padding padding padding'; i=$((i+1)); done",
    )
    .await;
    w.flush().await.unwrap();
    let all = store.query(&Query::default()).unwrap();
    assert_eq!(all.len(), 40000);
    assert!(
        msgs(&all)
            .iter()
            .enumerate()
            .all(|(i, m)| m.starts_with(&format!("flood line {i} ")))
    );
}
