//! Spawning straight into a cgroup: real processes in real cgroups (root).

mod common;

use std::ffi::CString;
use std::os::fd::AsRawFd;
use std::time::Duration;

use corral::cgroup::Cgroup;
use corral::cgroup::spawn::{self, Credentials, FdMapping, SpawnSpec, Stage, Stdio};
use nix::errno::Errno;

use common::{pipe, read_all, reap, rt, scratch};

fn sh(script: &str) -> SpawnSpec {
    let mut s = SpawnSpec::new(CString::new("/bin/sh").unwrap());
    s.argv = vec![c"sh".into(), c"-c".into(), CString::new(script).unwrap()];
    s.env = vec![c"PATH=/usr/bin:/bin".into()];
    s
}

/// What a spawned `sh -c SCRIPT` prints.
fn output_of(script: &str) -> String {
    let (r, w) = pipe();
    let mut spec = sh(script);
    spec.stdout = Stdio::Fd(w);
    spec.stderr = Stdio::Inherit;
    let child = spawn::spawn(&spec).unwrap();
    drop(spec);
    let out = read_all(r);
    reap(child.pid);
    out
}

/// Kills the cgroup and waits (bounded only as a test guard) until empty.
fn kill_and_wait(cg: &Cgroup) {
    cg.kill().unwrap();
    rt().block_on(async {
        tokio::time::timeout(Duration::from_secs(10), cg.wait_empty())
            .await
            .expect("cgroup did not empty after kill")
            .unwrap();
    });
}

fn forty_children_stay_inside(fallback: bool) {
    let Some(root) = scratch() else { return };
    let cg = root.create_child("unit").unwrap();
    let (r, w) = pipe();
    let mut spec = sh("for i in $(seq 40); do sleep 1000 & done; echo started; exec sleep 1000");
    spec.cgroup = Some(cg.path().into());
    spec.stdout = Stdio::Fd(w);
    spec.force_fork = fallback;
    let child = spawn::spawn(&spec).unwrap();
    drop(spec);
    assert!(child.pidfd.is_some());
    // The shell closes stdout only when it execs the last sleep, after all
    // 40 background sleeps were forked; their stdout is the pipe too, so
    // read just the line.
    let mut f = std::fs::File::from(r);
    let mut line = [0u8; 8];
    std::io::Read::read_exact(&mut f, &mut line).unwrap();
    assert_eq!(&line, b"started\n");
    let procs = cg.procs_recursive().unwrap();
    // 40 background sleeps + the shell (now the last sleep), none escaped.
    assert_eq!(procs.len(), 41, "procs in cgroup: {procs:?}");
    assert!(procs.contains(&child.pid));
    for p in &procs {
        assert!(cg.contains_pid(*p).unwrap());
    }
    kill_and_wait(&cg);
    reap(child.pid);
    cg.remove().unwrap();
}

#[test]
fn forty_background_children_all_born_inside_clone3() {
    forty_children_stay_inside(false);
}

#[test]
fn forty_background_children_all_born_inside_fork_fallback() {
    forty_children_stay_inside(true);
}

#[test]
fn exec_failure_reports_stage_and_errno() {
    let mut spec = SpawnSpec::new(CString::new("/nonexistent/corral-no-such-program").unwrap());
    spec.argv = vec![c"x".into()];
    let e = spawn::spawn(&spec).unwrap_err();
    assert_eq!(e.stage, Stage::Exec);
    assert_eq!(e.errno, Errno::ENOENT);
    assert_eq!(e.stage.exit_status(), 203);
    assert_eq!(
        e.to_string(),
        "cannot start /nonexistent/corral-no-such-program: executing failed: \
         ENOENT: No such file or directory (status 203/EXEC)"
    );
}

#[test]
fn chdir_failure_reports_the_directory() {
    let mut spec = sh("exit 0");
    spec.cwd = Some(c"/nonexistent-corral-dir".into());
    let e = spawn::spawn(&spec).unwrap_err();
    assert_eq!((e.stage, e.errno), (Stage::Chdir, Errno::ENOENT));
    assert!(e.to_string().contains("/nonexistent-corral-dir"), "{e}");
}

#[test]
fn relative_program_is_refused_before_forking() {
    let spec = SpawnSpec::new(c"sh".into());
    let e = spawn::spawn(&spec).unwrap_err();
    assert_eq!((e.stage, e.errno), (Stage::Prepare, Errno::EINVAL));
    assert_eq!(
        e.to_string(),
        "cannot start sh: preparing to start (the program must be an absolute path) failed: \
         EINVAL: Invalid argument (status 203/EXEC)"
    );
}

