//! `corral journal --disk-usage` and `--vacuum-*` while the manager runs: its
//! journal writer thread owns the store, so the CLI asks the manager over the
//! control socket (JournalDiskUsage, JournalVacuum), which hands the work to
//! the writer. Ingest goes on around a vacuum; another uid is refused.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Out, TestDaemon};
use corral::ipc::Client;
use corral::ipc::proto::{Request, Response};
use corral::journal::DiskUsage;

/// The uid of the other user: `nobody` on Debian.
const NOBODY: u32 = 65534;

fn store_file(td: &TestDaemon) -> PathBuf {
    td.journal_dir().join("journal.redb")
}

/// The store's usage, measured by the manager.
fn usage(td: &TestDaemon) -> DiskUsage {
    let mut c: Client<Request, Response> = Client::connect(&td.socket).unwrap();
    match c.request(&Request::JournalDiskUsage).unwrap() {
        Response::JournalUsage { path, usage } => {
            assert_eq!(PathBuf::from(path), store_file(td));
            usage
        }
        other => panic!("unexpected answer: {other:?}"),
    }
}

/// `corral journal -u UNIT -o cat ARGS`, answered by the manager.
fn lines_with(td: &TestDaemon, unit: &str, args: &[&str]) -> Vec<String> {
    let mut all = vec!["journal", "--no-pager", "-u", unit, "-o", "cat"];
    all.extend(args);
    let o = td.ok(&all);
    o.stdout.lines().map(str::to_owned).collect()
}

/// What `unit` printed and what the manager said about it.
fn lines(td: &TestDaemon, unit: &str) -> Vec<String> {
    lines_with(td, unit, &[])
}

/// Waits until the manager has committed `line` of `unit`.
fn wait_for_line(td: &TestDaemon, unit: &str, line: &str) {
    let seen = common::eventually(Duration::from_secs(20), || {
        lines(td, unit).iter().any(|l| l == line).then_some(())
    });
    assert!(
        seen.is_some(),
        "{line:?} of {unit} never reached the journal; it holds:\n{}",
        lines(td, unit).join("\n")
    );
}

/// The number of entries a "Vacuuming done, removed N entries, ..." line reports.
fn removed(o: &Out) -> u64 {
    let rest = o
        .stdout
        .strip_prefix("Vacuuming done, removed ")
        .unwrap_or_else(|| panic!("not a vacuum report: {o:?}"));
    rest.split(' ').next().unwrap().parse().unwrap()
}

