//! `corral journal` as a user runs it: the real binary over the v1 fixture store and
//! over a store a writer is filling (follow). Outputs are compared with host names
//! replaced by HOST and times pinned with TZ=UTC.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::journal::{corral_journal, ne, noise, open};
use corral::journal::Query;

/// The v1 store checked in under tests/fixtures.
const FIXTURE: &str = "journal-v1.redb";

/// Runs `corral journal --file FIXTURE args...`: (exit code, stdout with HOST, stderr).
fn journal(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_corral"))
        .arg("journal")
        .arg("--file")
        .arg(common::fixture(FIXTURE))
        .args(args)
        .env("TZ", "UTC")
        .output()
        .unwrap();
    let host = corral::journal::output::hostname();
    let stdout = String::from_utf8_lossy(&out.stdout).replace(&format!(" {host} "), " HOST ");
    (
        out.status.code().unwrap(),
        stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn short_output_last_lines_of_a_unit() {
    let (rc, out, _) = journal(&["-u", "web.service", "-n", "2"]);
    assert_eq!(rc, 0);
    assert_eq!(
        out,
        "Nov 14 22:13:20 HOST web[102]: GET / 200\n\
         Nov 14 22:13:20 HOST web: Started web.service.\n"
    );
    let (_, out, _) = journal(&["-u", "web.service", "-n", "1", "-o", "short-precise"]);
    assert_eq!(
        out,
        "Nov 14 22:13:20.006000 HOST web: Started web.service.\n"
    );
    let (_, out, _) = journal(&["-u", "web.service", "-n", "1", "-o", "short-iso"]);
    assert_eq!(
        out,
        "2023-11-14T22:13:20+0000 HOST web: Started web.service.\n"
    );
    let (_, out, _) = journal(&["-u", "web.service", "-n", "1", "-o", "short-monotonic"]);
    assert_eq!(out, "[    5.006000] HOST web: Started web.service.\n");
}

#[test]
fn filters_and_orders() {
    let cat = |args: &[&str]| {
        let mut a = vec!["-o", "cat"];
        a.extend_from_slice(args);
        journal(&a).1
    };
    // Globs, reverse, -n.
    assert_eq!(
        cat(&["-u", "trick*", "-n", "2", "-r"]),
        "tick 19\ntick 18\n"
    );
    // Priorities: entry i has priority i % 8; -p err = 0..3, a range err..warning = 3..4.
    assert_eq!(
        cat(&["-u", "web.service", "-p", "err"]),
        "listening on :8080\nGET / 200\n"
    );
    assert_eq!(
        cat(&["-u", "trickle.service", "-p", "err..warning", "-n", "2"]),
        "tick 12\ntick 13\n"
    );
    // Grep: smart case.
    assert_eq!(cat(&["-g", "^TICK 1[0-1]$"]), "");
    assert_eq!(cat(&["-g", "^tick 1[0-1]$"]), "tick 10\ntick 11\n");
    assert_eq!(
        cat(&["-g", "^tick 1[0-1]$", "--case-sensitive"]),
        "tick 10\ntick 11\n"
    );
    // Streams.
    assert_eq!(
        cat(&["-u", "db.service", "--stream", "stdout"]),
        format!("{}\n", "y".repeat(100))
    );
    // Invocations: -I is the latest of the unit, offsets count back from it.
    assert_eq!(
        cat(&["-u", "trickle.service", "-I", "-n", "1"]),
        "tick 19\n"
    );
    assert_eq!(
        cat(&["-u", "trickle.service", "--invocation", "-1", "-n", "1"]),
        "tick 9\n"
    );
    assert_eq!(
        cat(&[
            "--invocation",
            "00000000-0000-0000-0000-0000000000a1",
            "-n",
            "1"
        ]),
        "Started web.service.\n"
    );
    // Time windows (the fixture's entries are 1 ms apart from 2023-11-14 22:13:20 UTC).
    assert_eq!(
        cat(&[
            "--since",
            "2023-11-14 22:13:20.007",
            "--until",
            "@1700000000.008000"
        ]),
        "tick 0\ntick 1\n"
    );
    assert_eq!(cat(&["--since", "today"]), "");
}

#[test]
fn cursors() {
    let (_, out, _) = journal(&[
        "-u",
        "trickle.service",
        "-n",
        "1",
        "--show-cursor",
        "-o",
        "cat",
    ]);
    let cursor = out
        .lines()
        .nth(1)
        .unwrap()
        .strip_prefix("-- cursor: ")
        .unwrap()
        .to_owned();
    assert!(cursor.contains(";i=1a;"), "{cursor}");
    let (_, out, _) = journal(&["--cursor", &cursor, "-o", "cat"]);
    assert_eq!(out, "tick 19\n");
    let (_, out, _) = journal(&["--after-cursor", &cursor, "-o", "cat"]);
    assert_eq!(out, "");
    let (rc, _, err) = journal(&["--cursor", "nonsense"]);
    assert_eq!(rc, 2);
    assert!(err.contains("not a corral journal cursor"), "{err}");
}

#[test]
fn json_and_output_fields() {
    let (_, out, _) = journal(&[
        "-u",
        "web.service",
        "-n",
        "1",
        "-o",
        "json",
        "--output-fields",
        "MESSAGE,_PID",
    ]);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "MESSAGE",
            "_BOOT_ID",
            "__CURSOR",
            "__MONOTONIC_TIMESTAMP",
            "__REALTIME_TIMESTAMP"
        ]
    );
    let (_, out, _) = journal(&["-u", "db.service", "-n", "1", "-o", "json-pretty"]);
    assert!(
        out.starts_with("{\n\t\"CORRAL_CONTINUED\" : \"1\",\n"),
        "{out}"
    );
    let (_, out, _) = journal(&["-u", "db.service", "-o", "short"]);
    assert!(out.contains("db[103]: [8B blob data]\n"), "{out}");
}

