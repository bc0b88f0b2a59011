//! Table tests of the unit file rules (systemd 252 semantics), through the
//! public model: each case is unit text and what the model must hold.

use std::path::Path;
use std::time::Duration;

use corral::unit::loader::from_text;
use corral::unit::{
    DiagnosticKind, ExitStatusSet, KillMode, MemoryLimit, NotifyAccess, RLimit, ResourceLimit,
    RestartPolicy, ServiceSection, ServiceType, Severity, SpecifierContext, StdOutput, TasksMax,
    Unit, UnitName,
};

fn unit_named(name: &str, text: &str) -> Unit {
    let n = UnitName::parse(name).unwrap();
    from_text(
        &n,
        Path::new(&format!("/units/{n}")),
        text,
        &SpecifierContext::example(),
    )
}

fn unit(text: &str) -> Unit {
    unit_named("t.service", text)
}

fn svc(body: &str) -> ServiceSection {
    let u = unit(&format!("[Service]\nExecStart=/bin/true\n{body}"));
    let errs: Vec<String> = u.errors().map(|d| d.to_string()).collect();
    assert!(errs.is_empty(), "{body:?}: {errs:?}");
    *u.service.unwrap()
}

fn argv(line: &str) -> Vec<Vec<String>> {
    let u = unit(&format!("[Service]\nType=oneshot\nExecStart={line}\n"));
    let errs: Vec<String> = u.errors().map(|d| d.to_string()).collect();
    assert!(errs.is_empty(), "{line:?}: {errs:?}");
    u.service
        .unwrap()
        .exec_start
        .into_iter()
        .map(|c| c.argv)
        .collect()
}

#[test]
fn defaults_are_systemd_252() {
    let s = svc("");
    assert_eq!(s.service_type, ServiceType::Simple);
    assert_eq!(s.restart, RestartPolicy::No);
    assert_eq!(s.restart_sec, Duration::from_millis(100));
    assert_eq!(s.timeout_start, Some(Duration::from_secs(90)));
    assert_eq!(s.timeout_stop, Some(Duration::from_secs(90)));
    assert_eq!(s.runtime_max, None);
    assert_eq!(s.kill_mode, KillMode::ControlGroup);
    assert_eq!(s.kill_signal, libc::SIGTERM);
    assert!(s.send_sigkill && !s.send_sighup);
    assert_eq!(s.umask, None, "the manager's umask");
    assert_eq!(s.notify_access, NotifyAccess::None);
    assert_eq!(s.standard_output, StdOutput::Journal);
    assert_eq!(s.standard_error, StdOutput::Inherit);
    assert_eq!(s.syslog_level, 6);
    assert!(s.syslog_level_prefix);
    let u = unit("[Service]\nExecStart=/bin/true\n");
    assert_eq!(u.unit.start_limit_interval, Duration::from_secs(10));
    assert_eq!(u.unit.start_limit_burst, 5);
    assert!(u.unit.default_dependencies);
    // Implied defaults.
    let oneshot = unit("[Service]\nExecStartPre=/bin/true\nExecStop=/bin/true\n")
        .service
        .unwrap();
    assert_eq!(
        oneshot.service_type,
        ServiceType::Oneshot,
        "no ExecStart= means oneshot"
    );
    assert_eq!(
        oneshot.timeout_start, None,
        "oneshot has no start timeout by default"
    );
    assert_eq!(svc("Type=notify").notify_access, NotifyAccess::Main);
    assert_eq!(svc("BusName=org.example.A").service_type, ServiceType::Dbus);
}

#[test]
fn continuation_comments_and_whitespace() {
    let cases: &[(&str, &[&str])] = &[
        ("/bin/echo a \\\n  b", &["/bin/echo", "a", "b"]),
        (
            "/bin/echo a\\\n# comment\n; other\n b",
            &["/bin/echo", "a", "b"],
        ),
        ("/bin/echo \"x \\\ny\"", &["/bin/echo", "x  y"]),
        ("   /bin/echo   spaced   ", &["/bin/echo", "spaced"]),
    ];
    for (line, want) in cases {
        assert_eq!(argv(line), [want.to_vec()], "{line:?}");
    }
    // A comment ending in a backslash is not continued into the next line.
    let u = unit("[Service]\n#ExecStart=/bin/a \\\nExecStart=/bin/b\n");
    assert_eq!(u.service.unwrap().exec_start[0].argv, ["/bin/b"]);
    // Whitespace around `=` and in keys' surroundings.
    let u = unit("[Unit]\n  Description  =   spaced out  \n[Service]\nExecStart=/bin/true\n");
    assert_eq!(u.unit.description.as_deref(), Some("spaced out"));
}

