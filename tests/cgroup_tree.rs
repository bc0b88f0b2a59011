//! Cgroup tree operations on real cgroups (root): discovery, create/remove,
//! listing, kill, wait_empty, freeze, delegation, limits, pick_root.

mod common;

use std::ffi::CString;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use corral::cgroup::spawn::{self, Credentials, SpawnSpec, Stdio};
use corral::cgroup::{self, Cgroup, CgroupError, TempCgroup};
use nix::sys::signal::Signal;

use common::{pipe, read_all, reap, rt, scratch};

fn sh_in(cg: &Cgroup, script: &str) -> SpawnSpec {
    let mut s = SpawnSpec::new(CString::new("/bin/sh").unwrap());
    s.argv = vec![c"sh".into(), c"-c".into(), CString::new(script).unwrap()];
    s.env = vec![c"PATH=/usr/bin:/bin".into()];
    s.cgroup = Some(cg.path().into());
    s
}

/// wait_empty, bounded by a timeout only as a guard against a hung test.
async fn wait_empty_guarded(cg: &Cgroup) {
    tokio::time::timeout(Duration::from_secs(10), cg.wait_empty())
        .await
        .expect("cgroup did not become empty")
        .unwrap();
}

/// Starts `script` in `cg` and returns once it printed its first line.
fn start_and_sync(cg: &Cgroup, script: &str) -> i32 {
    let (r, w) = pipe();
    let mut spec = sh_in(cg, script);
    spec.stdout = Stdio::Fd(w);
    let child = spawn::spawn(&spec).unwrap();
    drop(spec);
    let mut buf = [0u8; 1];
    let n = nix::unistd::read(&r, &mut buf).unwrap();
    assert_eq!(n, 1, "script exited before its first line");
    child.pid
}

#[test]
fn finds_the_cgroup2_mount_and_our_own_cgroup() {
    let Some(_root) = scratch() else { return };
    let mount = cgroup::find_mount().unwrap();
    let fs = nix::sys::statfs::statfs(&mount).unwrap();
    assert_eq!(fs.filesystem_type(), nix::sys::statfs::CGROUP2_SUPER_MAGIC);
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        info.lines()
            .any(|l| l.contains(" - cgroup2 ") && l.split(' ').nth(4) == mount.to_str()),
        "{mount:?} not a cgroup2 mount in:\n{info}"
    );
    let own = cgroup::own_cgroup().unwrap();
    assert!(own.starts_with(&mount));
    assert!(own.join("cgroup.procs").exists());
    assert_eq!(
        cgroup::cgroup_of_pid(std::process::id() as i32).unwrap(),
        own
    );
    // Not cgroup2: refused before anything is written.
    match Cgroup::open("/tmp") {
        Err(CgroupError::NotCgroup2 { path }) => assert_eq!(path, Path::new("/tmp")),
        other => panic!("{other:?}"),
    }
}

#[test]
fn create_and_remove_nested() {
    let Some(root) = scratch() else { return };
    let a = root.create_child("a").unwrap();
    let b = a.create_child("b").unwrap();
    let c = b.create_child("c").unwrap();
    a.create_child("b2").unwrap();
    assert!(c.path().join("cgroup.events").exists());
    assert_eq!(
        a.children()
            .unwrap()
            .iter()
            .map(|c| c.path().to_owned())
            .collect::<Vec<_>>(),
        [a.path().join("b"), a.path().join("b2")]
    );
    // A second create of the same name is an error naming the path.
    let e = a.create_child("b").unwrap_err();
    assert_eq!(e.errno(), Some(libc::EEXIST));
    assert!(
        e.to_string().contains(&b.path().display().to_string()),
        "{e}"
    );
    for bad in ["", "x/y", "..", "cgroup.procs"] {
        assert!(matches!(
            a.create_child(bad),
            Err(CgroupError::InvalidName { .. })
        ));
    }
    a.remove().unwrap();
    assert!(!a.path().exists());
    // Removing what is already gone is fine.
    a.remove().unwrap();
    assert_eq!(root.children().unwrap(), Vec::<Cgroup>::new());
}

