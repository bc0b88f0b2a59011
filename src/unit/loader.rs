//! Finding and loading units: search-path precedence, templates, drop-ins
//! (also per template, per instance and per name prefix), masking, alias
//! symlinks, `.wants/`/`.requires/` directories, and runit directories.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use super::file::{UserFile, is_dev_null, read_user_file};
use super::model::{Applier, Explicit, Unit};
use super::name::{UnitKind, UnitName};
use super::runit::RunitService;
use super::specifier::SpecifierContext;
use super::syntax;
use super::{Diagnostic, DiagnosticKind, Severity, UnitError};

/// How many alias symlinks are followed before giving up.
const MAX_ALIAS_HOPS: usize = 32;

/// Whether systemd 252 knows this directive (see [`super::known`]).
pub fn is_known_systemd_directive(section: &str, key: &str) -> bool {
    super::known::is_known(section, key)
}

/// The state `corral list-unit-files` shows for a unit file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnitFileState {
    /// Linked from some `X.wants/` or `X.requires/` directory (runit: no `down` file).
    Enabled,
    /// Has an `[Install]` section but is not linked (runit: a `down` file exists).
    Disabled,
    /// No `[Install]` section: only started as a dependency or by hand.
    Static,
    /// A symlink to /dev/null or an empty file.
    Masked,
    /// A symlink to another unit name.
    Alias(UnitName),
    /// A template (`foo@.service`): only its instances run.
    Template,
}

impl std::fmt::Display for UnitFileState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UnitFileState::Enabled => f.write_str("enabled"),
            UnitFileState::Disabled => f.write_str("disabled"),
            UnitFileState::Static => f.write_str("static"),
            UnitFileState::Masked => f.write_str("masked"),
            UnitFileState::Alias(t) => write!(f, "alias ({t})"),
            UnitFileState::Template => f.write_str("template"),
        }
    }
}

/// Finds unit files and runit directories and loads them into [`Unit`]s.
#[derive(Debug, Clone)]
pub struct Loader {
    /// Unit directories, highest priority first.
    unit_paths: Vec<PathBuf>,
    /// Directories whose subdirectories are runit services.
    runit_dirs: Vec<PathBuf>,
    /// What specifiers expand to.
    spec: SpecifierContext,
    /// Read plain files that hold only a unit name or /dev/null as the
    /// symlinks they stand for ([`stored_link_target`]).
    stored_symlinks: bool,
}

/// The result of looking a name up in the search path.
enum Found {
    File { path: PathBuf },
    Masked { path: PathBuf },
}

/// The target of a unit symlink (`/dev/null`, `mariadb.service`). Only real
/// symlinks count, as in systemd: a plain file is a unit file whatever it
/// holds (see [`stored_link_target`] for trees that store symlinks as files).
pub fn link_target(p: &Path) -> Option<PathBuf> {
    std::fs::read_link(p).ok()
}

/// The target a *stored* symlink names: a small plain file whose whole
/// content, without a final newline, is `/dev/null` or a path ending in a
/// unit name. That is how git checkouts without symlink support and some
/// package extractions (the shared corpus among them) leave symlinks. It is
/// only read that way on request ([`Loader::with_stored_symlinks`],
/// `corral verify --stored-symlinks`): otherwise such a file is a unit file,
/// and a broken one.
pub fn stored_link_target(p: &Path) -> Option<PathBuf> {
    let md = std::fs::symlink_metadata(p).ok()?;
    if !md.is_file() || md.len() == 0 || md.len() > 4096 {
        return None;
    }
    let text = String::from_utf8(read_user_file(p, UserFile::StoredLink).ok()?).ok()?;
    if text.is_empty()
        || text.contains(|c: char| c.is_whitespace() || matches!(c, '=' | '[' | '#' | ';'))
    {
        return None;
    }
    if text == "/dev/null" {
        return Some(PathBuf::from(text));
    }
    let base = Path::new(&text).file_name()?.to_string_lossy().into_owned();
    UnitName::parse_strict(&base)
        .ok()
        .map(|_| PathBuf::from(text))
}

