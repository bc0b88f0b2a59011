//! Real daemons started through their sockets by their own unit files,
//! unchanged, each by a client connecting first: dirmngr, gpg-agent (four
//! sockets feeding one service, told apart by FileDescriptorName=), mpd,
//! and pipewire with pipewire-pulse (`pactl info`), the last as a real
//! user because its units say `ConditionUser=!root`.
//!
//! The units come from the shared corpus; those the corpus lacks
//! (gpg-agent's, shipped by Debian's gpg-agent package) from the Debian
//! package's own files in /usr/lib/systemd/user. `%t` puts their paths in
//! the test's runtime directory, so no file needs a change. The session
//! bus started through dbus.socket is in tests/supervisor_dbus.rs.

mod common;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::corpus::corpus;
use common::system::{TestSystem, can_run_with, test_user};
use common::{TestDaemon, require, show, stdout_of, wait_until};

/// Where Debian's packages put their user units.
const DEBIAN_USER_UNITS: &str = "/usr/lib/systemd/user";

/// Whether the programs and unit files in `files` exist (scripts/test
/// installs their packages); a test without them fails under
/// CORRAL_REQUIRE_CGROUP=1 and is skipped otherwise (see [`require`]).
fn have(what: &str, files: &[&str]) -> bool {
    let missing: Vec<String> = files
        .iter()
        .filter(|f| !Path::new(f).exists())
        .map(|f| f.to_string())
        .collect();
    require(what, &missing)
}

/// Copies the unit files `names` from `dir` into `to`, unchanged.
fn copy_units(dir: &Path, names: &[&str], to: &Path) {
    for n in names {
        std::fs::copy(dir.join(n), to.join(n))
            .unwrap_or_else(|e| panic!("copy {}: {e}", dir.join(n).display()));
    }
}

/// A private GNUPGHOME for the gnupg daemons (else they would write to
/// root's ~/.gnupg), given to the units through the environment block.
fn gnupg_home(td: &TestDaemon) -> PathBuf {
    let home = td.dir.path().join("gnupg-home");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700)).unwrap();
    td.ok(&["set-environment", &format!("GNUPGHOME={}", home.display())]);
    home
}

/// `gpg-connect-agent` on the Assuan socket `socket`, sending `commands`;
/// its output. `--no-autostart`: only the socket-activated daemon may answer.
fn assuan(socket: &Path, home: &Path, commands: &[&str]) -> String {
    let out = stdout_of(
        Command::new("gpg-connect-agent")
            .env("GNUPGHOME", home)
            .arg("--no-autostart")
            .arg("-S")
            .arg(socket)
            .args(commands)
            .arg("/bye"),
    );
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn dirmngr_answers_through_its_activated_socket() {
    if !have(
        "dirmngr",
        &["/usr/bin/dirmngr", "/usr/bin/gpg-connect-agent"],
    ) {
        return;
    }
    let Some(corpus) = corpus() else { return };
    let Some(td) = TestDaemon::start_with(|td| {
        copy_units(
            &corpus.join("systemd-user/dirmngr"),
            &["dirmngr.socket", "dirmngr.service"],
            &td.units_dir(),
        );
    }) else {
        return;
    };
    let home = gnupg_home(&td);
    td.ok(&["start", "dirmngr.socket"]);
    assert_eq!(td.prop("dirmngr.service", "ActiveState"), "inactive");
    let socket = td.run_dir().join("gnupg/S.dirmngr");
    // SocketMode=0600, DirectoryMode=0700.
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&socket), 0o600);
    assert_eq!(mode(socket.parent().unwrap()), 0o700);

    let answer = assuan(&socket, &home, &["GETINFO version"]);
    assert!(answer.starts_with("D 2."), "{answer}");
    assert!(answer.ends_with("OK\n"), "{answer}");
    assert_eq!(td.prop("dirmngr.service", "ActiveState"), "active");
    let main = td.prop("dirmngr.service", "MainPID");
    let cmdline = std::fs::read(format!("/proc/{main}/cmdline")).unwrap();
    assert_eq!(cmdline, b"/usr/bin/dirmngr\0--supervised\0");
    // The daemon took over the socket the manager bound: its own pid answers.
    let pid = assuan(&socket, &home, &["GETINFO pid"]);
    assert!(pid.starts_with(&format!("D {main}\n")), "{pid}");
    td.ok(&["stop", "dirmngr.service", "dirmngr.socket"]);
    assert!(!td.unit_cgroup("dirmngr.service").exists());
}

