//! Bad input on the control socket: a malformed frame, an oversized frame and
//! a request from another uid each get an error, and the manager keeps serving.

mod common;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::Duration;

use common::TestDaemon;
use common::ipc::{expect_error_then_close, raw_after_handshake};
use corral::ipc::ErrorCode;

fn still_serving(td: &TestDaemon) {
    let o = td.ok(&["list", "--all"]);
    assert!(o.stdout.contains("units listed"), "{o:?}");
}

#[test]
fn malformed_frame_gets_an_error_and_the_manager_keeps_serving() {
    let Some(td) = TestDaemon::start() else {
        return;
    };
    let mut s = raw_after_handshake(&td.socket);
    // A length of 3 and a payload that is no Request (variant 200 does not exist).
    s.write_all(&[3, 0, 0, 0, 200, 1, 2]).unwrap();
    expect_error_then_close(&mut s, ErrorCode::MALFORMED);
    still_serving(&td);
}

#[test]
fn oversized_frame_is_refused_before_reading_it() {
    let Some(td) = TestDaemon::start() else {
        return;
    };
    let mut s = raw_after_handshake(&td.socket);
    s.write_all(&u32::MAX.to_le_bytes()).unwrap();
    expect_error_then_close(&mut s, ErrorCode::OVERSIZED);
    still_serving(&td);
}

#[test]
fn another_uid_is_refused_and_the_manager_keeps_serving() {
    let Some(td) = TestDaemon::start() else {
        return;
    };
    // Open the path up so that only SO_PEERCRED stands between nobody and the manager.
    let dir = td.socket.parent().unwrap();
    let tmp = td.dir.path();
    for p in [tmp, &tmp.join("run"), dir] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::fs::set_permissions(&td.socket, std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_corral"))
        .args(["--socket", td.socket.to_str().unwrap(), "list"])
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("permission denied"), "{stderr}");
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    still_serving(&td);
}

#[test]
fn a_unit_error_never_ends_the_manager() {
    let Some(td) = TestDaemon::start_with(|td| {
        td.write_unit("broken.service", "[Service]\nExecStart=relative/path\n");
        td.write_unit(
            "missing.service",
            "[Service]\nExecStart=/nonexistent/binary\n",
        );
    }) else {
        return;
    };
    let o = td.corral(&["start", "broken"]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.stderr.contains("broken.service"), "{o:?}");
    let o = td.corral(&["start", "missing"]);
    // Type=simple reports the exec failure through its state (status=203), as systemd.
    assert!(o.code == 0 || o.code == 1, "{o:?}");
    let r = common::eventually(Duration::from_secs(5), || {
        (td.prop("missing", "ActiveState") == "failed")
            .then(|| td.prop("missing", "ExecMainStatus"))
    });
    assert_eq!(r.as_deref(), Some("203"));
    still_serving(&td);
}
