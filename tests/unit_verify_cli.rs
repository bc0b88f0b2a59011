//! `corral verify` as a user runs it: the real binary, real files, exit codes
//! 0 (clean or warnings only), 1 (any error, unreadable paths included), 2
//! (usage errors only).

mod common;

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
fn missing_paths_exit_1_and_usage_errors_exit_2() {
    let o = verify(&[Path::new("/nonexistent/x.service")]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("corral verify: error: cannot read /nonexistent/x.service: No such file"),
        "{err}"
    );
    assert!(err.contains("1 error(s)"), "{err}");
    let o = verify(&[]);
    assert_eq!(o.status.code(), Some(2), "no PATH is a usage error");
    let help = Command::new(env!("CARGO_BIN_EXE_corral"))
        .args(["verify", "--help"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&help.stdout).contains("1 when there is any error"),
        "{help:?}"
    );
}

#[test]
fn one_word_plain_files_are_unit_files_not_symlinks() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("one.service"), "nothere.service\n").unwrap();
    std::fs::write(d.path().join("two.service"), "/dev/null").unwrap();
    let o = verify(&[d.path()]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let out = stdout(&o);
    let one = d.path().join("one.service");
    let two = d.path().join("two.service");
    for (f, word) in [(&one, "nothere.service"), (&two, "/dev/null")] {
        assert!(
            out.contains(&format!(
                "{}:1: error: missing '=' in '{word}'",
                f.display()
            )),
            "{out}"
        );
    }
    // Asked to, the stored form (no newline) of a symlink is read as one.
    let o = Command::new(env!("CARGO_BIN_EXE_corral"))
        .args(["verify", "--stored-symlinks"])
        .arg(&two)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{o:?}");
}

#[test]
fn non_executable_run_is_an_error_that_says_what_to_do() {
    let d = tempfile::tempdir().unwrap();
    let svc = d.path().join("web");
    std::fs::create_dir(&svc).unwrap();
    std::fs::write(svc.join("run"), "#!/bin/sh\nexec sleep 1\n").unwrap();
    for arg in [&svc, &svc.join("run")] {
        let o = verify(&[arg]);
        assert_eq!(o.status.code(), Some(1), "{o:?}");
        let out = stdout(&o);
        assert!(
            out.contains(&format!(
                "{}: error: run is not executable, so runsv (and corral) would not run this service; make it executable: chmod +x {}",
                svc.join("run").display(),
                svc.join("run").display()
            )),
            "{out}"
        );
    }
}

#[test]
fn control_characters_in_diagnostics_are_escaped() {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("c.service");
    std::fs::write(
        &f,
        "[Service]\nExecStart=/bin/true\nType=\x1b[2J\x07\n\x1b]0;x=y\n",
    )
    .unwrap();
    let o = verify(&[&f]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let out = stdout(&o);
    assert!(!out.contains('\x1b') && !out.contains('\x07'), "{out:?}");
    assert!(out.contains("unknown service type '\\x1b[2J\\a'"), "{out}");
    assert!(
        out.contains(
            "warning: \\x1b]0;x: Unknown key name '\\x1b]0;x' in section 'Service', ignoring."
        ),
        "{out}"
    );
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
        out.contains("f.service: error: it is a FIFO, not a regular file"),
        "{out}"
    );
    assert!(
        out.contains("p.conf: error: it is a FIFO, not a regular file"),
        "{out}"
    );
    assert!(
        out.contains("loop2.service: error: dangling symlink"),
        "{out}"
    );
}

#[test]
fn fixture_search_path_verifies_clean_but_for_the_broken_runit_service() {
    // Masking symlinks (unit and drop-in), an alias whose target is in
    // another directory, a .wants/ link, templates, a runit tree.
    let fixtures = common::fixture("units");
    let search = fixtures.join("search");
    let o = verify(&[&search]);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let out = stdout(&o);
    // thing.socket included: socket units are read, not only kept.
    assert_eq!(out.lines().count(), 0, "{out}");
    // runit/broken has a run script without the x bit, on purpose.
    let o = verify(&[&fixtures]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let out = stdout(&o);
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(
        out.contains("runit/broken/run: error: run is not executable"),
        "{out}"
    );
}

#[test]
fn a_bad_listen_value_is_an_error_naming_the_line_and_the_value() {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("bad.socket");
    std::fs::write(
        &f,
        "[Unit]\nDescription=x\n[Socket]\nListenStream=127.0.0.1:99999\nListenDatagram=%t/ok.sock\nListenSequentialPacket=127.0.0.1:7\nBindIPv6Only=both\n",
    )
    .unwrap();
    let o = verify(&[&f]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let out = stdout(&o);
    assert!(
        out.contains("bad.socket:4: error: ListenStream: bad address '127.0.0.1:99999'"),
        "{out}"
    );
    assert!(
        out.contains("bad.socket:6: error: ListenSequentialPacket: bad address '127.0.0.1:7': sequential packet sockets are unix sockets only"),
        "{out}"
    );
    assert!(
        out.contains("bad.socket:7: warning: BindIPv6Only: unsupported, ignored"),
        "{out}"
    );
    // Nothing left to listen on is what makes systemd refuse the unit.
    std::fs::write(&f, "[Socket]\nListenStream=nowhere\n").unwrap();
    let out = stdout(&verify(&[&f]));
    assert!(
        out.contains("bad.socket:2: error: ListenStream: bad address 'nowhere'"),
        "{out}"
    );
    assert!(
        out.contains("bad.socket: error: ListenStream: the socket has no Listen*= setting"),
        "{out}"
    );
}
