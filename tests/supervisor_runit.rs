//! runit service directories as units: `run` autostarted unless `down`,
//! `log/run` fed through a pipe, `finish` run with runsv's arguments.

mod common;

use std::time::Duration;

use common::{TestDaemon, eventually, pids_named, write_script};

#[test]
fn runit_service_with_log_and_finish() {
    let tag = format!("runit-{}", std::process::id());
    let Some(td) = TestDaemon::start_with(|td| {
        let svc = td.runit_dir().join("echoer");
        write_script(
            &svc.join("run"),
            &format!("#!/bin/bash\necho hello-from-run\nexec -a {tag} sleep 1000\n"),
        );
        write_script(&svc.join("log/run"), "#!/bin/sh\nexec cat > ../log.out\n");
        write_script(
            &svc.join("finish"),
            "#!/bin/sh\necho \"$1 $2\" >> finish.out\n",
        );
        let lazy = td.runit_dir().join("lazy");
        write_script(&lazy.join("run"), "#!/bin/sh\nexec sleep 1000\n");
        std::fs::write(lazy.join("down"), "").unwrap();
    }) else {
        return;
    };
    // Autostarted before readiness was reported.
    assert_eq!(td.prop("echoer", "ActiveState"), "active");
    assert_eq!(td.prop("echoer", "SourceKind"), "runit");
    assert_eq!(td.prop("lazy", "ActiveState"), "inactive");
    let svc = td.runit_dir().join("echoer");
    let logged = eventually(Duration::from_secs(5), || {
        let s = std::fs::read_to_string(svc.join("log.out")).ok()?;
        s.contains("hello-from-run").then_some(s)
    });
    assert!(logged.is_some(), "log/run did not receive run's stdout");
    assert_eq!(pids_named(&tag).len(), 1);
    td.ok(&["stop", "echoer"]);
    assert!(pids_named(&tag).is_empty());
    assert_eq!(
        std::fs::read_to_string(svc.join("finish.out")).unwrap(),
        "-1 15\n",
        "finish gets exit code -1 and the signal, as under runsv"
    );
    assert!(!td.unit_cgroup("echoer.service").exists());
    td.ok(&["start", "lazy"]);
    td.ok(&["stop", "lazy"]);
}
