//! The systemd.exec(5) directives real user units use (issue 14, items 5, 8
//! and 11), run by a real manager on real processes: Debian's
//! redis-server.service under a hard limit below its LimitNOFILE=, a unit
//! with only SuccessAction= (systemd-exit.service), managed directories,
//! credentials, standard input, and the process settings, with the
//! privileges a user manager has and has not.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{TestDaemon, missing_tools, require, wait_until, write_script};

fn read(td: &TestDaemon, file: &str) -> String {
    std::fs::read_to_string(td.run_dir().join(file)).unwrap_or_default()
}

/// The environment a user's manager has: its own XDG directories (below
/// `xdg`), a hard RLIMIT_NOFILE of 4096 and, as an unprivileged user, no
/// CAP_SYS_RESOURCE (raise limits, lower OOM scores) nor CAP_SYS_NICE
/// (negative nice levels, realtime scheduling).
fn as_user_manager(xdg: &Path) -> impl FnOnce(&mut Command) {
    let (config, cache) = (xdg.join("config"), xdg.join("cache"));
    move |cmd: &mut Command| {
        cmd.env("XDG_CONFIG_HOME", config)
            .env("XDG_CACHE_HOME", cache);
        // SAFETY: only async-signal-safe system calls between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                let lim = libc::rlimit {
                    rlim_cur: 1024,
                    rlim_max: 4096,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // CAP_SYS_NICE is 23, CAP_SYS_RESOURCE 24 (linux/capability.h).
                for cap in [23, 24] {
                    if libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
    }
}

/// A line `Max open files  SOFT  HARD  files` of /proc/PID/limits as (soft, hard).
fn nofile(pid: &str) -> (String, String) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap()
        .to_string();
    let w: Vec<&str> = line.split_whitespace().collect();
    (w[3].to_string(), w[4].to_string())
}

#[test]
fn debian_redis_server_unit_starts_under_a_lower_hard_limit() {
    if !require(
        "the redis-server unit test",
        &missing_tools(&["redis-server"]),
    ) {
        return;
    }
    let Some(corpus) = common::corpus::corpus() else {
        return;
    };
    let original =
        std::fs::read_to_string(corpus.join("systemd-system/redis-server/redis-server.service"))
            .unwrap();
    assert!(original.contains("LimitNOFILE=65535"));
    let xdg = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let Some(td) = TestDaemon::start_configured(
        |td| {
            let conf = data.path().join("redis.conf");
            let sock = td.run_dir().join("redis/redis-server.sock");
            std::fs::write(
                &conf,
                format!(
                    "port 0\nunixsocket {}\ndir {}\nsave \"\"\nappendonly no\nlogfile \"\"\n",
                    sock.display(),
                    data.path().display()
                ),
            )
            .unwrap();
            // Only the paths change: the config file and the PID file's /run.
            let unit = original
                .replace("/etc/redis/redis.conf", conf.to_str().unwrap())
                .replace("/run/redis/", &format!("{}/redis/", td.run_dir().display()));
            td.write_unit("redis-server.service", &unit);
        },
        &[],
        as_user_manager(xdg.path()),
    ) else {
        return;
    };
    td.ok(&["start", "redis-server"]);
    assert_eq!(td.prop("redis-server", "ActiveState"), "active");
    let main = td.prop("redis-server", "MainPID");
    // systemd's setrlimit_closest(): 65535 is above the hard limit a user
    // may not raise, so both limits become that hard limit.
    assert_eq!(nofile(&main), ("4096".to_string(), "4096".to_string()));
    let rundir = td.run_dir().join("redis");
    let mode = std::fs::metadata(&rundir).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o2755, "RuntimeDirectoryMode=2755");
    wait_until(10, "the redis socket", || {
        rundir.join("redis-server.sock").exists()
    });
    td.ok(&["stop", "redis-server"]);
    assert!(!rundir.exists(), "RuntimeDirectory= is removed at stop");
}