#[test]
fn quoting_and_escapes() {
    let cases: &[(&str, &[&str])] = &[
        ("/bin/x 'a b' \"c d\"", &["/bin/x", "a b", "c d"]),
        (
            "/bin/x --opt=\"a,b\" pre'mid'post",
            &["/bin/x", "--opt=a,b", "premidpost"],
        ),
        (
            "/bin/x \"it's\" 'say \"hi\"'",
            &["/bin/x", "it's", "say \"hi\""],
        ),
        (
            "/bin/x a\\tb \\x41 \\101 \\u00e9",
            &["/bin/x", "a\tb", "A", "A", "é"],
        ),
        ("/bin/x \"\\\"q\\\"\"", &["/bin/x", "\"q\""]),
        ("/bin/x \"\" ''", &["/bin/x", "", ""]),
        ("/bin/x a\\sb", &["/bin/x", "a b"]),
    ];
    for (line, want) in cases {
        assert_eq!(argv(line), [want.to_vec()], "{line:?}");
    }
    // Not a C escape: kept as written (systemd's relaxed retry), with a warning.
    let u = unit("[Service]\nExecStart=/bin/x a\\ b \\q\n");
    assert_eq!(
        u.service.unwrap().exec_start[0].argv,
        ["/bin/x", "a\\ b", "\\q"]
    );
    assert_eq!(u.diagnostics.len(), 2);
    assert!(
        u.diagnostics[0]
            .message
            .starts_with("invalid escape sequence '\\ '")
    );
    assert_eq!(u.diagnostics[0].severity, Severity::Warning);
}

#[test]
fn several_commands_and_prefixes() {
    assert_eq!(
        argv("/bin/a 1 ; /bin/b 2 \\; 3"),
        [vec!["/bin/a", "1"], vec!["/bin/b", "2", ";", "3"]]
    );
    let s = unit(
        "[Service]\nType=oneshot\nExecStart=-/bin/a\nExecStart=@/bin/b argv0 x\nExecStart=:/bin/c $X\nExecStart=+/bin/d\nExecStart=!/bin/e\nExecStart=!!/bin/f\nExecStart=-@:/bin/g g0\n",
    )
    .service
    .unwrap();
    let f: Vec<_> = s.exec_start.iter().map(|c| c.flags).collect();
    assert!(f[0].ignore_failure);
    assert!(f[1].argv0_override);
    assert_eq!(s.exec_start[1].program, "/bin/b");
    assert_eq!(s.exec_start[1].argv, ["argv0", "x"]);
    assert!(f[2].no_env_expand);
    assert_eq!(
        s.exec_start[2].expand(&|_: &str| Some("v".to_string())),
        ["/bin/c", "$X"]
    );
    assert!(f[3].full_privileges);
    assert!(f[4].no_setuid);
    assert!(f[5].ambient_fallback);
    assert!(f[6].ignore_failure && f[6].argv0_override && f[6].no_env_expand);
    assert_eq!(s.exec_start[6].to_string(), "-@:/bin/g g0");
}

