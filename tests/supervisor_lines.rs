//! The manager's lines as systemd writes them (naming the unit and its
//! description, with systemd's priorities and MESSAGE_IDs), and each
//! command of a unit labelled with its own SYSLOG_IDENTIFIER and _PID, read
//! back from the real store of a real manager.

mod common;

use std::time::Duration;

use common::{TestDaemon, eventually, free_port, memcached_user_flag, write_script};
use serde_json::Value;

/// The unit's entries as `corral journal -o json` prints them.
fn json(td: &TestDaemon, unit: &str, extra: &[&str]) -> Vec<Value> {
    let mut args = vec!["-o", "json"];
    args.extend(extra);
    let o = td.journal(unit, &args);
    assert!(o.code == 0 || o.code == 1, "{o:?}");
    o.stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON entry"))
        .collect()
}

fn field<'a>(e: &'a Value, k: &str) -> &'a str {
    e[k].as_str().unwrap_or("")
}

/// The messages of `unit` (`-o cat`) with `extra` arguments, once `done`
/// says they are complete; fails with what there was after 10 s.
fn messages_until(
    td: &TestDaemon,
    unit: &str,
    extra: &[&str],
    done: impl Fn(&[String]) -> bool,
) -> Vec<String> {
    let mut last = Vec::new();
    let got = eventually(Duration::from_secs(10), || {
        let mut args = vec!["-o", "cat"];
        args.extend(extra);
        last = td
            .journal(unit, &args)
            .stdout
            .lines()
            .map(str::to_string)
            .collect::<Vec<_>>();
        done(&last).then(|| last.clone())
    });
    got.unwrap_or_else(|| panic!("{unit} {extra:?}: incomplete: {last:#?}\n{}", td.log()))
}

fn has(lines: &[String], want: &str) -> bool {
    lines.iter().any(|l| l == want)
}

#[test]
fn two_instances_manager_lines_are_told_apart() {
    let (a, b) = (free_port(), free_port());
    let Some(td) = TestDaemon::start_with(|td| {
        td.write_unit(
            "memcached@.service",
            &format!(
                "[Unit]\nDescription=Memcached\n[Service]\n\
                 ExecStart=/usr/bin/memcached -l 127.0.0.1 -p %i -U 0{}\n",
                memcached_user_flag()
            ),
        )
    }) else {
        return;
    };
    let (ua, ub) = (
        format!("memcached@{a}.service"),
        format!("memcached@{b}.service"),
    );
    td.ok(&["start", &ua]);
    td.ok(&["start", &ub]);
    td.ok(&["stop", &ua]);
    let stopped = format!("Stopped {ua} - Memcached.");
    let lines = messages_until(&td, "memcached@*", &[], |l| has(l, &stopped));
    for want in [
        format!("Started {ua} - Memcached."),
        format!("Started {ub} - Memcached."),
        format!("Stopping {ua} - Memcached..."),
        format!("{ua}: Deactivated successfully."),
        stopped.clone(),
    ] {
        assert!(has(&lines, &want), "no {want:?} in {lines:#?}");
    }
    // A simple service is started by its spawn: systemd logs no "Starting".
    assert!(
        !lines.iter().any(|l| l.starts_with("Starting ")),
        "{lines:#?}"
    );
    let consumed = lines
        .iter()
        .position(|l| l.starts_with(&format!("{ua}: Consumed ")) && l.ends_with(" CPU time."))
        .unwrap_or_else(|| panic!("no CPU time line in {lines:#?}"));
    assert!(consumed < lines.iter().position(|l| *l == stopped).unwrap());
    assert!(
        !lines.iter().any(|l| l.starts_with(&format!("{ub}: "))),
        "{lines:#?}"
    );

    // The ids systemd gives these lines, as fields and as matches.
    let started = json(
        &td,
        "memcached@*",
        &["MESSAGE_ID=39f53479d3a045ac8e11786248231fbf"],
    );
    let units: Vec<&str> = started
        .iter()
        .map(|e| field(e, "_SYSTEMD_USER_UNIT"))
        .collect();
    assert_eq!(units, [ua.as_str(), ub.as_str()], "{started:#?}");
    let all = json(&td, &ua, &[]);
    let id_of = |m: &str| {
        all.iter().find(|e| field(e, "MESSAGE") == m).map(|e| {
            (
                field(e, "MESSAGE_ID"),
                field(e, "PRIORITY"),
                field(e, "SYSLOG_IDENTIFIER"),
            )
        })
    };
    assert_eq!(
        id_of(&stopped),
        Some(("9d1aaa27d60140bd96365438aad20286", "6", "corrald"))
    );
    assert_eq!(
        id_of(&format!("Stopping {ua} - Memcached...")),
        Some(("de5b426a63be47a7b6ac3eaac82e2f6f", "6", "corrald"))
    );
}

