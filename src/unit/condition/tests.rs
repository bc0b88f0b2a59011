use std::os::unix::fs::symlink;

use super::*;

fn ctx() -> Context {
    Context {
        uid: 1000,
        user_name: "alice".into(),
        gid: 1000,
        groups: vec![1000, 27],
        env: BTreeMap::from([
            ("DISPLAY".to_string(), ":0".to_string()),
            ("EMPTY".to_string(), String::new()),
        ]),
        hostname: "builder".into(),
        machine_id: Some("3d1219c7c4c5404aaa1f6d2a48adfda4".into()),
        kernel_cmdline: "console=ttyS0 quiet rd.debug panic=1".into(),
        kernel_release: "6.1.0-13-amd64".into(),
        container: None,
        vm: Some("kvm".into()),
        os_release: BTreeMap::from([
            ("ID".to_string(), "debian".to_string()),
            ("VERSION_ID".to_string(), "12".to_string()),
        ]),
        cpus: 2,
        memory: 4 << 30,
    }
}

fn root_ctx() -> Context {
    Context {
        uid: 0,
        user_name: "root".into(),
        gid: 0,
        groups: vec![0],
        ..ctx()
    }
}

fn cond(line: &str) -> Condition {
    let (k, v) = line.split_once('=').expect("Directive=value");
    Condition::parse(k, v).expect("a condition")
}

fn verdict(lines: &[&str], ctx: &Context) -> Verdict {
    let conds: Vec<Condition> = lines.iter().map(|l| cond(l)).collect();
    evaluate(&conds, ctx).verdict
}

