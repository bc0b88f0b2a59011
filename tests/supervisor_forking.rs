//! Type=forking daemons as systemd 252 runs them (issue 14, items 2–4): nginx's
//! binary upgrade moves the main PID (the PIDFile is read again when the
//! main process exits), memcached killed with SIGKILL leaves no stale PIDFile
//! to break the next start (removed at stop; a stale one is waited out),
//! and tmux without PIDFile= gets its server as main PID (GuessMainPID=).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use common::{
    TestDaemon, cgroup_pids, eventually, free_port, memcached_user_flag, memcached_version,
    missing_tools, pids_matching, require, wait_until,
};

/// `GET /` on 127.0.0.1:`port`; the status line, None when nothing answers.
fn http_status(port: u16) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    String::from_utf8_lossy(&buf)
        .lines()
        .next()
        .map(str::to_owned)
}

fn pid_in(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn main_pid(td: &TestDaemon, unit: &str) -> i32 {
    td.prop(unit, "MainPID")
        .parse()
        .expect("MainPID is a number")
}

fn kill(pid: i32, sig: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig).expect("signal");
}

#[test]
fn nginx_binary_upgrade_moves_the_main_pid_and_the_unit_runs_on() {
    if !require("nginx binary upgrade", &missing_tools(&["nginx"])) {
        return;
    }
    let port = free_port();
    let Some(td) = TestDaemon::start() else {
        return;
    };
    let dir = td.run_dir().join("nginx");
    std::fs::create_dir_all(&dir).unwrap();
    let d = dir.display();
    std::fs::write(
        dir.join("nginx.conf"),
        format!(
            "daemon on;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\nworker_processes 1;\n\
             events {{ worker_connections 64; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  \
             fastcgi_temp_path {d}/fastcgi;\n  server {{ listen 127.0.0.1:{port}; return 200 \"ok\\n\"; }}\n}}\n"
        ),
    )
    .unwrap();
    // Debian's nginx.service, with the paths of this test.
    td.write_unit(
        "nginx.service",
        &format!(
            "[Unit]\nDescription=A high performance web server and a reverse proxy server\n\
             [Service]\nType=forking\nPIDFile={d}/nginx.pid\n\
             ExecStartPre=/usr/sbin/nginx -t -q -p {d} -c {d}/nginx.conf\n\
             ExecStart=/usr/sbin/nginx -p {d} -c {d}/nginx.conf\n\
             ExecReload=/usr/sbin/nginx -p {d} -c {d}/nginx.conf -s reload\n\
             ExecStop=-/sbin/start-stop-daemon --quiet --stop --retry QUIT/5 --pidfile {d}/nginx.pid\n\
             TimeoutStopSec=5\nKillMode=mixed\n"
        ),
    );
    td.ok(&["start", "nginx"]);
    let old = main_pid(&td, "nginx");
    assert_eq!(pid_in(&dir.join("nginx.pid")), Some(old));
    let ok = eventually(Duration::from_secs(5), || http_status(port));
    assert!(ok.as_deref().is_some_and(|l| l.contains("200")), "{ok:?}");

    // The upgrade as nginx documents it: USR2 starts a new master (the old
    // PIDFile becomes nginx.pid.oldbin), then QUIT ends the old one.
    kill(old, nix::sys::signal::Signal::SIGUSR2);
    let new = eventually(Duration::from_secs(10), || {
        pid_in(&dir.join("nginx.pid")).filter(|&p| p != old)
    })
    .expect("the new master wrote nginx.pid");
    kill(old, nix::sys::signal::Signal::SIGQUIT);
    wait_until(10, "the old master to exit", || {
        !Path::new(&format!("/proc/{old}")).exists()
    });
    wait_until(10, "MainPID to name the new master", || {
        main_pid(&td, "nginx") == new
    });
    assert_eq!(td.prop("nginx", "ActiveState"), "active", "{}", td.log());
    assert!(
        cgroup_pids(&td.unit_cgroup("nginx.service")).contains(&new),
        "the new master left the unit's cgroup"
    );
    let ok = eventually(Duration::from_secs(5), || http_status(port));
    assert!(ok.as_deref().is_some_and(|l| l.contains("200")), "{ok:?}");
    // The comm, as systemctl shows it, not "nginx:" of "nginx: master process".
    let status = td.corral(&["status", "nginx"]).stdout;
    assert!(
        status.contains(&format!("Main PID: {new} (nginx)")),
        "{status}"
    );
    let line = format!("the PIDFile names the new main process {new}");
    let j = eventually(Duration::from_secs(5), || {
        let j = td.journal("nginx.service", &[]).stdout;
        j.contains(&line).then_some(j)
    });
    assert!(j.is_some(), "{}", td.journal("nginx.service", &[]).stdout);

    td.ok(&["stop", "nginx"]);
    assert_eq!(td.prop("nginx", "ActiveState"), "inactive");
    assert!(pids_matching(&format!("-p {d} -c")).is_empty());
    assert!(
        !dir.join("nginx.pid").exists(),
        "the PIDFile outlived the stop"
    );
}

