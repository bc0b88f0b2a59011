//! A manager that dies: kill -9 of `corrald --user` leaves its units
//! running, and the next manager on the same runtime directory and cgroup
//! root takes every one back in the state it had (same main PID, same
//! invocation id), with its timers re-armed from the time left and Restart=
//! applying to what happens after. A cgroup with no state record is still
//! stopped as a leftover.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{TestDaemon, eventually, free_port};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

fn pid_of(td: &TestDaemon, unit: &str) -> i32 {
    td.prop(unit, "MainPID").parse().unwrap()
}

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z"))
}

/// Whether the breaks `gaps` (pairs of neighbouring numbers that do not
/// follow each other) in a numbered stream are one hole at most: what a
/// dead manager had read and not committed. The successor's first line may
/// be the tail of the one the dead manager had begun reading (it read
/// "2499", the successor reads "30\n" of "249930").
fn one_hole_at_most(gaps: &[(u64, u64)]) -> bool {
    match gaps {
        [] => true,
        [(a, b)] => b > a,
        [(a, tail), (tail2, b)] => {
            tail == tail2 && b > a && (b - 1).to_string().ends_with(&tail.to_string())
        }
        _ => false,
    }
}

/// A `corral` command left waiting in the background, ended on drop.
struct Background(Child);

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn kill_9_of_the_manager_keeps_every_unit_and_the_next_one_takes_them_back() {
    if !common::require(
        "re-adoption",
        &common::missing_tools(&["memcached", "python3"]),
    ) {
        return;
    }
    let port = free_port();
    let Some(mut td) = TestDaemon::start_with(|td| {
        td.write_kept_units(port);
        td.write_unit(
            "oneshot.service",
            "[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/bin/true\n",
        );
        let slow = td.notify_script("slow", 4);
        td.write_unit(
            "midstart.service",
            &format!("[Service]\nType=notify\nTimeoutStartSec=60\nExecStart={slow}\n"),
        );
        td.write_unit(
            "midstop.service",
            "[Service]\nTimeoutStopSec=4\n\
             ExecStart=/bin/sh -c \"trap '' TERM; while :; do sleep 0.2; done\"\n",
        );
        td.write_unit(
            "looping.service",
            "[Unit]\nStartLimitIntervalSec=0\n\
             [Service]\nRestart=always\nRestartSec=3\nExecStart=/bin/false\n",
        );
        td.write_unit(
            "writer.service",
            "[Service]\nExecStart=/bin/sh -c \"i=0; while :; do i=$((i+1)); echo seq $i; sleep 0.002; done\"\n",
        );
        td.write_unit(
            "victim.service",
            "[Service]\nRestart=no\nExecStart=/bin/sleep 1000\n",
        );
    }) else {
        return;
    };
    for u in ["simple", "forking", "notify", "oneshot", "victim", "writer"] {
        td.ok(&["start", u]);
    }
    let midstart = Background(
        Command::new(env!("CARGO_BIN_EXE_corral"))
            .args(["start", "midstart"])
            .env("CORRAL_SOCKET", &td.socket)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    td.ok(&["start", "midstop"]);
    td.ok(&["start", "looping"]);
    td.wait_state("midstart", "activating");
    let stopper = Background(
        Command::new(env!("CARGO_BIN_EXE_corral"))
            .args(["stop", "midstop"])
            .env("CORRAL_SOCKET", &td.socket)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    td.wait_state("midstop", "deactivating");
    eventually(Duration::from_secs(10), || {
        (td.prop("looping", "SubState") == "auto-restart").then_some(())
    })
    .expect("looping waits to restart");
    let units = [
        "simple", "forking", "notify", "oneshot", "midstart", "midstop", "looping", "victim",
        "writer",
    ];
    let before: Vec<(String, String, String)> = units
        .iter()
        .map(|u| {
            (
                td.prop(u, "MainPID"),
                td.prop(u, "InvocationID"),
                td.prop(u, "SubState"),
            )
        })
        .collect();
    let victim = pid_of(&td, "victim");

    let writer = pid_of(&td, "writer");

    td.kill_hard();
    drop(stopper);
    drop(midstart);
    // During the outage: the victim dies; nobody sees it yet. The writer
    // goes on writing into its pipe, which the fd holder keeps open.
    kill(Pid::from_raw(victim), Signal::SIGKILL).unwrap();
    eventually(Duration::from_secs(5), || (!alive(victim)).then_some(())).expect("the victim died");
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        alive(writer),
        "the writer died during the outage (SIGPIPE?)"
    );
    td.relaunch();
    assert!(
        td.log().contains("output pipe(s) from the fd holder"),
        "{}",
        td.log()
    );

    for (u, (main, inv, sub)) in units.iter().zip(&before) {
        if *u == "victim" {
            continue;
        }
        assert_eq!(&td.prop(u, "InvocationID"), inv, "{u}: invocation kept");
        if *u != "looping" {
            assert_eq!(&td.prop(u, "MainPID"), main, "{u}: main PID kept");
        }
        let now = td.prop(u, "SubState");
        // Those under way may have moved on since (midstop's timeout, looping's RestartSec=).
        if !["midstop", "looping"].contains(u) {
            assert_eq!(&now, sub, "{u}: sub-state kept; log:\n{}", td.log());
        }
    }
    assert_eq!(td.prop("simple", "ActiveState"), "active");
    assert_eq!(td.prop("oneshot", "SubState"), "exited");
    assert_eq!(td.prop("midstart", "ActiveState"), "activating");
    let log = td.log();
    assert!(!log.contains("left by a previous manager"), "{log}");
    assert!(
        log.contains("simple.service: Taken back by a new manager: active (running)"),
        "{log}"
    );

    // The victim's death during the outage is noticed, with its status unknown.
    td.wait_state("victim", "failed");
    let status = td.corral(&["status", "victim"]).stdout;
    assert!(status.contains("unknown"), "{status}");
    assert!(
        td.log()
            .contains("victim.service: Main process exited, status unknown"),
        "{}",
        td.log()
    );

    // The unit that was starting finishes its start (READY after 4 s).
    td.wait_state("midstart", "active");
    assert_eq!(td.prop("midstart", "MainPID"), before[4].0);
    // The unit that was stopping is killed when its TimeoutStopSec= elapses
    // (failed, result timeout, as systemd).
    let midstop_main: i32 = before[5].0.parse().unwrap();
    td.wait_state("midstop", "failed");
    assert_eq!(td.prop("midstop", "Result"), "timeout");
    assert!(!alive(midstop_main));
    // The restart loop goes on.
    eventually(Duration::from_secs(20), || {
        (td.prop("looping", "NRestarts").parse::<u32>().ok()? >= 2).then_some(())
    })
    .expect("the restart loop goes on under the new manager");

    // Restart= applies to an exit after re-adoption.
    let simple = pid_of(&td, "simple");
    kill(Pid::from_raw(simple), Signal::SIGKILL).unwrap();
    let again = eventually(Duration::from_secs(10), || {
        let p = pid_of(&td, "simple");
        (p != 0 && p != simple && td.prop("simple", "SubState") == "running").then_some(p)
    })
    .expect("simple restarted after its re-adopted main process was killed");
    assert!(common::cgroup_pids(&td.unit_cgroup("simple.service")).contains(&again));

    // The writer's lines: in order, no duplicate, and the ones it wrote
    // during the outage are there; only what the dead manager had read but
    // not committed may be missing (one gap at most, before the outage).
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(pid_of(&td, "writer"), writer);
    td.ok(&["stop", "writer"]);
    let out = td
        .journal("writer", &["-o", "cat", "--stream", "stdout"])
        .stdout;
    let seqs: Vec<u64> = out
        .lines()
        .filter_map(|l| l.strip_prefix("seq ")?.parse().ok())
        .collect();
    assert!(seqs.len() > 100, "{out}");
    let gaps: Vec<(u64, u64)> = seqs
        .windows(2)
        .filter(|w| w[1] != w[0] + 1)
        .map(|w| (w[0], w[1]))
        .collect();
    assert!(
        one_hole_at_most(&gaps),
        "lines out of order, repeated or lost in several places: {gaps:?}"
    );

    // status, kill, restart and stop work on a re-adopted unit.
    let forking = pid_of(&td, "forking");
    assert!(
        td.ok(&["status", "forking"])
            .stdout
            .contains(&forking.to_string())
    );
    let notify = pid_of(&td, "notify");
    td.ok(&["restart", "notify"]);
    assert_ne!(pid_of(&td, "notify"), notify);
    assert!(!alive(notify));
    td.ok(&["kill", "-s", "KILL", "forking"]);
    td.wait_state("forking", "failed");
    assert!(!alive(forking));
    td.ok(&["stop", "oneshot"]);
    assert_eq!(td.prop("oneshot", "ActiveState"), "inactive");
    td.ok(&["stop", "simple", "notify", "midstart", "looping"]);
    for u in ["simple", "notify", "midstart"] {
        assert_eq!(td.prop(u, "ActiveState"), "inactive", "{u}");
    }
}

#[test]
fn a_cgroup_without_a_record_is_still_a_leftover() {
    let Some(mut td) = TestDaemon::start_with(|td| {
        td.write_unit("kept.service", "[Service]\nExecStart=/bin/sleep 1000\n");
    }) else {
        return;
    };
    td.ok(&["start", "kept"]);
    let kept = pid_of(&td, "kept");
    td.kill_hard();
    // A process in a cgroup no manager made a record for.
    let stray = td.cgroup_root.join("stray.service");
    std::fs::create_dir(&stray).unwrap();
    let mut sleeper = Command::new("sleep").arg("1000").spawn().unwrap();
    std::fs::write(stray.join("cgroup.procs"), sleeper.id().to_string()).unwrap();
    // And a record of another invocation than the cgroup's.
    let record = td.dir.path().join("run/corral/units/kept.service");
    let mut rec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&record).unwrap()).unwrap();
    rec["invocation"] = serde_json::Value::from("0".repeat(32));
    std::fs::write(&record, serde_json::to_vec(&rec).unwrap()).unwrap();
    td.relaunch();
    let status = sleeper.wait().unwrap();
    assert!(!status.success(), "the stray process was killed");
    assert!(!stray.exists());
    assert!(
        !alive(kept),
        "a record of another invocation adopts nothing"
    );
    let log = td.log();
    for cg in ["stray.service", "kept.service"] {
        assert!(
            log.contains(&format!("left by a previous manager in cgroup {cg}")),
            "{log}"
        );
    }
}

