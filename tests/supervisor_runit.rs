//! runit service directories as units: `run` autostarted unless `down`,
//! `log/run` fed through a pipe, `finish` run with runsv's arguments;
//! `log/run` supervised on its own as runsv does, living on while `run`
//! restarts and across a manager killed with -9 or re-executed.

mod common;

use std::time::Duration;

use common::{TestDaemon, eventually, is_zombie, pids_named, wait_until, write_script};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// A runit service `logged` whose `run` writes 50 numbered lines ("PID N")
/// on stdout and then sleeps as `tag`; its `log/run`, as `log_tag`, appends
/// what it reads to `DIR/logged/log.out`.
fn logged_service(td: &TestDaemon, tag: &str, log_tag: &str) {
    let svc = td.runit_dir().join("logged");
    write_script(
        &svc.join("run"),
        &format!(
            "#!/bin/bash\nfor i in $(seq 1 50); do echo \"$$ $i\"; done\nexec -a {tag} sleep 1000\n"
        ),
    );
    write_script(
        &svc.join("log/run"),
        &format!("#!/bin/bash\necho log-run-up-$$ >&2\nexec -a {log_tag} cat >> ../log.out\n"),
    );
}

/// What log/run wrote so far.
fn log_out(td: &TestDaemon) -> String {
    std::fs::read_to_string(td.runit_dir().join("logged/log.out")).unwrap_or_default()
}

/// The lines every run of `run` in `mains` (in order) wrote, as log/run
/// must have received them: none lost, none reordered.
fn expected_lines(mains: &[i32]) -> String {
    mains
        .iter()
        .flat_map(|m| (1..=50).map(move |i| format!("{m} {i}\n")))
        .collect()
}

/// Waits until `run` with main PID `main` had all its lines logged.
fn wait_logged(td: &TestDaemon, main: i32) {
    wait_until(10, "run's 50 lines in log/run's output", || {
        log_out(td).contains(&format!("{main} 50\n"))
    });
}

/// The one log/run process, named `log_tag` (looked for again while it is
/// between two execs: its command line is briefly not there).
fn the_logger(log_tag: &str) -> i32 {
    let mut last = Vec::new();
    eventually(Duration::from_secs(5), || {
        last = pids_named(log_tag);
        (last.len() == 1).then(|| last[0])
    })
    .unwrap_or_else(|| panic!("not one log/run: {last:?}"))
}

fn main_pid(td: &TestDaemon) -> i32 {
    td.prop("logged", "MainPID").parse().unwrap()
}

/// Kills `run` (its main PID) and waits for the next one to have logged its lines.
fn kill_run(td: &TestDaemon) -> i32 {
    let old = main_pid(td);
    kill(Pid::from_raw(old), Signal::SIGKILL).unwrap();
    let new = eventually(Duration::from_secs(10), || {
        let m = main_pid(td);
        (m != 0 && m != old).then_some(m)
    })
    .expect("run is started again");
    wait_logged(td, new);
    new
}

/// `corral stop` ends run, then log/run, and removes both cgroups.
fn stop_leaves_nothing(td: &TestDaemon, tag: &str, log_tag: &str) {
    td.ok(&["stop", "logged"]);
    assert!(pids_named(tag).is_empty(), "run is gone at once");
    wait_until(10, "log/run to end after its unit stopped", || {
        pids_named(log_tag).is_empty()
    });
    wait_until(10, "log/run's cgroup to be removed", || {
        !td.unit_cgroup("logged.service.log").exists()
    });
    assert!(!td.unit_cgroup("logged.service").exists());
}

