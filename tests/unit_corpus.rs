//! Walks every file of the shared corpus (real Debian 12 unit files and
//! runit directories) and requires: no panic, no error, and warnings only
//! for what corral does not support.
//!
//! The corpus was extracted without symlinks: a package's symlink
//! (`mysql.service -> mariadb.service`, a mask `-> /dev/null`, a `.wants/`
//! link) is a plain file holding the target, without a newline. systemd
//! (and corral by default) would read such a file as a broken unit file, so
//! these tests read the corpus with stored symlinks recognised
//! (`Loader::with_stored_symlinks`, `verify --stored-symlinks`).

mod common;

use std::path::{Path, PathBuf};

use common::corpus::corpus;

use corral::unit::verify::{VerifyOptions, VerifyReport, verify_paths_with_options};
use corral::unit::{
    Diagnostic, DiagnosticKind, Loader, Severity, SpecifierContext, UnitFileState, UnitName,
};

const ROOTS: [&str; 3] = ["systemd-user", "systemd-system", "runit"];

/// `corral verify --stored-symlinks` over `paths`.
fn verify_paths(paths: &[PathBuf]) -> VerifyReport {
    verify_paths_with_options(
        paths,
        SpecifierContext::current(),
        VerifyOptions {
            stored_symlinks: true,
            ..VerifyOptions::default()
        },
    )
}

fn acceptable(d: &Diagnostic) -> bool {
    d.severity == Severity::Warning
        && matches!(
            d.kind,
            DiagnosticKind::Unsupported | DiagnosticKind::NotSupportedYet
        )
        && (d.message.contains("unsupported") || d.message.contains("not supported yet"))
}

fn check(report: &VerifyReport, what: &str) {
    let bad: Vec<String> = report
        .diagnostics
        .iter()
        .filter(|d| !acceptable(d))
        .map(|d| d.to_string())
        .collect();
    assert!(
        bad.is_empty(),
        "{what}: unexpected diagnostics:\n{}",
        bad.join("\n")
    );
    assert!(
        report.io_errors.is_empty(),
        "{what}: {:?}",
        report.io_errors
    );
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() && !p.is_symlink() {
            walk(&p, out);
        }
        out.push(p);
    }
}

#[test]
fn whole_corpus_verifies_clean() {
    let Some(c) = corpus() else { return };
    let roots: Vec<PathBuf> = ROOTS.iter().map(|r| c.join(r)).collect();
    let report = verify_paths(&roots);
    check(&report, "corpus");
    // 257 .service, 39 .target, 24 .socket, 19 .timer, 3 .path and the runit services.
    assert!(report.units > 380, "only {} units found", report.units);
    eprintln!(
        "corpus: {} units, {} drop-ins, {} warnings",
        report.units,
        report.dropins,
        report.warning_count()
    );
}

#[test]
fn every_file_alone_never_panics_and_units_are_clean() {
    let Some(c) = corpus() else { return };
    let mut files = Vec::new();
    for r in ROOTS {
        walk(&c.join(r), &mut files);
    }
    assert!(files.len() > 600, "only {} files", files.len());
    let mut checked = 0;
    for f in &files {
        let report = std::panic::catch_unwind(|| verify_paths(std::slice::from_ref(f)))
            .unwrap_or_else(|_| panic!("verify panicked on {}", f.display()));
        let name = f.file_name().unwrap().to_string_lossy();
        let parent_is_dropin = f
            .parent()
            .and_then(Path::file_name)
            .is_some_and(|p| p.to_string_lossy().ends_with(".d"));
        let is_definition = UnitName::parse_strict(&name).is_ok()
            || (name.ends_with(".conf") && parent_is_dropin)
            || f.is_dir()
            || (name == "run" && corral::unit::RunitService::probe(f.parent().unwrap()).is_some());
        if is_definition {
            check(&report, &f.display().to_string());
            checked += 1;
        }
    }
    assert!(checked > 400, "only {checked} definitions checked");
}

#[test]
fn loader_loads_every_unit_of_every_package() {
    let Some(c) = corpus() else { return };
    let spec = SpecifierContext::current();
    let mut loaded = 0;
    for r in ["systemd-user", "systemd-system"] {
        let mut pkgs: Vec<_> = std::fs::read_dir(c.join(r))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        pkgs.sort();
        for pkg in pkgs {
            let loader =
                Loader::new(vec![pkg.clone()], Vec::new(), spec.clone()).with_stored_symlinks(true);
            for (name, path, state) in loader.list() {
                // A template is loaded through an instance, as it would run.
                let name = if name.is_template() {
                    name.with_instance("corpus").unwrap()
                } else {
                    name
                };
                let u = loader
                    .load(&name)
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                if let UnitFileState::Alias(target) = &state {
                    // Aliases of units that the package does not ship are fine
                    // as long as they resolve to the target's name.
                    assert_eq!(&u.name, target, "{}", path.display());
                }
                let bad: Vec<String> = u
                    .diagnostics
                    .iter()
                    .filter(|d| !acceptable(d))
                    .map(|d| d.to_string())
                    .collect();
                assert!(bad.is_empty(), "{}:\n{}", name, bad.join("\n"));
                loaded += 1;
            }
        }
    }
    let runit = c.join("runit");
    let mut dirs: Vec<_> = std::fs::read_dir(&runit)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    dirs.sort();
    for pkg in dirs {
        let loader = Loader::new(Vec::new(), vec![pkg.clone()], spec.clone());
        for (name, _, _) in loader.list() {
            let u = loader.load(&name).unwrap();
            assert!(
                u.diagnostics.iter().all(acceptable),
                "{name}: {:?}",
                u.diagnostics
            );
            loaded += 1;
        }
    }
    eprintln!("loaded {loaded} units through the loader");
    assert!(loaded > 380);
}