#[test]
fn remove_of_a_populated_cgroup_is_busy_until_killed() {
    let Some(root) = scratch() else { return };
    let cg = root.create_child("busy").unwrap();
    let inner = cg.create_child("inner").unwrap();
    let pid = start_and_sync(&inner, "echo; exec sleep 1000");
    match cg.remove() {
        Err(CgroupError::Busy { path }) => assert_eq!(path, inner.path()),
        other => panic!("{other:?}"),
    }
    assert!(cg.populated().unwrap());
    cg.kill().unwrap();
    rt().block_on(wait_empty_guarded(&cg));
    reap(pid);
    cg.remove().unwrap();
    assert!(!cg.path().exists());
}

#[test]
fn double_forking_shell_is_found_and_killed() {
    let Some(root) = scratch() else { return };
    let cg = root.create_child("daemon").unwrap();
    // The shell exits at once; its grandchildren are orphans in new
    // sessions. Each says a letter once it (and its own child) exists.
    let (r, w) = pipe();
    let mut spec = sh_in(
        &cg,
        "(setsid sh -c 'echo a; exec sleep 1000' &); \
         (setsid sh -c 'sleep 1000 & echo b; exec sleep 1000' &); exit 0",
    );
    spec.stdout = Stdio::Fd(w);
    let child = spawn::spawn(&spec).unwrap();
    drop(spec);
    assert!(matches!(
        reap(child.pid),
        nix::sys::wait::WaitStatus::Exited(_, 0)
    ));
    let mut letters = [0u8; 4];
    std::io::Read::read_exact(&mut std::fs::File::from(r), &mut letters).unwrap();
    let rt = rt();
    let procs = cg.procs_recursive().unwrap();
    assert_eq!(procs.len(), 3, "{procs:?}");
    for p in &procs {
        assert!(cg.contains_pid(*p).unwrap());
    }
    assert!(!cg.contains_pid(std::process::id() as i32).unwrap());
    cg.kill().unwrap();
    rt.block_on(wait_empty_guarded(&cg));
    assert!(!cg.populated().unwrap());
    assert_eq!(cg.procs_recursive().unwrap(), Vec::<i32>::new());
    for p in procs {
        assert!(!cg.contains_pid(p).unwrap());
    }
    cg.remove().unwrap();
}

#[test]
fn wait_empty_pends_while_populated_and_resolves_after_kill() {
    let Some(root) = scratch() else { return };
    let cg = root.create_child("w").unwrap();
    let pid = start_and_sync(&cg, "sleep 1000 & sleep 1000 & echo; wait");
    let rt = rt();
    rt.block_on(async {
        let waiting = cg.wait_empty();
        tokio::pin!(waiting);
        let early = tokio::time::timeout(Duration::from_millis(200), &mut waiting).await;
        assert!(
            early.is_err(),
            "wait_empty resolved while populated: {early:?}"
        );
        cg.kill().unwrap();
        tokio::time::timeout(Duration::from_secs(10), waiting)
            .await
            .expect("not empty after kill")
            .unwrap();
    });
    reap(pid);
    assert!(!cg.populated().unwrap());
}

#[test]
fn wait_empty_does_not_miss_a_fast_exit() {
    let Some(root) = scratch() else { return };
    let rt = rt();
    // Exits race the arming of the watch in every possible order; none may
    // leave wait_empty hanging.
    for i in 0..50 {
        let cg = root.create_child(&format!("fast{i}")).unwrap();
        let child = spawn::spawn(&sh_in(&cg, "exit 0")).unwrap();
        rt.block_on(wait_empty_guarded(&cg));
        reap(child.pid);
        cg.remove().unwrap();
    }
    // A removed cgroup counts as empty.
    let gone = root.create_child("gone").unwrap();
    gone.remove().unwrap();
    rt.block_on(wait_empty_guarded(&gone));
}

