//! `corral enable --now` / `disable --now` and friends against a real
//! manager: the [Install] symlinks are made in the manager's units directory
//! (its search path, asked over the socket), the manager is told to reload,
//! and the unit is started (then stopped) through the control socket.

mod common;

use std::process::{Command, Stdio};
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

#[test]
fn install_verbs_reload_the_running_manager_before_now() {
    // A lower-priority (vendor) directory: a unit there can be masked.
    let vendor = tempfile::tempdir().unwrap();
    std::fs::write(
        vendor.path().join("vend.service"),
        "[Service]\nExecStart=/bin/sleep 1024\n",
    )
    .unwrap();
    let Some(td) = TestDaemon::start_args(
        |td| {
            for (name, secs) in [("x", 1025), ("y", 1026)] {
                td.write_unit(
                    &format!("{name}.service"),
                    &format!(
                        "[Service]\nExecStart=/bin/sleep {secs}\n[Install]\nWantedBy=default.target\n"
                    ),
                );
            }
            td.write_unit(
                "z.service",
                "[Service]\nExecStart=/bin/sleep 1027\n[Install]\nWantedBy=default.target\n",
            );
        },
        &["--units-dir", vendor.path().to_str().unwrap()],
    ) else {
        return;
    };

    // mask --now: the manager learns of the mask before the stop, so the
    // unit cannot be started again.
    td.ok(&["start", "vend"]);
    td.ok(&["mask", "--now", "vend"]);
    assert_eq!(td.prop("vend", "ActiveState"), "inactive");
    let o = td.corral(&["start", "vend"]);
    assert_eq!(o.code, 1, "{o:?}");
    assert_eq!(
        o.stderr,
        "Failed to start vend.service: Unit vend.service is masked.\n"
    );
    td.ok(&["unmask", "vend"]);
    td.ok(&["start", "vend"]);
    assert_eq!(td.prop("vend", "ActiveState"), "active");

    // enable reaches default.target at once (no daemon-reload by hand);
    // --no-reload leaves the manager as it was.
    td.ok(&["enable", "x"]);
    td.ok(&["enable", "--no-reload", "y"]);
    let tree = td.ok(&["list-dependencies"]).stdout;
    assert_eq!(tree, "default.target\n○ └─x.service\n", "{tree}");
    td.ok(&["daemon-reload"]);
    let tree = td.ok(&["list-dependencies"]).stdout;
    assert_eq!(
        tree, "default.target\n○ ├─x.service\n○ └─y.service\n",
        "{tree}"
    );

    // --now runs after the reload: the start uses the file as it is now.
    assert_eq!(td.corral(&["status", "z"]).code, 3, "z is loaded, inactive");
    let marker = td.dir.path().join("z-new");
    td.write_unit(
        "z.service",
        &format!(
            "[Service]\nExecStart=/bin/sh -c 'touch {}; exec sleep 1028'\n[Install]\nWantedBy=default.target\n",
            marker.display()
        ),
    );
    td.ok(&["enable", "--now", "z"]);
    td.wait_state("z.service", "active");
    assert!(
        eventually(Duration::from_secs(5), || marker.exists().then_some(())).is_some(),
        "enable --now started the definition from before the reload\n{}",
        td.log()
    );
}