#[test]
fn a_unit_with_only_success_action_exits_the_manager() {
    // systemd 252's units/user/systemd-exit.service and the target it needs.
    let Some(mut td) = TestDaemon::start_with(|td| {
        td.write_unit(
            "systemd-exit.service",
            "[Unit]\nDescription=Exit the Session\nDocumentation=man:systemd.special(7)\n\
             DefaultDependencies=no\nRequires=shutdown.target\nAfter=shutdown.target\n\
             SuccessAction=exit-force\n",
        );
        td.write_unit(
            "shutdown.target",
            "[Unit]\nDescription=Shutdown\nDocumentation=man:systemd.special(7)\n\
             DefaultDependencies=no\nRefuseManualStart=yes\n",
        );
    }) else {
        return;
    };
    let verify = td.corral(&[
        "verify",
        td.units_dir()
            .join("systemd-exit.service")
            .to_str()
            .unwrap(),
    ]);
    assert_eq!(verify.code, 0, "{verify:?}");
    // The manager may close the connection before it answers.
    let _ = td.corral(&["start", "systemd-exit.service"]);
    assert_eq!(
        td.wait_exit(Duration::from_secs(30)),
        Some(0),
        "SuccessAction=exit-force did not end the manager; its log:\n{}",
        td.log()
    );
    assert!(td.log().contains("SuccessAction= asks the manager to exit"));
}

#[test]
fn managed_directories_are_made_named_and_runtime_ones_removed() {
    let xdg = tempfile::tempdir().unwrap();
    let Some(td) = TestDaemon::start_configured(
        |td| {
            td.write_unit(
                "dirs.service",
                "[Service]\nType=oneshot\nRemainAfterExit=yes\n\
                 RuntimeDirectory=%N/a other:link\nRuntimeDirectoryMode=0700\n\
                 StateDirectory=st\nCacheDirectory=ca\nLogsDirectory=lg\nConfigurationDirectory=cf\n\
                 StateDirectoryMode=0750\n\
                 ExecStart=/bin/sh -c 'echo \"$RUNTIME_DIRECTORY|$STATE_DIRECTORY|$CACHE_DIRECTORY|$LOGS_DIRECTORY|$CONFIGURATION_DIRECTORY\" > %t/dirs.out'\n",
            );
        },
        &[],
        as_user_manager(xdg.path()),
    ) else {
        return;
    };
    td.ok(&["start", "dirs"]);
    let run = td.run_dir();
    let (config, cache) = (xdg.path().join("config"), xdg.path().join("cache"));
    assert_eq!(
        read(&td, "dirs.out").trim(),
        format!(
            "{}:{}|{}|{}|{}|{}",
            run.join("dirs/a").display(),
            run.join("other").display(),
            config.join("st").display(),
            cache.join("ca").display(),
            config.join("log/lg").display(),
            config.join("cf").display()
        )
    );
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(&run.join("dirs/a")), 0o700);
    assert_eq!(mode(&config.join("st")), 0o750);
    assert_eq!(mode(&cache.join("ca")), 0o755);
    assert_eq!(
        std::fs::read_link(run.join("link")).unwrap(),
        run.join("other")
    );
    td.ok(&["stop", "dirs"]);
    assert!(!run.join("dirs/a").exists() && !run.join("other").exists());
    assert!(!run.join("link").exists());
    assert!(config.join("st").is_dir(), "StateDirectory= stays");
}