#[test]
fn a_flood_across_kill_9_blocks_and_goes_on_in_order() {
    let Some(mut td) = TestDaemon::start_with(|td| {
        td.write_unit(
            "flood.service",
            "[Service]\nExecStart=/usr/bin/seq 1 2000000\n",
        );
    }) else {
        return;
    };
    td.ok(&["start", "flood"]);
    let seq: i32 = td.prop("flood", "MainPID").parse().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    td.kill_hard();
    // The writer blocks on the full pipe the holder keeps: alive, not done.
    std::thread::sleep(Duration::from_millis(700));
    assert!(alive(seq), "the flood died while no manager ran");
    td.relaunch();
    // Its exit comes after re-adoption: the status is unknown, a failure.
    td.wait_state("flood", "failed");
    assert!(
        td.log()
            .contains("flood.service: Main process exited, status unknown"),
        "{}",
        td.log()
    );
    eventually(Duration::from_secs(30), || {
        let last = td.journal("flood", &["-o", "cat", "-n", "1", "--stream", "stdout"]);
        (last.stdout.trim() == "2000000").then_some(())
    })
    .expect("the flood's last line in the journal");
    let out = td
        .journal("flood", &["-o", "cat", "--stream", "stdout"])
        .stdout;
    let seqs: Vec<u64> = out.lines().filter_map(|l| l.parse().ok()).collect();
    let gaps: Vec<(u64, u64)> = seqs
        .windows(2)
        .filter(|w| w[1] != w[0] + 1)
        .map(|w| (w[0], w[1]))
        .collect();
    // Only the lines the dead manager had read and not committed may be
    // missing: one hole at most, nothing repeated or out of order, and the
    // flood's end is there.
    assert!(
        one_hole_at_most(&gaps),
        "lines out of order, repeated or lost in several places: {gaps:?}"
    );
    assert_eq!(seqs.last(), Some(&2_000_000));
    eprintln!(
        "flood across kill -9: {} of 2000000 lines kept, hole {gaps:?}",
        seqs.len()
    );
}

