//! Unit names as users type them: `corral start org.example.Sleeper` is
//! `org.example.Sleeper.service`, one unit whatever the spelling, as
//! systemctl mangles names whose suffix is not a unit type.

mod common;

use std::time::Duration;

use common::{TestDaemon, eventually};

#[test]
fn a_dbus_style_name_without_suffix_is_the_same_service() {
    let Some(td) = TestDaemon::start_with(|td| {
        td.write_unit(
            "org.example.Sleeper.service",
            "[Service]\nExecStart=/bin/sh -c 'echo sleeper-up; exec sleep 1000'\n",
        )
    }) else {
        return;
    };
    td.ok(&["start", "org.example.Sleeper"]);
    let pid = td.prop("org.example.Sleeper.service", "MainPID");
    assert_ne!(pid, "0");
    // The second spelling finds the running unit instead of starting another.
    td.ok(&["start", "org.example.Sleeper.service"]);
    assert_eq!(td.prop("org.example.Sleeper", "MainPID"), pid);
    let list = td.ok(&["list", "--all"]).stdout;
    let rows: Vec<&str> = list
        .lines()
        .filter(|l| l.contains("org.example.Sleeper"))
        .collect();
    assert_eq!(rows.len(), 1, "one unit, not two:\n{list}");
    assert!(rows[0].contains("org.example.Sleeper.service"), "{list}");
    assert!(td.unit_cgroup("org.example.Sleeper.service").is_dir());

    // Its output is filed under the full name, found by either spelling.
    for name in ["org.example.Sleeper.service", "org.example.Sleeper"] {
        let found = eventually(Duration::from_secs(10), || {
            let o = td.corral(&["journal", "--no-pager", "-u", name]);
            o.stdout.contains("sleeper-up").then_some(o)
        });
        assert!(found.is_some(), "no output under {name}");
    }

    td.ok(&["stop", "org.example.Sleeper"]);
    assert_eq!(
        td.prop("org.example.Sleeper.service", "ActiveState"),
        "inactive"
    );
    assert!(!td.unit_cgroup("org.example.Sleeper.service").exists());
}