#[test]
fn cgroup_that_does_not_exist_is_a_cgroup_stage_error() {
    let Some(root) = scratch() else { return };
    let mut spec = sh("exit 0");
    spec.cgroup = Some(root.path().join("missing"));
    let e = spawn::spawn(&spec).unwrap_err();
    assert_eq!((e.stage, e.errno), (Stage::Cgroup, Errno::ENOENT));
    assert!(e.to_string().contains("missing"), "{e}");
}

#[test]
fn argv0_env_cwd_umask_and_extra_fd() {
    let (r, w) = pipe();
    let (ready_r, ready_w) = pipe();
    let mut spec = sh("echo \"$0|$FOO|$(pwd)|$(umask)\"; echo ready >&7");
    spec.argv[0] = c"custom-name".into();
    spec.argv.push(c"custom-name".into());
    spec.argv = vec![
        c"sh".into(),
        c"-c".into(),
        c"echo \"$0|$FOO|$(pwd)|$(umask)\"; echo ready >&7".into(),
        c"custom-name".into(),
    ];
    spec.env.push(c"FOO=bar baz".into());
    spec.cwd = Some(c"/tmp".into());
    spec.umask = Some(0o027);
    spec.stdout = Stdio::Fd(w);
    spec.extra_fds = vec![FdMapping {
        parent_fd: ready_w.as_raw_fd(),
        child_fd: 7,
    }];
    let child = spawn::spawn(&spec).unwrap();
    drop(spec);
    drop(ready_w);
    assert_eq!(read_all(r), "custom-name|bar baz|/tmp|0027\n");
    assert_eq!(read_all(ready_r), "ready\n");
    assert!(matches!(
        reap(child.pid),
        nix::sys::wait::WaitStatus::Exited(_, 0)
    ));
}

#[test]
fn signals_reset_and_no_stray_fds() {
    // SIGPIPE is ignored by the Rust runtime in this process; the child
    // must get it back at default, with an empty mask, and only fds 0-2.
    let out = output_of(
        "grep -E '^(SigBlk|SigIgn)' /proc/self/status | tr -s '\\t ' ' '; ls /proc/self/fd | sort -n | tr '\\n' ' '",
    );
    assert!(out.contains("SigBlk: 0000000000000000"), "{out}");
    assert!(out.contains("SigIgn: 0000000000000000"), "{out}");
    // ls itself opens one fd (3) for /proc/self/fd.
    assert!(out.ends_with("0 1 2 3 "), "{out}");
}

#[test]
fn credentials_nobody() {
    let Some(root) = scratch() else { return };
    let cg = root.create_child("nobody").unwrap();
    let (r, w) = pipe();
    let mut spec = sh("grep -E '^(Uid|Gid|Groups):' /proc/self/status; id -u");
    spec.cgroup = Some(cg.path().into());
    spec.stdout = Stdio::Fd(w);
    spec.credentials = Some(Credentials {
        uid: 65534,
        gid: 65534,
        groups: vec![65534, 100],
    });
    spec.nice = Some(5);
    spec.new_session = true;
    let child = spawn::spawn(&spec).unwrap();
    drop(spec);
    let out = read_all(r);
    reap(child.pid);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["Uid:", "65534", "65534", "65534", "65534"]
    );
    assert_eq!(
        lines[1].split_whitespace().collect::<Vec<_>>(),
        ["Gid:", "65534", "65534", "65534", "65534"]
    );
    assert_eq!(
        lines[2].split_whitespace().collect::<Vec<_>>(),
        ["Groups:", "100", "65534"]
    );
    assert_eq!(lines[3], "65534");
}

#[test]
fn exec_as_nobody_of_a_root_only_program_fails_at_exec() {
    let Some(root) = scratch() else { return };
    // A directory only root may enter: setuid succeeded, chdir must fail
    // with EACCES, proving the directory is checked as the user.
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    let mut spec = sh("exit 0");
    spec.cgroup = Some(root.path().into());
    spec.cwd = Some(CString::new(dir.path().as_os_str().as_encoded_bytes()).unwrap());
    spec.credentials = Some(Credentials {
        uid: 65534,
        gid: 65534,
        groups: vec![],
    });
    let e = spawn::spawn(&spec).unwrap_err();
    assert_eq!((e.stage, e.errno), (Stage::Chdir, Errno::EACCES));
    assert_eq!(root.procs_recursive().unwrap(), Vec::<i32>::new());
}

