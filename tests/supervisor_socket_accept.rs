//! What is left of `.socket` units after Accept=no: `Accept=yes` (one
//! instance of the `@` template per connection, named as systemd names it,
//! `MaxConnections=`, the instances stopped with the socket), the socket's
//! own `ExecStartPre=`/`ExecStartPost=`/`ExecStopPost=`, the trigger limit,
//! and the corpus's socket units loading in the manager.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use common::{TestDaemon, free_port, wait_until};

/// The inetd-style template: the connection is stdin and stdout.
const STDIO_TEMPLATE: &str =
    "[Service]\nExecStart=/bin/sh -c 'read l; echo got:$l'\nStandardInput=socket\n";

/// The template that reads the connection at fd 3 and says what it got.
const FD3_TEMPLATE: &str = "[Service]\nExecStart=/bin/sh -c 'read l <&3; echo \"got:$l fds=$LISTEN_FDS names=$LISTEN_FDNAMES remote=$REMOTE_ADDR:$REMOTE_PORT\" >&3'\n";

/// Sends `line` and reads the answer to the end.
fn exchange(c: &mut (impl Read + Write), line: &str) -> String {
    c.write_all(format!("{line}\n").as_bytes()).unwrap();
    let mut s = String::new();
    c.read_to_string(&mut s).unwrap();
    s
}

fn connect(port: u16) -> TcpStream {
    let c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    c
}

/// The instance name systemd 252 gives connection `nr` of `c`.
fn inet_instance(template: &str, nr: u64, c: &TcpStream) -> String {
    let (l, r) = (c.peer_addr().unwrap(), c.local_addr().unwrap());
    format!(
        "{template}@{nr}-{}:{}-{}:{}.service",
        l.ip(),
        l.port(),
        r.ip(),
        r.port()
    )
}

/// Waits until `line` is a line of `unit`'s journal (the writer commits
/// in groups, a moment after the line was sent).
fn in_journal(td: &TestDaemon, unit: &str, line: &str) {
    wait_until(30, line, || {
        td.journal(unit, &["-o", "cat"])
            .stdout
            .lines()
            .any(|l| l == line)
    });
}

fn counts(td: &TestDaemon, socket: &str) -> String {
    let s = td.ok(&["status", socket]).stdout;
    s.lines()
        .find_map(|l| l.trim().strip_prefix("Accepted: ").map(str::to_string))
        .unwrap_or_else(|| panic!("no Accepted: line in\n{s}"))
}

#[test]
fn accept_yes_starts_one_instance_per_connection_up_to_max_connections() {
    let Some(td) = TestDaemon::start() else {
        return;
    };
    let port = free_port();
    td.write_unit(
        "echo.socket",
        &format!("[Socket]\nListenStream=127.0.0.1:{port}\nAccept=yes\nMaxConnections=3\n"),
    );
    td.write_unit("echo@.service", STDIO_TEMPLATE);
    td.ok(&["daemon-reload"]);
    td.ok(&["start", "echo.socket"]);
    assert_eq!(td.prop("echo.socket", "SubState"), "listening");

    // Three connections at once: three instances, each waiting for its line.
    let mut conns: Vec<TcpStream> = (0..3).map(|_| connect(port)).collect();
    wait_until(30, "three connected instances", || {
        counts(&td, "echo.socket") == "3; Connected: 3;"
    });
    for (nr, c) in conns.iter().enumerate() {
        // Accepted in the order they were made (one listening fd, one queue).
        let name = inet_instance("echo", nr as u64, c);
        td.wait_state(&name, "active");
    }
    // The fourth is over MaxConnections=: closed at once, unanswered.
    let mut extra = connect(port);
    let mut buf = Vec::new();
    match extra.read_to_end(&mut buf) {
        Ok(_) => assert!(buf.is_empty(), "{buf:?}"),
        Err(e) => assert_eq!(e.kind(), ErrorKind::ConnectionReset),
    }
    wait_until(30, "the refusal counted", || {
        counts(&td, "echo.socket") == "3; Connected: 3; Refused: 1"
    });
    in_journal(
        &td,
        "echo.socket",
        "echo.socket: Too many incoming connections (3), dropping connection.",
    );
    // Each instance answers its own connection, in any order.
    for (i, c) in conns.iter_mut().enumerate().rev() {
        assert_eq!(exchange(c, &format!("hi{i}")), format!("got:hi{i}\n"));
    }
    // An instance that ends frees its place.
    wait_until(30, "the instances gone", || {
        counts(&td, "echo.socket") == "3; Connected: 0; Refused: 1"
    });
    let mut again = connect(port);
    assert_eq!(exchange(&mut again, "more"), "got:more\n");
    // The instances that ended are collected (the unit table does not grow
    // with every connection).
    let listed = td.ok(&["list", "--all"]).stdout;
    assert!(!listed.contains("echo@0-"), "{listed}");

    // Instances still serving a connection stop with the socket.
    let held = connect(port);
    let name = inet_instance("echo", 4, &held);
    td.wait_state(&name, "active");
    td.ok(&["stop", "echo.socket"]);
    td.wait_state(&name, "inactive");
    assert_eq!(td.prop("echo.socket", "ActiveState"), "inactive");
    assert_eq!(
        TcpStream::connect(("127.0.0.1", port)).unwrap_err().kind(),
        ErrorKind::ConnectionRefused
    );
}

