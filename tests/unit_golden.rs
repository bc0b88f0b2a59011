//! Golden tests on tricky real unit files from the shared corpus (Debian 12),
//! loaded through the real `Loader` with the package's directory as the
//! search path.

mod common;

use std::path::{Path, PathBuf};

use common::corpus::corpus;

use corral::unit::{
    DiagnosticKind, Loader, RestartPolicy, ServiceType, SpecifierContext, Unit, UnitName,
};

fn spec() -> SpecifierContext {
    let mut s = SpecifierContext::current();
    s.runtime_dir = PathBuf::from("/run/user/4242");
    s.home = PathBuf::from("/home/tester");
    s
}

fn load(pkg_dir: &Path, name: &str) -> Unit {
    // The corpus stores symlinks as plain files (see tests/unit_corpus.rs).
    let loader =
        Loader::new(vec![pkg_dir.to_path_buf()], Vec::new(), spec()).with_stored_symlinks(true);
    let u = loader
        .load(&UnitName::parse(name).unwrap())
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let errors: Vec<String> = u.errors().map(|d| d.to_string()).collect();
    assert!(errors.is_empty(), "{name} has errors: {errors:#?}");
    u
}

#[test]
fn nginx_single_quoted_argument() {
    let Some(c) = corpus() else { return };
    let u = load(&c.join("systemd-system/nginx-common"), "nginx.service");
    let s = u.service.as_ref().unwrap();
    assert_eq!(s.service_type, ServiceType::Forking);
    assert_eq!(s.pid_file.as_deref(), Some(Path::new("/run/nginx.pid")));
    assert_eq!(s.exec_start.len(), 1);
    assert_eq!(
        s.exec_start[0].argv,
        ["/usr/sbin/nginx", "-g", "daemon on; master_process on;"]
    );
    assert_eq!(
        s.exec_start_pre[0].argv,
        [
            "/usr/sbin/nginx",
            "-t",
            "-q",
            "-g",
            "daemon on; master_process on;"
        ]
    );
    assert_eq!(
        s.exec_reload[0].argv,
        [
            "/usr/sbin/nginx",
            "-g",
            "daemon on; master_process on;",
            "-s",
            "reload"
        ]
    );
    assert!(s.exec_stop[0].flags.ignore_failure);
    assert_eq!(s.exec_stop[0].program, "/sbin/start-stop-daemon");
    assert_eq!(s.timeout_stop, Some(std::time::Duration::from_secs(5)));
    assert_eq!(s.kill_mode, corral::unit::KillMode::Mixed);
    assert_eq!(u.install.wanted_by[0].as_str(), "multi-user.target");
    assert_eq!(
        u.unit
            .after
            .iter()
            .map(UnitName::as_str)
            .collect::<Vec<_>>(),
        [
            "network-online.target",
            "remote-fs.target",
            "nss-lookup.target"
        ]
    );
}

#[test]
fn gnome_keyring_quotes_inside_a_word() {
    let Some(c) = corpus() else { return };
    let u = load(
        &c.join("systemd-user/gnome-keyring"),
        "gnome-keyring-daemon.service",
    );
    let argv = &u.service.as_ref().unwrap().exec_start[0].argv;
    assert_eq!(
        argv,
        &[
            "/usr/bin/gnome-keyring-daemon",
            "--foreground",
            "--components=pkcs11,secrets",
            "--control-directory=/run/user/4242/keyring"
        ]
    );
}

#[test]
fn haproxy_three_assignments_on_one_line() {
    let Some(c) = corpus() else { return };
    let u = load(&c.join("systemd-system/haproxy"), "haproxy.service");
    let s = u.service.as_ref().unwrap();
    let env: Vec<(&str, &str)> = s
        .environment
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        env,
        [
            ("CONFIG", "/etc/haproxy/haproxy.cfg"),
            ("PIDFILE", "/run/haproxy.pid"),
            ("EXTRAOPTS", "-S /run/haproxy-master.sock")
        ]
    );
    assert_eq!(s.environment_files.len(), 2);
    assert!(s.environment_files.iter().all(|f| f.optional));
    assert_eq!(
        s.environment_files[0].path,
        Path::new("/etc/default/haproxy")
    );
    // `$EXTRAOPTS` is one word that splits at run time.
    let start = &s.exec_start[0];
    let argv = start.expand(&s.environment);
    assert!(
        argv.windows(2)
            .any(|w| w == ["-S", "/run/haproxy-master.sock"]),
        "{argv:?}"
    );
}