#[test]
fn events_watcher_sees_populated_flip() {
    let Some(root) = scratch() else { return };
    let cg = root.create_child("ev").unwrap();
    let rt = rt();
    let mut w = cg.watch_events().unwrap();
    assert!(!w.current().unwrap().populated);
    let (r, wr) = pipe();
    let mut spec = sh_in(&cg, "read x");
    spec.stdin = Stdio::Fd(r);
    let child = spawn::spawn(&spec).unwrap();
    drop(spec);
    rt.block_on(async {
        let ev = tokio::time::timeout(Duration::from_secs(10), w.wait_until(|e| e.populated))
            .await
            .unwrap()
            .unwrap();
        assert!(ev.populated);
        drop(wr); // EOF: `read` returns and the shell exits
        tokio::time::timeout(Duration::from_secs(10), w.wait_empty())
            .await
            .unwrap()
            .unwrap();
    });
    reap(child.pid);
}

#[test]
fn signal_all_reaches_every_process() {
    let Some(root) = scratch() else { return };
    let cg = root.create_child("sig").unwrap();
    let sub = cg.create_child("sub").unwrap();
    let a = start_and_sync(&cg, "echo; exec sleep 1000");
    let b = start_and_sync(&sub, "sleep 1000 & echo; exec sleep 1000");
    assert_eq!(cg.signal_all(Signal::SIGTERM).unwrap(), 3);
    rt().block_on(wait_empty_guarded(&cg));
    for pid in [a, b] {
        assert!(matches!(
            reap(pid),
            nix::sys::wait::WaitStatus::Signaled(_, Signal::SIGTERM, _)
        ));
    }
}

#[test]
fn kill_each_fallback_kills_a_forking_tree() {
    let Some(root) = scratch() else { return };
    let cg = root.create_child("fallback").unwrap();
    let inner = cg.create_child("inner").unwrap();
    let a = start_and_sync(&cg, "for i in $(seq 20); do sleep 1000 & done; echo; wait");
    let b = start_and_sync(&inner, "(setsid sleep 1000 &); echo; exec sleep 1000");
    assert!(cg.procs_recursive().unwrap().len() >= 22);
    cg.kill_each().unwrap();
    rt().block_on(wait_empty_guarded(&cg));
    assert!(!cg.events().unwrap().frozen, "left frozen");
    reap(a);
    reap(b);
    // kill_each never wrote cgroup.kill, so a clone3 spawn still works here.
    let (r, w) = pipe();
    let mut spec = sh_in(&cg, "echo alive");
    spec.stdout = Stdio::Fd(w);
    let c = spawn::spawn(&spec).unwrap();
    drop(spec);
    assert_eq!(read_all(r), "alive\n");
    reap(c.pid);
}

#[test]
fn spawn_into_a_killed_cgroup_still_runs() {
    // ExecStopPost= runs in the unit's cgroup after cgroup.kill; the kernel
    // would kill a clone3 child born there, so spawn must route around it.
    let Some(root) = scratch() else { return };
    let cg = root.create_child("killed").unwrap();
    let pid = start_and_sync(&cg, "echo; exec sleep 1000");
    cg.kill().unwrap();
    rt().block_on(wait_empty_guarded(&cg));
    reap(pid);
    let (r, w) = pipe();
    let mut spec = sh_in(&cg, "echo post; grep ^0:: /proc/self/cgroup");
    spec.stdout = Stdio::Fd(w);
    let c = spawn::spawn(&spec).unwrap();
    drop(spec);
    let out = read_all(r);
    assert!(
        matches!(reap(c.pid), nix::sys::wait::WaitStatus::Exited(_, 0)),
        "{out}"
    );
    let rel = cg
        .path()
        .strip_prefix(cgroup::find_mount().unwrap())
        .unwrap();
    assert_eq!(out, format!("post\n0::/{}\n", rel.display()));
}