#[test]
fn lists_accumulate_and_empty_resets() {
    let s = svc(
        "Environment=A=1\nEnvironment=B=2\nEnvironment=\nEnvironment=C=3 \"D=4 5\"\nEnvironment=C=6",
    );
    assert_eq!(
        s.environment,
        [
            ("C".to_string(), "6".to_string()),
            ("D".to_string(), "4 5".to_string())
        ]
    );
    let s = unit("[Service]\nExecStartPre=/bin/a\nExecStartPre=/bin/b\nExecStart=/bin/true\n")
        .service
        .unwrap();
    assert_eq!(s.exec_start_pre.len(), 2);
    let u = unit(
        "[Unit]\nAfter=a.service b.target\nAfter=c.socket\nWants=x.service\nWants=\nWants=y.service\n[Service]\nExecStart=/bin/true\n",
    );
    let after: Vec<&str> = u.unit.after.iter().map(UnitName::as_str).collect();
    assert_eq!(after, ["a.service", "b.target", "c.socket"]);
    assert_eq!(u.unit.wants, [UnitName::parse("y.service").unwrap()]);
    let u = unit(
        "[Unit]\nConditionPathExists=/a\nConditionPathExists=\nConditionPathExists=|!/b\n[Service]\nExecStart=/bin/true\n",
    );
    assert_eq!(u.unit.conditions.len(), 1);
    assert!(u.unit.conditions[0].trigger && u.unit.conditions[0].negate);
    assert_eq!(u.unit.conditions[0].value, "/b");
}

#[test]
fn scalars_last_one_wins() {
    let s = svc("Type=forking\nType=notify\nRestartSec=1\nRestartSec=3s\nPIDFile=/a\nPIDFile=/b");
    assert_eq!(s.service_type, ServiceType::Notify);
    assert_eq!(s.restart_sec, Duration::from_secs(3));
    assert_eq!(s.pid_file.as_deref(), Some(Path::new("/b")));
}

#[test]
fn time_spans() {
    let cases: &[(&str, Option<Duration>)] = &[
        ("TimeoutStopSec=5min 20s", Some(Duration::from_secs(320))),
        ("TimeoutStopSec=90", Some(Duration::from_secs(90))),
        ("TimeoutStopSec=1h", Some(Duration::from_secs(3600))),
        ("TimeoutStopSec=500ms", Some(Duration::from_millis(500))),
        ("TimeoutStopSec=infinity", None),
        ("TimeoutStopSec=0", None),
    ];
    for (line, want) in cases {
        assert_eq!(svc(line).timeout_stop, *want, "{line}");
    }
    let s = svc("TimeoutSec=40sec");
    assert_eq!(s.timeout_start, Some(Duration::from_secs(40)));
    assert_eq!(s.timeout_stop, Some(Duration::from_secs(40)));
    assert_eq!(
        svc("RuntimeMaxSec=3m").runtime_max,
        Some(Duration::from_secs(180))
    );
    assert_eq!(svc("RestartSec=0ms").restart_sec, Duration::ZERO);
}

#[test]
fn exit_statuses_signals_and_kill_settings() {
    let s = svc(
        "SuccessExitStatus=3 4 DATAERR SIGKILL\nRestartPreventExitStatus=255 SIGTERM\nRestartForceExitStatus=1\nKillSignal=SIGINT\nSendSIGKILL=no\nSendSIGHUP=yes\nKillMode=process",
    );
    assert_eq!(
        s.success_exit_status,
        ExitStatusSet {
            codes: vec![3, 4, 65],
            signals: vec![libc::SIGKILL]
        }
    );
    assert!(s.restart_prevent_exit_status.has_code(255));
    assert!(s.restart_prevent_exit_status.has_signal(libc::SIGTERM));
    assert!(s.restart_force_exit_status.has_code(1));
    assert_eq!(s.kill_signal, libc::SIGINT);
    assert!(!s.send_sigkill && s.send_sighup);
    assert_eq!(s.kill_mode, KillMode::Process);
    assert_eq!(svc("KillSignal=9").kill_signal, 9);
    // systemd 252 takes signal names with or without SIG; numbers are exit statuses.
    assert_eq!(
        svc("SuccessExitStatus=KILL TERM 9 SIGUSR1").success_exit_status,
        ExitStatusSet {
            codes: vec![9],
            signals: vec![libc::SIGKILL, libc::SIGTERM, libc::SIGUSR1]
        }
    );
    assert!(
        svc("SuccessExitStatus=1\nSuccessExitStatus=")
            .success_exit_status
            .is_empty()
    );
}