#[test]
fn gpg_agent_gets_its_four_sockets_by_name() {
    let units = [
        "gpg-agent.service",
        "gpg-agent.socket",
        "gpg-agent-ssh.socket",
        "gpg-agent-extra.socket",
        "gpg-agent-browser.socket",
    ];
    let mut files: Vec<String> = units
        .iter()
        .map(|u| format!("{DEBIAN_USER_UNITS}/{u}"))
        .collect();
    files.extend(
        [
            "/usr/bin/gpg-agent",
            "/usr/bin/gpg-connect-agent",
            "/usr/bin/ssh-add",
        ]
        .map(String::from),
    );
    let files: Vec<&str> = files.iter().map(String::as_str).collect();
    if !have("gpg-agent", &files) {
        return;
    }
    let Some(td) = TestDaemon::start_with(|td| {
        copy_units(Path::new(DEBIAN_USER_UNITS), &units, &td.units_dir());
    }) else {
        return;
    };
    let home = gnupg_home(&td);
    td.ok(&[
        "start",
        "gpg-agent.socket",
        "gpg-agent-ssh.socket",
        "gpg-agent-extra.socket",
        "gpg-agent-browser.socket",
    ]);
    assert_eq!(td.prop("gpg-agent.service", "ActiveState"), "inactive");
    let dir = td.run_dir().join("gnupg");

    // The ssh socket first: the agent starts with all four.
    let ssh = Command::new("ssh-add")
        .arg("-l")
        .env("SSH_AUTH_SOCK", dir.join("S.gpg-agent.ssh"))
        .output()
        .unwrap();
    // Exit 1 with "no identities": an agent answered (2: none reached).
    assert_eq!(ssh.status.code(), Some(1), "{}", show(&ssh));
    assert!(
        String::from_utf8_lossy(&ssh.stdout).contains("no identities"),
        "{}",
        show(&ssh)
    );
    assert_eq!(td.prop("gpg-agent.service", "ActiveState"), "active");

    // gpg-agent --supervised takes fd 3 and the rest by their
    // LISTEN_FDNAMES (std, ssh, extra, browser): without them it dies
    // with "file descriptor 3 must be valid".
    let std_socket = dir.join("S.gpg-agent");
    let version = assuan(&std_socket, &home, &["GETINFO version"]);
    assert!(version.starts_with("D 2."), "{version}");
    let ssh_name = assuan(&std_socket, &home, &["GETINFO ssh_socket_name"]);
    let want = format!("D {}\nOK\n", dir.join("S.gpg-agent.ssh").display());
    assert_eq!(ssh_name, want);
    // What it made of each fd, in its own words.
    wait_until(30, "gpg-agent's list of its sockets in the journal", || {
        td.ok(&["journal", "--no-pager", "-u", "gpg-agent.service"])
            .stdout
            .contains("listening on: std=6 extra=4 browser=3 ssh=5")
    });
    // The restricted socket is the extra one: it refuses what std allows.
    let extra = assuan(
        &dir.join("S.gpg-agent.extra"),
        &home,
        &["GETINFO socket_name"],
    );
    assert!(extra.starts_with("ERR"), "{extra}");
    let main = td.prop("gpg-agent.service", "MainPID");
    // The sockets' fds in the order of their units' names.
    assert_eq!(
        listen_fdnames(&main).as_deref(),
        Some("browser:extra:ssh:std")
    );
    td.ok(&["stop", "gpg-agent.service"]);
    assert!(!td.unit_cgroup("gpg-agent.service").exists());
}

/// `LISTEN_FDNAMES` in the environment of process `pid`.
fn listen_fdnames(pid: &str) -> Option<String> {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    environ
        .split(|&b| b == 0)
        .find_map(|v| v.strip_prefix(b"LISTEN_FDNAMES="))
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

/// mpd's configuration: its files in `dir`, no audio device.
fn mpd_config(dir: &Path) -> PathBuf {
    let config_home = dir.join("config");
    std::fs::create_dir_all(config_home.join("mpd")).unwrap();
    std::fs::create_dir_all(dir.join("music")).unwrap();
    std::fs::write(
        config_home.join("mpd/mpd.conf"),
        format!(
            "music_directory \"{d}/music\"\ndb_file \"{d}/mpd.db\"\n\
             audio_output {{\n  type \"null\"\n  name \"null\"\n}}\n",
            d = dir.display()
        ),
    )
    .unwrap();
    config_home
}

#[test]
fn mpd_answers_through_its_activated_socket() {
    if !have("mpd", &["/usr/bin/mpd"]) {
        return;
    }
    let Some(corpus) = corpus() else { return };
    // mpd.socket also listens on port 6600 of every address: the manager
    // runs in a network namespace of its own, so that nothing outside
    // reaches that port and no other test's can clash with it.
    let Some(td) = TestDaemon::start_configured(
        |td| {
            copy_units(
                &corpus.join("systemd-user/mpd"),
                &["mpd.socket", "mpd.service"],
                &td.units_dir(),
            );
        },
        &[],
        |cmd| {
            // SAFETY: unshare(2) only, in the child before exec.
            unsafe {
                cmd.pre_exec(|| {
                    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
                        .map_err(std::io::Error::from)
                });
            }
        },
    ) else {
        return;
    };
    let config_home = mpd_config(td.dir.path());
    td.ok(&[
        "set-environment",
        &format!("XDG_CONFIG_HOME={}", config_home.display()),
    ]);
    td.ok(&["start", "mpd.socket"]);
    let s = td.ok(&["status", "mpd.socket"]).stdout;
    assert!(s.contains(":6600 (Stream)"), "{s}");
    assert_eq!(td.prop("mpd.service", "ActiveState"), "inactive");

    let mut c = UnixStream::connect(td.run_dir().join("mpd/socket")).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    c.write_all(b"status\nclose\n").unwrap();
    let mut answer = String::new();
    c.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("OK MPD 0."), "{answer}");
    assert!(answer.contains("\nstate: stop\n"), "{answer}");
    assert!(answer.ends_with("\nOK\n"), "{answer}");
    // Type=notify: active once mpd said READY=1.
    assert_eq!(td.prop("mpd.service", "ActiveState"), "active");
    assert_eq!(td.prop("mpd.service", "Type"), "notify");
    td.ok(&["stop", "mpd.service", "mpd.socket"]);
    assert!(!td.unit_cgroup("mpd.service").exists());
}