/// [`link_target`], and with `stored` also [`stored_link_target`].
pub fn link_target_with(p: &Path, stored: bool) -> Option<PathBuf> {
    link_target(p).or_else(|| if stored { stored_link_target(p) } else { None })
}

/// Masked, as systemd's `null_or_empty_path()` sees it: the path leads
/// (through symlinks) to /dev/null, or is an empty regular file.
pub fn is_masked_file(p: &Path) -> bool {
    if std::fs::read_link(p).is_ok_and(|t| t == Path::new("/dev/null")) {
        return true;
    }
    std::fs::metadata(p).is_ok_and(|m| (m.is_file() && m.len() == 0) || is_dev_null(&m))
}

/// [`is_masked_file`], and with `stored` also a stored symlink to /dev/null.
pub fn is_masked_file_with(p: &Path, stored: bool) -> bool {
    is_masked_file(p)
        || (stored && stored_link_target(p).is_some_and(|t| t == Path::new("/dev/null")))
}

impl Loader {
    /// A loader over the given directories.
    pub fn new(
        unit_paths: Vec<PathBuf>,
        runit_dirs: Vec<PathBuf>,
        spec: SpecifierContext,
    ) -> Loader {
        Loader {
            unit_paths,
            runit_dirs,
            spec,
            stored_symlinks: false,
        }
    }

    /// Reads plain files that hold only a unit name or `/dev/null` (no
    /// newline) as the symlinks they stand for ([`stored_link_target`]): for
    /// trees extracted without symlinks, such as the shared corpus. Off by
    /// default, as systemd reads every plain file as a unit file.
    pub fn with_stored_symlinks(mut self, on: bool) -> Loader {
        self.stored_symlinks = on;
        self
    }

    /// The default unit search path for a user: `$XDG_CONFIG_HOME/corral/units`,
    /// `/etc/corral/user`, `/usr/lib/corral/user`.
    pub fn default_unit_paths(spec: &SpecifierContext) -> Vec<PathBuf> {
        vec![
            spec.config_dir.join("corral/units"),
            PathBuf::from("/etc/corral/user"),
            PathBuf::from("/usr/lib/corral/user"),
        ]
    }

    /// The default runit directories: `$HOME/service` when it exists.
    pub fn default_runit_dirs(spec: &SpecifierContext) -> Vec<PathBuf> {
        // Kept whether or not it exists yet: a ~/service made after the
        // manager started is found at the next daemon-reload (a missing
        // directory reads as empty).
        vec![spec.home.join("service")]
    }

    /// A loader with the default paths for the running user.
    pub fn with_defaults() -> Loader {
        let spec = SpecifierContext::current();
        Loader::new(
            Loader::default_unit_paths(&spec),
            Loader::default_runit_dirs(&spec),
            spec,
        )
    }

    /// The unit directories, highest priority first.
    pub fn unit_paths(&self) -> &[PathBuf] {
        &self.unit_paths
    }

    /// The runit service directories' parents.
    pub fn runit_dirs(&self) -> &[PathBuf] {
        &self.runit_dirs
    }

    /// The specifier context units are expanded with.
    pub fn specifiers(&self) -> &SpecifierContext {
        &self.spec
    }

    /// Looks one exact name up in the search path (first directory wins).
    fn lookup(&self, name: &str) -> Option<(PathBuf, &Path)> {
        self.unit_paths.iter().find_map(|dir| {
            let p = dir.join(name);
            p.symlink_metadata().is_ok().then_some((p, dir.as_path()))
        })
    }