#[test]
fn credentials_are_read_only_files_named_by_credentials_directory() {
    let secret = tempfile::tempdir().unwrap();
    std::fs::write(secret.path().join("key"), b"k\0ey").unwrap();
    let Some(td) = TestDaemon::start_with(|td| {
        td.write_unit(
            "creds.service",
            &format!(
                "[Service]\nType=oneshot\nRemainAfterExit=yes\n\
                 SetCredential=greeting:hello\\nworld\n\
                 LoadCredential=key:{}\n\
                 LoadCredential=fallback:/nonexistent/x\nSetCredential=fallback:used\n\
                 SetCredentialEncrypted=enc:abcd\n\
                 Environment=WHERE=%d\n\
                 ExecStart=/bin/sh -c 'echo \"$CREDENTIALS_DIRECTORY|$WHERE\" > %t/creds.out'\n",
                secret.path().join("key").display()
            ),
        );
        td.write_unit(
            "nocreds.service",
            "[Service]\nType=oneshot\nLoadCredential=gone:/nonexistent/y\nExecStart=/bin/true\n",
        );
    }) else {
        return;
    };
    td.ok(&["start", "creds"]);
    let dir = td.run_dir().join("credentials/creds.service");
    assert_eq!(
        read(&td, "creds.out").trim(),
        format!("{}|{}", dir.display(), dir.display())
    );
    assert_eq!(
        std::fs::read(dir.join("greeting")).unwrap(),
        b"hello\nworld"
    );
    assert_eq!(std::fs::read(dir.join("key")).unwrap(), b"k\0ey");
    assert_eq!(std::fs::read(dir.join("fallback")).unwrap(), b"used");
    assert!(!dir.join("enc").exists());
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir.join("key")), 0o400);
    assert_eq!(mode(&dir), 0o500);
    td.ok(&["stop", "creds"]);
    assert!(!dir.exists(), "the credentials go with the unit");
    let o = td.corral(&["start", "nocreds"]);
    assert_ne!(o.code, 0);
    assert_eq!(td.prop("nocreds", "ExecMainStatus"), "243");
    let unit = td.units_dir().join("creds.service");
    let warnings = td.corral(&["verify", unit.to_str().unwrap()]).stdout;
    assert!(
        warnings.contains(&format!(
            "{}:8: warning: SetCredentialEncrypted: unsupported, ignored: encrypted credentials",
            unit.display()
        )) && warnings.contains("systemd-creds"),
        "the encrypted credential is warned about with a reason:\n{warnings}"
    );
}

#[test]
fn standard_input_and_output_files() {
    let Some(td) = TestDaemon::start_with(|td| {
        let run = td.run_dir();
        std::fs::write(run.join("in.txt"), "from a file\n").unwrap();
        std::fs::write(run.join("trunc.out"), "old old old old\n").unwrap();
        std::fs::write(run.join("append.out"), "first\n").unwrap();
        td.write_unit(
            "data.service",
            "[Service]\nType=oneshot\nStandardInputText=hello\\tthere\nStandardInputData=YmluYXJ5Cg==\n\
             StandardOutput=truncate:%t/trunc.out\nExecStart=/bin/cat\n",
        );
        td.write_unit(
            "file.service",
            "[Service]\nType=oneshot\nStandardInput=file:%t/in.txt\nStandardOutput=append:%t/append.out\n\
             StandardError=null\nExecStart=/bin/sh -c 'cat; echo err >&2'\n",
        );
        td.write_unit(
            "inherit.service",
            "[Service]\nType=oneshot\nStandardInput=file:%t/in.txt\nStandardOutput=inherit\n\
             ExecStart=/bin/sh -c 'echo $(readlink /proc/$$$$/fd/1) > %t/inherit.out'\n",
        );
    }) else {
        return;
    };
    td.ok(&["start", "data"]);
    assert_eq!(read(&td, "trunc.out"), "hello\tthere\nbinary\n");
    td.ok(&["start", "file"]);
    assert_eq!(read(&td, "append.out"), "first\nfrom a file\n");
    td.ok(&["start", "inherit"]);
    assert_eq!(
        read(&td, "inherit.out").trim(),
        td.run_dir().join("in.txt").to_str().unwrap()
    );
}

