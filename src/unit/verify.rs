//! `corral verify PATH...`: checks unit files, drop-ins and runit service
//! directories without a running manager.

use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::file::{UserFile, refusal};
use super::loader::{
    Loader, apply_file, build, collect_dropins, dropin_dir_names, from_text, is_masked_file,
    is_masked_file_with, link_target_with,
};
use super::model::{Applier, Unit};
use super::name::{UnitKind, UnitName};
use super::runit::RunitService;
use super::specifier::SpecifierContext;
use super::{Diagnostic, DiagnosticKind, Severity, UnitError};

/// What `verify_paths` found.
#[derive(Debug, Default)]
pub struct VerifyReport {
    /// Every error and warning, in path order.
    pub diagnostics: Vec<Diagnostic>,
    /// Paths that could not be read at all (missing, permission denied).
    pub io_errors: Vec<UnitError>,
    /// How many units (files or runit directories) were checked.
    pub units: usize,
    /// How many standalone drop-in files were checked.
    pub dropins: usize,
}

impl VerifyReport {
    /// Number of error diagnostics.
    pub fn error_count(&self) -> usize {
        self.diagnostics.iter().filter(|d| d.is_error()).count()
    }

    /// Number of warning diagnostics.
    pub fn warning_count(&self) -> usize {
        self.diagnostics.len() - self.error_count()
    }

    /// Whether there is any error: an error diagnostic or a path that
    /// could not be read.
    pub fn has_errors(&self) -> bool {
        self.error_count() > 0 || !self.io_errors.is_empty()
    }
}

/// How `verify` reads what it is given.
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// Read plain files that hold only a unit name or `/dev/null` (no
    /// newline) as the symlinks they stand for
    /// ([`super::loader::stored_link_target`]), for trees extracted
    /// without symlinks.
    pub stored_symlinks: bool,
    /// The cgroup a manager would run the units under; with it, resource
    /// directives whose controller it does not enable (`TasksMax=` without
    /// `pids`) are warnings, as `corral status` notes them.
    pub cgroup: Option<UnitCgroup>,
}

/// A cgroup units run under, and what its `cgroup.subtree_control` enables.
#[derive(Debug, Clone)]
pub struct UnitCgroup {
    /// The cgroup's path.
    pub root: PathBuf,
    /// The controllers enabled for its children.
    pub enabled: Vec<String>,
}

impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.diagnostics {
            writeln!(f, "{d}")?;
        }
        for e in &self.io_errors {
            writeln!(f, "error: {e}")?;
        }
        Ok(())
    }
}

/// Whether a file name looks like a unit file (`*.service`, `*.target`, ...).
fn unit_name_of(path: &Path) -> Option<UnitName> {
    let f = path.file_name()?.to_string_lossy();
    UnitName::parse_strict(&f).ok()
}

/// The unit kind a drop-in directory applies to (`foo.service.d` -> service).
fn dropin_dir_unit(dir: &Path) -> Option<UnitName> {
    let f = dir.file_name()?.to_string_lossy().into_owned();
    let stem = f.strip_suffix(".d")?;
    if let Ok(n) = UnitName::parse_strict(stem) {
        return Some(n);
    }
    // Type-wide drop-ins: `service.d/`.
    let kind = UnitKind::from_suffix(stem)?;
    UnitName::parse_strict(&format!("dropin.{}", kind.suffix())).ok()
}

struct Verifier {
    spec: SpecifierContext,
    opts: VerifyOptions,
    report: VerifyReport,
    /// Drop-ins already checked as part of a unit.
    consumed: HashSet<PathBuf>,
    /// Diagnostics already reported (a drop-in shared by several units).
    seen: HashSet<(PathBuf, usize, String, String)>,
    /// Directories entered, by (device, inode), so symlink loops end.
    visited: HashSet<(u64, u64)>,
    /// Entry names per directory, so absent drop-in directories cost no syscalls.
    listings: HashMap<PathBuf, HashSet<OsString>>,
}

impl Verifier {
    fn push_unit(&mut self, u: Unit) {
        self.report.units += 1;
        if let (Some(c), Some(s)) = (&self.opts.cgroup, &u.service) {
            let file = u
                .fragment()
                .unwrap_or_else(|| PathBuf::from(u.name.as_str()));
            for (directive, message) in s.unapplied_resources(&c.root, &c.enabled) {
                self.push(Diagnostic {
                    file: file.clone(),
                    line: 0,
                    directive: directive.trim_end_matches('=').to_string(),
                    severity: Severity::Warning,
                    kind: DiagnosticKind::Unsupported,
                    message,
                    fatal: false,
                });
            }
        }
        for d in u.diagnostics {
            self.push(d);
        }
    }