#[test]
fn a_failed_unit_is_found_with_priority_warning() {
    let Some(td) = TestDaemon::start_with(|td| {
        td.write_unit(
            "crash.service",
            "[Unit]\nDescription=Crashes\nStartLimitBurst=2\nStartLimitIntervalSec=60\n\
             [Service]\nExecStart=/bin/sh -c 'echo up; kill -9 $$$$'\n\
             Restart=on-failure\nRestartSec=100ms\nNoSuchDirective=1\n",
        )
    }) else {
        return;
    };
    td.ok(&["start", "crash"]);
    let failed = "Failed to start crash.service - Crashes.";
    let all = messages_until(&td, "crash", &[], |l| has(l, failed));
    for want in [
        "Started crash.service - Crashes.",
        "crash.service: Main process exited, code=killed, status=9/KILL",
        "crash.service: Failed with result 'signal'.",
        "crash.service: Scheduled restart job, restart counter is at 1.",
        "Stopped crash.service - Crashes.",
        "crash.service: Start request repeated too quickly.",
    ] {
        assert!(has(&all, want), "no {want:?} in {all:#?}");
    }
    // -p warning: the failure and the unknown directive (file:line), not
    // the service's own output nor the info lines.
    let warnings = messages_until(&td, "crash", &["-p", "warning"], |l| has(l, failed));
    assert!(!warnings.is_empty());
    for l in &warnings {
        assert!(
            l.contains("NoSuchDirective")
                || l.contains("Main process exited")
                || l.contains("Failed with result")
                || l.contains("Start request repeated")
                || l == failed,
            "{l:?} is not a warning: {warnings:#?}"
        );
    }
    assert!(
        warnings
            .iter()
            .any(|l| l.contains("crash.service:9:") && l.contains("NoSuchDirective")),
        "{warnings:#?}"
    );
    assert!(has(
        &warnings,
        "crash.service: Failed with result 'signal'."
    ));
    // The start job's failure is an error, as systemd's.
    let errors = messages_until(&td, "crash", &["-p", "err"], |l| has(l, failed));
    assert_eq!(errors, [failed]);
}