#[test]
fn max_connections_per_source_closes_the_extra_connection_of_a_source() {
    let Some(td) = TestDaemon::start() else {
        return;
    };
    let port = free_port();
    td.write_unit(
        "one.socket",
        &format!(
            "[Socket]\nListenStream=127.0.0.1:{port}\nAccept=yes\nMaxConnectionsPerSource=1\n"
        ),
    );
    td.write_unit("one@.service", STDIO_TEMPLATE);
    td.ok(&["daemon-reload"]);
    td.ok(&["start", "one.socket"]);
    let mut first = connect(port);
    td.wait_state(&inet_instance("one", 0, &first), "active");
    let mut second = connect(port);
    let mut buf = Vec::new();
    match second.read_to_end(&mut buf) {
        Ok(_) => assert!(buf.is_empty(), "{buf:?}"),
        Err(e) => assert_eq!(e.kind(), ErrorKind::ConnectionReset),
    }
    in_journal(
        &td,
        "one.socket",
        "one.socket: Too many incoming connections (2) from source 127.0.0.1, dropping connection.",
    );
    assert_eq!(exchange(&mut first, "a"), "got:a\n");
    td.ok(&["stop", "one.socket"]);
}

#[test]
fn an_accepted_connection_is_fd_3_with_the_peer_in_the_environment() {
    let Some(td) = TestDaemon::start() else {
        return;
    };
    let port = free_port();
    let path = td.run_dir().join("fd3.sock");
    td.write_unit(
        "fd3.socket",
        &format!(
            "[Socket]\nListenStream=127.0.0.1:{port}\nListenStream={}\nAccept=yes\n",
            path.display()
        ),
    );
    td.write_unit("fd3@.service", FD3_TEMPLATE);
    td.ok(&["daemon-reload"]);
    td.ok(&["start", "fd3.socket"]);

    let mut c = connect(port);
    let local = c.local_addr().unwrap();
    assert_eq!(
        exchange(&mut c, "x"),
        format!(
            "got:x fds=1 names=connection remote=127.0.0.1:{}\n",
            local.port()
        )
    );
    // A unix peer: named by its PID and uid, and no REMOTE_ADDR.
    let mut u = UnixStream::connect(&path).unwrap();
    u.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    assert_eq!(
        exchange(&mut u, "y"),
        "got:y fds=1 names=connection remote=:\n"
    );
    let name = format!(
        "fd3@1-{}-{}.service",
        std::process::id(),
        nix::unistd::getuid()
    );
    wait_until(30, "the unix instance ended", || {
        td.prop(&name, "ActiveState") == "inactive" && td.prop(&name, "Result") == "success"
    });
    td.ok(&["stop", "fd3.socket"]);
}