#[test]
fn resources_limits_and_output() {
    let s = svc(
        "LimitNOFILE=1024:65536\nLimitCORE=infinity\nLimitMEMLOCK=64M\nLimitCPU=2min\nLimitNICE=-5\nMemoryMax=512M\nCPUQuota=150%\nTasksMax=99%\nNice=19\nUMask=0077",
    );
    assert_eq!(
        s.limits[&ResourceLimit::Nofile],
        RLimit {
            soft: Some(1024),
            hard: Some(65536)
        }
    );
    assert_eq!(
        s.limits[&ResourceLimit::Core],
        RLimit {
            soft: None,
            hard: None
        }
    );
    assert_eq!(s.limits[&ResourceLimit::Memlock].soft, Some(64 << 20));
    assert_eq!(s.limits[&ResourceLimit::Cpu].soft, Some(120));
    assert_eq!(s.limits[&ResourceLimit::Nice].soft, Some(25));
    assert_eq!(s.memory_max, Some(MemoryLimit::Bytes(512 << 20)));
    assert_eq!(s.cpu_quota_permyriad, Some(15000));
    // Kept as systemd keeps it (permyriad), not rounded to 21%.
    assert_eq!(svc("CPUQuota=20.5%").cpu_quota_permyriad, Some(2050));
    assert_eq!(s.tasks_max, Some(TasksMax::Permyriad(9900)));
    assert_eq!(s.nice, Some(19));
    assert_eq!(s.umask, Some(0o077));
    assert_eq!(svc("TasksMax=infinity").tasks_max, Some(TasksMax::Infinity));
    let s = svc(
        "StandardOutput=append:/var/log/x.log\nStandardError=null\nSyslogIdentifier=myid\nSyslogLevel=warning\nSyslogLevelPrefix=false\nLogRateLimitIntervalSec=30s\nLogRateLimitBurst=1000",
    );
    assert_eq!(
        s.standard_output,
        StdOutput::Append("/var/log/x.log".into())
    );
    assert_eq!(s.standard_error, StdOutput::Null);
    assert_eq!(s.syslog_identifier.as_deref(), Some("myid"));
    assert_eq!(s.syslog_level, 4);
    assert!(!s.syslog_level_prefix);
    assert_eq!(s.log_rate_limit_interval, Some(Duration::from_secs(30)));
    assert_eq!(s.log_rate_limit_burst, Some(1000));
    assert_eq!(
        svc("StandardOutput=journal+console").standard_output,
        StdOutput::JournalAndConsole
    );
}

#[test]
fn start_limits_old_and_new_names() {
    let u = unit("[Service]\nExecStart=/bin/true\nStartLimitInterval=60s\nStartLimitBurst=3\n");
    assert_eq!(u.unit.start_limit_interval, Duration::from_secs(60));
    assert_eq!(u.unit.start_limit_burst, 3);
    let u = unit("[Unit]\nStartLimitIntervalSec=0\n[Service]\nExecStart=/bin/true\n");
    assert_eq!(u.unit.start_limit_interval, Duration::ZERO);
}

#[test]
fn working_directory_env_files_and_names() {
    let s = svc("WorkingDirectory=~");
    assert_eq!(s.working_directory.unwrap().path, Path::new("/home/user"));
    let s = svc("WorkingDirectory=-%h/work");
    let w = s.working_directory.unwrap();
    assert!(w.missing_ok);
    assert_eq!(w.path, Path::new("/home/user/work"));
    let s = svc("EnvironmentFile=-/etc/default/%p\nEnvironmentFile=/etc/x");
    assert_eq!(s.environment_files[0].path, Path::new("/etc/default/t"));
    assert!(s.environment_files[0].optional && !s.environment_files[1].optional);
    let s = svc(
        "UnsetEnvironment=LISTEN_PID LISTEN_FDS X=1\nPassEnvironment=TERM LANG\nBusName=org.example.X\nType=dbus",
    );
    assert_eq!(s.unset_environment, ["LISTEN_PID", "LISTEN_FDS", "X=1"]);
    assert_eq!(s.pass_environment, ["TERM", "LANG"]);
    assert_eq!(s.bus_name.as_deref(), Some("org.example.X"));
}