/// Runs `corral` with the daemon's runtime directory as XDG_RUNTIME_DIR and no
/// CORRAL_SOCKET: what a user types, reaching their own manager.
fn corral_default_socket(td: &TestDaemon, args: &[&str], state_home: &std::path::Path) -> Out {
    let out = Command::new(env!("CARGO_BIN_EXE_corral"))
        .args(args)
        .env_remove("CORRAL_SOCKET")
        .env("XDG_RUNTIME_DIR", td.run_dir())
        .env("XDG_STATE_HOME", state_home)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn disk_usage_and_vacuum_time_go_through_the_running_manager_while_it_ingests() {
    let Some(td) = TestDaemon::start_with(|td| {
        td.write_unit(
            "old.service",
            "[Service]\nType=oneshot\n\
             ExecStart=/bin/bash -c 'for i in $(seq 1 3000); do echo old-line-$i; done'\n",
        );
        td.write_unit(
            "ticker.service",
            "[Service]\n\
             ExecStart=/bin/bash -c 'i=0; while :; do i=$((i+1)); echo tick-$i; sleep 0.02; done'\n",
        );
    }) else {
        return;
    };
    td.ok(&["start", "ticker"]);
    td.ok(&["start", "old"]);
    wait_for_line(&td, "old", "old-line-3000");

    // --disk-usage names the manager's store, via $CORRAL_SOCKET...
    let o = td.ok(&["journal", "--disk-usage"]);
    let head = format!("Journal {} takes up ", store_file(&td).display());
    assert!(o.stdout.starts_with(&head), "{o:?}");
    let before = usage(&td);
    assert!(before.entries >= 3000, "{before:?}");
    // ...and via the user's default socket, the manager being up (the default
    // store directory, which has no journal, is not read).
    let elsewhere = tempfile::tempdir().unwrap();
    let o = corral_default_socket(&td, &["journal", "--disk-usage"], elsewhere.path());
    assert_eq!(o.code, 0, "{o:?}");
    assert!(o.stdout.starts_with(&head), "{o:?}");

    // old.service has said its last word (the manager's "Finished old.service."); once its
    // newest entry is more than a second old, --vacuum-time=1s takes them all.
    wait_for_line(&td, "old", "Finished old.service.");
    let newest = td.ok(&["journal", "-u", "old", "-n", "1", "-o", "json"]);
    let newest: serde_json::Value = serde_json::from_str(&newest.stdout).unwrap();
    let newest: u64 = newest["__REALTIME_TIMESTAMP"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let old_enough = Duration::from_micros(newest + 1_100_000);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    std::thread::sleep(old_enough.saturating_sub(now));
    let o = td.ok(&["journal", "--vacuum-time=1s"]);
    assert!(
        o.stdout.starts_with("Vacuuming done, removed ")
            && o.stdout
                .contains(&format!(" of {} (", store_file(&td).display()))
            && o.stdout.ends_with(" left).\n"),
        "{o:?}"
    );
    assert!(removed(&o) >= 3000, "{o:?}");
    let o = td.ok(&["journal", "--no-pager", "-u", "old"]);
    assert_eq!(
        o.stdout, "-- No entries --\n",
        "old entries are still there"
    );
    assert!(usage(&td).entries < before.entries);

    // The ticker kept running, and what it prints now still lands.
    assert_eq!(td.prop("ticker", "ActiveState"), "active");
    let last_tick = |td: &TestDaemon| -> u64 {
        lines_with(td, "ticker", &["--stream", "stdout"])
            .last()
            .and_then(|l| l.strip_prefix("tick-"))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    let after_vacuum = last_tick(&td);
    let newer = common::eventually(Duration::from_secs(20), || {
        (last_tick(&td) > after_vacuum).then_some(())
    });
    assert!(
        newer.is_some(),
        "no tick after the vacuum reached the journal"
    );
    assert!(
        !td.log().contains("journal"),
        "the manager complained: {}",
        td.log()
    );
}

#[test]
fn vacuum_size_brings_usage_down_through_the_manager_also_with_its_directory() {
    let Some(td) = TestDaemon::start_with(|td| {
        // Random bytes: compressed blocks stay about as large as the text.
        td.write_unit(
            "big.service",
            "[Service]\nType=oneshot\n\
             ExecStart=/bin/bash -c 'head -c 3000000 /dev/urandom | base64; echo big-done'\n",
        );
    }) else {
        return;
    };
    td.ok(&["start", "big"]);
    // The unit's last entry: nothing is written after it.
    wait_for_line(&td, "big", "Finished big.service.");
    let before = usage(&td);
    assert!(before.file_bytes > 2_000_000, "{before:?}");

    // The CLI, through the manager: the oldest entries go, the newest stay.
    let limit = before.file_bytes / 2;
    let o = td.ok(&["journal", &format!("--vacuum-size={limit}")]);
    assert!(removed(&o) > 0, "{o:?}");
    let after = usage(&td);
    assert!(after.entries < before.entries, "{before:?} {after:?}");
    let printed = lines_with(&td, "big", &["--stream", "stdout"]);
    assert_eq!(printed.last().map(String::as_str), Some("big-done"));
    // In bytes, as the writer measured when it was done: within the limit (once
    // idle, it may merge small blocks, which can grow the file a little).
    let mut c: Client<Request, Response> = Client::connect(&td.socket).unwrap();
    let vacuum = Request::JournalVacuum {
        max_bytes: Some(limit),
        max_age_usec: None,
    };
    let report = match c.request(&vacuum).unwrap() {
        Response::Vacuumed { report, .. } => report,
        other => panic!("unexpected answer: {other:?}"),
    };
    assert!(report.after.file_bytes <= limit, "{report:?} over {limit}");

    // -D naming the store the manager holds: the manager vacuums it.
    let dir = td.journal_dir();
    let limit = report.after.file_bytes / 2;
    let o = td.ok(&[
        "journal",
        "-D",
        dir.to_str().unwrap(),
        &format!("--vacuum-size={limit}"),
    ]);
    assert!(
        o.stdout
            .contains(&format!(" of {} (", store_file(&td).display())),
        "{o:?}"
    );
    assert!(removed(&o) > 0, "{o:?}");
    assert!(usage(&td).entries < report.after.entries);

    // Without a manager the store is vacuumed directly, as before.
    let mut td = td;
    td.terminate();
    let o = td.ok(&["journal", "-D", dir.to_str().unwrap(), "--vacuum-size=1"]);
    assert!(removed(&o) > 0, "{o:?}");
    let o = td.ok(&["journal", "-D", dir.to_str().unwrap(), "--disk-usage"]);
    assert!(o.stdout.contains(" in 0 entries, 0 blocks)."), "{o:?}");
    // No manager on the default socket: the default store is used.
    let elsewhere = tempfile::tempdir().unwrap();
    let o = corral_default_socket(&td, &["journal", "--vacuum-time=1s"], elsewhere.path());
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(
        o.stdout,
        format!(
            "No journal at {}: nothing to vacuum.\n",
            elsewhere.path().join("corral/journal").display()
        )
    );
}

/// Runs `corral args` as uid `nobody` against the daemon's socket.
fn corral_as_nobody(td: &TestDaemon, args: &[&str]) -> Out {
    let out = Command::new(env!("CARGO_BIN_EXE_corral"))
        .args(args)
        .env("CORRAL_SOCKET", &td.socket)
        .env_remove("XDG_RUNTIME_DIR")
        .uid(NOBODY)
        .gid(NOBODY)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn another_uid_may_neither_measure_nor_vacuum_the_journal() {
    let Some(td) = TestDaemon::start_with(|td| {
        td.write_unit(
            "kept.service",
            "[Service]\nType=oneshot\nExecStart=/bin/echo kept-line\n",
        );
    }) else {
        return;
    };
    td.ok(&["start", "kept"]);
    // The unit's last entry: nothing is written after it.
    wait_for_line(&td, "kept", "Finished kept.service.");
    let before = usage(&td);

    // The socket's modes keep another user out before the manager is asked.
    let o = corral_as_nobody(&td, &["journal", "--vacuum-time=1s"]);
    assert_eq!(o.code, 2, "{o:?}");
    assert!(
        o.stderr
            .contains("permission denied (the socket or its directory belongs to another user)"),
        "{o:?}"
    );

    // With the modes opened, the manager's SO_PEERCRED check refuses at the handshake.
    let open =
        |p: PathBuf, mode| std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode));
    open(td.dir.path().to_path_buf(), 0o755).unwrap();
    open(td.run_dir(), 0o755).unwrap();
    open(td.run_dir().join("corral"), 0o755).unwrap();
    open(td.socket.clone(), 0o666).unwrap();
    let refused = "permission denied: uid 65534 may not control the manager of uid 0";
    for args in [
        &["journal", "--vacuum-time=1s"][..],
        &["journal", "--vacuum-size=1"],
        &["journal", "--disk-usage"],
    ] {
        let o = corral_as_nobody(&td, args);
        assert_eq!(o.code, 2, "{args:?}: {o:?}");
        assert!(o.stderr.contains(refused), "{args:?}: {o:?}");
        assert!(o.stdout.is_empty(), "{args:?}: {o:?}");
    }
    assert_eq!(usage(&td).entries, before.entries, "something was removed");
    assert_eq!(
        lines_with(&td, "kept", &["--stream", "stdout"]),
        ["kept-line".to_string()]
    );
}

/// The report of a `JournalVacuum` request, as the writer measured it when done.
fn vacuum_report(td: &TestDaemon, max_bytes: u64) -> corral::journal::VacuumReport {
    let mut c: Client<Request, Response> = Client::connect(&td.socket).unwrap();
    let vacuum = Request::JournalVacuum {
        max_bytes: Some(max_bytes),
        max_age_usec: None,
    };
    match c.request(&vacuum).unwrap() {
        Response::Vacuumed { report, .. } => report,
        other => panic!("unexpected answer: {other:?}"),
    }
}

/// The numbers of the `line N ...` lines `big` printed that are still stored.
fn kept_lines(td: &TestDaemon) -> Vec<u64> {
    lines_with(td, "big", &["--stream", "stdout"])
        .iter()
        .map(|l| l.split(' ').nth(1).unwrap().parse().unwrap())
        .collect()
}

/// With the manager running, `--vacuum-size` to several sizes: each time the
/// file ends within one block under the limit (never more removed than needed),
/// and the entries kept are the newest, without a hole.
#[test]
fn vacuum_size_through_the_manager_keeps_the_newest_entries_that_fit() {
    const LINES: u64 = 300_000;
    let Some(td) = TestDaemon::start_with(|td| {
        td.write_unit(
            "big.service",
            &format!(
                "[Service]\nType=oneshot\n\
                 ExecStart=/usr/bin/seq -f 'line %%.0f lorem ipsum dolor sit amet' 1 {LINES}\n"
            ),
        );
    }) else {
        return;
    };
    td.ok(&["start", "big"]);
    wait_for_line(&td, "big", "Finished big.service.");
    let full = vacuum_report(&td, u64::MAX).after;
    assert_eq!(kept_lines(&td).len() as u64, LINES, "{full:?}");
    // A block takes at most 64 KiB raw, so at most that much of the file.
    let block = 64 * 1024;
    // Not 10%: 300 k lines make a ~560 KB store in format v2, and the closed
    // file of even one block takes ~80 KB (redb's tables and allocator state),
    // so 10% (~56 KB) rightly keeps nothing; 20% keeps the newest ~100 blocks.
    for percent in [80, 40, 20] {
        let limit = full.file_bytes * percent / 100;
        let report = vacuum_report(&td, limit);
        let after = &report.after;
        eprintln!("limit {percent}% = {limit} B: {report:?}");
        assert!(after.file_bytes <= limit, "{after:?} over {limit}");
        assert!(
            after.file_bytes + block > limit,
            "{after:?}: more than a block under {limit}"
        );
        let kept = kept_lines(&td);
        assert!(!kept.is_empty(), "{after:?}");
        assert_eq!(
            kept,
            (LINES + 1 - kept.len() as u64..=LINES).collect::<Vec<_>>(),
            "not the newest lines, or a hole"
        );
    }
    // --vacuum-files: the journal is one file, never archived: nothing goes.
    let before = usage(&td);
    let o = td.ok(&["journal", "--vacuum-files=1"]);
    assert_eq!(removed(&o), 0, "{o:?}");
    assert_eq!(usage(&td).entries, before.entries);
    // The same without the manager, on the store it left.
    let mut td = td;
    td.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(td.wait_exit(Duration::from_secs(30)).is_some());
    let dir = td.dir.path().join("state/journal");
    let entries = |td: &TestDaemon| {
        let o = td.ok(&["journal", "-D", dir.to_str().unwrap(), "--disk-usage"]);
        let (_, rest) = o.stdout.split_once(" in ").unwrap();
        rest.split(' ').next().unwrap().parse::<u64>().unwrap()
    };
    let stopped = entries(&td);
    assert!(stopped >= before.entries);
    let o = td.ok(&["journal", "-D", dir.to_str().unwrap(), "--vacuum-files=0"]);
    assert_eq!(removed(&o), 0, "{o:?}");
    assert_eq!(entries(&td), stopped);
}