#[test]
fn nothing_matched_is_not_an_error_and_bad_input_is() {
    let (rc, out, _) = journal(&["-u", "nope.service"]);
    assert_eq!((rc, out.as_str()), (0, "-- No entries --\n"));
    let (rc, out, _) = journal(&["-u", "nope.service", "-q"]);
    assert_eq!((rc, out.as_str()), (0, ""));
    let (rc, _, err) = journal(&["-g", "("]);
    assert_eq!(rc, 2);
    assert!(err.contains("--grep \"(\" is not a valid regex"), "{err}");
    let (rc, _, err) = journal(&["--since", "the other day"]);
    assert_eq!(rc, 2);
    assert!(err.contains("not understood"), "{err}");
    let (rc, _, err) = journal(&["-p", "loud"]);
    assert_eq!(rc, 2);
    assert!(err.contains("priority \"loud\""), "{err}");
    // No journal at all: an empty answer, like journalctl on an empty directory.
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_corral"))
        .args(["journal", "-D"])
        .arg(dir.path().join("none"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "-- No entries --\n");
}

#[test]
fn a_closed_pipe_exits_zero() {
    // `corral journal | head -1`: the reader goes away early.
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_corral"));
    cmd.arg("journal")
        .arg("--file")
        .arg(common::fixture(FIXTURE));
    common::assert_quiet_when_the_reader_is_gone(cmd);
}

#[test]
fn disk_usage_and_vacuum() {
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("journal.redb");
    std::fs::copy(common::fixture(FIXTURE), &copy).unwrap();
    let run = |args: &[&str]| String::from_utf8(corral_journal(dir.path(), args)).unwrap();
    let usage = run(&["--disk-usage"]);
    assert!(usage.contains("in 26 entries"), "{usage}");
    let v = run(&["--vacuum-time", "1d"]);
    assert!(v.starts_with("Vacuuming done, removed 26 entries"), "{v}");
    assert!(run(&["--disk-usage"]).contains("in 0 entries"));
}

async fn next(rx: &mut tokio::sync::mpsc::UnboundedReceiver<String>) -> String {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("a line within 10 s")
        .unwrap()
}

#[tokio::test]
async fn follow_prints_new_entries() {
    let dir = tempfile::tempdir().unwrap();
    let (_store, w) = open(dir.path());
    w.append(ne("f.service", "before")).await.unwrap();
    w.flush().await.unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_corral"))
        .args(["journal", "-f", "-o", "cat", "-u", "f.service", "-D"])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for l in BufReader::new(stdout).lines() {
            if tx.send(l.unwrap()).is_err() {
                break;
            }
        }
    });
    assert_eq!(next(&mut rx).await, "before");
    for i in 0..5 {
        w.append(ne("other.service", "not mine")).await.unwrap();
        w.append(ne("f.service", &format!("live {i}")))
            .await
            .unwrap();
        w.flush().await.unwrap();
        assert_eq!(next(&mut rx).await, format!("live {i}"));
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test]
async fn follow_from_an_empty_match_starts_at_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let (_store, w) = open(dir.path());
    w.append(ne("old.service", "history")).await.unwrap();
    w.flush().await.unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_corral"))
        .args(["journal", "-f", "-o", "cat", "-D"])
        .arg(dir.path())
        .args(["-u", "new.service"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // Whether this lands before or after the follower's first query, it is shown once.
    w.append(ne("new.service", "first")).await.unwrap();
    w.flush().await.unwrap();
    let line = tokio::task::spawn_blocking(move || lines.next().unwrap().unwrap())
        .await
        .unwrap();
    assert_eq!(line, "first");
    child.kill().unwrap();
    child.wait().unwrap();
}

/// `-g` hands blocks to a pool of decoding threads (on two CPUs or more) and merges
/// what they keep; a query without it reads blocks on one thread. On three units
/// whose blocks interleave, `-g` prints exactly the matching lines of the plain
/// output, in its order, forward, `--reverse`, with `-n`, and per unit.
#[tokio::test]
async fn grep_on_the_pool_keeps_the_order_of_the_serial_path() {
    let dir = tempfile::tempdir().unwrap();
    let (store, w) = open(dir.path());
    let units = ["a.service", "b.service", "c.service"];
    for round in 0..4u64 {
        let batch: Vec<_> = (0..6000u64)
            .map(|i| {
                let level = if i % 7 == 0 { "ERROR" } else { "info" };
                let what = if i % 5 == 0 { "timeout" } else { "done" };
                let msg = format!("{round}-{i} {level} {} {what}", noise(round * 6000 + i, 90));
                ne(units[(i % 3) as usize], &msg)
            })
            .collect();
        w.append_batch(batch).await.unwrap();
        w.flush().await.unwrap();
    }
    for u in units {
        let blocks = store.block_count(u).unwrap();
        assert!(
            blocks >= 8,
            "{u} has {blocks} blocks: too few to keep the pool busy"
        );
    }
    let pat = "ERROR.*timeout";
    let re = regex::bytes::Regex::new(pat).unwrap();

    // The store's own answer, every field compared.
    let plain: Vec<_> = store.query(&Query::default()).unwrap();
    let grep = Query {
        grep: Some(pat.into()),
        ..Default::default()
    };
    let want: Vec<_> = plain
        .iter()
        .filter(|e| re.is_match(&e.message))
        .cloned()
        .collect();
    assert_eq!(
        want.len(),
        4 * 6000usize.div_ceil(35),
        "the data has the matches it was built with"
    );
    assert_eq!(store.query(&grep).unwrap(), want);

    // The CLI, as a user runs it.
    let lines = |out: Vec<u8>| -> Vec<String> {
        String::from_utf8(out)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    };
    for unit in [None, Some("b.service")] {
        let mut base = vec!["-o", "cat"];
        if let Some(u) = unit {
            base.extend(["-u", u]);
        }
        let matching: Vec<String> = lines(corral_journal(dir.path(), &base))
            .into_iter()
            .filter(|l| re.is_match(l.as_bytes()))
            .collect();
        let cases: [(&[&str], Vec<String>); 4] = [
            (&[], matching.clone()),
            (&["--reverse"], matching.iter().rev().cloned().collect()),
            (&["-n", "50"], matching[matching.len() - 50..].to_vec()),
            (
                &["-n", "30", "--reverse"],
                matching.iter().rev().take(30).cloned().collect(),
            ),
        ];
        for (extra, expected) in cases {
            let mut args = base.clone();
            args.extend(["-g", pat]);
            args.extend(extra);
            assert_eq!(
                lines(corral_journal(dir.path(), &args)),
                expected,
                "corral journal {args:?}"
            );
        }
    }
    w.shutdown().await.unwrap();
}
