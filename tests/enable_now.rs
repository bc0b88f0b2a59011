//! `corral enable --now` / `disable --now` against a real manager: the
//! [Install] symlinks are made in the manager's units directory and the unit
//! is started (then stopped) through the control socket.

mod common;

use std::time::Duration;

use common::{TestDaemon, eventually, free_port, memcached_user_flag, memcached_version};

#[test]
fn enable_now_links_and_starts_disable_now_unlinks_and_stops() {
    let port = free_port();
    let Some(td) = TestDaemon::start_with(|td| {
        td.write_unit(
            "memcached@.service",
            &format!(
                "[Unit]\nDescription=memcached on %i\n[Service]\nExecStart=/usr/bin/memcached -l 127.0.0.1 -p %i -U 0{}\n[Install]\nWantedBy=default.target\n",
                memcached_user_flag()
            ),
        )
    }) else {
        return;
    };
    let units = td.units_dir();
    let dir = units.to_str().unwrap();
    let unit = format!("memcached@{port}");
    let link = units.join(format!("default.target.wants/memcached@{port}.service"));

    let o = td.ok(&["enable", "--now", "--units-dir", dir, &unit]);
    assert_eq!(
        o.stderr,
        format!(
            "Created symlink {} → {}.\n",
            link.display(),
            units.join("memcached@.service").display()
        )
    );
    assert_eq!(
        std::fs::read_link(&link).unwrap(),
        units.join("memcached@.service")
    );
    let v = eventually(Duration::from_secs(5), || memcached_version(port));
    assert!(
        v.as_deref().is_some_and(|v| v.starts_with("VERSION")),
        "enable --now did not start it: {v:?}\n{}",
        td.log()
    );
    assert_eq!(td.prop(&unit, "ActiveState"), "active");
    let o = td.ok(&["is-enabled", "--units-dir", dir, &unit]);
    assert_eq!(o.stdout, "enabled\n");

    let o = td.ok(&["disable", "--now", "--units-dir", dir, &unit]);
    assert_eq!(o.stderr, format!("Removed \"{}\".\n", link.display()));
    assert!(!link.exists());
    assert!(
        !units.join("default.target.wants").exists(),
        "the emptied .wants directory is removed, as systemctl does"
    );
    assert_eq!(td.prop(&unit, "ActiveState"), "inactive");
    assert!(
        memcached_version(port).is_none(),
        "still answering after disable --now"
    );
    let o = td.corral(&["is-enabled", "--units-dir", dir, &unit]);
    assert_eq!((o.code, o.stdout.as_str()), (1, "disabled\n"));
}