#[test]
fn mariadb_continuation_inside_quoted_sh_c() {
    let Some(c) = corpus() else { return };
    let u = load(&c.join("systemd-system/mariadb-server"), "mariadb.service");
    let s = u.service.as_ref().unwrap();
    assert_eq!(s.exec_start.len(), 1);
    let argv = &s.exec_start[0].argv;
    assert_eq!(argv.len(), 3, "{argv:?}");
    assert_eq!(&argv[..2], ["/bin/sh", "-c"]);
    // Each `\` + newline became one space; the next line's own leading space stays.
    assert_eq!(
        argv[2],
        "set -f; [ ! -e /usr/bin/galera_recovery ] && VAR= ||   VAR=`/usr/bin/galera_recovery`; [ $? -eq 0 ] || exit 1;   exec /usr/sbin/mariadbd $MYSQLD_OPTS $_WSREP_NEW_CLUSTER $VAR"
    );
    // `:`-less command: `$VAR` inside the quoted word is not a whole word, so it stays.
    assert_eq!(s.exec_start[0].expand(&s.environment)[2], argv[2]);
    assert_eq!(s.service_type, ServiceType::Notify);
    assert!(!s.send_sigkill);
    assert_eq!(s.restart, RestartPolicy::OnAbnormal);
    assert_eq!(s.umask, Some(0o007));
    assert_eq!(s.tasks_max, Some(corral::unit::TasksMax::Permyriad(9900)));
    assert!(s.exec_start_post[0].flags.no_setuid);
}

#[test]
fn mariadb_commented_continuation_lines_stay_comments() {
    let Some(c) = corpus() else { return };
    let u = load(
        &c.join("systemd-system/mariadb-server"),
        "mariadb@x.service",
    );
    let s = u.service.as_ref().unwrap();
    // The commented-out `ExecStartPre= \` and `Environment=... \` blocks
    // must not leak into the unit.
    assert_eq!(s.exec_start_pre.len(), 1);
    assert_eq!(
        s.exec_start_pre[0].argv,
        [
            "/usr/bin/mariadb-install-db",
            "$MYSQLD_MULTI_INSTANCE",
            "--rpm"
        ]
    );
    assert_eq!(
        s.environment,
        [(
            "MYSQLD_MULTI_INSTANCE".to_string(),
            "--defaults-group-suffix=.x".to_string()
        )]
    );
}

#[test]
fn podman_logging_splits_into_words() {
    let Some(c) = corpus() else { return };
    let u = load(&c.join("systemd-user/podman"), "podman.service");
    let s = u.service.as_ref().unwrap();
    assert_eq!(
        s.environment[0],
        ("LOGGING".to_string(), "--log-level=info".to_string())
    );
    assert_eq!(
        s.exec_start[0].expand(&s.environment),
        ["/usr/bin/podman", "--log-level=info", "system", "service"]
    );
    let restart = load(&c.join("systemd-user/podman"), "podman-restart.service");
    let rs = restart.service.as_ref().unwrap();
    // In a `sh -c '...'` word `$LOGGING` is not a word of its own: left to the shell.
    let stop = rs.exec_stop[0].expand(&rs.environment);
    assert_eq!(stop[0], "/bin/sh");
    assert!(
        stop[2].starts_with("/usr/bin/podman $LOGGING stop $("),
        "{stop:?}"
    );
}

#[test]
fn instance_dropin_empties_exec_start() {
    let Some(c) = corpus() else { return };
    let dir = c.join("systemd-system/mariadb-server");
    let u = load(&dir, "mariadb@bootstrap.service");
    assert_eq!(u.dropins.len(), 1, "{:?}", u.dropins);
    assert!(u.dropins[0].ends_with("mariadb@bootstrap.service.d/use_galera_new_cluster.conf"));
    let s = u.service.as_ref().unwrap();
    assert_eq!(s.service_type, ServiceType::Oneshot);
    assert_eq!(s.restart, RestartPolicy::No);
    assert!(s.exec_start_pre.is_empty(), "emptied by `ExecStartPre=`");
    assert!(s.exec_start_post.is_empty(), "emptied by `ExecStartPost=`");
    let argvs: Vec<&[String]> = s.exec_start.iter().map(|c| c.argv.as_slice()).collect();
    assert_eq!(
        argvs,
        [
            &[
                "/usr/bin/echo".to_string(),
                "Please use galera_new_cluster to start the mariadb service with --wsrep-new-cluster"
                    .to_string()
            ][..],
            &["/usr/bin/false".to_string()][..]
        ]
    );
    assert!(u.unit.conditions.is_empty(), "ConditionPathExists= reset");
    // Another instance of the same template does not get that drop-in.
    let other = load(&dir, "mariadb@other.service");
    assert!(other.dropins.is_empty());
    let os = other.service.as_ref().unwrap();
    assert_eq!(os.exec_start[0].program, "/usr/sbin/mariadbd");
    assert_eq!(os.service_type, ServiceType::Notify);
    assert_eq!(other.unit.conditions.len(), 1);
    assert_eq!(
        other.unit.conditions[0].value,
        "/etc/mysql/mariadb.conf.d/myother.cnf"
    );
    assert!(other.unit.conditions[0].negate);
}

