//! `corral status` output against golden files, with placeholders for what
//! changes from run to run (PIDs, times, temp paths). `UPDATE_GOLDEN=1`
//! rewrites the files.

mod common;

use common::{TestDaemon, golden};
use regex::Regex;

fn normalize(td: &TestDaemon, text: &str) -> String {
    let mut s = text.replace(&td.dir.path().display().to_string(), "<TMP>");
    let root = td.root.path().display().to_string();
    s = s.replace(&root, "<CG2>/<ROOT>");
    let rel = root.rsplit_once('/').map_or(root.as_str(), |(_, r)| r);
    s = s.replace(rel, "<ROOT>");
    let rules = [
        (
            r"since [A-Z][a-z]{2} \d{4}-\d\d-\d\d \d\d:\d\d:\d\d [^;]*; [^\n]* ago",
            "since <TIME>; <AGO> ago",
        ),
        (
            r"Since: [A-Z][a-z]{2} \d{4}-\d\d-\d\d \d\d:\d\d:\d\d [^;]*; [^\n]* ago",
            "Since: <TIME>; <AGO> ago",
        ),
        (r"Main PID: \d+", "Main PID: <PID>"),
        (r"Process: \d+", "Process: <PID>"),
        (r"([└├]─)\d+ ", "${1}<PID> "),
        (r"\(uid \d+\)", "(uid <UID>)"),
        (r"Manager: PID \d+ in \S+", "Manager: PID <PID> in <CGROUP>"),
        (r"Version: \S+", "Version: <VERSION>"),
        (
            r"(?m)^[A-Z][a-z]{2} \d\d \d\d:\d\d:\d\d \S+ ",
            "<TIME> <HOST> ",
        ),
        (r"\[\d+\]:", "[<PID>]:"),
        (r"Consumed [^\n]+ CPU time\.", "Consumed <CPU> CPU time."),
    ];
    for (re, rep) in rules {
        s = Regex::new(re).unwrap().replace_all(&s, rep).into_owned();
    }
    s
}

fn start() -> Option<TestDaemon> {
    TestDaemon::start_with(|td| {
        td.write_unit(
            "web.service",
            "[Unit]\nDescription=A web server\n[Service]\n\
             ExecStart=/bin/bash -c 'sleep 1000 & exec sleep 1001'\nMemoryMax=64M\n",
        );
        td.write_unit(
            "bad.service",
            "[Unit]\nDescription=Exits at once\n[Service]\nExecStart=/bin/bash -c 'exit 7'\n",
        );
    })
}

#[test]
fn status_of_a_running_unit() {
    let Some(td) = start() else { return };
    td.ok(&["start", "web"]);
    common::eventually(std::time::Duration::from_secs(5), || {
        (common::cgroup_pids(&td.unit_cgroup("web.service")).len() == 2).then_some(())
    })
    .expect("both processes");
    // The journal commits within milliseconds; wait for the manager's entry,
    // and for bash's exec: two processes may still be bash and its child.
    let o = common::eventually(std::time::Duration::from_secs(5), || {
        let o = td.corral(&["status", "web"]);
        (o.stdout.contains("corrald: Started web.service")
            && o.stdout.contains("sleep 1001")
            // bash's own command line also contains "sleep 1000"; wait for
            // the child's exec, whose tree line is just that command.
            && o.stdout.contains(" sleep 1000\n")
            && !o.stdout.contains("/bin/bash -c"))
        .then_some(o)
    })
    .expect("status shows the journal and both sleeps");
    assert_eq!(o.code, 0, "{o:?}");
    golden("status-running.txt", &normalize(&td, &o.stdout));
}

#[test]
fn status_of_a_failed_unit_and_of_an_inactive_one() {
    let Some(td) = start() else { return };
    td.ok(&["start", "bad"]);
    common::eventually(std::time::Duration::from_secs(5), || {
        (td.prop("bad", "ActiveState") == "failed").then_some(())
    })
    .expect("failed");
    let o = common::eventually(std::time::Duration::from_secs(5), || {
        let o = td.corral(&["status", "bad", "web"]);
        // The last line the manager writes about the failure.
        o.stdout.contains("CPU time.").then_some(o)
    })
    .expect("status shows the journal");
    assert_eq!(o.code, 3, "{o:?}");
    golden("status-failed-inactive.txt", &normalize(&td, &o.stdout));
}

