use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::*;
use crate::unit::SpecifierContext;

/// The corpus's user units (`$CORRAL_CORPUS` or a `shared/corpus` above the
/// crate); `None` (the test skips, as the suites do) only outside CI.
fn corpus_user() -> Option<PathBuf> {
    Some(crate::test_corpus::corpus()?.join("systemd-user"))
}

/// Unit files of real packages, installed as a vendor would (lower priority dir).
const VENDOR: &[&str] = &[
    "mpd/mpd.service",
    "mpd/mpd.socket",
    "pipewire/pipewire.service",
    "pipewire/pipewire.socket",
    "pulseaudio/pulseaudio.service",
    "pulseaudio/pulseaudio.socket",
    "dbus-broker/dbus-broker.service",
    "bluez-obexd/obex.service",
    "foot/foot-server@.service",
    "foot/foot-server@.socket",
    "wireplumber/wireplumber@.service",
    "wireplumber/wireplumber.service",
    "offlineimap3/offlineimap@.service",
    "gnome-keyring/gnome-keyring-daemon.service",
    "gnome-keyring/gnome-keyring-daemon.socket",
];

/// Unit files a user wrote into their own units directory.
const USER: &[(&str, &str)] = &[
    (
        "memcached@.service",
        "[Unit]\nDescription=memcached on %i\n[Service]\nExecStart=/usr/bin/memcached -p %i\n[Install]\nWantedBy=default.target\nAlias=mc@.service\n",
    ),
    (
        "di@.service",
        "[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=default.target\nDefaultInstance=def\n",
    ),
    ("static.service", "[Service]\nExecStart=/bin/true\n"),
    (
        "also.service",
        "[Service]\nExecStart=/bin/true\n[Install]\nAlso=mpd.service\n",
    ),
    (
        "aliased.service",
        "[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=default.target\nRequiredBy=mail.target\nAlias=al.service\n",
    ),
];

/// Two trees holding the same unit files: one for Debian's systemctl
/// (`--root=R --global`: R/etc/systemd/user, R/usr/lib/systemd/user), one
/// for corral (C/units, C/vendor).
struct Pair {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    units: PathBuf,
    vendor: PathBuf,
    loader: Loader,
}

impl Pair {
    fn new() -> Option<Pair> {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("sd");
        let (etc, usr) = (
            root.join("etc/systemd/user"),
            root.join("usr/lib/systemd/user"),
        );
        let units = tmp.path().join("corral/units");
        let vendor = tmp.path().join("corral/vendor");
        for d in [&etc, &usr, &units, &vendor] {
            fs::create_dir_all(d).unwrap();
        }
        let corpus = corpus_user()?;
        for rel in VENDOR {
            let src = corpus.join(rel);
            let base = src.file_name().unwrap();
            fs::copy(&src, usr.join(base)).unwrap();
            fs::copy(&src, vendor.join(base)).unwrap();
        }
        for (name, text) in USER {
            fs::write(etc.join(name), text).unwrap();
            fs::write(units.join(name), text).unwrap();
        }
        let loader = Loader::new(
            vec![units.clone(), vendor.clone()],
            Vec::new(),
            SpecifierContext::current(),
        );
        Some(Pair {
            _tmp: tmp,
            root,
            units,
            vendor,
            loader,
        })
    }

    /// Runs `systemctl --root=R --global ARGS` and returns (exit ok, stdout, stderr).
    fn systemctl(&self, args: &[&str]) -> (bool, String, String) {
        let out = Command::new("systemctl")
            .arg(format!("--root={}", self.root.display()))
            .arg("--global")
            .args(args)
            .output()
            .expect("systemctl runs (Debian's systemd package; scripts/test installs it)");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// The symlinks and directories of a tree: relative path -> target with
    /// the base directories replaced by CONFIG/VENDOR ("dir" for directories).
    fn layout(dir: &Path, bases: &[(&Path, &str)]) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        fn walk(
            dir: &Path,
            top: &Path,
            bases: &[(&Path, &str)],
            out: &mut BTreeMap<String, String>,
        ) {
            for e in fs::read_dir(dir).unwrap().flatten() {
                let p = e.path();
                let rel = p.strip_prefix(top).unwrap().display().to_string();
                let t = e.file_type().unwrap();
                if t.is_symlink() {
                    let target = fs::read_link(&p).unwrap();
                    let mut s = target.display().to_string();
                    for (base, label) in bases {
                        if let Ok(r) = target.strip_prefix(base) {
                            s = format!("{label}/{}", r.display());
                        }
                    }
                    out.insert(rel, s);
                } else if t.is_dir() {
                    out.insert(rel, "dir".into());
                    walk(&p, top, bases, out);
                }
            }
        }
        walk(dir, dir, bases, &mut out);
        out
    }