#[test]
fn memcached_killed_leaves_no_stale_pidfile_and_starts_again() {
    let port = free_port();
    let Some(td) = TestDaemon::start_with(|td| {
        td.write_unit(
            "memcached.service",
            &format!(
                "[Service]\nType=forking\nPIDFile=%t/%p.pid\nTimeoutStartSec=20\n\
                 ExecStart=/usr/bin/memcached -d -P %t/%p.pid -l 127.0.0.1 -p {port} -U 0{}\n",
                memcached_user_flag()
            ),
        )
    }) else {
        return;
    };
    let pidfile = td.run_dir().join("memcached.pid");
    for round in 0..3 {
        td.ok(&["start", "memcached"]);
        let main = main_pid(&td, "memcached");
        assert_eq!(pid_in(&pidfile), Some(main), "round {round}");
        let v = eventually(Duration::from_secs(5), || memcached_version(port));
        assert!(v.is_some_and(|v| v.starts_with("VERSION")), "round {round}");
        assert_eq!(td.prop("memcached", "ExecMainPID"), main.to_string());
        kill(main, nix::sys::signal::Signal::SIGKILL);
        td.wait_state("memcached", "failed");
        assert_eq!(td.prop("memcached", "Result"), "signal");
        // systemctl's numbers: CLD_KILLED, SIGKILL.
        assert_eq!(td.prop("memcached", "ExecMainCode"), "2");
        assert_eq!(td.prop("memcached", "ExecMainStatus"), "9");
        assert_eq!(td.prop("memcached", "ExecMainPID"), main.to_string());
        assert!(
            !pidfile.exists(),
            "round {round}: the PIDFile outlived the service"
        );
    }
    // A stale PIDFile the manager did not remove (left by a manager that
    // died with the service): it names a process that is gone, and the start
    // waits until the new daemon has written its own.
    let mut gone = std::process::Command::new("/bin/true").spawn().unwrap();
    let stale = gone.id() as i32;
    gone.wait().unwrap();
    std::fs::write(&pidfile, format!("{stale}\n")).unwrap();
    td.ok(&["start", "memcached"]);
    let main = main_pid(&td, "memcached");
    assert_ne!(main, stale);
    assert_eq!(pid_in(&pidfile), Some(main));
    td.ok(&["stop", "memcached"]);
    assert!(!pidfile.exists());
}

#[test]
fn tmux_without_pidfile_gets_its_server_as_main_pid_and_its_kill_fails_the_unit() {
    if !require("tmux forking", &missing_tools(&["tmux"])) {
        return;
    }
    let Some(td) = TestDaemon::start() else {
        return;
    };
    let sock = format!("corral-guess-{}", std::process::id());
    td.write_unit(
        "tmux.service",
        &format!(
            "[Service]\nType=forking\n\
             ExecStart=/usr/bin/tmux -L {sock} new-session -d -s x 'sleep 1000'\n"
        ),
    );
    td.ok(&["start", "tmux"]);
    let server = pids_matching(&format!("tmux -L {sock}"));
    assert_eq!(server.len(), 1, "one tmux server: {server:?}");
    let cg = td.unit_cgroup("tmux.service");
    assert!(
        cgroup_pids(&cg).len() >= 2,
        "the server and its sleep run in the unit"
    );
    assert_eq!(main_pid(&td, "tmux"), server[0], "{}", td.log());

    kill(server[0], nix::sys::signal::Signal::SIGKILL);
    td.wait_state("tmux", "failed");
    assert_eq!(td.prop("tmux", "Result"), "signal");
    // The journal writer commits in groups: wait for the line.
    let j = eventually(Duration::from_secs(5), || {
        let j = td.journal("tmux.service", &[]).stdout;
        j.contains("Failed with result").then_some(j)
    })
    .unwrap_or_else(|| td.journal("tmux.service", &[]).stdout);
    assert!(j.contains("Failed with result 'signal'."), "{j}");
    assert!(!j.contains("'success'"), "{j}");
    assert!(
        !cg.exists(),
        "the sleep of the killed server was left behind"
    );

    // GuessMainPID=no: no main PID; the cgroup stands for the service.
    td.write_unit(
        "tmux.service",
        &format!(
            "[Service]\nType=forking\nGuessMainPID=no\n\
             ExecStart=/usr/bin/tmux -L {sock} new-session -d -s x 'sleep 1000'\n"
        ),
    );
    td.ok(&["daemon-reload"]);
    td.ok(&["start", "tmux"]);
    assert_eq!(td.prop("tmux", "MainPID"), "0");
    assert_eq!(td.prop("tmux", "ActiveState"), "active");
    td.ok(&["stop", "tmux"]);
    assert!(pids_matching(&format!("tmux -L {sock}")).is_empty());
}