    fn push(&mut self, d: Diagnostic) {
        let key = (
            d.file.clone(),
            d.line,
            d.directive.clone(),
            d.message.clone(),
        );
        if self.seen.insert(key) {
            self.report.diagnostics.push(d);
        }
    }

    fn error(&mut self, path: &Path, message: String) {
        self.push(Diagnostic {
            file: path.to_path_buf(),
            line: 0,
            directive: String::new(),
            severity: Severity::Error,
            kind: DiagnosticKind::Invalid,
            message,
            fatal: false,
        });
    }

    /// Reports what the manager would refuse in the alias symlinks that
    /// start at `p` (a loop, a chain too long), following them as it does,
    /// in `p`'s directory.
    fn alias_chain(&mut self, p: &Path, name: &UnitName) {
        let dir = p.parent().unwrap_or(Path::new(".")).to_path_buf();
        let loader = Loader::new(vec![dir], Vec::new(), self.spec.clone())
            .with_stored_symlinks(self.opts.stored_symlinks);
        if let Some(e) = loader.alias_error(name) {
            self.error(p, e.to_string());
        }
    }

    fn path(&mut self, p: &Path, explicit: bool) {
        // Unit symlinks are judged by their target's name, not followed
        // blindly: /dev/null masks, and an alias target may live in another
        // directory of the search path.
        if std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_symlink())
            && let Some(t) = std::fs::read_link(p).ok()
        {
            let masks = t == Path::new("/dev/null");
            let own = p.file_name();
            let unit_target = t.file_name().is_some_and(|b| {
                Some(b) != own && UnitName::parse_strict(&b.to_string_lossy()).is_ok()
            });
            let dropin = p.extension().is_some_and(|e| e == "conf");
            if masks && (unit_name_of(p).is_some() || dropin) {
                self.report.units += usize::from(!dropin);
                return;
            }
            if unit_target
                && let Some(name) = unit_name_of(p)
                && !p.exists()
            {
                // An alias whose target is in another directory, or a loop.
                self.alias_chain(p, &name);
                self.report.units += 1;
                return;
            }
        }
        let md = match std::fs::metadata(p) {
            Ok(m) => m,
            Err(source) => {
                if explicit {
                    self.report.io_errors.push(UnitError::Io {
                        op: "read",
                        path: p.to_path_buf(),
                        source,
                    });
                } else if std::fs::symlink_metadata(p).is_ok() && unit_name_of(p).is_some() {
                    // A dangling unit symlink: report it, it would fail to load.
                    self.error(p, format!("dangling symlink: {source}"));
                }
                return;
            }
        };
        if md.is_dir() {
            if self.visited.insert((md.dev(), md.ino())) {
                self.dir(p, explicit);
            }
        } else if md.is_file() {
            self.file(p, explicit);
        } else if explicit || unit_name_of(p).is_some() {
            let what = if p.extension().is_some_and(|e| e == "conf") {
                UserFile::Dropin
            } else {
                UserFile::Unit
            };
            match refusal(p, &md, what) {
                Some(super::UnitError::Refused { reason, .. }) => self.error(p, reason),
                Some(e) => self.error(p, e.to_string()),
                // /dev/null itself: a masked unit.
                None => self.report.units += 1,
            }
        }
    }

    fn dir(&mut self, d: &Path, explicit: bool) {
        let run = d.join("run");
        let runit = RunitService::probe(d);
        if runit.is_none() && std::fs::metadata(&run).is_ok_and(|m| m.is_file()) {
            // runsv could not execute it either; corral does not see a service here.
            self.error(
                &run,
                format!(
                    "run is not executable, so runsv (and corral) would not run this service; make it executable: chmod +x {}",
                    run.display()
                ),
            );
            return;
        }
        if let Some(r) = runit {
            match r.to_unit() {
                Ok(u) => self.push_unit(u),
                Err(e) => self.error(
                    d,
                    format!("runit service directory with an unusable name: {e}"),
                ),
            }
            return;
        }
        let name = d
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name.ends_with(".wants") || name.ends_with(".requires") {
            // Enablement symlinks; their targets are checked where they live.
            return;
        }
        // (is a directory, path); symlinks to directories count as directories.
        let mut entries: Vec<(bool, PathBuf)> = match std::fs::read_dir(d) {
            Ok(rd) => rd
                .flatten()
                .map(|e| {
                    let p = e.path();
                    let is_dir = match e.file_type() {
                        Ok(t) if t.is_symlink() => p.is_dir(),
                        Ok(t) => t.is_dir(),
                        Err(_) => false,
                    };
                    (is_dir, p)
                })
                .collect(),
            Err(source) => {
                self.report.io_errors.push(UnitError::Io {
                    op: "list directory",
                    path: d.to_path_buf(),
                    source,
                });
                return;
            }
        };
        // Units first, so their drop-ins are checked with them.
        entries.sort();
        let is_dropin_dir = name.ends_with(".d") && dropin_dir_unit(d).is_some();
        for (is_dir, e) in entries {
            let fname = e
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if fname.starts_with('.') {
                continue;
            }
            if is_dropin_dir {
                if fname.ends_with(".conf") && !self.consumed.contains(&e) {
                    self.dropin(&e);
                }
                continue;
            }
            if is_dir || unit_name_of(&e).is_some() {
                self.path(&e, false);
            }
        }
        let _ = explicit;
    }

    fn file(&mut self, f: &Path, explicit: bool) {
        let parent = f.parent().unwrap_or(Path::new("."));
        if f.file_name().is_some_and(|n| n == "run")
            && let Some(r) = RunitService::probe(parent)
        {
            match r.to_unit() {
                Ok(u) => self.push_unit(u),
                Err(e) => self.error(
                    parent,
                    format!("runit service directory with an unusable name: {e}"),
                ),
            }
            return;
        }
        if explicit && f.file_name().is_some_and(|n| n == "run") {
            self.error(
                f,
                format!(
                    "run is not executable, so runsv (and corral) would not run this service; make it executable: chmod +x {}",
                    f.display()
                ),
            );
            return;
        }
        if f.extension().is_some_and(|e| e == "conf") && dropin_dir_unit(parent).is_some() {
            if !self.consumed.contains(f) {
                self.dropin(f);
            }
            return;
        }
        let Some(name) = unit_name_of(f) else {
            if explicit {
                self.error(
                    f,
                    "not a unit file: the name must end in .service, .target, .socket, .timer, .path, .slice, ... (or give a runit service directory)"
                        .to_string(),
                );
            }
            return;
        };
        let stored = self.opts.stored_symlinks;
        let link = link_target_with(f, stored);
        // A stored link to /dev/null is in `link` already: no second read.
        if link.as_deref() == Some(Path::new("/dev/null")) || is_masked_file(f) {
            // A masked unit: nothing to check.
            self.report.units += 1;
            return;
        }
        let mut names = vec![name.clone()];
        if let Some(t) = &link
            && let Some(b) = t.file_name()
            && let Ok(real) = UnitName::parse_strict(&b.to_string_lossy())
            && real != name
        {
            let target = if t.is_absolute() {
                t.clone()
            } else {
                parent.join(t)
            };
            if !target.is_file() || link_target_with(&target, stored).is_some() {
                // An alias whose target is elsewhere (or another alias): the
                // target is checked where it is; nothing here to parse.
                self.alias_chain(f, &name);
                self.report.units += 1;
                return;
            }
            names.insert(0, real);
        }
        // The drop-ins beside the file belong to it, as in a search path.
        let listing = self
            .listings
            .entry(parent.to_path_buf())
            .or_insert_with(|| {
                std::fs::read_dir(parent)
                    .map(|rd| rd.flatten().map(|e| e.file_name()).collect())
                    .unwrap_or_default()
            });
        let dirs: Vec<PathBuf> = dropin_dir_names(&names)
            .into_iter()
            .filter(|d| listing.contains(OsStr::new(d)))
            .map(|d| parent.join(d))
            .collect();
        let dropins = collect_dropins(&dirs, stored);
        self.consumed.extend(dropins.iter().cloned());
        let fragment = match link {
            Some(t) if t.is_absolute() => t,
            Some(t) => parent.join(t),
            None => f.to_path_buf(),
        };
        let u = build(&names[0], Some(&fragment), &dropins, &self.spec);
        self.push_unit(u);
    }

    fn dropin(&mut self, f: &Path) {
        let parent = f.parent().unwrap_or(Path::new("."));
        let Some(name) = dropin_dir_unit(parent) else {
            return;
        };
        if is_masked_file_with(f, self.opts.stored_symlinks) {
            // A masking drop-in: it removes lower ones of that name.
            return;
        }
        self.report.dropins += 1;
        let mut u = Unit::new(name);
        let mut applier = Applier::new(&self.spec);
        // A drop-in alone is partial: only its own lines are checked. It is
        // read as the manager reads it (regular files only, size cap).
        apply_file(&mut u, &mut applier, f);
        for d in u.diagnostics {
            self.push(d);
        }
    }
}