    fn systemd_layout(&self) -> BTreeMap<String, String> {
        Self::layout(
            &self.root.join("etc/systemd/user"),
            &[
                (Path::new("/etc/systemd/user"), "CONFIG"),
                (Path::new("/usr/lib/systemd/user"), "VENDOR"),
            ],
        )
    }

    fn corral_layout(&self) -> BTreeMap<String, String> {
        Self::layout(
            &self.units,
            &[(&self.units, "CONFIG"), (&self.vendor, "VENDOR")],
        )
    }

    /// Runs one verb on both sides and checks that they agree on success
    /// and on the resulting symlinks.
    fn both(&self, verb: &str, names: &[&str]) {
        let mut args = vec![verb];
        args.extend_from_slice(names);
        let (sd_ok, _, sd_err) = self.systemctl(&args);
        let installer = Installer::new(&self.loader);
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let ours = match verb {
            "enable" => installer.enable(&names),
            "disable" => installer.disable(&names),
            "reenable" => installer.reenable(&names),
            "mask" => installer.mask(&names),
            "unmask" => installer.unmask(&names),
            other => panic!("no verb {other}"),
        };
        assert_eq!(
            ours.is_ok(),
            sd_ok,
            "{verb} {names:?}: corral {ours:?}, systemctl said {sd_err}"
        );
        assert_eq!(
            self.corral_layout(),
            self.systemd_layout(),
            "after {verb} {names:?} (systemctl said: {sd_err})"
        );
    }

    fn states_agree(&self, names: &[&str]) {
        let installer = Installer::new(&self.loader);
        for name in names {
            let (ok, out, _) = self.systemctl(&["is-enabled", name]);
            let ours = installer.is_enabled(name);
            match ours {
                Ok(state) => {
                    assert_eq!(state.as_str(), out.trim(), "is-enabled {name}");
                    assert_eq!(state.is_enabled(), ok, "exit status of is-enabled {name}");
                }
                Err(e) => {
                    assert!(
                        !ok && out.is_empty(),
                        "is-enabled {name}: corral {e}, systemctl {out}"
                    )
                }
            }
        }
    }
}

#[test]
fn symlinks_match_debian_systemctl_step_by_step() {
    let Some(p) = Pair::new() else { return };
    let all = [
        "mpd.service",
        "mpd.socket",
        "pipewire.service",
        "pipewire.socket",
        "pulseaudio.service",
        "dbus-broker.service",
        "dbus.service",
        "obex.service",
        "foot-server@.service",
        "foot-server@wayland-1.service",
        "foot-server@wayland-9.service",
        "wireplumber@main.service",
        "offlineimap@work.service",
        "memcached@.service",
        "memcached@11212.service",
        "memcached@1.service",
        "mc@11212.service",
        "di@.service",
        "static.service",
        "also.service",
        "aliased.service",
        "al.service",
        "gnome-keyring-daemon.service",
        "nosuch.service",
    ];
    p.states_agree(&all);
    p.both(
        "enable",
        &[
            "mpd.service",
            "pipewire.service",
            "pulseaudio.service",
            "dbus-broker.service",
            "obex.service",
        ],
    );
    p.both(
        "enable",
        &[
            "foot-server@wayland-1.service",
            "foot-server@wayland-1.socket",
            "wireplumber@main.service",
            "offlineimap@work.service",
            "memcached@11212",
            "di@.service",
            "aliased.service",
            "also.service",
        ],
    );
    p.states_agree(&all);
    p.both("enable", &["nosuch.service"]);
    p.both("enable", &["static.service"]);
    p.both("mask", &["gnome-keyring-daemon.service", "nosuch.service"]);
    p.both("mask", &["static.service"]);
    p.both("enable", &["gnome-keyring-daemon.service"]);
    p.states_agree(&all);
    p.both("disable", &["gnome-keyring-daemon.service"]);
    p.both("disable", &["pulseaudio.service", "memcached@.service"]);
    p.both("enable", &["memcached@11213"]);
    p.both("disable", &["al.service"]);
    p.states_agree(&all);
    p.both(
        "unmask",
        &["gnome-keyring-daemon.service", "nosuch.service"],
    );
    p.both("reenable", &["mpd.service"]);
    p.both(
        "disable",
        &["also.service", "pipewire.service", "nosuch.service"],
    );
    p.both("disable", &["memcached@11213"]);
    p.states_agree(&all);
}