#[test]
fn freeze_stops_and_thaw_resumes() {
    let Some(root) = scratch() else { return };
    let cg = root.create_child("ice").unwrap();
    let (in_r, in_w) = pipe();
    let (out_r, out_w) = pipe();
    let mut spec = sh_in(&cg, "while read x; do echo \"got $x\"; done");
    spec.stdin = Stdio::Fd(in_r);
    spec.stdout = Stdio::Fd(out_w);
    let child = spawn::spawn(&spec).unwrap();
    drop(spec);
    let rt = rt();
    let mut w = cg.watch_events().unwrap();
    cg.freeze().unwrap();
    rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(10), w.wait_frozen(true))
            .await
            .unwrap()
            .unwrap()
    });
    assert!(cg.events().unwrap().frozen);
    nix::unistd::write(&in_w, b"a\n").unwrap();
    // Frozen: no answer may come.
    let mut pfd = [nix::poll::PollFd::new(
        std::os::fd::AsFd::as_fd(&out_r),
        nix::poll::PollFlags::POLLIN,
    )];
    let n = nix::poll::poll(&mut pfd, nix::poll::PollTimeout::from(300u16)).unwrap();
    assert_eq!(n, 0, "a frozen shell answered");
    cg.thaw().unwrap();
    rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(10), w.wait_frozen(false))
            .await
            .unwrap()
            .unwrap()
    });
    drop(in_w);
    assert_eq!(read_all(out_r), "got a\n");
    reap(child.pid);
}

#[test]
fn chown_delegate_hands_over_the_subtree_but_not_cgroup_kill() {
    let Some(root) = scratch() else { return };
    let user = root.create_child("user-65534").unwrap();
    let manager = user.create_child("manager").unwrap();
    user.chown_delegate(65534, 65534).unwrap();
    let owner = |p: &Path| {
        let m = std::fs::metadata(p).unwrap();
        (m.uid(), m.gid())
    };
    assert_eq!(owner(user.path()), (65534, 65534));
    for f in cgroup::DELEGATED_FILES {
        assert_eq!(owner(&user.file(f)), (65534, 65534), "{f}");
    }
    for f in ["cgroup.kill", "cgroup.freeze", "cgroup.max.descendants"] {
        assert_eq!(owner(&user.file(f)), (0, 0), "{f}");
    }
    assert!(cgroup::mount::is_delegated(user.path(), 65534));
    assert!(!cgroup::mount::is_delegated(user.path(), 1000));
    assert!(!cgroup::mount::is_delegated(manager.path(), 65534));
    // The manager's own leaf stays root's: moving its children out only
    // needs the common ancestor (user-65534) and the destination.
    let (r, w) = pipe();
    let u = user.path().display().to_string();
    let script = format!(
        "mkdir {u}/svc && echo 0 > {u}/svc/cgroup.procs && echo moved; \
         echo 1 > {u}/cgroup.kill 2>/dev/null && echo kill-allowed; \
         echo 1 > {u}/cgroup.max.descendants 2>/dev/null && echo limit-allowed; \
         exec grep ^0:: /proc/self/cgroup"
    );
    let mut spec = sh_in(&manager, &script);
    spec.stdout = Stdio::Fd(w);
    spec.credentials = Some(Credentials {
        uid: 65534,
        gid: 65534,
        groups: vec![],
    });
    let c = spawn::spawn(&spec).unwrap();
    drop(spec);
    let out = read_all(r);
    reap(c.pid);
    let rel = user
        .path()
        .strip_prefix(cgroup::find_mount().unwrap())
        .unwrap();
    assert_eq!(out, format!("moved\n0::/{}/svc\n", rel.display()));
}

#[test]
fn set_limit_needs_the_controller() {
    let Some(root) = scratch() else { return };
    let cg = root.create_child("lim").unwrap();
    // Core files are always there.
    cg.set_limit("cgroup.max.descendants", "5").unwrap();
    assert_eq!(cg.read_file("cgroup.max.descendants").unwrap().trim(), "5");
    let enabled = cg.controllers().unwrap();
    assert_eq!(enabled, root.subtree_control().unwrap());
    if enabled.iter().any(|c| c == "memory") {
        cg.set_limit("memory.max", "64M").unwrap();
        assert_eq!(cg.read_file("memory.max").unwrap().trim(), "67108864");
    } else {
        let e = cg.set_limit("memory.max", "64M").unwrap_err();
        assert_eq!(
            e.to_string().split(';').next().unwrap(),
            format!(
                "memory.max not applied: memory controller not enabled in {}",
                cg.path().display()
            )
        );
    }
}