#[test]
fn runit_service_with_log_and_finish() {
    let tag = format!("runit-{}", std::process::id());
    let Some(td) = TestDaemon::start_with(|td| {
        let svc = td.runit_dir().join("echoer");
        write_script(
            &svc.join("run"),
            &format!("#!/bin/bash\necho hello-from-run\nexec -a {tag} sleep 1000\n"),
        );
        write_script(&svc.join("log/run"), "#!/bin/sh\nexec cat > ../log.out\n");
        write_script(
            &svc.join("finish"),
            "#!/bin/sh\necho \"$1 $2\" >> finish.out\n",
        );
        let lazy = td.runit_dir().join("lazy");
        write_script(&lazy.join("run"), "#!/bin/sh\nexec sleep 1000\n");
        std::fs::write(lazy.join("down"), "").unwrap();
    }) else {
        return;
    };
    // Autostarted before readiness was reported.
    assert_eq!(td.prop("echoer", "ActiveState"), "active");
    assert_eq!(td.prop("echoer", "SourceKind"), "runit");
    assert_eq!(td.prop("lazy", "ActiveState"), "inactive");
    let svc = td.runit_dir().join("echoer");
    let logged = eventually(Duration::from_secs(5), || {
        let s = std::fs::read_to_string(svc.join("log.out")).ok()?;
        s.contains("hello-from-run").then_some(s)
    });
    assert!(logged.is_some(), "log/run did not receive run's stdout");
    assert_eq!(pids_named(&tag).len(), 1);
    td.ok(&["stop", "echoer"]);
    assert!(pids_named(&tag).is_empty());
    assert_eq!(
        std::fs::read_to_string(svc.join("finish.out")).unwrap(),
        "-1 15\n",
        "finish gets exit code -1 and the signal, as under runsv"
    );
    assert!(!td.unit_cgroup("echoer.service").exists());
    td.ok(&["start", "lazy"]);
    td.ok(&["stop", "lazy"]);
}

#[test]
fn log_run_lives_on_while_run_restarts() {
    let tag = format!("runit-run-{}", std::process::id());
    let log_tag = format!("runit-log-{}", std::process::id());
    let Some(td) = TestDaemon::start_with(|td| logged_service(td, &tag, &log_tag)) else {
        return;
    };
    let mut mains = vec![main_pid(&td)];
    wait_logged(&td, mains[0]);
    let logger = the_logger(&log_tag);
    let status = td.ok(&["status", "logged"]).stdout;
    assert!(
        status.contains("Log CGroup:") && status.contains(&format!("{logger} ")),
        "status shows log/run in its cgroup:\n{status}"
    );
    let tree = td.ok(&["status"]).stdout;
    assert!(
        tree.contains("logged.service.log") && tree.contains(&format!("{logger} ")),
        "the manager's tree shows log/run's cgroup:\n{tree}"
    );
    wait_until(10, "log/run's stderr in the journal", || {
        td.journal("logged", &[])
            .stdout
            .contains(&format!("log-run-up-{logger}"))
    });
    for _ in 0..3 {
        mains.push(kill_run(&td));
        assert_eq!(
            the_logger(&log_tag),
            logger,
            "log/run kept across restarts of run"
        );
    }
    // `corral restart` (a stop, then a start) restarts run only, as `sv restart`.
    td.ok(&["restart", "logged"]);
    let main = main_pid(&td);
    assert!(!mains.contains(&main));
    wait_logged(&td, main);
    mains.push(main);
    assert_eq!(
        the_logger(&log_tag),
        logger,
        "log/run kept across corral restart"
    );
    assert_eq!(
        log_out(&td),
        expected_lines(&mains),
        "nothing lost, in order"
    );

    // log/run killed: started again (it ran for more than a second: at
    // once), while run goes on, writing into the same pipe.
    std::thread::sleep(Duration::from_millis(1100));
    kill(Pid::from_raw(logger), Signal::SIGKILL).unwrap();
    let next = eventually(Duration::from_secs(10), || {
        pids_named(&log_tag).into_iter().find(|p| *p != logger)
    })
    .expect("log/run is started again");
    assert_ne!(next, logger);
    assert_eq!(main_pid(&td), *mains.last().unwrap(), "run goes on");
    mains.push(kill_run(&td));
    assert_eq!(the_logger(&log_tag), next);
    assert_eq!(
        log_out(&td),
        expected_lines(&mains),
        "nothing lost, in order"
    );
    assert!(
        td.journal("logged", &[]).stdout.contains("log/run"),
        "the logger's restart is in the unit's journal"
    );
    stop_leaves_nothing(&td, &tag, &log_tag);
}