#[test]
fn socket_options_are_set_on_each_accepted_connection() {
    if !common::require(
        "SO_PRIORITY of a connection",
        &common::missing_tools(&["python3"]),
    ) {
        return;
    }
    let Some(td) = TestDaemon::start() else {
        return;
    };
    // A unix socket: a TCP connection would inherit the listening
    // socket's priority, a unix one starts from 0.
    let path = td.run_dir().join("prio.sock");
    td.write_unit(
        "prio.socket",
        &format!(
            "[Socket]\nListenStream={}\nAccept=yes\nPriority=4\nKeepAlive=yes\n",
            path.display()
        ),
    );
    // The connection is stdin; it answers with the connection's SO_PRIORITY.
    td.write_unit(
        "prio@.service",
        r#"[Service]
StandardInput=socket
NonBlocking=yes
ExecStart=/usr/bin/python3 -c "import os, select, socket; blocking = os.get_blocking(0); select.select([0], [], []); os.read(0, 100); s = socket.socket(fileno=0); s.setblocking(True); s.sendall(b'prio=%%d keepalive=%%d blocking=%%d\\n' %% (s.getsockopt(socket.SOL_SOCKET, socket.SO_PRIORITY), s.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE), blocking))"
"#,
    );
    td.ok(&["daemon-reload"]);
    td.ok(&["start", "prio.socket"]);
    let mut c = UnixStream::connect(&path).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    assert_eq!(
        exchange(&mut c, "x"),
        "prio=4 keepalive=1 blocking=0\n",
        "{}",
        td.log()
    );
    td.ok(&["stop", "prio.socket"]);
    // NonBlocking= of a service activated by an Accept=no socket: its
    // listening fd.
    let path = td.run_dir().join("nb.sock");
    td.write_unit(
        "nb.socket",
        &format!("[Socket]\nListenStream={}\n", path.display()),
    );
    td.write_unit(
        "nb.service",
        r#"[Service]
NonBlocking=yes
ExecStart=/usr/bin/python3 -c "import os, socket; b = os.get_blocking(3); s = socket.socket(fileno=3); s.setblocking(True); c, _ = s.accept(); c.recv(100); c.sendall(b'blocking=%%d\\n' %% b)"
"#,
    );
    td.ok(&["daemon-reload"]);
    td.ok(&["start", "nb.socket"]);
    let mut c = UnixStream::connect(&path).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    assert_eq!(exchange(&mut c, "x"), "blocking=0\n", "{}", td.log());
    td.ok(&["stop", "nb.socket", "nb.service"]);
}

#[test]
fn the_sockets_own_commands_run_in_its_cgroup_around_the_bind() {
    let Some(td) = TestDaemon::start() else {
        return;
    };
    let dir = td.dir.path().join("marks");
    std::fs::create_dir_all(&dir).unwrap();
    let path = td.run_dir().join("cmd.sock");
    let (d, p) = (dir.display(), path.display());
    td.write_unit(
        "cmd.socket",
        &format!(
            "[Socket]\nListenStream={p}\n\
             ExecStartPre=/bin/sh -c 'test -e {p} || touch {d}/pre-before-bind; echo pre ran'\n\
             ExecStartPost=/bin/sh -c 'test -S {p} && cat /proc/self/cgroup > {d}/post-cgroup; echo post ran'\n\
             ExecStopPost=/bin/sh -c 'touch {d}/stop-post; echo stop-post ran'\n"
        ),
    );
    td.write_unit("cmd.service", "[Service]\nExecStart=/bin/sleep 1000\n");
    td.ok(&["daemon-reload"]);
    td.ok(&["start", "cmd.socket"]);
    assert_eq!(td.prop("cmd.socket", "SubState"), "listening");
    assert!(
        dir.join("pre-before-bind").exists(),
        "ExecStartPre= ran after the bind"
    );
    let cg = std::fs::read_to_string(dir.join("post-cgroup"))
        .expect("ExecStartPost= ran before the bind, or not at all");
    assert!(cg.trim_end().ends_with("/cmd.socket"), "{cg}");
    td.ok(&["stop", "cmd.socket"]);
    assert!(dir.join("stop-post").exists());
    assert!(!td.unit_cgroup("cmd.socket").exists(), "the cgroup stays");
    for l in ["pre ran", "post ran", "stop-post ran"] {
        in_journal(&td, "cmd.socket", l);
    }

    // A failing ExecStartPre= fails the socket before it binds.
    let bad = td.run_dir().join("bad.sock");
    td.write_unit(
        "bad.socket",
        &format!(
            "[Socket]\nListenStream={}\nExecStartPre=/bin/false\n",
            bad.display()
        ),
    );
    // A command running past TimeoutSec= is killed and fails it.
    td.write_unit(
        "slow.socket",
        &format!(
            "[Socket]\nListenStream={}\nExecStartPre=/bin/sleep 60\nTimeoutSec=1\n",
            td.run_dir().join("slow.sock").display()
        ),
    );
    td.ok(&["daemon-reload"]);
    let out = td.corral(&["start", "bad.socket", "slow.socket"]);
    assert_ne!(out.code, 0, "{out:?}");
    for (unit, result) in [("bad.socket", "exit-code"), ("slow.socket", "timeout")] {
        assert_eq!(td.prop(unit, "ActiveState"), "failed", "{unit}");
        assert_eq!(td.prop(unit, "Result"), result, "{unit}");
    }
    assert!(
        !bad.exists(),
        "a failed ExecStartPre= left the socket bound"
    );
    assert!(!td.unit_cgroup("slow.socket").exists());
}

