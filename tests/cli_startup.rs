//! What the `corral` binary's own start-up does in place of std's runtime
//! (src/bin/corral.rs): a closed fd 1 reopened on /dev/null, SIGPIPE
//! ignored so a reader that goes away is an error the verb handles, not a
//! signal that kills the command; and the verbs parsed without clap
//! (src/cli/fast_path.rs) reaching the manager's socket as clap's would.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};

const CORRAL: &str = env!("CARGO_BIN_EXE_corral");

#[test]
fn a_closed_stdout_is_reopened_on_dev_null_so_the_socket_cannot_take_fd_1() {
    // std's stdout ignores EBADF, so printing to a closed fd 1 goes nowhere
    // quietly; the danger is the control socket getting fd 1, and what the
    // verb prints going into the manager's protocol.
    let dir = tempfile::tempdir().expect("tempdir");
    let (listener, path) = listen(&dir);
    let mut child = Command::new("/bin/sh")
        .args(["-c", r#"exec "$0" start fast-path-probe >&-"#, CORRAL])
        .env("CORRAL_SOCKET", &path)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run sh");
    let conn = read_request(&listener, b"fast-path-probe");
    // sh exec'd corral: same PID, and it waits for the answer meanwhile.
    let fd1 = std::fs::read_link(format!("/proc/{}/fd/1", child.id())).expect("fd 1");
    drop(conn);
    let status = child.wait().expect("wait");
    assert_eq!(fd1, std::path::Path::new("/dev/null"));
    assert_eq!(status.code(), Some(2), "{status:?}");
}

/// A listening socket standing for the manager's.
fn listen(dir: &tempfile::TempDir) -> (UnixListener, std::path::PathBuf) {
    let path = dir.path().join("control.sock");
    (UnixListener::bind(&path).expect("bind"), path)
}

/// Accepts the CLI's connection and reads until `name` was sent (the Hello
/// and the request come in one write, docs/PROTOCOL.md). Dropping the
/// connection unanswered makes the CLI fail with exit code 2, which ends it.
fn read_request(listener: &UnixListener, name: &[u8]) -> UnixStream {
    let (mut conn, _) = listener.accept().expect("the CLI connects");
    let mut got = Vec::new();
    let mut buf = [0u8; 512];
    while !got.windows(name.len()).any(|w| w == name) {
        let n = conn.read(&mut buf).expect("read");
        assert!(n > 0, "the CLI closed before sending the unit: {got:?}");
        got.extend_from_slice(&buf[..n]);
    }
    conn
}

#[test]
fn a_reader_that_goes_away_does_not_kill_the_command_with_sigpipe() {
    let mut child = Command::new(CORRAL)
        .args([
            "calendar",
            "--base-time",
            "@1796637600",
            "--iterations",
            "20000",
            "minutely",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn corral");
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    let mut first = String::new();
    out.read_line(&mut first).expect("first line");
    assert!(first.contains("minutely"), "{first:?}");
    drop(out);
    let status = child.wait().expect("wait");
    assert_eq!(
        status.signal(),
        None,
        "killed by a signal instead of handling EPIPE: {status:?}"
    );
    assert_eq!(status.code(), Some(0), "{status:?}");
}

#[test]
fn a_verb_parsed_without_clap_sends_its_request_to_the_socket_named_by_the_variable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (listener, path) = listen(&dir);
    let mut child = Command::new(CORRAL)
        .args(["start", "fast-path-probe"])
        .env("CORRAL_SOCKET", &path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn corral");
    let conn = read_request(&listener, b"fast-path-probe");
    drop(conn);
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(2), "{status:?}");
}