    /// Resolves a name to its fragment, following alias symlinks; returns the
    /// canonical name, what was found, and the alias names passed through.
    fn resolve(
        &self,
        name: &UnitName,
    ) -> Result<Option<(UnitName, Found, Vec<UnitName>)>, UnitError> {
        let mut current = name.clone();
        let mut aliases = Vec::new();
        for _ in 0..MAX_ALIAS_HOPS {
            let hit = self
                .lookup(current.as_str())
                .map(|(p, _)| (p, None))
                .or_else(|| {
                    let t = current.template()?;
                    self.lookup(t.as_str()).map(|(p, _)| (p, Some(t)))
                });
            let Some((path, via_template)) = hit else {
                return Ok(None);
            };
            if is_masked_file_with(&path, self.stored_symlinks) {
                return Ok(Some((current, Found::Masked { path }, aliases)));
            }
            if std::fs::metadata(&path).is_ok_and(|m| !m.is_file() && !m.is_dir()) {
                // A symlink to /dev/zero or a FIFO is no alias: loading it
                // as the unit file reports the refusal on the unit.
                return Ok(Some((current, Found::File { path }, aliases)));
            }
            let looked_up = via_template.clone().unwrap_or_else(|| current.clone());
            if let Some(target) = link_target_with(&path, self.stored_symlinks) {
                let base = target
                    .file_name()
                    .map(|b| b.to_string_lossy().into_owned())
                    .unwrap_or_default();
                if base != looked_up.as_str() {
                    // An alias: the target's name is the real one.
                    let real =
                        UnitName::parse_strict(&base).map_err(|_| UnitError::InvalidName {
                            name: base.clone(),
                            reason: format!(
                                "it is the target of the alias symlink {}",
                                path.display()
                            ),
                        })?;
                    let real = match (current.instance(), real.is_template()) {
                        (Some(i), true) => real.with_instance(i)?,
                        _ => real,
                    };
                    aliases.push(current.clone());
                    // A symlink to a file outside the search path is loaded from there.
                    let abs = if target.is_absolute() {
                        target.clone()
                    } else {
                        path.parent().unwrap_or(Path::new("/")).join(&target)
                    };
                    if self.lookup(real.as_str()).is_none()
                        && real
                            .template()
                            .and_then(|t| self.lookup(t.as_str()))
                            .is_none()
                        && abs.is_file()
                    {
                        return Ok(Some((real, Found::File { path: abs }, aliases)));
                    }
                    current = real;
                    continue;
                }
            }
            return Ok(Some((current, Found::File { path }, aliases)));
        }
        Err(UnitError::AliasLoop {
            name: name.to_string(),
            dir: self.unit_paths.first().cloned().unwrap_or_default(),
        })
    }

    /// Why `name`'s alias symlinks cannot be followed (a loop, a chain
    /// longer than 32, a target that is no unit name), as [`Loader::load`]
    /// would refuse it; None when they can (or there are none).
    pub fn alias_error(&self, name: &UnitName) -> Option<UnitError> {
        self.resolve(name).err()
    }

    /// The runit service for `name`, if one of the runit directories has it.
    pub fn find_runit(&self, name: &UnitName) -> Option<RunitService> {
        if name.kind() != UnitKind::Service || name.is_template() || name.is_instance() {
            return None;
        }
        self.runit_dirs
            .iter()
            .find_map(|d| RunitService::probe(&d.join(name.stem())))
    }

    /// Loads a unit by name.
    ///
    /// Unit files win over runit directories of the same name. Errors in
    /// the files do not fail the load: they are in `Unit::diagnostics` (see
    /// [`Unit::ensure_valid`]).
    pub fn load(&self, name: &UnitName) -> Result<Unit, UnitError> {
        match self.resolve(name)? {
            Some((real, Found::Masked { path }, aliases)) => {
                let mut u = Unit::new(real);
                u.set_fragment(path);
                u.masked = true;
                u.aliases = aliases.into();
                Ok(u)
            }
            Some((real, Found::File { path }, aliases)) => {
                let mut names = vec![real.clone()];
                names.extend(aliases.iter().cloned());
                let dropins = self.dropins(&names);
                let mut u = build(&real, Some(&path), &dropins, &self.spec);
                for a in aliases {
                    if !u.aliases.contains(&a) {
                        u.aliases.push(a);
                    }
                }
                add_install_aliases(&mut u);
                self.add_wants_dirs(&mut u);
                Ok(u)
            }
            None => match self.find_runit(name) {
                Some(r) => {
                    let mut u = r.to_unit()?;
                    // Drop-ins apply to runit services too (Environment=, RestartSec=, ...).
                    let dropins = self.dropins(std::slice::from_ref(&u.name));
                    if !dropins.is_empty() {
                        let mut applier = Applier::new(&self.spec);
                        applier.explicit = Explicit {
                            service_type: true,
                            ..Explicit::default()
                        };
                        for f in &dropins {
                            apply_file(&mut u, &mut applier, f);
                        }
                        applier.finish(&mut u);
                        u.dropins = dropins.into();
                    }
                    self.add_wants_dirs(&mut u);
                    Ok(u)
                }
                // No unit file, but drop-ins (as for scopes systemd creates at
                // run time): the unit is made of its drop-ins alone.
                None if self.has_own_dropins(name) => {
                    let dropins = self.dropins(std::slice::from_ref(name));
                    let mut u = build(name, None, &dropins, &self.spec);
                    self.add_wants_dirs(&mut u);
                    Ok(u)
                }
                None => Err(UnitError::NotFound {
                    name: name.to_string(),
                    searched: self
                        .unit_paths
                        .iter()
                        .chain(self.runit_dirs.iter())
                        .cloned()
                        .collect(),
                }),
            },
        }
    }