#[test]
fn status_of_the_whole_manager_is_one_tree() {
    let Some(td) = start() else { return };
    td.ok(&["start", "web", "bad"]);
    common::eventually(std::time::Duration::from_secs(5), || {
        (td.prop("bad", "ActiveState") == "failed"
            && common::cgroup_pids(&td.unit_cgroup("web.service")).len() == 2)
            .then_some(())
    })
    .expect("settled");
    // Two processes may still be bash and its child before bash's exec.
    let o = common::eventually(std::time::Duration::from_secs(5), || {
        let o = td.ok(&["status"]);
        (o.stdout.contains("sleep 1001")
            && o.stdout.contains(" sleep 1000\n")
            && !o.stdout.contains("/bin/bash -c"))
        .then_some(o)
    })
    .expect("both sleeps in the tree");
    golden("status-manager.txt", &normalize(&td, &o.stdout));
}

#[test]
fn json_forms_parse_and_carry_the_state() {
    let Some(td) = start() else { return };
    td.ok(&["start", "web"]);
    let v: serde_json::Value =
        serde_json::from_str(&td.ok(&["status", "--json", "web"]).stdout).unwrap();
    assert_eq!(v[0]["Id"], "web.service");
    assert_eq!(v[0]["ActiveState"], "active");
    assert!(v[0]["Processes"].as_array().is_some_and(|p| !p.is_empty()));
    let v: serde_json::Value =
        serde_json::from_str(&td.ok(&["list", "--all", "--json"]).stdout).unwrap();
    let names: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["Id"].as_str().unwrap())
        .collect();
    // default.target, sockets.target and timers.target are always there:
    // the manager starts them (issues 5, 11 and 12).
    assert_eq!(
        names,
        [
            "bad.service",
            "default.target",
            "sockets.target",
            "timers.target",
            "web.service"
        ]
    );
    let v: serde_json::Value =
        serde_json::from_str(&td.ok(&["show", "--json", "web"]).stdout).unwrap();
    assert_eq!(v[0]["SubState"], "running");
    let v: serde_json::Value = serde_json::from_str(&td.ok(&["status", "--json"]).stdout).unwrap();
    let ids: Vec<&str> = v["Units"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["Id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "default.target",
            "sockets.target",
            "timers.target",
            "web.service"
        ]
    );
    // systemctl status: LSB "program or service status is unknown".
    let o = td.corral(&["status", "nope"]);
    assert_eq!(o.code, 4, "{o:?}");
    assert!(o.stderr.contains("Unit nope.service could not be found."));
}

#[test]
fn list_hides_units_that_failed_to_load_unless_all() {
    let Some(td) = TestDaemon::start_with(|td| {
        td.write_unit("web.service", "[Service]\nExecStart=/bin/sleep 1000\n");
        td.write_unit("broken.service", "[Service]\nType=simple\n");
        td.write_unit("home.mount", "[Mount]\nWhat=/dev/sda1\nWhere=/home\n");
    }) else {
        return;
    };
    td.ok(&["start", "web"]);
    let list = td.ok(&["list"]).stdout;
    assert!(list.contains("web.service"), "{list}");
    assert!(!list.contains("broken.service"), "{list}");
    assert!(!list.contains("home.mount"), "{list}");
    assert!(!list.contains(" error "), "{list}");
    let all = td.ok(&["list", "--all"]).stdout;
    for name in ["web.service", "broken.service", "home.mount"] {
        assert!(all.contains(name), "{name} missing from\n{all}");
    }
    assert!(all.contains(" error "), "{all}");
}