/// Checks files and directories (recursively); runit service directories
/// are recognised by their executable `run`.
pub fn verify_paths(paths: &[PathBuf]) -> VerifyReport {
    verify_paths_with(paths, SpecifierContext::current())
}

/// [`verify_paths`] with a given specifier context.
pub fn verify_paths_with(paths: &[PathBuf], spec: SpecifierContext) -> VerifyReport {
    verify_paths_with_options(paths, spec, VerifyOptions::default())
}

/// [`verify_paths`] with a given specifier context and options.
pub fn verify_paths_with_options(
    paths: &[PathBuf],
    spec: SpecifierContext,
    opts: VerifyOptions,
) -> VerifyReport {
    let mut v = Verifier {
        spec,
        opts,
        report: VerifyReport::default(),
        consumed: HashSet::new(),
        seen: HashSet::new(),
        visited: HashSet::new(),
        listings: HashMap::new(),
    };
    for p in paths {
        v.path(p, true);
    }
    v.report
}

/// Parses unit text as if it were the file `name` (a unit name), with no
/// drop-ins and nothing read from disk, and runs the run-time expansion of
/// its commands: the entry point of the fuzz target. Never panics.
pub fn check_text(name: &str, text: &str) -> Vec<Diagnostic> {
    let name = UnitName::parse(name)
        .unwrap_or_else(|_| UnitName::parse_strict("fuzz.service").expect("a constant valid name"));
    let spec = SpecifierContext::example();
    let u = from_text(&name, Path::new(name.as_str()), text, &spec);
    // Exercise the run-time half too: expansion of every command.
    if let Some(s) = &u.service {
        let env = |k: &str| {
            s.environment
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
        };
        for c in s.exec_start.iter().chain(&s.exec_stop) {
            let _ = c.expand(&env);
            let _ = c.to_string();
        }
    }
    u.diagnostics.into()
}