    /// Loads the unit file at `path` (named after the file), with the
    /// drop-ins of the search path and those in `NAME.d/` beside the file.
    pub fn load_file(&self, path: &Path) -> Result<Unit, UnitError> {
        let base = path
            .file_name()
            .map(|b| b.to_string_lossy().into_owned())
            .unwrap_or_default();
        let name = UnitName::parse_strict(&base)?;
        std::fs::metadata(path).map_err(|source| UnitError::Io {
            op: "read unit file",
            path: path.to_path_buf(),
            source,
        })?;
        if is_masked_file_with(path, self.stored_symlinks) {
            let mut u = Unit::new(name);
            u.set_fragment(path.to_path_buf());
            u.masked = true;
            return Ok(u);
        }
        let names = [name.clone()];
        let mut dirs = self.dropin_dirs(&names);
        if let Some(parent) = path.parent() {
            for d in dropin_dir_names(&names).into_iter().rev() {
                dirs.insert(0, parent.join(d));
            }
        }
        let dropins = collect_dropins(&dirs, self.stored_symlinks);
        let mut u = build(&name, Some(path), &dropins, &self.spec);
        add_install_aliases(&mut u);
        self.add_wants_dirs(&mut u);
        Ok(u)
    }

    /// Whether drop-ins exist for this name specifically (type-wide
    /// `service.d/` ones apply to every name and do not count).
    fn has_own_dropins(&self, name: &UnitName) -> bool {
        let type_wide = format!("{}.d", name.kind().suffix());
        self.dropins(std::slice::from_ref(name)).iter().any(|p| {
            p.parent()
                .and_then(Path::file_name)
                .is_some_and(|d| d.to_string_lossy() != type_wide)
        })
    }