#[test]
fn log_run_and_its_pipe_survive_kill_9_and_reexec_of_the_manager() {
    let tag = format!("runit-run9-{}", std::process::id());
    let log_tag = format!("runit-log9-{}", std::process::id());
    let Some(mut td) = TestDaemon::start_with(|td| logged_service(td, &tag, &log_tag)) else {
        return;
    };
    let mut mains = vec![main_pid(&td)];
    wait_logged(&td, mains[0]);
    let logger = the_logger(&log_tag);
    td.kill_hard();
    td.relaunch();
    assert_eq!(main_pid(&td), mains[0], "run taken back");
    assert_eq!(the_logger(&log_tag), logger, "log/run taken back");
    mains.push(kill_run(&td));
    assert_eq!(
        the_logger(&log_tag),
        logger,
        "the next run writes to the same log/run"
    );

    td.ok(&["daemon-reexec"]);
    wait_until(10, "the re-executed manager to take the unit back", || {
        td.log().matches("took back 1 of 1 unit(s)").count() == 2
    });
    assert_eq!(main_pid(&td), mains[1]);
    assert_eq!(
        the_logger(&log_tag),
        logger,
        "log/run kept across daemon-reexec"
    );
    mains.push(kill_run(&td));
    assert_eq!(the_logger(&log_tag), logger);
    assert_eq!(
        log_out(&td),
        expected_lines(&mains),
        "nothing lost, in order"
    );
    stop_leaves_nothing(&td, &tag, &log_tag);
}

#[test]
fn a_log_run_that_outlives_the_end_of_its_pipe_is_killed_after_the_stop_timeout() {
    let tag = format!("runit-runk-{}", std::process::id());
    let log_tag = format!("runit-logk-{}", std::process::id());
    let Some(mut td) = TestDaemon::start_with(|td| {
        logged_service(td, &tag, &log_tag);
        // At the end of its pipe this log/run goes on (as the same process).
        write_script(
            &td.runit_dir().join("logged/log/run"),
            &format!(
                "#!/bin/bash\nexec -a {log_tag} bash -c 'cat >> ../log.out; exec -a {log_tag} sleep 1000'\n"
            ),
        );
        let dropins = td.units_dir().join("logged.service.d");
        std::fs::create_dir_all(&dropins).unwrap();
        std::fs::write(dropins.join("stop.conf"), "[Service]\nTimeoutStopSec=2\n").unwrap();
    }) else {
        return;
    };
    let root = td.cgroup_root.clone();
    let logs = || -> Vec<String> {
        std::fs::read_dir(&root)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("logged.service.log"))
            .collect()
    };
    wait_logged(&td, main_pid(&td));
    let first = the_logger(&log_tag);
    td.ok(&["stop", "logged"]);
    assert!(pids_named(&tag).is_empty());
    assert_eq!(
        the_logger(&log_tag),
        first,
        "log/run reads on after run is down"
    );

    // Started again while the last log/run still runs: that one is killed,
    // and the new run writes to a new log/run.
    td.ok(&["start", "logged"]);
    let main = main_pid(&td);
    wait_logged(&td, main);
    wait_until(10, "the old log/run to be killed", || {
        !pids_named(&log_tag).contains(&first) && is_zombie(first)
    });
    let second = the_logger(&log_tag);
    assert_ne!(second, first);
    wait_until(10, "the old log/run's cgroup to be removed", || {
        logs().len() == 1
    });

    td.ok(&["stop", "logged"]);
    wait_until(10, "log/run killed after TimeoutStopSec=", || {
        pids_named(&log_tag).is_empty()
    });
    wait_until(10, "log/run's cgroup to be removed", || logs().is_empty());
    wait_until(10, "the kill of log/run in the unit's journal", || {
        td.journal("logged", &[])
            .stdout
            .contains("did not end within TimeoutStopSec=")
    });

    // The manager's shutdown waits for log/run too.
    td.ok(&["start", "logged"]);
    wait_logged(&td, main_pid(&td));
    td.terminate();
    assert!(pids_named(&tag).is_empty());
    assert!(
        pids_named(&log_tag).is_empty(),
        "log/run ended before the manager"
    );
    assert!(logs().is_empty());
}