#[test]
fn process_settings_reach_the_process() {
    let bin = tempfile::tempdir().unwrap();
    write_script(
        &bin.path().join("report"),
        "#!/bin/sh\nout=$1\n\
         grep -E '^(SigIgn|Cpus_allowed_list|NoNewPrivs):' /proc/self/status > $out\n\
         echo oom=$(cat /proc/self/oom_score_adj) >> $out\n\
         echo slack=$(cat /proc/self/timerslack_ns) >> $out\n\
         echo stat=$(cut -d' ' -f19,41 /proc/self/stat) >> $out\n\
         echo path=$PATH >> $out\n\
         echo umask=$(umask) >> $out\n\
         echo io=$(ionice -p $$) >> $out\n",
    );
    let Some(td) = TestDaemon::start_configured(
        |td| {
            td.write_unit(
                "tuned.service",
                &format!(
                    "[Service]\nType=oneshot\nExecSearchPath={}:/usr/bin:/bin\nNice=7\nCPUAffinity=0\n\
                     OOMScoreAdjust=345\nTimerSlackNSec=123456\nCPUSchedulingPolicy=batch\n\
                     IOSchedulingClass=idle\nNoNewPrivileges=yes\nExecStart=report %t/tuned.out\n",
                    bin.path().display()
                ),
            );
            td.write_unit(
                "plain.service",
                &format!(
                    "[Service]\nType=oneshot\nIgnoreSIGPIPE=no\nUMask=0077\n\
                     ExecStart={}/report %t/plain.out\n",
                    bin.path().display()
                ),
            );
        },
        &[],
        |cmd| {
            // SAFETY: umask is async-signal-safe.
            unsafe {
                cmd.pre_exec(|| {
                    libc::umask(0o027);
                    Ok(())
                });
            }
        },
    ) else {
        return;
    };
    td.ok(&["start", "tuned"]);
    let out = read(&td, "tuned.out");
    // SIGPIPE (13) is bit 12 of SigIgn: ignored, systemd's default.
    let sigign = |out: &str| {
        let hex = out
            .lines()
            .find_map(|l| l.strip_prefix("SigIgn:"))
            .unwrap()
            .trim()
            .to_string();
        u64::from_str_radix(&hex, 16).unwrap()
    };
    assert_ne!(sigign(&out) & (1 << 12), 0, "{out}");
    assert!(out.contains("Cpus_allowed_list:\t0\n"), "{out}");
    assert!(out.contains("oom=345\n"), "{out}");
    assert!(out.contains("slack=123456\n"), "{out}");
    // Field 19 is the nice level, 41 the policy (3: SCHED_BATCH).
    assert!(out.contains("stat=7 3\n"), "{out}");
    assert!(
        out.contains(&format!("path={}:/usr/bin:/bin\n", bin.path().display())),
        "ExecSearchPath= is PATH when the unit sets none: {out}"
    );
    assert!(
        out.contains("umask=0027\n"),
        "UMask= defaults to the manager's: {out}"
    );
    assert!(out.contains("io=idle\n"), "{out}");
    assert!(out.contains("NoNewPrivs:\t1\n"), "{out}");
    td.ok(&["start", "plain"]);
    let out = read(&td, "plain.out");
    assert_eq!(sigign(&out) & (1 << 12), 0, "IgnoreSIGPIPE=no: {out}");
    assert!(out.contains("umask=0077\n"), "{out}");
    assert!(out.contains("NoNewPrivs:\t0\n"), "the default: {out}");
}