    /// The drop-in directories for a unit known by `names` (its own name
    /// first, then its aliases), in precedence order, as systemd 252's
    /// `unit_file_find_dropin_paths()` lists them: for the unit's name, in
    /// every search directory (highest first), the directories
    /// [`name_dropin_dirs`] gives; then the same for each alias; then the
    /// type-wide `service.d/` in every search directory.
    pub fn dropin_dirs(&self, names: &[UnitName]) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for n in names {
            let own = name_dropin_dirs(n);
            for base in &self.unit_paths {
                out.extend(own.iter().map(|d| base.join(d)));
            }
        }
        if let Some(n) = names.first() {
            for base in &self.unit_paths {
                out.push(base.join(format!("{}.d", n.kind().suffix())));
            }
        }
        out
    }

    /// The drop-in files that apply, sorted by file name; for equal names the
    /// one in the earliest directory of [`Loader::dropin_dirs`] wins, and a
    /// /dev/null (or empty) one removes the name.
    pub fn dropins(&self, names: &[UnitName]) -> Vec<PathBuf> {
        collect_dropins(&self.dropin_dirs(names), self.stored_symlinks)
    }

    /// Adds the units linked from `NAME.wants/` and `NAME.requires/` (and the
    /// template's) in the search path as Wants=/Requires= dependencies.
    fn add_wants_dirs(&self, u: &mut Unit) {
        let mut names = vec![u.name.clone()];
        names.extend(u.name.template());
        for base in &self.unit_paths {
            for n in &names {
                for (suffix, requires) in [("wants", false), ("requires", true)] {
                    let dir = base.join(format!("{n}.{suffix}"));
                    let Ok(rd) = std::fs::read_dir(&dir) else {
                        continue;
                    };
                    let mut entries: Vec<_> = rd.flatten().map(|e| e.file_name()).collect();
                    entries.sort();
                    let list = if requires {
                        &mut u.unit.requires
                    } else {
                        &mut u.unit.wants
                    };
                    // A set, so that a directory of many links stays linear.
                    let mut have: HashSet<UnitName> = list.iter().cloned().collect();
                    for e in entries {
                        let Ok(dep) = UnitName::parse_strict(&e.to_string_lossy()) else {
                            continue;
                        };
                        if have.insert(dep.clone()) {
                            list.push(dep);
                        }
                    }
                }
            }
        }
    }

    /// Every unit file and runit service, with its state, for
    /// `list-unit-files`. Sorted by name; a name in a higher-priority
    /// directory hides the same name below.
    pub fn list(&self) -> Vec<(UnitName, PathBuf, UnitFileState)> {
        let mut seen: BTreeMap<UnitName, (PathBuf, UnitFileState)> = BTreeMap::new();
        let enabled = self.linked_names();
        for dir in &self.unit_paths {
            let Ok(rd) = std::fs::read_dir(dir) else {
                continue;
            };
            for e in rd.flatten() {
                let fname = e.file_name().to_string_lossy().into_owned();
                let Ok(name) = UnitName::parse_strict(&fname) else {
                    continue;
                };
                if seen.contains_key(&name) {
                    continue;
                }
                let path = e.path();
                if path.is_dir() {
                    continue;
                }
                let state = if is_masked_file_with(&path, self.stored_symlinks) {
                    UnitFileState::Masked
                } else if let Some(t) = link_target_with(&path, self.stored_symlinks)
                    .and_then(|t| t.file_name().map(|b| b.to_string_lossy().into_owned()))
                    .filter(|b| *b != fname)
                    .and_then(|b| UnitName::parse_strict(&b).ok())
                {
                    UnitFileState::Alias(t)
                } else if name.is_template() {
                    UnitFileState::Template
                } else if enabled.contains(&name) {
                    UnitFileState::Enabled
                } else if has_install_section(&path) {
                    UnitFileState::Disabled
                } else {
                    UnitFileState::Static
                };
                seen.insert(name, (path, state));
            }
        }
        for dir in &self.runit_dirs {
            let Ok(rd) = std::fs::read_dir(dir) else {
                continue;
            };
            for e in rd.flatten() {
                let Some(r) = RunitService::probe(&e.path()) else {
                    continue;
                };
                let Ok(name) =
                    UnitName::parse_strict(&format!("{}.service", e.file_name().to_string_lossy()))
                else {
                    continue;
                };
                if seen.contains_key(&name) {
                    continue;
                }
                let state = if r.down {
                    UnitFileState::Disabled
                } else {
                    UnitFileState::Enabled
                };
                seen.insert(name, (r.dir, state));
            }
        }
        seen.into_iter().map(|(n, (p, s))| (n, p, s)).collect()
    }

    /// Names linked from any `*.wants/` or `*.requires/` directory.
    fn linked_names(&self) -> HashSet<UnitName> {
        let mut out = HashSet::new();
        for dir in &self.unit_paths {
            let Ok(rd) = std::fs::read_dir(dir) else {
                continue;
            };
            for e in rd.flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                if !(n.ends_with(".wants") || n.ends_with(".requires")) {
                    continue;
                }
                let Ok(sub) = std::fs::read_dir(e.path()) else {
                    continue;
                };
                for s in sub.flatten() {
                    if let Ok(name) = UnitName::parse_strict(&s.file_name().to_string_lossy()) {
                        // An enabled instance makes its template count as enabled too.
                        if let Some(t) = name.template() {
                            out.insert(t);
                        }
                        out.insert(name);
                    }
                }
            }
        }
        out
    }
}