#[test]
fn a_job_queued_at_the_crash_is_reported_dropped_by_the_successor() {
    let Some(mut td) = TestDaemon::start_with(|td| {
        let dep = td.notify_script("dep", 1000);
        td.write_unit(
            "dep.service",
            &format!("[Service]\nType=notify\nExecStart={dep}\nTimeoutStartSec=infinity\n"),
        );
        td.write_unit(
            "app.service",
            "[Unit]\nRequires=dep.service\nAfter=dep.service\n\
             [Service]\nExecStart=/bin/sleep 1000\n",
        );
    }) else {
        return;
    };
    let _client = Background(
        Command::new(env!("CARGO_BIN_EXE_corral"))
            .args(["start", "app"])
            .env("CORRAL_SOCKET", &td.socket)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    td.wait_state("dep", "activating");
    // app's start waits for dep's: queued, not begun.
    assert_eq!(td.prop("app", "ActiveState"), "inactive");
    td.kill_hard();
    td.relaunch();
    let msg = "Job app.service/start queued by the previous manager was dropped; start it again.";
    let log = td.log();
    assert!(log.contains(msg), "{log}");
    eventually(Duration::from_secs(5), || {
        td.journal("app", &[]).stdout.contains(msg).then_some(())
    })
    .expect("the unit's journal says its job was dropped");
    // Only the dropped job is reported: dep's start had begun and goes on.
    assert!(!log.contains("Job dep.service/start"), "{log}");
    assert_eq!(td.prop("dep", "ActiveState"), "activating");
    assert_eq!(td.prop("app", "ActiveState"), "inactive");
}

#[test]
fn pipes_taken_back_after_a_crash_keep_the_units_rate_limit() {
    let Some(mut td) = TestDaemon::start_with(|td| {
        // The unit writes once the test opens this FIFO.
        let go = td.dir.path().join("go");
        nix::unistd::mkfifo(&go, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        td.write_unit(
            "chatty.service",
            &format!(
                "[Service]\nLogRateLimitIntervalSec=2s\nLogRateLimitBurst=5\n\
                 ExecStart=/bin/sh -c 'read x < {}; for i in $(seq 1 100); do echo line $i; done; \
                 sleep 3; echo after; exec sleep 1000'\n",
                go.display()
            ),
        );
    }) else {
        return;
    };
    td.ok(&["start", "chatty"]);
    td.kill_hard();
    td.relaunch();
    let go = td.dir.path().join("go");
    assert!(
        td.log().contains("output pipe(s) from the fd holder"),
        "{}",
        td.log()
    );
    // The 100 lines are written into the pipe the successor took back.
    std::fs::write(&go, "go\n").unwrap();
    let out = eventually(Duration::from_secs(15), || {
        let o = td.journal("chatty", &["-o", "cat"]).stdout;
        o.lines().any(|l| l == "after").then_some(o)
    })
    .expect("the line after the burst's interval arrives");
    let lines = out.lines().filter(|l| l.starts_with("line ")).count();
    assert_eq!(lines, 5, "LogRateLimitBurst=5 lets 5 lines through:\n{out}");
    assert!(out.contains("Suppressed 95 messages"), "{out}");
}

/// After kill -9 the socket units, targets and timers that were active are
/// started again even when not enabled (the `started` record), and a
/// socket's listening fd, kept by the fd holder, is taken back: the same
/// socket, and a client that connected during the outage is answered.
#[test]
fn a_socket_and_a_target_started_by_hand_come_back_after_kill_9() {
    let mut path = None;
    let Some(mut td) = TestDaemon::start_with(|td| {
        path = Some(common::write_probe_socket(td));
        td.write_unit("extra.target", "[Unit]\nDescription=started by hand\n");
    }) else {
        return;
    };
    let path = path.unwrap();
    td.ok(&["start", "probe.socket", "extra.target"]);
    assert_eq!(td.prop("probe.socket", "SubState"), "listening");
    let inode = common::unix_socket_inode(&path).expect("the socket listens");
    td.kill_hard();
    // Waits in the backlog of the socket the fd holder keeps.
    let waiting = std::os::unix::net::UnixStream::connect(&path)
        .unwrap_or_else(|e| panic!("no listener during the outage: {e}\n{}", td.log()));
    td.relaunch();
    td.wait_state("probe.socket", "active");
    td.wait_state("extra.target", "active");
    assert_eq!(
        common::unix_socket_inode(&path),
        Some(inode),
        "the same socket\n{}",
        td.log()
    );
    let mut answer = String::new();
    let mut waiting = waiting;
    waiting
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    std::io::Read::read_to_string(&mut waiting, &mut answer).unwrap();
    assert_eq!(answer, "hi\n", "{}", td.log());
    // And the next ones, accepted by the successor.
    let (ok, failed) = {
        let stop = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            let c = s.spawn(|| common::probe_in_a_loop(&path, &stop));
            std::thread::sleep(Duration::from_millis(100));
            stop.store(true, std::sync::atomic::Ordering::SeqCst);
            c.join().unwrap()
        })
    };
    assert!(failed.is_empty() && ok > 0, "{failed:?}\n{}", td.log());
}