#[test]
fn enable_now_of_a_template_starts_its_default_instance() {
    let Some(td) = TestDaemon::start_with(|td| {
        td.write_unit(
            "mc@.service",
            &format!(
                "[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/bin/touch {}/ran-%i\n\
                 [Install]\nWantedBy=default.target\nDefaultInstance=11299\n",
                td.dir.path().display()
            ),
        );
    }) else {
        return;
    };
    let units = td.units_dir();
    let o = td.ok(&["enable", "--now", "mc@.service"]);
    assert_eq!(
        o.stderr,
        format!(
            "Created symlink {} → {}.\n",
            units
                .join("default.target.wants/mc@11299.service")
                .display(),
            units.join("mc@.service").display()
        )
    );
    assert!(td.dir.path().join("ran-11299").exists(), "{}", td.log());
    assert!(
        !td.dir.path().join("ran-").exists(),
        "the template itself ran with an empty %i"
    );
    assert_eq!(td.prop("mc@11299.service", "ActiveState"), "active");
    // Stopping the bare template is refused, as systemctl 252 refuses it.
    let o = td.corral(&["disable", "--now", "mc@.service"]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(
        o.stderr.ends_with(
            "Failed to stop mc@.service: Unit name mc@.service is missing the instance name.\n"
        ),
        "{o:?}"
    );
}

#[test]
fn list_unit_files_and_enable_use_the_managers_search_path() {
    let Some(td) = TestDaemon::start_with(|td| {
        td.write_unit(
            "a.service",
            "[Service]\nExecStart=/bin/sleep 1029\n[Install]\nWantedBy=default.target\n",
        );
        td.write_unit("b.service", "[Service]\nExecStart=/bin/sleep 1030\n");
        for (name, down) in [("rsvc", false), ("rdown", true)] {
            let d = td.runit_dir().join(name);
            std::fs::create_dir_all(&d).unwrap();
            let run = d.join("run");
            std::fs::write(&run, "#!/bin/sh\nexec /bin/sleep 1031\n").unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o755)).unwrap();
            if down {
                std::fs::write(d.join("down"), "").unwrap();
            }
        }
    }) else {
        return;
    };
    // The manager's own --units-dir and --runit-dir, asked over the socket.
    let o = td.ok(&["list-unit-files"]);
    assert_eq!(
        o.stdout,
        "UNIT FILE     STATE\n\
         a.service     disabled\n\
         b.service     static\n\
         rdown.service disabled\n\
         rsvc.service  enabled\n\
         \n\
         4 unit files listed.\n"
    );
    let o = td.corral(&["is-enabled", "a"]);
    assert_eq!((o.code, o.stdout.as_str()), (1, "disabled\n"), "{o:?}");
    td.ok(&["enable", "a"]);
    assert!(
        td.units_dir()
            .join("default.target.wants/a.service")
            .exists()
    );
    assert_eq!(td.ok(&["is-enabled", "a"]).stdout, "enabled\n");
    td.ok(&["disable", "rsvc"]);
    assert!(td.runit_dir().join("rsvc/down").exists());
    let o = td.ok(&["list-unit-files", "--no-legend", "r*"]);
    assert_eq!(o.stdout, "rdown.service disabled\nrsvc.service  disabled\n");
    // What was enabled is what the manager loads: default.target starts it.
    td.ok(&["start", "default.target"]);
    assert_eq!(td.prop("a.service", "ActiveState"), "active");
}

#[test]
fn without_a_manager_the_install_verbs_use_the_default_search_path() {
    let home = tempfile::tempdir().unwrap();
    let units = home.path().join("config/corral/units");
    std::fs::create_dir_all(&units).unwrap();
    std::fs::write(
        units.join("only.service"),
        "[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=default.target\n",
    )
    .unwrap();
    let corral = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_corral"))
            .args(args)
            .env("CORRAL_SOCKET", home.path().join("no-manager.sock"))
            .env("HOME", home.path())
            .env("XDG_CONFIG_HOME", home.path().join("config"))
            .stdin(Stdio::null())
            .output()
            .expect("run corral")
    };
    let o = corral(&["list-unit-files", "--no-legend", "only*"]);
    assert!(o.status.success(), "{o:?}");
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "only.service disabled\n"
    );
    // No manager to reload: the files change, and that is all.
    let o = corral(&["enable", "only"]);
    assert!(o.status.success(), "{o:?}");
    assert_eq!(
        String::from_utf8_lossy(&o.stderr),
        format!(
            "Created symlink {} → {}.\n",
            units.join("default.target.wants/only.service").display(),
            units.join("only.service").display()
        )
    );
}