#[test]
fn repeated_list_entries_are_merged_as_before_the_lists_became_linear() {
    // Environment=: each name once, where it first appeared, with its last value.
    let s = svc("Environment=A=1 B=1\nEnvironment=C=1 A=2\nEnvironment=B=3");
    let env: Vec<(&str, &str)> = s
        .environment
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(env, [("A", "2"), ("B", "3"), ("C", "1")]);
    // An empty assignment still resets what came before.
    let s = svc("Environment=A=1\nEnvironment=\nEnvironment=B=1 A=2");
    assert_eq!(
        s.environment,
        [("B".into(), "1".into()), ("A".into(), "2".into())]
    );
    let s = svc("UnsetEnvironment=X Y X\nPassEnvironment=T L T L");
    assert_eq!(s.unset_environment, ["X", "Y"]);
    assert_eq!(s.pass_environment, ["T", "L"]);
    let u = unit(
        "[Unit]\nWants=b.service a.service\nWants=b.service c.service\n\
         [Service]\nExecStart=/bin/true\n[Install]\nAlias=x.service x.service\n",
    );
    let names = |l: &[UnitName]| l.iter().map(|n| n.to_string()).collect::<Vec<_>>();
    assert_eq!(
        names(&u.unit.wants),
        ["b.service", "a.service", "c.service"]
    );
    assert_eq!(names(&u.install.alias), ["x.service"]);
}

#[test]
fn specifiers_in_a_template_instance() {
    let u = unit_named(
        "getty@tty\\x2d1.service",
        "[Unit]\nDescription=%n %N %p %i %I %f\n[Service]\nExecStart=/bin/x %h %u %U %t %S %C %L %E %T %V %H %l %b %m %%\nEnvironment=DIR=%t/%i\n",
    );
    assert_eq!(
        u.unit.description.as_deref(),
        Some("getty@tty\\x2d1.service getty@tty\\x2d1 getty tty\\x2d1 tty-1 /tty-1")
    );
    let s = u.service.unwrap();
    assert_eq!(
        s.exec_start[0].argv[1..],
        [
            "/home/user",
            "user",
            "1000",
            "/run/user/1000",
            "/home/user/.config",
            "/home/user/.cache",
            "/home/user/.config/log",
            "/home/user/.config",
            "/tmp",
            "/var/tmp",
            "host.example.org",
            "host",
            "0123456789abcdef0123456789abcdef",
            "fedcba9876543210fedcba9876543210",
            "%"
        ]
    );
    assert_eq!(s.environment[0].1, "/run/user/1000/tty\\x2d1");
}

