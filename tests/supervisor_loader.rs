//! What the manager's loader refuses, and `corral verify` agreeing with it.
//!
//! Files in the units directory that are not plain files (a FIFO, a symlink
//! to /dev/zero), as drop-ins and as `EnvironmentFile=`: a real `corrald
//! --user` becomes ready, refuses each one on its unit with a message naming
//! the path, keeps answering, and runs the other units; `corral verify`
//! reports the same files. (Regression: /dev/zero took the manager to 8 GB
//! and a FIFO blocked it in open() for good.) A symlink loop is an error in
//! both, and `TasksMax=` without a pids controller a note in `status` and a
//! warning in `verify`. A typo (`Restrat=`) and an unsupported directive
//! are logged in the unit's journal at each load, in systemd's words.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::TestDaemon;

fn mkfifo(p: &Path) {
    nix::unistd::mkfifo(p, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
}

/// The manager's peak resident size, as /proc reports it.
fn vm_hwm(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .map(|l| l.trim_start_matches("VmHWM:").trim().to_string())
        .unwrap_or_default()
}

fn bad_files(td: &TestDaemon) {
    let units = td.units_dir();
    std::os::unix::fs::symlink("/dev/zero", units.join("zero.service")).unwrap();
    mkfifo(&units.join("fifo.service"));
    std::fs::create_dir(units.join("dropfifo.service.d")).unwrap();
    mkfifo(&units.join("dropfifo.service.d/p.conf"));
    td.write_unit("dropfifo.service", "[Service]\nExecStart=/bin/sleep 1000\n");
    mkfifo(&td.dir.path().join("env.fifo"));
    td.write_unit(
        "envfifo.service",
        &format!(
            "[Service]\nEnvironmentFile={}\nExecStart=/bin/sleep 1000\n",
            td.dir.path().join("env.fifo").display()
        ),
    );
    td.write_unit("ok.service", "[Service]\nExecStart=/bin/sleep 1000\n");
}

#[test]
fn fifo_and_dev_zero_unit_files_are_refused_and_the_others_run() {
    let t0 = Instant::now();
    // start_with fails the test unless corrald reports readiness.
    let Some(td) = TestDaemon::start_with(bad_files) else {
        return;
    };
    eprintln!(
        "measured: ready after {:?} with a FIFO and /dev/zero in the units dir; VmHWM {}",
        t0.elapsed(),
        vm_hwm(td.pid())
    );
    td.ok(&["start", "ok"]);
    common::eventually(Duration::from_secs(5), || {
        (common::cgroup_pids(&td.unit_cgroup("ok.service")).len() == 1).then_some(())
    })
    .expect("ok.service runs");

    let units = td.units_dir();
    for (unit, path, what) in [
        (
            "zero",
            units.join("zero.service"),
            "it is a character device (a symlink to /dev/zero), not a regular file",
        ),
        (
            "fifo",
            units.join("fifo.service"),
            "it is a FIFO, not a regular file",
        ),
        (
            "dropfifo",
            units.join("dropfifo.service.d/p.conf"),
            "it is a FIFO, not a regular file; drop-ins must be plain files",
        ),
    ] {
        assert_eq!(td.prop(unit, "LoadState"), "error", "{unit}");
        let o = td.corral(&["status", unit]);
        let loaded = o
            .stdout
            .lines()
            .find(|l| l.trim_start().starts_with("Loaded:"))
            .unwrap_or_default();
        assert!(
            loaded.contains(&path.display().to_string()) && loaded.contains(what),
            "{unit}: {o:?}"
        );
        let o = td.corral(&["start", unit]);
        assert_ne!(o.code, 0, "{unit} must not start: {o:?}");
        // `corral cat` reads the files too, and must not block on them.
        td.corral(&["cat", unit]);
    }

    // An EnvironmentFile= that is a FIFO fails the start, naming the file.
    td.corral(&["start", "envfifo"]);
    common::eventually(Duration::from_secs(5), || {
        (td.prop("envfifo", "ActiveState") == "failed").then_some(())
    })
    .expect("envfifo.service fails");
    let o = td.corral(&["status", "envfifo"]);
    assert!(
        o.stdout.contains("env.fifo") && o.stdout.contains("it is a FIFO"),
        "{o:?}"
    );

    // daemon-reload reads the same files again and still answers.
    let t = Instant::now();
    td.ok(&["daemon-reload"]);
    eprintln!("measured: daemon-reload took {:?}", t.elapsed());
    assert_eq!(td.prop("ok", "ActiveState"), "active");
    assert_eq!(td.prop("fifo", "LoadState"), "error");
}

#[test]
fn verify_refuses_the_same_files() {
    let d = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink("/dev/zero", d.path().join("zero.service")).unwrap();
    mkfifo(&d.path().join("fifo.service"));
    std::fs::create_dir(d.path().join("dropfifo.service.d")).unwrap();
    mkfifo(&d.path().join("dropfifo.service.d/p.conf"));
    std::fs::write(
        d.path().join("dropfifo.service"),
        "[Service]\nExecStart=/bin/true\n",
    )
    .unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_corral"))
        .arg("verify")
        .arg(d.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let out = String::from_utf8_lossy(&o.stdout);
    for (f, what) in [
        (
            "zero.service",
            "it is a character device (a symlink to /dev/zero), not a regular file",
        ),
        ("fifo.service", "it is a FIFO, not a regular file"),
        (
            "dropfifo.service.d/p.conf",
            "it is a FIFO, not a regular file",
        ),
    ] {
        let want = format!("{}: error: {what}", d.path().join(f).display());
        assert!(out.contains(&want), "{want}\nin:\n{out}");
    }
}

fn verify(args: &[&std::ffi::OsStr]) -> (i32, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_corral"))
        .arg("verify")
        .args(args)
        .output()
        .unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
    )
}

#[test]
fn a_symlink_loop_is_an_error_in_the_manager_and_in_verify() {
    let Some(td) = TestDaemon::start_with(|td| {
        let units = td.units_dir();
        std::os::unix::fs::symlink("b.service", units.join("a.service")).unwrap();
        std::os::unix::fs::symlink("a.service", units.join("b.service")).unwrap();
        td.write_unit("ok.service", "[Service]\nExecStart=/bin/sleep 1000\n");
    }) else {
        return;
    };
    let o = td.corral(&["status", "a"]);
    assert!(
        o.stdout.contains("error (Reason:") && o.stdout.contains("alias symlinks loop"),
        "{o:?}"
    );
    td.ok(&["start", "ok"]);
    let (code, out) = verify(&[td.units_dir().as_os_str()]);
    assert_eq!(code, 1, "{out}");
    for f in ["a.service", "b.service"] {
        let want = format!("{}: error: unit ", td.units_dir().join(f).display());
        assert!(out.contains(&want), "{want}\nin:\n{out}");
    }
    assert!(out.contains("alias symlinks loop"), "{out}");
}

#[test]
fn tasks_max_without_a_pids_controller_is_a_note_in_status_and_a_warning_in_verify() {
    let Some(td) = TestDaemon::start_with(|td| {
        td.write_unit(
            "limited.service",
            "[Service]\nExecStart=/bin/sleep 1000\nTasksMax=10\n",
        );
    }) else {
        return;
    };
    // Whether the manager applies it depends on what its root enables; verify
    // must say what status says, either way.
    let note = td
        .corral(&["status", "limited"])
        .stdout
        .lines()
        .find(|l| l.contains("TasksMax= not applied"))
        .map(|l| l.trim().trim_start_matches("Notes:").trim().to_string());
    let (code, out) = verify(&[
        "--cgroup-root".as_ref(),
        td.root.path().as_os_str(),
        td.units_dir().join("limited.service").as_os_str(),
    ]);
    assert_eq!(code, 0, "a warning is no error: {out}");
    let enabled = std::fs::read_to_string(td.root.path().join("cgroup.subtree_control")).unwrap();
    match note {
        Some(note) => {
            assert!(!enabled.split_whitespace().any(|c| c == "pids"));
            let want = format!(
                "{}: warning: TasksMax: {note}",
                td.units_dir().join("limited.service").display()
            );
            assert!(out.contains(&want), "{want}\nin:\n{out}");
        }
        None => {
            assert!(enabled.split_whitespace().any(|c| c == "pids"));
            assert!(!out.contains("TasksMax"), "{out}");
        }
    }
}

#[test]
fn a_unit_with_40k_environment_lines_loads_reloads_and_runs_with_all_of_them() {
    const N: usize = 40_000;
    let t0 = Instant::now();
    let Some(td) = TestDaemon::start_with(|td| {
        let mut text = String::from(
            "[Service]\nType=oneshot\nRemainAfterExit=yes\n\
             ExecStart=/bin/sh -c 'test \"$VAR0\" = last && test \"$VAR39999\" = value39999'\n",
        );
        for i in 0..N {
            text.push_str(&format!("Environment=VAR{i}=value{i}\n"));
        }
        // A later assignment of a name replaces the value.
        text.push_str("Environment=VAR0=last\n");
        td.write_unit("manyenv.service", &text);
    }) else {
        return;
    };
    eprintln!(
        "measured: ready after {:?} with {N} Environment= lines",
        t0.elapsed()
    );
    let t = Instant::now();
    td.ok(&["daemon-reload"]);
    eprintln!("measured: daemon-reload took {:?}", t.elapsed());
    let t = Instant::now();
    td.ok(&["start", "manyenv"]);
    eprintln!("measured: start took {:?}", t.elapsed());
    assert_eq!(td.prop("manyenv", "ActiveState"), "active", "{}", td.log());
}

#[test]
fn typos_and_unsupported_directives_are_logged_at_each_load() {
    let Some(td) = TestDaemon::start_with(|td| {
        td.write_unit(
            "typo.service",
            "[Unit]\nDescription=typo\n[Service]\nRestrat=always\nProtectSystem=strict\nExecStart=/bin/sleep 1000\n",
        )
    }) else {
        return;
    };
    let path = td.units_dir().join("typo.service");
    let typo = format!(
        "{}:4: Unknown key name 'Restrat' in section 'Service', ignoring.",
        path.display()
    );
    let unsupported = format!("{}:5: warning: ProtectSystem: unsupported", path.display());
    let count = |n: usize| {
        common::eventually(Duration::from_secs(5), || {
            let j = td.journal("typo.service", &[]).stdout;
            (j.matches(&typo).count() == n && j.matches(&unsupported).count() == n).then_some(())
        })
        .is_some()
    };
    assert!(count(1), "{}", td.journal("typo.service", &[]).stdout);
    td.ok(&["start", "typo"]);
    assert_eq!(td.prop("typo", "Restart"), "no");
    assert!(count(1), "a start is no new load");
    td.ok(&["daemon-reload"]);
    assert!(count(2), "{}", td.journal("typo.service", &[]).stdout);
    td.ok(&["stop", "typo"]);
}

#[test]
fn a_unit_of_a_kind_not_run_is_refused_with_its_kind_named() {
    let Some(td) = TestDaemon::start_with(|td| {
        td.write_unit(
            "app.slice",
            "[Unit]\nDescription=apps\n[Slice]\nMemoryHigh=1G\n",
        );
        td.write_unit(
            "watch.path",
            "[Path]\nPathChanged=%h/x\n[Install]\nWantedBy=default.target\n",
        );
    }) else {
        return;
    };
    for (unit, kind) in [("app.slice", ".slice"), ("watch.path", ".path")] {
        let out = td.corral(&["start", unit]);
        assert_eq!(out.code, 1, "{out:?}");
        assert!(
            out.stderr.contains(&format!(
                "{kind} units are not supported yet: read and kept, not run"
            )),
            "{out:?}"
        );
        let status = td.corral(&["status", unit]);
        assert!(status.stdout.contains("Loaded: error"), "{status:?}");
    }
}