#[test]
fn list_failed_and_state_pick_units_by_their_state_words() {
    let Some(td) = TestDaemon::start_with(|td| {
        td.write_unit("web.service", "[Service]\nExecStart=/bin/sleep 1000\n");
        td.write_unit(
            "bad.service",
            "[Service]\nType=oneshot\nExecStart=/bin/false\n",
        );
        td.write_unit("idle.service", "[Service]\nExecStart=/bin/sleep 1000\n");
        td.write_unit("broken.service", "[Service]\nType=simple\n");
    }) else {
        return;
    };
    td.ok(&["start", "web"]);
    assert_eq!(td.corral(&["start", "bad"]).code, 1);
    let names = |args: &[&str]| -> Vec<String> {
        let mut cmd = vec!["list", "--json"];
        cmd.extend_from_slice(args);
        let v: serde_json::Value = serde_json::from_str(&td.ok(&cmd).stdout).unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .map(|u| u["Id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names(&["--failed"]), ["bad.service"]);
    assert_eq!(names(&["--state", "failed"]), ["bad.service"]);
    // SUB and LOAD words too, comma-separated; inactive units when asked for.
    assert_eq!(
        names(&["--state=running,error"]),
        ["broken.service", "web.service"]
    );
    assert!(names(&["--state", "inactive"]).contains(&"idle.service".to_string()));
    assert!(!names(&[]).contains(&"idle.service".to_string()));
    let table = td.ok(&["list", "--failed"]).stdout;
    assert!(
        table.contains("bad.service") && table.contains("1 units listed."),
        "{table}"
    );
}

#[test]
fn tasks_counts_threads_as_pids_current_does() {
    let Some(td) = TestDaemon::start_with(|td| {
        // Three threads beside the main one, all sleeping: four tasks, one process.
        td.write_unit(
            "threads.service",
            "[Service]\nExecStart=/usr/bin/python3 -c 'import threading, time; \
             [threading.Thread(target=time.sleep, args=(1000,), daemon=True).start() \
             for _ in range(3)]; time.sleep(1000)'\n",
        );
    }) else {
        return;
    };
    td.ok(&["start", "threads"]);
    let cg = td.unit_cgroup("threads.service");
    let o = common::eventually(std::time::Duration::from_secs(10), || {
        let pids = common::cgroup_pids(&cg);
        let threads = pids
            .first()
            .and_then(|p| std::fs::read_dir(format!("/proc/{p}/task")).ok())
            .map_or(0, Iterator::count);
        (pids.len() == 1 && threads == 4).then(|| td.ok(&["status", "threads"]))
    })
    .expect("one process with four threads");
    assert!(o.stdout.contains("      Tasks: 4\n"), "{}", o.stdout);
}

#[test]
fn status_takes_patterns_of_loaded_unit_names() {
    let Some(td) = TestDaemon::start_with(|td| {
        td.write_unit("echo@.service", "[Service]\nExecStart=/bin/sleep 1000\n");
        td.write_unit("web.service", "[Service]\nExecStart=/bin/sleep 1001\n");
    }) else {
        return;
    };
    td.ok(&["start", "echo@a", "echo@b", "web"]);
    let o = td.ok(&["status", "echo@*"]);
    assert!(o.stdout.contains("echo@a.service"), "{}", o.stdout);
    assert!(o.stdout.contains("echo@b.service"), "{}", o.stdout);
    assert!(!o.stdout.contains("web.service"), "{}", o.stdout);
    let o = td.ok(&["status", "echo@[b]?service", "web"]);
    assert!(!o.stdout.contains("echo@a.service"), "{}", o.stdout);
    assert!(o.stdout.contains("echo@b.service"), "{}", o.stdout);
    assert!(o.stdout.contains("web.service"), "{}", o.stdout);
    // Matching nothing is not an error, and does not fall back to the
    // manager's status.
    let o = td.corral(&["status", "nothing*"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(o.stdout, "", "{o:?}");
}

#[test]
fn an_exec_failure_shows_the_pid_of_the_child_that_failed() {
    let Some(td) = TestDaemon::start_with(|td| {
        td.write_unit(
            "noexec.service",
            "[Service]\nExecStart=/no/such/program --flag\n",
        );
    }) else {
        return;
    };
    let _ = td.corral(&["start", "noexec"]);
    td.wait_state("noexec", "failed");
    let o = td.corral(&["status", "noexec"]);
    assert_eq!(o.code, 3, "{o:?}");
    let re = Regex::new(
        r"(?m)^    Process: (\d+) ExecStart=/no/such/program --flag \(code=exited, status=203/EXEC\)\n   Main PID: (\d+) \(code=exited, status=203/EXEC\)$",
    )
    .unwrap();
    let caps = re
        .captures(&o.stdout)
        .unwrap_or_else(|| panic!("{}", o.stdout));
    assert_eq!(caps[1], caps[2], "{}", o.stdout);
    let pid: i32 = caps[1].parse().unwrap();
    assert!(pid > 0, "{}", o.stdout);
    assert_eq!(td.prop("noexec", "ExecMainPID"), pid.to_string());
    assert_eq!(td.prop("noexec", "ExecMainStatus"), "203");
}