/// (unit text, expected line, directive, message fragment, fatal) for
/// errors. Fatal: systemd 252 refuses the whole unit (and so does the
/// manager); otherwise it logs "..., ignoring" and loads the unit without
/// that assignment. `corral verify` reports both as errors.
const ERRORS: &[(&str, usize, &str, &str, bool)] = &[
    (
        "[Service]\nExecStart=/bin/true\nType=sometimes\n",
        3,
        "Type",
        "unknown service type",
        false,
    ),
    (
        "[Service]\nExecStart=/bin/true\nRestart=maybe\n",
        3,
        "Restart",
        "unknown restart policy",
        false,
    ),
    (
        "[Service]\nExecStart=/bin/true\nRestartSec=5 parsecs\n",
        3,
        "RestartSec",
        "unknown time unit",
        false,
    ),
    (
        "[Service]\nExecStart=/bin/true\nKillSignal=SIGNOPE\n",
        3,
        "KillSignal",
        "not a signal",
        false,
    ),
    (
        "[Service]\nExecStart=/bin/echo \"open\n",
        2,
        "ExecStart",
        "unbalanced quoting",
        true,
    ),
    (
        "[Service]\nExecStart=/bin/true\nExecStartPre=-/bin/echo \"open\n",
        3,
        "ExecStartPre",
        "unbalanced quoting",
        false,
    ),
    (
        "[Service]\nExecStart=bin/relative\n",
        2,
        "ExecStart",
        "absolute path or a name on PATH",
        true,
    ),
    (
        "[Service]\nExecStart=/bin/x %z\n",
        2,
        "ExecStart",
        "unknown specifier %z",
        true,
    ),
    (
        "[Service]\nExecStart=/bin/echo caf\\xe9\n",
        2,
        "ExecStart",
        "not UTF-8",
        true,
    ),
    (
        "[Service]\nExecStart=/bin/true\nSuccessExitStatus=NOPE\n",
        3,
        "SuccessExitStatus",
        "neither an exit status",
        false,
    ),
    (
        "[Service]\nExecStart=/bin/true\nEnvironment=novalue\n",
        3,
        "Environment",
        "not a NAME=value",
        false,
    ),
    (
        "[Service]\nExecStart=/bin/true\nUMask=999\n",
        3,
        "UMask",
        "octal",
        false,
    ),
    (
        "[Service]\nExecStart=/bin/true\nNice=99\n",
        3,
        "Nice",
        "nice level",
        false,
    ),
    (
        "[Service]\nExecStart=/bin/true\nLimitNOFILE=10:5\n",
        3,
        "LimitNOFILE",
        "above hard limit",
        false,
    ),
    // systemd 252 reads LimitNOFILE= as a plain number (rlimit_parse_u64).
    (
        "[Service]\nExecStart=/bin/true\nLimitNOFILE=1k\n",
        3,
        "LimitNOFILE",
        "not a count",
        false,
    ),
    (
        "[Service]\nExecStart=/bin/true\nRemainAfterExit=perhaps\n",
        3,
        "RemainAfterExit",
        "not a boolean",
        false,
    ),
    (
        "[Service]\nExecStart=/bin/true\nWorkingDirectory=relative\n",
        3,
        "WorkingDirectory",
        "absolute path",
        true,
    ),
    (
        "[Service]\nExecStart=/bin/true\nWorkingDirectory=-relative\n",
        3,
        "WorkingDirectory",
        "absolute path",
        false,
    ),
    (
        "[Unit]\nAfter=not a/unit\n[Service]\nExecStart=/bin/true\n",
        2,
        "After",
        "invalid unit name",
        false,
    ),
    (
        "[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=%i.target\n",
        4,
        "WantedBy",
        "invalid unit name",
        false,
    ),
    (
        "[Service]\nExecStart=/bin/a\nExecStart=/bin/b\n",
        3,
        "ExecStart",
        "only allowed for Type=oneshot",
        true,
    ),
    (
        "[Service]\nType=simple\n",
        2,
        "ExecStart",
        "needs an ExecStart=",
        true,
    ),
    (
        "[Service]\nType=oneshot\nRestart=always\nExecStart=/bin/true\n",
        3,
        "Restart",
        "not allowed for Type=oneshot",
        true,
    ),
    (
        "[Service]\nExecStart=/bin/true\nnot an assignment\n",
        3,
        "",
        "missing '='",
        false,
    ),
    (
        "[Service\nExecStart=/bin/true\n",
        1,
        "",
        "invalid section header",
        true,
    ),
];

#[test]
fn errors_name_file_line_and_directive() {
    for (text, line, directive, fragment, fatal) in ERRORS {
        let u = unit(text);
        let e = u
            .errors()
            .find(|d| d.message.contains(fragment))
            .unwrap_or_else(|| {
                panic!(
                    "{text:?}: no error containing {fragment:?} in {:?}",
                    u.diagnostics
                )
            });
        assert_eq!(e.line, *line, "{text:?}");
        assert_eq!(e.directive, *directive, "{text:?}");
        assert_eq!(e.file, Path::new("/units/t.service"));
        assert_eq!(e.fatal, *fatal, "{text:?}: {e}");
        let shown = e.to_string();
        let prefix = if *line > 0 {
            format!("/units/t.service:{line}: error: ")
        } else {
            "/units/t.service: error: ".to_string()
        };
        assert!(shown.starts_with(&prefix), "{shown}");
        // The manager refuses exactly the units systemd 252 refuses.
        assert_eq!(u.ensure_valid().is_err(), *fatal, "{text:?}");
        assert_eq!(u.ignored_errors().next().is_some(), !*fatal, "{text:?}");
    }
}