#[test]
fn stored_symlinks_are_plain_files_unless_asked_for() {
    let Some(c) = corpus() else { return };
    // Debian's mask of mdadm.service and alias mysql.service, as stored here.
    let mask = c.join("systemd-system/mdadm/mdadm.service");
    let alias = c.join("systemd-system/mariadb-server/mysql.service");
    let plain = corral::unit::verify::verify_paths_with(
        &[mask.clone(), alias.clone()],
        SpecifierContext::current(),
    );
    let errors: Vec<String> = plain
        .diagnostics
        .iter()
        .filter(|d| d.is_error())
        .map(|d| d.to_string())
        .collect();
    assert!(
        errors
            .iter()
            .any(|e| e.contains("mdadm.service:1: error: missing '=' in '/dev/null'")),
        "{errors:#?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.contains("mysql.service:1: error: missing '='")),
        "{errors:#?}"
    );
    let stored = verify_paths(&[mask, alias]);
    assert!(!stored.has_errors(), "{:?}", stored.diagnostics);
}

/// Every `.timer` of the corpus loads into a typed `[Timer]` with at least
/// one value and no error, and triggers a unit.
#[test]
fn every_corpus_timer_is_a_typed_timer() {
    let Some(root) = corpus() else {
        return;
    };
    let mut seen = 0;
    let mut stack = vec![root];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            if p.extension().is_none_or(|x| x != "timer") {
                continue;
            }
            let loader =
                Loader::new(vec![], vec![], SpecifierContext::current()).with_stored_symlinks(true);
            let u = loader.load_file(&p).unwrap();
            if u.masked {
                continue;
            }
            let errors: Vec<String> = u.errors().map(|d| d.to_string()).collect();
            assert!(errors.is_empty(), "{}: {errors:?}", p.display());
            let t = u.timer.as_ref().expect("a timer section");
            assert!(t.has_values(), "{}", p.display());
            assert!(t.triggered_unit(&u.name).is_some(), "{}", p.display());
            seen += 1;
        }
    }
    assert!(seen >= 5, "only {seen} corpus timers");
}

#[test]
fn every_socket_unit_reads_into_a_socket_definition() {
    use corral::unit::{Listen, SocketAddress, SocketType};
    let Some(c) = corpus() else { return };
    let spec = SpecifierContext::current();
    let mut files = Vec::new();
    for r in ["systemd-user", "systemd-system"] {
        walk(&c.join(r), &mut files);
    }
    let mut sockets = 0;
    for f in files
        .iter()
        .filter(|f| f.extension().is_some_and(|e| e == "socket"))
    {
        let loader = Loader::new(
            vec![f.parent().unwrap().to_path_buf()],
            Vec::new(),
            spec.clone(),
        )
        .with_stored_symlinks(true);
        let name = UnitName::parse_strict(&f.file_name().unwrap().to_string_lossy()).unwrap();
        // A template is loaded through an instance, as it would run.
        let name = if name.is_template() {
            name.with_instance("corpus").unwrap()
        } else {
            name
        };
        let u = loader.load(&name).unwrap();
        let errors: Vec<String> = u.errors().map(|d| d.to_string()).collect();
        assert!(errors.is_empty(), "{}: {errors:?}", f.display());
        let s = u
            .socket
            .as_ref()
            .unwrap_or_else(|| panic!("{}", f.display()));
        assert!(!s.listen.is_empty(), "{}", f.display());
        sockets += 1;
        if f.ends_with("systemd-user/mpd/mpd.socket") {
            assert_eq!(
                s.listen,
                [
                    Listen::Socket {
                        kind: SocketType::Stream,
                        address: SocketAddress::Path(spec.runtime_dir.join("mpd/socket")),
                    },
                    Listen::Socket {
                        kind: SocketType::Stream,
                        address: SocketAddress::Port(6600),
                    },
                ]
            );
            assert_eq!(s.backlog, Some(5));
            assert!(s.pass_credentials);
            assert!(s.keep_alive);
        }
        if f.ends_with("mariadb-server/mariadb-extra@.socket") {
            assert_eq!(
                s.service.as_ref().unwrap().as_str(),
                "mariadb@corpus.service"
            );
            assert_eq!(s.fd_name(&u.name), "extra");
        }
    }
    // 9 user and 15 system socket units.
    assert_eq!(sockets, 24);
}