/// Names the fuzz entry point gives the text, chosen by the input's first byte.
const FUZZ_NAMES: [&str; 6] = [
    "fuzz.service",
    "fuzz@inst\\x2dx.service",
    "fuzz@.service",
    "fuzz.target",
    "fuzz.socket",
    "a-b-c.timer",
];

/// Feeds arbitrary bytes to every parser of this module: as a unit file
/// (through [`check_text`]), as an environment file, as an Exec line, and as
/// the scalar value syntaxes. The fuzz target and the bounded mutation test
/// both call this; it must never panic.
pub fn fuzz_one(data: &[u8]) {
    let (sel, rest) = match data.split_first() {
        Some((s, r)) => (*s as usize, r),
        None => (0, data),
    };
    let text = String::from_utf8_lossy(rest);
    let _ = check_text(FUZZ_NAMES[sel % FUZZ_NAMES.len()], &text);
    let _ = super::envfile::parse_str(&text);
    let spec = SpecifierContext::example();
    let name = UnitName::parse_strict("fuzz@i.service").expect("a constant valid name");
    let mut expand = |s: &str| spec.expand(s, &name, None).map_err(|e| e.to_string());
    let p = super::exec::parse_exec(&text, &mut expand);
    for c in &p.commands {
        let _ = c.expand(&|k: &str| k.len().is_multiple_of(2).then(|| text.to_string()));
        let _ = c.resolve_program("/nonexistent");
    }
    // The raw bytes too, as the loader reads files (NUL and CR end lines).
    let _ = super::syntax::parse_bytes(std::path::Path::new("fuzz.service"), rest);
    let line = text.lines().next().unwrap_or("");
    let _ = super::values::parse_timespan(line);
    let _ = super::values::parse_size(line);
    let _ = super::values::parse_signal(line);
    let _ = super::values::parse_percent_permyriad(line);
    let _ = super::model::parse_std_output(line);
    for (r, _) in super::model::ResourceLimit::ALL {
        let _ = super::model::parse_rlimit(r, line);
    }
    let _ = UnitName::parse(line);
    let _ = super::name::unescape(line);
    let _ = super::condition::brace_expand(line);
    let _ = super::condition::wildcard_match(line, &text);
}