/// Files a test put in a user's home, removed on drop even when it fails.
/// Declared before the [`TestSystem`], it is dropped after the manager
/// reading them has stopped.
struct InHome(Vec<PathBuf>);

impl Drop for InHome {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = std::fs::remove_dir_all(p).or_else(|_| std::fs::remove_file(p));
        }
    }
}

#[test]
fn pipewire_pulse_answers_pactl_info_through_its_activated_socket() {
    let tools = ["pipewire", "pipewire-pulse", "pactl"];
    if !can_run_with("pipewire", &tools) {
        return;
    }
    let Some(corpus) = corpus() else { return };
    let user = test_user("corral-t2", false);
    let config = user.home.join(".config");
    let units = config.join("corral/units");
    let run = PathBuf::from(format!("/run/user/{}", user.uid));
    // What the test and the daemons leave: the units, pulse's cookie,
    // pipewire's state, and the sockets without RemoveOnStop= in a runtime
    // directory that may outlive the test (when the system manager did not
    // make it).
    let mut left = vec![
        config.join("corral"),
        config.join("pulse"),
        user.home.join(".local/state/pipewire"),
        run.join("pipewire-0"),
        run.join("pipewire-0.lock"),
        run.join("pulse"),
    ];
    if !config.exists() {
        left.push(config.clone());
    }
    let _home = InHome(left);
    let as_user = |cmd: &mut Command| {
        cmd.uid(user.uid)
            .gid(user.gid)
            .env("HOME", &user.home)
            .env("XDG_RUNTIME_DIR", format!("/run/user/{}", user.uid));
    };
    let mut mkdir = Command::new("mkdir");
    mkdir.arg("-p").arg(&units);
    as_user(&mut mkdir);
    stdout_of(&mut mkdir);
    for (dir, names) in [
        ("pipewire", ["pipewire.socket", "pipewire.service"]),
        (
            "pipewire-pulse",
            ["pipewire-pulse.socket", "pipewire-pulse.service"],
        ),
    ] {
        copy_units(&corpus.join("systemd-user").join(dir), &names, &units);
        for n in names {
            std::os::unix::fs::chown(units.join(n), Some(user.uid), Some(user.gid)).unwrap();
        }
    }
    let sys = TestSystem::start(None);
    sys.login(&user);
    let socket = format!("/run/user/{}/corral/control.sock", user.uid);
    let corral = |args: &[&str]| {
        let mut all = vec!["--socket", &socket];
        all.extend(args);
        sys.corral_as(Some(&user), &all)
    };
    let prop = |unit: &str, p: &str| {
        let o = corral(&["show", "-p", p, "--value", unit]);
        assert!(o.status.success(), "{}", show(&o));
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    let o = corral(&["start", "pipewire.socket", "pipewire-pulse.socket"]);
    assert!(o.status.success(), "{}\n{}", show(&o), sys.stderr());
    assert_eq!(prop("pipewire-pulse.service", "ActiveState"), "inactive");
    assert_eq!(prop("pipewire.service", "ActiveState"), "inactive");

    // pactl's connection starts pipewire-pulse; it wants pipewire.service,
    // which gets pipewire.socket's fd.
    let mut pactl = Command::new("pactl");
    pactl.arg("info");
    as_user(&mut pactl);
    let info = String::from_utf8_lossy(&stdout_of(&mut pactl)).into_owned();
    let native = format!("/run/user/{}/pulse/native", user.uid);
    assert!(info.contains(&format!("Server String: {native}")), "{info}");
    assert!(info.contains("on PipeWire"), "{info}");
    wait_until(30, "pipewire.service to be active", || {
        prop("pipewire.service", "ActiveState") == "active"
    });
    assert_eq!(prop("pipewire-pulse.service", "ActiveState"), "active");
    for (service, socket) in [
        ("pipewire.service", "pipewire.socket"),
        ("pipewire-pulse.service", "pipewire-pulse.socket"),
    ] {
        let main = prop(service, "MainPID");
        assert_eq!(listen_fdnames(&main).as_deref(), Some(socket), "{service}");
    }
    let o = corral(&["stop", "pipewire-pulse.service", "pipewire.service"]);
    assert!(o.status.success(), "{}", show(&o));
    sys.logout_and_wait(&user, 30);
}