/// Each single condition, with the context it runs in and whether it holds.
#[test]
fn single_conditions_table() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fs::write(d.join("full"), b"x").unwrap();
    fs::write(d.join("empty"), b"").unwrap();
    fs::write(d.join("script"), b"#!/bin/sh\n").unwrap();
    fs::set_permissions(d.join("script"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::create_dir(d.join("emptydir")).unwrap();
    fs::create_dir(d.join("fulldir")).unwrap();
    fs::write(d.join("fulldir/a.conf"), b"").unwrap();
    symlink(d.join("full"), d.join("link")).unwrap();
    symlink(d.join("nowhere"), d.join("dangling")).unwrap();
    let p = |name: &str| d.join(name).display().to_string();
    let (user, root) = (ctx(), root_ctx());
    let table: Vec<(String, &Context, bool)> = vec![
        (format!("ConditionPathExists={}", p("full")), &user, true),
        (
            format!("ConditionPathExists={}", p("missing")),
            &user,
            false,
        ),
        (
            format!("ConditionPathExists=!{}", p("missing")),
            &user,
            true,
        ),
        (
            format!("ConditionPathExists={}", p("dangling")),
            &user,
            false,
        ),
        (
            format!("ConditionPathExistsGlob={}", p("fulldir/*.conf")),
            &user,
            true,
        ),
        (
            format!("ConditionPathExistsGlob={}", p("emptydir/*")),
            &user,
            false,
        ),
        (
            format!("ConditionPathIsDirectory={}", p("emptydir")),
            &user,
            true,
        ),
        (
            format!("ConditionPathIsDirectory={}", p("full")),
            &user,
            false,
        ),
        (
            format!("ConditionPathIsSymbolicLink={}", p("link")),
            &user,
            true,
        ),
        (
            format!("ConditionPathIsSymbolicLink={}", p("full")),
            &user,
            false,
        ),
        (
            format!("ConditionPathIsReadWrite={}", p("full")),
            &user,
            true,
        ),
        ("ConditionPathIsMountPoint=/proc".to_string(), &user, true),
        (
            format!("ConditionPathIsMountPoint={}", p("fulldir")),
            &user,
            false,
        ),
        (
            format!("ConditionDirectoryNotEmpty={}", p("fulldir")),
            &user,
            true,
        ),
        (
            format!("ConditionDirectoryNotEmpty={}", p("emptydir")),
            &user,
            false,
        ),
        (
            format!("ConditionDirectoryNotEmpty={}", p("missing")),
            &user,
            false,
        ),
        (format!("ConditionFileNotEmpty={}", p("full")), &user, true),
        (
            format!("ConditionFileNotEmpty={}", p("empty")),
            &user,
            false,
        ),
        (
            format!("ConditionFileNotEmpty={}", p("fulldir")),
            &user,
            false,
        ),
        (
            format!("ConditionFileIsExecutable={}", p("script")),
            &user,
            true,
        ),
        (
            format!("ConditionFileIsExecutable={}", p("full")),
            &user,
            false,
        ),
        ("ConditionUser=alice".to_string(), &user, true),
        ("ConditionUser=1000".to_string(), &user, true),
        ("ConditionUser=!root".to_string(), &user, true),
        ("ConditionUser=!root".to_string(), &root, false),
        ("ConditionUser=root".to_string(), &root, true),
        ("ConditionUser=@system".to_string(), &user, false),
        ("ConditionUser=@system".to_string(), &root, true),
        ("ConditionGroup=1000".to_string(), &user, true),
        ("ConditionGroup=27".to_string(), &user, true),
        ("ConditionGroup=root".to_string(), &user, false),
        ("ConditionGroup=root".to_string(), &root, true),
        (
            "ConditionGroup=no-such-group-here".to_string(),
            &user,
            false,
        ),
        ("ConditionEnvironment=DISPLAY".to_string(), &user, true),
        ("ConditionEnvironment=DISPLAY=:0".to_string(), &user, true),
        ("ConditionEnvironment=DISPLAY=:1".to_string(), &user, false),
        ("ConditionEnvironment=EMPTY=".to_string(), &user, true),
        (
            "ConditionEnvironment=WAYLAND_DISPLAY".to_string(),
            &user,
            false,
        ),
        (
            "ConditionEnvironment=!WAYLAND_DISPLAY".to_string(),
            &user,
            true,
        ),
        ("ConditionHost=builder".to_string(), &user, true),
        ("ConditionHost=build*".to_string(), &user, true),
        (
            "ConditionHost=3d1219c7-c4c5-404a-aa1f-6d2a48adfda4".to_string(),
            &user,
            true,
        ),
        ("ConditionHost=other".to_string(), &user, false),
        ("ConditionKernelCommandLine=quiet".to_string(), &user, true),
        (
            "ConditionKernelCommandLine=console".to_string(),
            &user,
            true,
        ),
        (
            "ConditionKernelCommandLine=console=ttyS0".to_string(),
            &user,
            true,
        ),
        (
            "ConditionKernelCommandLine=console=tty1".to_string(),
            &user,
            false,
        ),
        ("ConditionKernelCommandLine=rd".to_string(), &user, false),
        ("ConditionKernelVersion=>=5.10".to_string(), &user, true),
        ("ConditionKernelVersion=<6.1".to_string(), &user, false),
        ("ConditionKernelVersion=6.1.*".to_string(), &user, true),
        ("ConditionKernelVersion=>=6 <7".to_string(), &user, true),
        ("ConditionVirtualization=yes".to_string(), &user, true),
        ("ConditionVirtualization=vm".to_string(), &user, true),
        ("ConditionVirtualization=kvm".to_string(), &user, true),
        (
            "ConditionVirtualization=container".to_string(),
            &user,
            false,
        ),
        (
            "ConditionVirtualization=!container".to_string(),
            &user,
            true,
        ),
        ("ConditionCPUs=>=2".to_string(), &user, true),
        ("ConditionCPUs=>2".to_string(), &user, false),
        ("ConditionMemory=>=1G".to_string(), &user, true),
        ("ConditionMemory=<2G".to_string(), &user, false),
        ("ConditionOSRelease=ID=debian".to_string(), &user, true),
        ("ConditionOSRelease=VERSION_ID>=11".to_string(), &user, true),
        ("ConditionOSRelease=ID!=debian".to_string(), &user, false),
    ];
    for (line, c, want) in table {
        let ev = evaluate(&[cond(&line)], c);
        assert!(
            ev.unsupported().is_empty(),
            "{line}: {:?}",
            ev.unsupported()
        );
        assert_eq!(ev.checked[0].met, want, "{line}");
        let started = ev.verdict == Verdict::Start;
        assert_eq!(started, want, "{line}: {:?}", ev.verdict);
    }
}

#[test]
fn read_only_mounts_are_not_read_write() {
    // Whichever read-only mount this machine has (none is guaranteed).
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let ro = mountinfo.lines().find_map(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        (f.len() > 5 && f[5].split(',').any(|o| o == "ro")).then(|| unescape_mountinfo(f[4]))
    });
    let Some(ro) = ro else {
        eprintln!("note: no read-only mount on this machine; case not exercised");
        return;
    };
    assert_eq!(
        verdict(&[&format!("ConditionPathIsReadWrite={ro}")], &ctx()),
        Verdict::Skip(format!("ConditionPathIsReadWrite={ro} was not met"))
    );
}