/// Adds the `Alias=` names (instantiated for an instance) to `aliases`.
fn add_install_aliases(u: &mut Unit) {
    let mut have: HashSet<UnitName> = u.aliases.iter().cloned().collect();
    have.insert(u.name.clone());
    for a in u.install.alias.clone() {
        let a = match (u.name.instance(), a.is_template()) {
            (Some(i), true) => a.with_instance(i).unwrap_or(a),
            _ => a,
        };
        if have.insert(a.clone()) {
            u.aliases.push(a);
        }
    }
}

fn has_install_section(path: &Path) -> bool {
    read_user_file(path, UserFile::Unit).is_ok_and(|b| {
        syntax::parse_bytes(path, &b)
            .directives
            .iter()
            .any(|d| d.section == "Install")
    })
}

/// The drop-in directory names (`NAME.d`) for a unit known by `names`, in
/// precedence order within one search directory: those of each name
/// ([`name_dropin_dirs`]), then the type-wide `service.d`.
pub fn dropin_dir_names(names: &[UnitName]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for n in names {
        for d in name_dropin_dirs(n) {
            if !out.contains(&d) {
                out.push(d);
            }
        }
    }
    if let Some(n) = names.first() {
        out.push(format!("{}.d", n.kind().suffix()));
    }
    out
}

/// The drop-in directory names of one unit name, as systemd 252's
/// `unit_file_find_dirs()` visits them: the name; for an instance, what its
/// template gives (recursively); then the name cut after its last inner `-`
/// with the instance kept (`foo-bar@x.service` -> `foo-@x.service`, and on
/// from there). For `foo-bar@x.service`: `foo-bar@x.service.d`,
/// `foo-bar@.service.d`, `foo-.service.d`, `foo-@x.service.d`, `foo-@.service.d`.
pub fn name_dropin_dirs(name: &UnitName) -> Vec<String> {
    let mut out = Vec::new();
    find_dirs(name.as_str(), &mut out, 0);
    out
}

fn find_dirs(name: &str, out: &mut Vec<String>, depth: usize) {
    // Each step shortens the name; the bound only guards against surprises.
    if depth > 64 {
        return;
    }
    let Ok(n) = UnitName::parse_strict(name) else {
        return;
    };
    out.push(format!("{name}.d"));
    if n.is_instance()
        && let Some(t) = n.template()
    {
        find_dirs(t.as_str(), out, depth + 1);
    }
    let mut prefix = n.prefix().to_string();
    let mut chopped = false;
    loop {
        let Some(dash) = prefix.rfind('-') else {
            return;
        };
        if dash == 0 {
            return;
        }
        if dash + 1 < prefix.len() || chopped {
            prefix.truncate(dash + 1);
            break;
        }
        // A trailing dash: chop it and look again, once.
        prefix.truncate(dash);
        chopped = true;
    }
    let built = match n.instance() {
        Some(i) if n.is_instance() => format!("{prefix}@{i}.{}", n.kind().suffix()),
        _ => format!("{prefix}.{}", n.kind().suffix()),
    };
    find_dirs(&built, out, depth + 1);
}

/// Collects `*.conf` files from drop-in directories in precedence order:
/// for each file name the first directory that has it wins (systemd's
/// `conf_files_list_strv()`); a masking one (/dev/null, empty, or with
/// `stored` a stored symlink to /dev/null) hides the name.
pub fn collect_dropins(dirs: &[PathBuf], stored: bool) -> Vec<PathBuf> {
    let mut chosen: BTreeMap<String, PathBuf> = BTreeMap::new();
    for d in dirs {
        let Ok(rd) = std::fs::read_dir(d) else {
            continue;
        };
        for e in rd.flatten() {
            let f = e.file_name().to_string_lossy().into_owned();
            if !f.ends_with(".conf") || chosen.contains_key(&f) {
                continue;
            }
            chosen.insert(f, e.path());
        }
    }
    chosen
        .into_values()
        // A FIFO or device stays: reading it reports the refusal on the unit.
        .filter(|p| {
            !is_masked_file_with(p, stored) && std::fs::metadata(p).is_ok_and(|m| !m.is_dir())
        })
        .collect()
}