#[test]
fn chrony_repeated_scalar_last_wins() {
    let Some(c) = corpus() else { return };
    let u = load(&c.join("systemd-system/chrony"), "chrony.service");
    // NoNewPrivileges=yes early, NoNewPrivileges=no near the end: the last wins.
    let s = u.service.as_ref().unwrap();
    assert!(!s.exec.no_new_privileges);
    // A directive corral does not apply keeps every assignment, in order, and
    // the last one is the one in effect.
    let caps: Vec<&str> = u
        .unsupported
        .iter()
        .filter(|d| d.key == "CapabilityBoundingSet")
        .map(|d| d.value.as_str())
        .collect();
    assert_eq!(caps.len(), 5, "{caps:?}");
    assert_eq!(caps[0], "~CAP_AUDIT_CONTROL CAP_AUDIT_READ CAP_AUDIT_WRITE");
    assert_eq!(
        u.last_unsupported("Service", "CapabilityBoundingSet")
            .unwrap()
            .value,
        *caps.last().unwrap()
    );
    // Every unsupported directive is a warning with its own line, never an error.
    assert!(
        u.diagnostics
            .iter()
            .all(|d| d.kind == DiagnosticKind::Unsupported)
    );
    assert_eq!(s.service_type, ServiceType::Forking);
    assert_eq!(s.exec_start[0].argv, ["/usr/sbin/chronyd", "$DAEMON_OPTS"]);
    assert!(s.exec_start[0].flags.no_setuid);
    assert_eq!(u.install.alias[0].as_str(), "chronyd.service");
    assert!(u.aliases.iter().any(|a| a.as_str() == "chronyd.service"));
    let dnssrv = load(
        &c.join("systemd-system/chrony"),
        "chrony-dnssrv@pool.service",
    );
    assert_eq!(
        dnssrv.unit.description.as_deref(),
        Some("DNS SRV lookup of pool for chrony")
    );
}

#[test]
fn prefix_dropin_applies_to_scope_units() {
    let Some(c) = corpus() else { return };
    let u = load(
        &c.join("systemd-user/gnome-session-common"),
        "gnome-launched-firefox.scope",
    );
    assert_eq!(u.dropins.len(), 1);
    assert!(u.dropins[0].ends_with("gnome-launched-.scope.d/override.conf"));
    assert_eq!(u.unit.part_of[0].as_str(), "graphical-session.target");
    assert!(
        u.diagnostics
            .iter()
            .any(|d| d.kind == DiagnosticKind::NotSupportedYet)
    );
    assert_eq!(
        u.last_unsupported("Scope", "TimeoutStopSec").unwrap().value,
        "5s"
    );
}

#[test]
fn masked_unit_from_corpus() {
    let Some(c) = corpus() else { return };
    // Debian masks mdadm.service with a /dev/null link (stored as its target).
    let loader = Loader::new(vec![c.join("systemd-system/mdadm")], Vec::new(), spec())
        .with_stored_symlinks(true);
    let u = loader.load(&UnitName::parse("mdadm").unwrap()).unwrap();
    assert!(u.masked);
    assert!(u.diagnostics.is_empty());
    // Read as systemd reads a plain file, the stored link is a broken unit file.
    let plain = Loader::new(vec![c.join("systemd-system/mdadm")], Vec::new(), spec());
    let u = plain.load(&UnitName::parse("mdadm").unwrap()).unwrap();
    assert!(!u.masked);
    assert!(u.ensure_valid().is_err());
    // mysql.service is an alias of mariadb.service.
    let loader = Loader::new(
        vec![c.join("systemd-system/mariadb-server")],
        Vec::new(),
        spec(),
    )
    .with_stored_symlinks(true);
    let u = loader.load(&UnitName::parse("mysql").unwrap()).unwrap();
    assert_eq!(u.name.as_str(), "mariadb.service");
    assert!(u.aliases.iter().any(|a| a.as_str() == "mysql.service"));
}