#[test]
fn user_not_root_run_as_root_is_skipped_with_the_reason() {
    assert_eq!(
        verdict(&["ConditionUser=!root"], &root_ctx()),
        Verdict::Skip("ConditionUser=!root was not met".into())
    );
}

#[test]
fn false_assert_fails_and_false_condition_wins_over_it() {
    assert_eq!(
        verdict(&["AssertPathExists=/no/such/path"], &ctx()),
        Verdict::Fail("AssertPathExists=/no/such/path was not met".into())
    );
    assert_eq!(
        verdict(
            &["AssertPathExists=/no/such/path", "ConditionUser=root"],
            &ctx()
        ),
        Verdict::Skip("ConditionUser=root was not met".into()),
        "conditions are decided before asserts"
    );
}

#[test]
fn triggering_conditions_need_one_and_plain_ones_need_all() {
    let c = ctx();
    // One trigger true is enough.
    assert_eq!(
        verdict(
            &[
                "ConditionPathExists=|/no/such",
                "ConditionPathExists=|/proc"
            ],
            &c
        ),
        Verdict::Start
    );
    // No trigger true: skipped, naming them all.
    assert_eq!(
        verdict(
            &["ConditionPathExists=|/no/such", "ConditionPathExists=|!/proc"],
            &c
        ),
        Verdict::Skip(
            "none of the triggering conditions was met (ConditionPathExists=|/no/such, ConditionPathExists=|!/proc)"
                .into()
        )
    );
    // A plain condition still has to hold when a trigger does.
    assert_eq!(
        verdict(&["ConditionPathExists=|/proc", "ConditionUser=root"], &c),
        Verdict::Skip("ConditionUser=root was not met".into())
    );
    // Triggers of the asserts are separate from those of the conditions.
    assert_eq!(
        verdict(
            &["ConditionPathExists=|/proc", "AssertPathExists=|/no/such"],
            &c
        ),
        Verdict::Fail("none of the triggering asserts was met (AssertPathExists=|/no/such)".into())
    );
    assert_eq!(verdict(&[], &c), Verdict::Start);
}

#[test]
fn prefixes_parse_with_spaces_and_both_orders_of_display() {
    let c = cond("ConditionPathExists=| ! /run/foo");
    assert!(c.trigger && c.negate && !c.assert);
    assert_eq!(c.param, "/run/foo");
    assert_eq!(c.to_string(), "ConditionPathExists=| ! /run/foo");
    let a = cond("AssertUser=@system");
    assert!(a.assert && !a.trigger && !a.negate);
    assert_eq!(a.directive(), "AssertUser");
    assert_eq!(
        Condition::parse("After", "x"),
        Err(ConditionError::NotACondition("After".into()))
    );
}

#[test]
fn unknown_conditions_are_kept_reported_and_treated_as_met() {
    let ev = evaluate(
        &[
            cond("ConditionSecurity=selinux"),
            cond("ConditionPathExists=relative/path"),
            cond("ConditionUser=!root"),
        ],
        &ctx(),
    );
    assert_eq!(ev.verdict, Verdict::Start);
    assert_eq!(
        ev.unsupported(),
        [
            "ConditionSecurity=selinux: unsupported by corral, ignored (treated as met)",
            "ConditionPathExists=relative/path: path \"relative/path\" is not absolute, ignored (treated as met)"
        ]
    );
}

#[test]
fn version_comparison_orders_like_strverscmp() {
    use std::cmp::Ordering::*;
    for (a, b, want) in [
        ("6.1.0-13-amd64", "5.10", Greater),
        ("5.10", "5.9", Greater),
        ("5.10", "5.10", Equal),
        ("6.1.0", "6.1", Greater),
        ("12", "11", Greater),
        ("010", "9", Greater),
    ] {
        assert_eq!(version_cmp(a, b), want, "{a} vs {b}");
    }
}

#[test]
fn the_real_system_context_is_consistent() {
    let c = Context::from_system(BTreeMap::new());
    assert_eq!(c.uid, nix::unistd::getuid().as_raw());
    assert!(c.cpus >= 1);
    assert!(c.memory > 0);
    assert!(!c.kernel_release.is_empty());
    let me = if c.user_name.is_empty() {
        c.uid.to_string()
    } else {
        c.user_name.clone()
    };
    assert_eq!(
        verdict(&[&format!("ConditionUser={me}")], &c),
        Verdict::Start
    );
    // Whatever this machine is, "yes" and "no" disagree.
    assert_ne!(
        verdict(&["ConditionVirtualization=yes"], &c),
        verdict(&["ConditionVirtualization=no"], &c)
    );
}