#[test]
fn each_command_of_a_oneshot_has_its_identifier_and_pid() {
    let Some(td) = TestDaemon::start_with(|td| {
        td.write_unit(
            "steps.service",
            "[Service]\nType=oneshot\nRemainAfterExit=yes\n\
             ExecStartPre=/bin/echo pre\n\
             ExecStart=/bin/sh -c 'echo \"first $$$$\"; /bin/echo grandchild'\n\
             ExecStart=/bin/bash -c 'echo \"second $$$$\"'\n\
             ExecStop=/usr/bin/printf 'stopping\\n'\n",
        )
    }) else {
        return;
    };
    td.ok(&["start", "steps"]);
    td.ok(&["stop", "steps"]);
    let done = "Stopped steps.service.";
    messages_until(&td, "steps", &[], |l| has(l, done));
    let all = json(&td, "steps", &[]);
    let by_start = |p: &str| {
        all.iter()
            .find(|e| field(e, "MESSAGE").starts_with(p))
            .unwrap_or_else(|| panic!("no {p:?} in {all:#?}"))
    };
    let pid_said = |e: &Value| field(e, "MESSAGE").rsplit(' ').next().unwrap().to_string();
    let first = by_start("first ");
    let second = by_start("second ");
    assert_eq!(field(first, "SYSLOG_IDENTIFIER"), "sh");
    assert_eq!(field(first, "_PID"), pid_said(first));
    assert_eq!(field(second, "SYSLOG_IDENTIFIER"), "bash");
    assert_eq!(field(second, "_PID"), pid_said(second));
    assert_ne!(field(first, "_PID"), field(second, "_PID"));
    // A child writing into its parent's pipe keeps the parent's label.
    let grandchild = by_start("grandchild");
    assert_eq!(field(grandchild, "SYSLOG_IDENTIFIER"), "sh");
    assert_eq!(field(grandchild, "_PID"), field(first, "_PID"));
    let pre = by_start("pre");
    assert_eq!(field(pre, "SYSLOG_IDENTIFIER"), "echo");
    let stop = by_start("stopping");
    assert_eq!(field(stop, "SYSLOG_IDENTIFIER"), "printf");
    let pids: std::collections::HashSet<&str> = [pre, first, second, stop]
        .iter()
        .map(|e| field(e, "_PID"))
        .collect();
    assert_eq!(pids.len(), 4, "{all:#?}");
    // The oneshot's start job: Starting, then Finished (not Started).
    let m: Vec<&str> = all.iter().map(|e| field(e, "MESSAGE")).collect();
    assert!(m.contains(&"Starting steps.service..."), "{m:#?}");
    assert!(m.contains(&"Finished steps.service."), "{m:#?}");
    assert!(!m.iter().any(|l| l.starts_with("Started ")), "{m:#?}");
}

#[test]
fn runit_finish_output_is_labelled_finish() {
    let Some(td) = TestDaemon::start_with(|td| {
        let svc = td.runit_dir().join("fin");
        write_script(
            &svc.join("run"),
            "#!/bin/sh\necho from-run\nexec sleep 1000\n",
        );
        write_script(&svc.join("finish"), "#!/bin/sh\necho \"from-finish $$\"\n");
    }) else {
        return;
    };
    td.ok(&["stop", "fin"]);
    messages_until(&td, "fin", &[], |l| {
        l.iter().any(|m| m.starts_with("from-finish"))
    });
    let all = json(&td, "fin", &[]);
    let find = |p: &str| {
        all.iter()
            .find(|e| field(e, "MESSAGE").starts_with(p))
            .unwrap_or_else(|| panic!("no {p:?} in {all:#?}"))
    };
    assert_eq!(field(find("from-run"), "SYSLOG_IDENTIFIER"), "run");
    let fin = find("from-finish ");
    assert_eq!(field(fin, "SYSLOG_IDENTIFIER"), "finish");
    assert_eq!(
        field(fin, "_PID"),
        field(fin, "MESSAGE").rsplit(' ').next().unwrap()
    );
}

#[test]
fn a_reload_is_logged_as_reloading_and_reloaded() {
    let Some(td) = TestDaemon::start_with(|td| {
        td.write_unit(
            "web.service",
            "[Unit]\nDescription=A web server\n[Service]\n\
             ExecStart=/bin/sleep 1000\nExecReload=/bin/true\n",
        )
    }) else {
        return;
    };
    td.ok(&["start", "web"]);
    td.ok(&["reload", "web"]);
    let reloaded = "Reloaded web.service - A web server.";
    let lines = messages_until(&td, "web", &[], |l| has(l, reloaded));
    let started: Vec<&String> = lines.iter().filter(|l| l.starts_with("Started ")).collect();
    assert_eq!(
        started,
        ["Started web.service - A web server."],
        "{lines:#?}"
    );
    let at = |m: &str| lines.iter().position(|l| l == m).unwrap_or(usize::MAX);
    assert!(
        at("Reloading web.service - A web server...") < at(reloaded),
        "{lines:#?}"
    );
    let ids = json(&td, "web", &["MESSAGE_ID=7b05ebc668384222baa8881179cfda54"]);
    assert_eq!(ids.len(), 1, "{ids:#?}");
    assert_eq!(field(&ids[0], "MESSAGE"), reloaded);
}