#[test]
fn a_socket_whose_service_fails_at_once_hits_its_trigger_limit() {
    let Some(td) = TestDaemon::start() else {
        return;
    };
    let path = td.run_dir().join("spin.sock");
    td.write_unit(
        "spin.socket",
        &format!("[Socket]\nListenStream={}\n", path.display()),
    );
    // No start limit of its own: the socket's trigger limit is what stops it.
    td.write_unit(
        "spin.service",
        "[Unit]\nStartLimitIntervalSec=0\n[Service]\nExecStart=/bin/false\n",
    );
    // A socket whose service does not load fails at once.
    let lost = td.run_dir().join("lost.sock");
    td.write_unit(
        "lost.socket",
        &format!("[Socket]\nListenStream={}\n", lost.display()),
    );
    td.ok(&["daemon-reload"]);
    td.ok(&["start", "spin.socket", "lost.socket"]);

    let _waiting = UnixStream::connect(&path).unwrap();
    td.wait_state("spin.socket", "failed");
    assert_eq!(td.prop("spin.socket", "Result"), "trigger-limit-hit");
    in_journal(
        &td,
        "spin.socket",
        "spin.socket: Trigger limit hit, refusing further activation.",
    );

    let _waiting = UnixStream::connect(&lost).unwrap();
    td.wait_state("lost.socket", "failed");
    assert_eq!(td.prop("lost.socket", "Result"), "resources");
    in_journal(
        &td,
        "lost.socket",
        "lost.socket: Failed to queue service startup job (Maybe the service file is missing or not a service unit?): Unit lost.service not found.",
    );
}

#[test]
fn the_corpus_sockets_load_in_the_manager() {
    let Some(corpus) = common::corpus::corpus() else {
        return;
    };
    let Some(td) = TestDaemon::start() else {
        return;
    };
    let mut names = Vec::new();
    let mut stack = vec![corpus.join("systemd-user")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "socket") {
                let name = p.file_name().unwrap().to_string_lossy().into_owned();
                std::fs::copy(&p, td.units_dir().join(&name)).unwrap();
                names.push(name);
            }
        }
    }
    assert!(names.len() >= 9, "{names:?}");
    // Debian's dbus.socket has an ExecStartPost=; systemctl is replaced by
    // echo (the one change), which says what it was given.
    td.write_unit(
        "dbus.socket",
        &DBUS_SOCKET.replace("-/bin/systemctl", "-/bin/echo"),
    );
    names.push("dbus.socket".to_string());
    td.ok(&["daemon-reload"]);
    for n in names.iter().filter(|n| !n.contains("@.")) {
        let s = td.corral(&["status", n]).stdout;
        assert!(s.contains("Loaded: loaded"), "{n}:\n{s}");
    }
    td.ok(&["start", "dbus.socket"]);
    assert_eq!(td.prop("dbus.socket", "SubState"), "listening");
    let bus = td.run_dir().join("bus");
    in_journal(
        &td,
        "dbus.socket",
        &format!(
            "--user set-environment DBUS_SESSION_BUS_ADDRESS=unix:path={}",
            bus.display()
        ),
    );
    td.ok(&["stop", "dbus.socket"]);
}

/// Debian's dbus-user-session `dbus.socket`, as installed.
const DBUS_SOCKET: &str = "[Unit]
Description=D-Bus User Message Bus Socket

[Socket]
ListenStream=%t/bus
ExecStartPost=-/bin/systemctl --user set-environment DBUS_SESSION_BUS_ADDRESS=unix:path=%t/bus
";
