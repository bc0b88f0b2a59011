//! `corral journal -f` against a real manager while a unit floods the journal:
//! a follower that stops reading costs the manager no memory (it holds one page,
//! the backlog stays in the store), and once it reads again it gets every entry,
//! in order, however long it stalled.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::TestDaemon;

/// Lines the flood unit prints.
const FLOOD: u64 = 1_000_000;

/// The bound on the manager's peak RSS (VmHWM), in kB.
const MAX_HWM_KB: u64 = 64 * 1024;

/// A `corral` child killed and reaped when dropped, even if the test fails.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A field of /proc/PID/status in kB (VmHWM, VmRSS).
fn status_kb(pid: i32, field: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// The newest line of `unit`, as the manager answers a query.
fn last_line(td: &TestDaemon, unit: &str) -> String {
    let o = td.ok(&[
        "journal",
        "--no-pager",
        "-u",
        unit,
        "--stream",
        "stdout",
        "-n",
        "1",
        "-o",
        "cat",
    ]);
    o.stdout.trim_end().to_string()
}

#[test]
fn a_follower_that_stops_reading_during_a_flood_costs_no_memory_and_loses_nothing() {
    let Some(td) = TestDaemon::start_with(|td| {
        td.write_unit(
            "flood.service",
            &format!(
                "[Service]\nType=oneshot\n\
                 ExecStart=/usr/bin/seq -f 'flood %%07.0f lorem ipsum dolor sit amet consectetur' 1 {FLOOD}\n"
            ),
        );
    }) else {
        return;
    };
    // The follower's stdout is a pipe nobody reads until the flood is over: it
    // stops reading its socket once 64 KiB are waiting in the pipe.
    let mut child = Command::new(env!("CARGO_BIN_EXE_corral"))
        // From the store's first entry on, so that when the follow begins does not matter.
        .args(["journal", "-f", "-c", "i=1", "-u", "flood", "--stream"])
        .args(["stdout", "-o", "cat"])
        .env("CORRAL_SOCKET", &td.socket)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let follower = Reaped(child);
    let stalled_since = Instant::now();
    td.ok(&["start", "flood"]);
    let done = format!("flood {FLOOD:07} lorem ipsum dolor sit amet consectetur");
    let flooded = common::eventually(Duration::from_secs(120), || {
        (last_line(&td, "flood") == done).then_some(())
    });
    assert!(flooded.is_some(), "the flood never reached the journal");
    let hwm = status_kb(td.pid(), "VmHWM");
    // Stalled past the manager's write timeout (10 s), which used to drop it.
    std::thread::sleep(Duration::from_secs(12).saturating_sub(stalled_since.elapsed()));
    assert!(
        hwm <= MAX_HWM_KB,
        "the manager peaked at {hwm} kB with a stalled follower (bound {MAX_HWM_KB} kB)"
    );

    // Reading again: every line, in order, no hole, no duplicate.
    let mut next = 1u64;
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("the follower's output");
        let n: u64 = line
            .strip_prefix("flood ")
            .and_then(|r| r.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("not a flood line: {line:?}"));
        assert_eq!(n, next, "line {next} expected, got {line:?}");
        if n == FLOOD {
            break;
        }
        next += 1;
    }
    assert_eq!(next, FLOOD, "the follower's output ended early");
    drop(follower);
    let rss = status_kb(td.pid(), "VmRSS");
    eprintln!(
        "manager: VmHWM {hwm} kB during the flood, VmRSS {rss} kB after, stalled {:?}",
        stalled_since.elapsed()
    );
    assert!(
        rss <= MAX_HWM_KB,
        "{rss} kB resident after the follower left"
    );
}