#[test]
fn messages_are_systemctls() {
    let Some(p) = Pair::new() else { return };
    let i = Installer::new(&p.loader);
    let out = i.enable(&["memcached@11212".into()]).unwrap();
    let units = p.units.display().to_string();
    assert_eq!(
        out.changes
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        [
            format!("Created symlink {units}/mc@11212.service → {units}/memcached@.service."),
            format!(
                "Created symlink {units}/default.target.wants/memcached@11212.service → {units}/memcached@.service."
            ),
        ]
    );
    assert!(out.warnings.is_empty(), "default.target is built in");
    let out = i.enable(&["pipewire.service".into()]).unwrap();
    assert!(
        out.warnings.iter().any(|w| w
            == &format!(
                "Unit {}/pipewire.socket is added as a dependency to a non-existent unit sockets.target.",
                p.vendor.display()
            )),
        "{:?}",
        out.warnings
    );
    let out = i.disable(&["memcached@11212".into()]).unwrap();
    assert_eq!(
        out.changes
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        [format!(
            "Removed \"{units}/default.target.wants/memcached@11212.service\"."
        )]
    );
    assert_eq!(
        i.enable(&["nosuch".into()]).unwrap_err().to_string(),
        "Failed to enable unit, unit nosuch.service does not exist."
    );
    assert_eq!(
        i.mask(&["static.service".into()]).unwrap_err().to_string(),
        format!("Failed to mask unit, file \"{units}/static.service\" already exists.")
    );
    let out = i.enable(&["static.service".into()]).unwrap();
    assert!(out.changes.is_empty());
    assert_eq!(out.warnings, [NO_INSTALL_INFO]);
    let out = i.mask(&["mpd.service".into()]).unwrap();
    assert_eq!(
        out.changes[0].to_string(),
        format!("Created symlink {units}/mpd.service → /dev/null.")
    );
    assert_eq!(
        i.enable(&["mpd.service".into()]).unwrap_err().to_string(),
        format!("Failed to enable unit, unit {units}/mpd.service is masked.")
    );
    assert_eq!(i.is_enabled("mpd").unwrap(), EnablementState::Masked);
    let out = i.unmask(&["mpd.service".into()]).unwrap();
    assert_eq!(
        out.changes[0].to_string(),
        format!("Removed \"{units}/mpd.service\".")
    );
    let err = i.enable(&["foot-server@.service".into()]).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("Failed to enable foot-server@.service, destination unit wayland-instance@.target is a non-template unit."),
        "{err}"
    );
}

#[test]
fn runit_services_are_enabled_by_their_down_file() {
    let tmp = tempfile::tempdir().unwrap();
    let sv = tmp.path().join("service");
    let svc = sv.join("web");
    fs::create_dir_all(&svc).unwrap();
    fs::write(svc.join("run"), "#!/bin/sh\nexec sleep 1000\n").unwrap();
    fs::set_permissions(
        svc.join("run"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let loader = Loader::new(
        vec![tmp.path().join("units")],
        vec![sv.clone()],
        SpecifierContext::current(),
    );
    let i = Installer::new(&loader);
    assert_eq!(i.is_enabled("web").unwrap(), EnablementState::Enabled);
    let out = i.disable(&["web".into()]).unwrap();
    assert_eq!(
        out.changes,
        [Change::Created {
            path: svc.join("down")
        }]
    );
    assert_eq!(i.is_enabled("web").unwrap(), EnablementState::Disabled);
    let out = i.enable(&["web".into()]).unwrap();
    assert_eq!(
        out.changes,
        [Change::Removed {
            path: svc.join("down")
        }]
    );
    assert!(!svc.join("down").exists());
}