#[test]
fn a_dropped_assignment_leaves_the_rest_of_the_unit() {
    let u = unit(
        "[Service]\nExecStart=/bin/true\nNice=99\nNice=5\nEnvironment=novalue A=1\nLimitNOFILE=1k\n",
    );
    assert!(u.ensure_valid().is_ok());
    let s = u.service.unwrap();
    assert_eq!(s.nice, Some(5));
    assert_eq!(s.environment, [("A".to_string(), "1".to_string())]);
    assert!(s.limits.is_empty());
    // A command with '-' that cannot be parsed is dropped; the unit stays.
    let u = unit("[Service]\nExecStart=/bin/true\nExecStartPre=-/bin/x %z\n");
    assert!(u.ensure_valid().is_ok());
    assert!(u.service.unwrap().exec_start_pre.is_empty());
    // A bad ExecStart= that leaves none: refused, as by systemd.
    let u = unit("[Service]\nExecStart=-bin/x\n");
    let first = u.ensure_valid().unwrap_err().to_string();
    assert!(first.contains("no ExecStart="), "{first}");
}

#[test]
fn percent_signs_that_are_no_specifiers_stay() {
    let u = unit(
        "[Unit]\nDescription=Load at 100% for tests\n[Service]\nType=oneshot\nExecStart=/bin/echo 50%\nExecStart=/usr/bin/printf \"%-5s|\" x\nExecStart=/bin/echo %% %%%\n",
    );
    assert!(u.diagnostics.is_empty(), "{:?}", u.diagnostics);
    assert_eq!(
        u.unit.description.as_deref(),
        Some("Load at 100% for tests")
    );
    let argv: Vec<Vec<String>> = u
        .service
        .unwrap()
        .exec_start
        .into_iter()
        .map(|c| c.argv)
        .collect();
    assert_eq!(
        argv,
        [
            vec!["/bin/echo", "50%"],
            vec!["/usr/bin/printf", "%-5s|", "x"],
            vec!["/bin/echo", "%", "%%"]
        ]
    );
}

#[test]
fn lone_semicolon_starts_no_command() {
    assert_eq!(argv("/bin/a ; ; /bin/b"), [vec!["/bin/a"], vec!["/bin/b"]]);
    let u = unit("[Service]\nExecStart=;\n");
    assert!(u.service.unwrap().exec_start.is_empty());
}

#[test]
fn escaped_bytes_form_utf8_or_are_an_error() {
    assert_eq!(argv("/bin/x caf\\xc3\\xa9"), [vec!["/bin/x", "caf\u{e9}"]]);
    let u = unit("[Service]\nExecStart=/bin/true\nEnvironment=A=\\xe9 B=1\n");
    let e = u.errors().next().expect("an error");
    assert!(e.message.contains("not UTF-8"), "{e}");
    assert_eq!(u.service.unwrap().environment.len(), 0);
}

#[test]
fn nul_and_carriage_return_end_lines_as_in_systemd() {
    let u = from_text(
        &UnitName::parse("t.service").unwrap(),
        Path::new("/units/t.service"),
        "[Service]\rExecStart=/bin/true\0nul\nType=oneshot\r\n",
        &SpecifierContext::example(),
    );
    let s = u.service.as_ref().unwrap();
    assert_eq!(s.exec_start[0].argv, ["/bin/true"]);
    assert_eq!(s.service_type, ServiceType::Oneshot);
    let e: Vec<String> = u.errors().map(|d| d.to_string()).collect();
    assert_eq!(
        e,
        [
            "/units/t.service:3: error: missing '=' in 'nul'; a line must be [Section], Key=value or a comment (line ignored)"
        ]
    );
}

#[test]
fn control_characters_are_escaped_in_diagnostics() {
    let u = unit("[Service]\nExecStart=/bin/true\nType=\u{1b}[31mred\u{7}\n");
    let shown = u.errors().next().unwrap().to_string();
    assert!(!shown.chars().any(char::is_control), "{shown:?}");
    assert!(shown.contains("'\\x1b[31mred\\a'"), "{shown}");
}