/// Parses a fragment and its drop-ins into a unit named `name`.
pub fn build(
    name: &UnitName,
    fragment: Option<&Path>,
    dropins: &[PathBuf],
    spec: &SpecifierContext,
) -> Unit {
    let mut u = Unit::new(name.clone());
    if let Some(f) = fragment {
        u.set_fragment(f.to_path_buf());
    }
    u.dropins = dropins.to_vec().into();
    let mut applier = Applier::new(spec);
    let files: Vec<PathBuf> = fragment
        .map(Path::to_path_buf)
        .into_iter()
        .chain(dropins.iter().cloned())
        .collect();
    for f in &files {
        apply_file(&mut u, &mut applier, f);
    }
    applier.finish(&mut u);
    u
}

/// Builds a unit from in-memory text as if read from `path` (no drop-ins,
/// nothing read from disk).
pub fn from_text(name: &UnitName, path: &Path, text: &str, spec: &SpecifierContext) -> Unit {
    let mut u = Unit::new(name.clone());
    u.set_fragment(path.to_path_buf());
    let mut applier = Applier::new(spec);
    apply_text(&mut u, &mut applier, path, text);
    applier.finish(&mut u);
    u
}

/// Reads one file (fragment or drop-in) and applies it to the unit.
pub(crate) fn apply_file(u: &mut Unit, applier: &mut Applier<'_>, f: &Path) {
    // A file that cannot be read makes systemd give up on the unit.
    let io_error = |u: &mut Unit, message: String| {
        u.diagnostics.push(Diagnostic {
            file: f.to_path_buf(),
            line: 0,
            directive: String::new(),
            severity: Severity::Error,
            kind: DiagnosticKind::Io,
            message,
            fatal: true,
        })
    };
    let what = if u.fragment().as_deref() == Some(f) {
        UserFile::Unit
    } else {
        UserFile::Dropin
    };
    match read_user_file(f, what) {
        Ok(b) => apply_parsed(u, applier, f, syntax::parse_bytes(f, &b)),
        Err(super::UnitError::Refused { reason, .. }) => io_error(u, reason),
        Err(super::UnitError::Io { source, .. }) => {
            io_error(u, format!("cannot read the file: {source}"))
        }
        Err(e) => io_error(u, e.to_string()),
    }
}

/// Applies file text to a unit (used by the fuzz target and verify).
pub(crate) fn apply_text(u: &mut Unit, applier: &mut Applier<'_>, f: &Path, text: &str) {
    apply_parsed(u, applier, f, syntax::parse(f, text));
}

/// The warning on a unit of a kind the manager does not run.
fn not_run_message(kind: UnitKind) -> String {
    format!(
        ".{} units are not supported yet: read and kept, not run",
        kind.suffix()
    )
}