/// A process KillMode=process left behind in an ended invocation's cgroup
/// is recorded: a successor after kill -9 takes the cgroup back as it is
/// (not stopped as a leftover), still the unit's for `status` and `kill`,
/// and removes the cgroup once its last process is gone.
#[test]
fn processes_left_by_kill_mode_process_are_taken_back_after_kill_9() {
    let Some(mut td) = TestDaemon::start() else {
        return;
    };
    let tag = format!("lingering-{}", std::process::id());
    td.write_unit(
        "linger.service",
        &format!(
            "[Service]\nKillMode=process\n\
             ExecStart=/bin/bash -c '(exec -a {tag} sleep 1000) & exec sleep 1000'\n"
        ),
    );
    td.ok(&["start", "linger"]);
    let left = eventually(Duration::from_secs(5), || {
        let p = common::pids_named(&tag);
        (p.len() == 1).then_some(p)
    })
    .expect("child started");
    td.ok(&["stop", "linger"]);
    let old = td.unit_cgroup("linger.service");
    assert!(common::cgroup_pids(&old).contains(&left[0]));

    td.kill_hard();
    td.relaunch();
    let log = td.log();
    assert!(!log.contains("left by a previous manager"), "{log}");
    assert_eq!(
        common::pids_named(&tag),
        left,
        "the child was stopped\n{log}"
    );
    let st = td.corral(&["status", "linger"]);
    assert!(
        st.stdout.contains("left running by KillMode=process"),
        "{st:?}"
    );
    // Still the unit's: `kill` reaches it, and its cgroup goes with it.
    td.ok(&["kill", "-s", "KILL", "linger"]);
    eventually(Duration::from_secs(10), || (!old.exists()).then_some(()))
        .unwrap_or_else(|| panic!("{old:?} stayed after its last process ended\n{}", td.log()));
    assert!(common::pids_named(&tag).is_empty());
}
