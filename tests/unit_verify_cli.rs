//! `corral verify` as a user runs it: the real binary, real files, exit codes
//! 0 (clean or warnings only), 1 (errors), 2 (usage or unreadable paths).

use std::path::Path;
use std::process::{Command, Output};

fn verify(args: &[&Path]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_corral"))
        .arg("verify")
        .args(args)
        .output()
        .expect("run corral verify")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn clean_and_warning_only_units_exit_0() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(
        d.path().join("ok.service"),
        "[Unit]\nDescription=ok\n[Service]\nExecStart=/bin/true\nProtectSystem=strict\n",
    )
    .unwrap();
    let o = verify(&[d.path()]);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let out = stdout(&o);
    assert_eq!(
        out,
        format!(
            "{}:5: warning: ProtectSystem: unsupported, ignored\n",
            d.path().join("ok.service").display()
        )
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("0 error(s), 1 warning(s)"));
}

#[test]
fn errors_exit_1_with_file_line_directive() {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("memcached.service");
    std::fs::write(
        &f,
        "[Unit]\nDescription=x\n\n[Service]\nType=simple\nRestart=sometimes\nExecStart=bin/memcached -p 11211\n",
    )
    .unwrap();
    let o = verify(&[&f]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let out = stdout(&o);
    let f = f.display();
    assert!(
        out.contains(&format!(
            "{f}:6: error: Restart: unknown restart policy 'sometimes'"
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "{f}:7: error: ExecStart: 'bin/memcached' must be an absolute path or a name on PATH"
        )),
        "{out}"
    );
    // -q hides warnings but not errors.
    let q = Command::new(env!("CARGO_BIN_EXE_corral"))
        .args(["verify", "-q"])
        .arg(d.path())
        .output()
        .unwrap();
    assert_eq!(q.status.code(), Some(1));
}

#[test]
fn runit_directory_and_dropins_are_recognised() {
    let d = tempfile::tempdir().unwrap();
    let svc = d.path().join("sv/web");
    std::fs::create_dir_all(svc.join("log")).unwrap();
    std::fs::write(svc.join("run"), "#!/bin/sh\nexec sleep 1\n").unwrap();
    std::fs::write(svc.join("log/run"), "#!/bin/sh\nexec cat\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    for p in [svc.join("run"), svc.join("log/run")] {
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let dropdir = d.path().join("units/x.service.d");
    std::fs::create_dir_all(&dropdir).unwrap();
    std::fs::write(dropdir.join("bad.conf"), "[Service]\nNice=99\n").unwrap();
    let o = verify(&[d.path()]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let out = stdout(&o);
    assert_eq!(
        out,
        format!(
            "{}:2: error: Nice: '99' is not a nice level between -20 and 19; directive ignored\n",
            dropdir.join("bad.conf").display()
        )
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("1 unit(s), 1 drop-in(s)"));
}

#[test]
fn usage_and_io_errors_exit_2() {
    let o = verify(&[Path::new("/nonexistent/corral-test-path")]);
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("/nonexistent/corral-test-path"), "{err}");
    let o = verify(&[]);
    assert_eq!(o.status.code(), Some(2), "no PATH is a usage error");
}

#[test]
fn garbage_input_does_not_panic() {
    let d = tempfile::tempdir().unwrap();
    let mut bytes: Vec<u8> = (0u8..=255).collect();
    bytes.extend_from_slice(b"\n[Service]\nExecStart=\"\\\n\\x\n%");
    std::fs::write(d.path().join("g.service"), &bytes).unwrap();
    std::fs::write(d.path().join("empty.socket"), b"").unwrap();
    let o = verify(&[d.path()]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(!String::from_utf8_lossy(&o.stderr).contains("panicked"));
}

#[test]
fn symlink_loops_and_fifos_do_not_hang_or_crash() {
    let d = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(d.path(), d.path().join("loop")).unwrap();
    std::os::unix::fs::symlink("loop2.service", d.path().join("loop2.service")).unwrap();
    nix::unistd::mkfifo(
        &d.path().join("f.service"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    std::fs::create_dir(d.path().join("x.service.d")).unwrap();
    nix::unistd::mkfifo(
        &d.path().join("x.service.d/p.conf"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    std::fs::write(
        d.path().join("ok.service"),
        "[Service]\nExecStart=/bin/true\n",
    )
    .unwrap();
    let o = verify(&[d.path()]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let out = stdout(&o);
    assert!(
        out.contains("f.service: error: not a regular file"),
        "{out}"
    );
    assert!(out.contains("p.conf: error: not a regular file"), "{out}");
    assert!(
        out.contains("loop2.service: error: dangling symlink"),
        "{out}"
    );
}

#[test]
fn fixture_search_path_verifies_clean() {
    // Masking symlinks (unit and drop-in), an alias whose target is in
    // another directory, a .wants/ link, templates, a runit tree.
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/units");
    let o = verify(&[&fixtures]);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let out = stdout(&o);
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(out.contains("thing.socket:3: warning: [Socket]: .socket units are not supported yet"));
}