#[test]
fn pick_root_explicit_creates_below_the_mount_and_refuses_elsewhere() {
    let Some(root) = scratch() else { return };
    let want = root.path().join("deleg/units");
    let got = cgroup::pick_root(Some(want.clone())).unwrap();
    assert_eq!(got.path(), want);
    assert!(want.join("cgroup.procs").exists());
    // Existing is fine too.
    assert_eq!(cgroup::pick_root(Some(want.clone())).unwrap().path(), want);
    assert!(matches!(
        cgroup::pick_root(Some("/tmp/corral-not-a-cgroup".into())),
        Err(CgroupError::NotCgroup2 { .. })
    ));
    assert!(!Path::new("/tmp/corral-not-a-cgroup").exists());
}

#[test]
fn is_delegated_for_root_means_marked_delegated() {
    let Some(root) = scratch() else { return };
    let cg = root.create_child("marked").unwrap();
    assert!(!cgroup::mount::is_delegated(cg.path(), 0));
    let p = CString::new(cg.path().as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: valid NUL-terminated strings and buffer.
    let r = unsafe {
        libc::setxattr(
            p.as_ptr(),
            c"trusted.delegate".as_ptr(),
            b"1".as_ptr().cast(),
            1,
            0,
        )
    };
    if r != 0 {
        eprintln!(
            "cgroupfs without xattr support: {}",
            std::io::Error::last_os_error()
        );
        return;
    }
    assert!(cgroup::mount::is_delegated(cg.path(), 0));
}

#[test]
fn temp_cgroup_is_removed_even_when_the_test_panics() {
    let Some(probe) = scratch() else { return };
    drop(probe);
    let path = std::sync::Mutex::new(None);
    let result = std::panic::catch_unwind(|| {
        let t = TempCgroup::new("corral-test").unwrap();
        let inner = t.create_child("svc").unwrap();
        start_and_sync(&inner, "sleep 1000 & echo; exec sleep 1000");
        *path.lock().unwrap() = Some(t.path().to_owned());
        panic!("boom");
    });
    assert!(result.is_err());
    let path = path.into_inner().unwrap().unwrap();
    assert!(!path.exists(), "{path:?} left behind");
}

#[test]
fn pick_root_uses_a_delegated_own_cgroup_else_says_how_to_fix_it() {
    let Some(root) = scratch() else { return };
    let mount = cgroup::find_mount().unwrap();
    let mine = root.create_child("user-65534").unwrap();
    mine.chown_delegate(65534, 65534).unwrap();
    let got = cgroup::mount::pick_root_from(None, &mount, mine.path(), 65534).unwrap();
    assert_eq!(got.path(), mine.path());

    // Someone else's cgroup, or the cgroup2 root itself: an error that
    // names the ways out.
    let theirs = root.create_child("not-mine").unwrap();
    for own in [theirs.path(), mount.as_path()] {
        let e = cgroup::mount::pick_root_from(None, &mount, own, 65534).unwrap_err();
        assert!(
            matches!(e, CgroupError::NoDelegatedRoot { uid: 65534, .. }),
            "{e:?}"
        );
        let msg = e.to_string();
        for hint in [
            "--cgroup-root",
            "user@65534.service",
            "corrald --system",
            &own.display().to_string(),
        ] {
            assert!(msg.contains(hint), "{hint:?} missing in: {msg}");
        }
    }

    // Root outside a delegated cgroup gets <mount>/corral/user-0, created;
    // here the scratch cgroup stands in for the mount.
    let got = cgroup::mount::pick_root_from(None, root.path(), theirs.path(), 0).unwrap();
    assert_eq!(got.path(), root.path().join("corral/user-0"));
    assert!(got.path().join("cgroup.procs").exists());
}

#[test]
fn the_cgroup2_root_is_recognised() {
    // remove(), kill(), kill_each() and signal_all() refuse a cgroup for
    // which is_root() holds, before touching anything. The refusal itself
    // is not exercised on the real root: a regression there would rmdir or
    // kill other people's cgroups on this shared machine.
    let Some(scratch_root) = scratch() else {
        return;
    };
    let top = Cgroup::open(cgroup::find_mount().unwrap()).unwrap();
    assert!(top.is_root());
    assert!(!scratch_root.is_root());
    let leaf = scratch_root.create_child("leaf").unwrap();
    assert!(!leaf.is_root());
    // A cgroup that no longer exists is not the root either.
    leaf.remove().unwrap();
    assert!(!leaf.is_root());
}

#[test]
fn wait_empty_ends_when_the_cgroup_is_killed_and_removed() {
    // kernfs sends no IN_IGNORED when a cgroup is removed, so a wait must
    // not rely on it: the populated 1 -> 0 change that has to precede any
    // rmdir is what ends it, and a cgroup already gone counts as empty.
    let Some(root) = scratch() else { return };
    let rt = rt();
    rt.block_on(async {
        let cg = root.create_child("doomed").unwrap();
        let pid = start_and_sync(&cg, "echo; exec sleep 1000");
        let mut w = cg.watch_events().unwrap();
        let remover = async {
            cg.kill().unwrap();
            cg.wait_empty().await.unwrap();
            cg.remove().unwrap();
        };
        let (res, ()) = tokio::join!(
            tokio::time::timeout(Duration::from_secs(10), w.wait_empty()),
            remover
        );
        res.expect("wait_empty hung").unwrap();
        reap(pid);
        assert!(!cg.path().exists());
        let e = cg.watch_events().unwrap_err();
        assert!(e.is_not_found(), "{e}");
        tokio::time::timeout(Duration::from_secs(10), cg.wait_empty())
            .await
            .unwrap()
            .unwrap();
    });
}

/// Runs the user half of `as_the_delegated_user` (in the child process).
fn delegated_user_side(expected_root: &str) {
    assert_eq!(nix::unistd::geteuid().as_raw(), 65534);
    let own = cgroup::own_cgroup().unwrap();
    assert_eq!(own, Path::new(expected_root));
    // Our own cgroup is ours: pick_root takes it.
    let root = cgroup::pick_root(None).unwrap();
    assert_eq!(root.path(), own);
    // A unit cgroup, a clone3 spawn into it, and a kill: all as the user.
    let unit = root.create_child("unit-a").unwrap();
    let pid = start_and_sync(&unit, "sleep 1000 & echo; exec sleep 1000");
    assert_eq!(unit.procs_recursive().unwrap().len(), 2);
    // The delegated root's own cgroup.kill stays root's.
    let e = root.kill().unwrap_err();
    assert_eq!(e.errno(), Some(libc::EACCES), "{e}");
    assert!(e.to_string().contains("cgroup.kill"), "{e}");
    unit.kill().unwrap();
    rt().block_on(wait_empty_guarded(&unit));
    reap(pid);
    unit.remove().unwrap();
    println!("user-side ok");
}

#[test]
fn as_the_delegated_user() {
    // The same test binary, re-run as nobody inside the delegated cgroup,
    // does the user half.
    if let Ok(expected_root) = std::env::var("CORRAL_TEST_DELEGATED_ROOT") {
        delegated_user_side(&expected_root);
        return;
    }
    let Some(root) = scratch() else { return };
    let user = root.create_child("user-65534").unwrap();
    user.chown_delegate(65534, 65534).unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut spec = SpawnSpec::new(CString::new(exe.as_os_str().as_encoded_bytes()).unwrap());
    spec.argv = [
        "cgroup_tree",
        "--exact",
        "as_the_delegated_user",
        "--nocapture",
        "--test-threads=1",
    ]
    .iter()
    .map(|a| CString::new(*a).unwrap())
    .collect();
    spec.env = vec![
        c"PATH=/usr/bin:/bin".into(),
        CString::new(format!(
            "CORRAL_TEST_DELEGATED_ROOT={}",
            user.path().display()
        ))
        .unwrap(),
    ];
    spec.cwd = Some(c"/".into());
    spec.cgroup = Some(user.path().into());
    spec.credentials = Some(Credentials {
        uid: 65534,
        gid: 65534,
        groups: vec![],
    });
    let (r, w) = pipe();
    spec.stdout = Stdio::Fd(w);
    spec.stderr = Stdio::Inherit;
    let child = spawn::spawn(&spec).unwrap();
    drop(spec);
    let out = read_all(r);
    assert!(
        matches!(reap(child.pid), nix::sys::wait::WaitStatus::Exited(_, 0)),
        "user side failed:\n{out}"
    );
    assert!(out.contains("user-side ok"), "{out}");
    assert!(!user.populated().unwrap());
    assert_eq!(user.children().unwrap(), Vec::<Cgroup>::new());
}

#[test]
fn wait_empty_survives_a_removal_racing_the_notification() {
    // The kernel rate-limits cgroup.events notifications (one per 20 ms,
    // the rest deferred to a timer) and hands them to inotify through a
    // work item; rmdir cancels the timer and kernfs sends no removal event
    // for the file, so a populated 1 -> 0 notification can be lost when the
    // cgroup is removed right after emptying. Kill and rmdir from another
    // thread as early as the kernel allows (spinning on the file, not on
    // inotify, which would wait for that very notification), many rounds.
    let Some(root) = scratch() else { return };
    let rt = rt();
    rt.block_on(async {
        for round in 0..40 {
            let cg = root.create_child(&format!("race-{round}")).unwrap();
            let pid = start_and_sync(&cg, "echo; exec sleep 1000");
            let mut w = cg.watch_events().unwrap();
            assert!(w.current().unwrap().populated);
            let remover = std::thread::spawn({
                let cg = cg.clone();
                move || {
                    cg.kill().unwrap();
                    while cg.populated().unwrap() {
                        std::hint::spin_loop();
                    }
                    cg.remove().unwrap();
                }
            });
            let res = tokio::time::timeout(Duration::from_secs(10), w.wait_empty()).await;
            remover.join().unwrap();
            reap(pid);
            res.unwrap_or_else(|_| panic!("wait_empty hung (round {round})"))
                .unwrap();
            assert!(!cg.path().exists());
        }
    });
}

#[test]
fn only_the_watched_cgroups_removal_ends_a_wait() {
    // The parent-directory watch sees every sibling's removal: it may not
    // end the wait of a cgroup that still runs.
    let Some(root) = scratch() else { return };
    let rt = rt();
    rt.block_on(async {
        let keep = root.create_child("keep").unwrap();
        let keep_pid = start_and_sync(&keep, "echo; exec sleep 1000");
        let sib = root.create_child("sib").unwrap();
        let sib_pid = start_and_sync(&sib, "echo; exec sleep 1000");
        let mut own = keep.watch_events().unwrap();
        let mut frozen = sib.watch_events().unwrap();
        sib.kill().unwrap();
        wait_empty_guarded(&sib).await;
        sib.remove().unwrap();
        reap(sib_pid);
        // A wait for another state ends with NotFound on removal.
        let e = tokio::time::timeout(Duration::from_secs(10), frozen.wait_frozen(true))
            .await
            .expect("wait_frozen hung after the removal")
            .unwrap_err();
        assert!(e.is_not_found(), "{e}");
        let early = tokio::time::timeout(Duration::from_millis(200), own.wait_empty()).await;
        assert!(early.is_err(), "the wait ended early: {early:?}");
        keep.kill().unwrap();
        reap(keep_pid);
        tokio::time::timeout(Duration::from_secs(10), own.wait_empty())
            .await
            .expect("wait_empty hung")
            .unwrap();
    });
}