#[test]
fn install_section_and_documentation() {
    let u = unit_named(
        "web@.service",
        "[Unit]\nDocumentation=man:web(8) \"https://example.org/a b\"\nDocumentation=file:%E/web\n[Service]\nExecStart=/bin/web %g %G\n[Install]\nWantedBy=default.target\nRequiredBy=a.target b@%i.target\nAlso=web-helper.service\nAlias=www@.service\nDefaultInstance=main\n",
    );
    assert!(u.diagnostics.is_empty(), "{:?}", u.diagnostics);
    assert_eq!(
        u.unit.documentation,
        [
            "man:web(8)",
            "https://example.org/a b",
            "file:/home/user/.config/web"
        ]
    );
    let names = |v: &[UnitName]| v.iter().map(|n| n.to_string()).collect::<Vec<_>>();
    assert_eq!(names(&u.install.wanted_by), ["default.target"]);
    assert_eq!(names(&u.install.required_by), ["a.target", "b@.target"]);
    assert_eq!(names(&u.install.also), ["web-helper.service"]);
    assert_eq!(names(&u.install.alias), ["www@.service"]);
    assert_eq!(u.install.default_instance.as_deref(), Some("main"));
    // %g and %G: the manager's group (example context: user, 1000).
    assert_eq!(
        u.service.unwrap().exec_start[0].argv,
        ["/bin/web", "user", "1000"]
    );
    let u = unit("[Install]\nDefaultInstance=\n[Service]\nExecStart=/bin/true\n");
    assert_eq!(u.install.default_instance, None);
}

#[test]
fn unsupported_and_unknown_are_warnings() {
    let u = unit(
        "[Unit]\nOnSuccess=x.service\nX-Custom=1\n[Service]\nExecStart=/bin/true\nUser=nobody\nProtectSystem=strict\nExecStrat=/bin/typo\n[X-Vendor]\nA=b\n[Frobnicate]\nC=d\n",
    );
    assert!(!u.has_errors());
    assert!(u.ensure_valid().is_ok());
    let w: Vec<(usize, &str, DiagnosticKind)> = u
        .diagnostics
        .iter()
        .map(|d| {
            assert_eq!(d.severity, Severity::Warning);
            (d.line, d.directive.as_str(), d.kind)
        })
        .collect();
    assert_eq!(
        w,
        [
            (11, "[Frobnicate]", DiagnosticKind::Unknown),
            (2, "OnSuccess", DiagnosticKind::Unsupported),
            (6, "User", DiagnosticKind::Unsupported),
            (7, "ProtectSystem", DiagnosticKind::Unsupported),
            (8, "ExecStrat", DiagnosticKind::Unknown),
        ]
    );
    assert_eq!(
        u.diagnostics[2].to_string(),
        "/units/t.service:6: warning: User: unsupported, ignored"
    );
    // Kept for whoever wants them.
    assert_eq!(
        u.last_unsupported("Service", "User").unwrap().value,
        "nobody"
    );
}

#[test]
fn targets_and_other_types() {
    let t = unit_named("x.target", "[Unit]\nDescription=t\nWants=a.service\n");
    assert!(t.diagnostics.is_empty() && t.service.is_none());
    // A timer is run by the manager: no "not supported" note.
    let u = unit_named("x.timer", "[Unit]\nDescription=d\n");
    assert!(
        u.diagnostics
            .iter()
            .all(|d| d.kind != DiagnosticKind::NotSupportedYet),
        "{:?}",
        u.diagnostics
    );
    for n in ["x.path", "x.slice"] {
        let u = unit_named(n, "[Unit]\nDescription=d\n");
        assert!(!u.has_errors(), "{n}");
        assert_eq!(u.diagnostics.len(), 1, "{n}");
        assert_eq!(u.diagnostics[0].kind, DiagnosticKind::NotSupportedYet);
        assert!(u.diagnostics[0].message.contains("not supported yet"));
    }
}

#[test]
fn masked_by_empty_text_is_not_an_error_here() {
    // from_text has no file to be masked by; an empty service lacks ExecStart=.
    let u = unit("");
    let e = u
        .errors()
        .find(|d| d.message.contains("no ExecStart="))
        .unwrap();
    // No line to point at, but the file is named.
    assert_eq!(
        e.to_string(),
        "/units/t.service: error: ExecStart: the service has no ExecStart= (nor ExecStop= or SuccessAction=); add the command to run"
    );
}