#[test]
fn privileges_a_user_manager_lacks_clamp_or_fail_as_in_systemd() {
    let xdg = tempfile::tempdir().unwrap();
    let Some(td) = TestDaemon::start_configured(
        |td| {
            td.write_unit(
                "eager.service",
                "[Service]\nType=oneshot\nNice=-5\nOOMScoreAdjust=-500\nLimitNOFILE=100000:200000\n\
                 ExecStart=/bin/sh -c 'echo $(cut -d\" \" -f19 /proc/self/stat) $(cat /proc/self/oom_score_adj) $(ulimit -Sn) $(ulimit -Hn) > %t/eager.out'\n",
            );
            td.write_unit(
                "realtime.service",
                "[Service]\nType=oneshot\nCPUSchedulingPolicy=fifo\nCPUSchedulingPriority=10\nExecStart=/bin/true\n",
            );
        },
        &[],
        as_user_manager(xdg.path()),
    ) else {
        return;
    };
    td.ok(&["start", "eager"]);
    // Nice: the closest level RLIMIT_NICE (0) allows, which is the level
    // the manager inherited from this test (0, or more under `nice`); OOM:
    // the lower score is not permitted and ignored; limits: clamped to the
    // hard limit.
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let inherited: i32 = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .nth(16)
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        read(&td, "eager.out").trim(),
        format!("{} 0 4096 4096", inherited.max(-5))
    );
    let o = td.corral(&["start", "realtime"]);
    assert_ne!(o.code, 0);
    assert_eq!(td.prop("realtime", "ExecMainStatus"), "214");
}

#[test]
fn runtime_directory_preserve_keeps_it_across_restarts_or_always() {
    let Some(td) = TestDaemon::start_with(|td| {
        for (name, preserve) in [("again", "restart"), ("kept", "yes")] {
            td.write_unit(
                &format!("{name}.service"),
                &format!(
                    "[Service]\nRuntimeDirectory=%N\nRuntimeDirectoryPreserve={preserve}\n\
                     ExecStart=/bin/sh -c 'touch $RUNTIME_DIRECTORY/mark; exec sleep 1000'\n"
                ),
            );
        }
    }) else {
        return;
    };
    let mark = |name: &str| td.run_dir().join(name).join("mark");
    td.ok(&["start", "again"]);
    wait_until(10, "the mark file", || mark("again").exists());
    // Written by the test: only a directory kept through the restart has it.
    let left = td.run_dir().join("again/left-here");
    std::fs::write(&left, "x").unwrap();
    let first = td.prop("again", "MainPID");
    td.ok(&["restart", "again"]);
    assert_ne!(td.prop("again", "MainPID"), first);
    assert!(left.exists(), "kept across the restart");
    td.ok(&["stop", "again"]);
    assert!(!td.run_dir().join("again").exists(), "removed at the stop");
    td.ok(&["start", "kept"]);
    wait_until(10, "the mark file", || mark("kept").exists());
    td.ok(&["stop", "kept"]);
    assert!(mark("kept").exists(), "RuntimeDirectoryPreserve=yes");
}

#[test]
fn failure_action_exit_ends_the_manager_when_the_unit_fails() {
    let Some(mut td) = TestDaemon::start_with(|td| {
        td.write_unit(
            "fatal.service",
            "[Unit]\nFailureAction=exit\nSuccessAction=reboot\n[Service]\nType=oneshot\nExecStart=/bin/false\n",
        );
    }) else {
        return;
    };
    let _ = td.corral(&["start", "fatal"]);
    assert_eq!(
        td.wait_exit(Duration::from_secs(30)),
        Some(0),
        "FailureAction=exit did not end the manager; its log:\n{}",
        td.log()
    );
    assert!(td.log().contains("FailureAction= asks the manager to exit"));
}

#[test]
fn syslog_identifier_and_level_prefix_label_the_journal() {
    let Some(td) = TestDaemon::start_with(|td| {
        td.write_unit(
            "plainlog.service",
            "[Service]\nType=oneshot\nSyslogIdentifier=plain-id\nSyslogLevelPrefix=no\n\
             ExecStart=/bin/sh -c 'echo \"<3>as written\"'\n",
        );
    }) else {
        return;
    };
    td.ok(&["start", "plainlog"]);
    let found = common::eventually(Duration::from_secs(5), || {
        td.journal("plainlog.service", &["-o", "json"])
            .stdout
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|e| e["MESSAGE"] == "<3>as written")
    })
    .expect("the line, prefix kept, in the journal");
    assert_eq!(found["SYSLOG_IDENTIFIER"], "plain-id");
    assert_eq!(found["PRIORITY"], "6");
}