#[test]
fn session_nice_rlimits_mask_and_borrowed_stderr() {
    let (r, w) = pipe();
    // cat itself, so the mask is seen as exec left it (a shell may clear it).
    let mut spec = SpawnSpec::new(c"/bin/cat".into());
    spec.argv = [
        "cat",
        "/proc/self/stat",
        "/proc/self/limits",
        "/proc/self/status",
        "/nonexistent-corral",
    ]
    .iter()
    .map(|a| CString::new(*a).unwrap())
    .collect();
    // stdout and stderr into the same pipe, stderr only borrowed.
    spec.stderr = Stdio::Borrowed(w.as_raw_fd());
    spec.stdout = Stdio::Fd(w.try_clone().unwrap());
    spec.new_session = true;
    spec.nice = Some(7);
    spec.rlimits = vec![spawn::Rlimit {
        resource: nix::sys::resource::Resource::RLIMIT_NOFILE,
        soft: 123,
        hard: 456,
    }];
    spec.signal_mask.add(nix::sys::signal::Signal::SIGUSR1);
    let child = spawn::spawn(&spec).unwrap();
    drop(spec);
    drop(w);
    let out = read_all(r);
    reap(child.pid);
    let mut lines = out.lines();
    let stat = lines.next().unwrap();
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    // After "(comm)": state ppid pgrp session ... nice is field 19 overall.
    let (pgrp, session, nice) = (fields[2], fields[3], fields[16]);
    assert_eq!(session, child.pid.to_string(), "{stat}");
    assert_eq!(pgrp, child.pid.to_string(), "{stat}");
    assert_eq!(nice, "7", "{stat}");
    let nofile = lines.find(|l| l.starts_with("Max open files")).unwrap();
    assert_eq!(
        nofile.split_whitespace().collect::<Vec<_>>()[3..6],
        ["123", "456", "files"]
    );
    let blk = lines.find(|l| l.starts_with("SigBlk:")).unwrap();
    assert_eq!(
        blk.split_whitespace().collect::<Vec<_>>(),
        ["SigBlk:", "0000000000000200"]
    );
    assert_eq!(
        lines.last().unwrap(),
        "cat: /nonexistent-corral: No such file or directory"
    );
}

#[test]
fn failure_report_survives_extra_fds_on_every_low_number() {
    // Map a pipe onto fds 3..=60: whatever number the report pipe had in
    // the parent is taken by a target, yet the chdir failure still arrives.
    let (_r, w) = pipe();
    let mut spec = sh("exit 0");
    spec.extra_fds = (3..=60)
        .map(|n| FdMapping {
            parent_fd: w.as_raw_fd(),
            child_fd: n,
        })
        .collect();
    spec.cwd = Some(c"/nonexistent-corral-dir".into());
    let e = spawn::spawn(&spec).unwrap_err();
    assert_eq!((e.stage, e.errno), (Stage::Chdir, Errno::ENOENT));
    // And with a real program the 58 fds arrive.
    let (r2, w2) = pipe();
    // (dash redirects only single-digit fds, so the answer goes to 9.)
    let mut spec = sh("ls /proc/self/fd | wc -l >&9");
    spec.extra_fds = (3..=60)
        .map(|n| FdMapping {
            parent_fd: if n == 9 {
                w2.as_raw_fd()
            } else {
                w.as_raw_fd()
            },
            child_fd: n,
        })
        .collect();
    let child = spawn::spawn(&spec).unwrap();
    drop(spec);
    drop(w2);
    // 0-2, 3..=60, plus the one ls opens for /proc/self/fd.
    assert_eq!(read_all(r2).trim(), "62");
    reap(child.pid);
}

#[test]
fn listen_pid_is_the_childs_own_pid_on_both_spawn_paths() {
    for force_fork in [false, true] {
        let (r, w) = pipe();
        let mut spec = sh("echo \"$LISTEN_PID $$ $FOO\"");
        spec.env.push(c"FOO=kept".into());
        spec.listen_pid = true;
        spec.force_fork = force_fork;
        spec.stdout = Stdio::Fd(w);
        let child = spawn::spawn(&spec).unwrap();
        drop(spec);
        let pid = child.pid;
        assert_eq!(
            read_all(r),
            format!("{pid} {pid} kept\n"),
            "force_fork={force_fork}"
        );
        assert!(matches!(
            reap(pid),
            nix::sys::wait::WaitStatus::Exited(_, 0)
        ));
    }
    // Without asking, no LISTEN_PID reaches the child.
    assert_eq!(output_of("echo \"[${LISTEN_PID-unset}]\""), "[unset]\n");
}

#[test]
fn each_thread_reuses_its_vfork_stack_and_its_children_start_clean() {
    // A thread's vfork child runs on the stack the previous one left:
    // many spawns in a row, on two threads at once, each child with its
    // own argv and environment and nothing of the one before.
    let run = |tag: &'static str| {
        move || {
            for i in 0..50 {
                let out = output_of(&format!("echo {tag} {i} $#"));
                assert_eq!(out, format!("{tag} {i} 0\n"));
            }
        }
    };
    let other = std::thread::spawn(run("b"));
    run("a")();
    other.join().unwrap();
}