/// Applies a parsed file (fragment or drop-in) to a unit.
fn apply_parsed(u: &mut Unit, applier: &mut Applier<'_>, f: &Path, parsed: syntax::ParsedFile) {
    if !parsed.diagnostics.is_empty() {
        // A change of the empty list would allocate it.
        u.diagnostics.extend(parsed.diagnostics);
    }
    let kind = u.kind();
    let kind_section = kind.section();
    let mut warned_sections: HashSet<String> = HashSet::new();
    // Looked up once: per section header it would be quadratic.
    let mut noted_unsupported = u
        .diagnostics
        .iter()
        .any(|d| d.kind == DiagnosticKind::NotSupportedYet);
    for h in &parsed.sections {
        let known =
            matches!(h.name.as_str(), "Unit" | "Install") || Some(h.name.as_str()) == kind_section;
        if h.name.starts_with("X-") {
            continue;
        }
        if known && !kind.is_supported() && Some(h.name.as_str()) == kind_section {
            if !noted_unsupported {
                noted_unsupported = true;
                u.diagnostics.push(Diagnostic {
                    file: f.to_path_buf(),
                    line: h.line,
                    directive: format!("[{}]", h.name),
                    severity: Severity::Warning,
                    kind: DiagnosticKind::NotSupportedYet,
                    message: not_run_message(kind),
                    fatal: false,
                });
            }
            continue;
        }
        if !known && warned_sections.insert(h.name.clone()) {
            let systemd_section = UnitKind::ALL
                .iter()
                .any(|k| k.section() == Some(h.name.as_str()));
            u.diagnostics.push(Diagnostic {
                file: f.to_path_buf(),
                line: h.line,
                directive: format!("[{}]", h.name),
                severity: Severity::Warning,
                kind: if systemd_section {
                    DiagnosticKind::Unsupported
                } else {
                    DiagnosticKind::Unknown
                },
                message: if systemd_section {
                    format!("unsupported in a .{} unit, ignored", kind.suffix())
                } else {
                    format!("Unknown section '{}'. Ignoring.", h.name)
                },
                fatal: false,
            });
        }
    }
    if !kind.is_supported() && !noted_unsupported {
        u.diagnostics.push(Diagnostic {
            file: f.to_path_buf(),
            line: 0,
            directive: String::new(),
            severity: Severity::Warning,
            kind: DiagnosticKind::NotSupportedYet,
            message: not_run_message(kind),
            fatal: false,
        });
    }
    for d in &parsed.directives {
        match d.section.as_str() {
            "Unit" => applier.apply_unit(u, d),
            "Install" => applier.apply_install(u, d),
            "Service" if kind == UnitKind::Service => applier.apply_service(u, d),
            "Timer" if kind == UnitKind::Timer => applier.apply_timer(u, d),
            "Socket" if kind == UnitKind::Socket => applier.apply_socket(u, d),
            s if Some(s) == kind_section => u.unsupported.push(d.clone()),
            // Directives of ignored sections were warned about per section.
            _ => u.unsupported.push(d.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_runit_directory_made_after_start_is_found_on_the_next_listing() {
        let tmp = tempfile::tempdir().unwrap();
        let mut spec = SpecifierContext::current();
        spec.home = tmp.path().to_path_buf();
        let loader = Loader::new(
            vec![tmp.path().join("units")],
            Loader::default_runit_dirs(&spec),
            spec,
        );
        let names = |l: &Loader| -> Vec<String> {
            l.list()
                .into_iter()
                .map(|(n, _, _)| n.as_str().to_string())
                .collect()
        };
        assert!(names(&loader).is_empty());
        let svc = tmp.path().join("service/late");
        std::fs::create_dir_all(&svc).unwrap();
        let run = svc.join("run");
        std::fs::write(&run, "#!/bin/sh\nexec sleep 1000\n").unwrap();
        std::fs::set_permissions(&run, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        assert_eq!(names(&loader), ["late.service"]);
        let unit = loader.load(&UnitName::parse("late").unwrap()).unwrap();
        assert_eq!(unit.name.as_str(), "late.service");
    }

    #[test]
    fn dropin_dir_order() {
        let n = UnitName::parse("foo-bar@x.service").unwrap();
        // As systemd 252's unit_file_find_dirs() visits them.
        assert_eq!(
            dropin_dir_names(&[n]),
            [
                "foo-bar@x.service.d",
                "foo-bar@.service.d",
                "foo-.service.d",
                "foo-@x.service.d",
                "foo-@.service.d",
                "service.d"
            ]
        );
        let dirs = |s: &str| name_dropin_dirs(&UnitName::parse(s).unwrap());
        assert_eq!(
            dirs("a-b-c.service"),
            ["a-b-c.service.d", "a-b-.service.d", "a-.service.d"]
        );
        assert_eq!(dirs("plain.service"), ["plain.service.d"]);
        assert_eq!(dirs("trail-.service"), ["trail-.service.d"]);
        assert_eq!(
            dirs("a--b.service"),
            ["a--b.service.d", "a--.service.d", "a-.service.d"]
        );
        assert_eq!(dirs("-lead.socket"), ["-lead.socket.d"]);
    }
}
