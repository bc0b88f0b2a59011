//! `enable`, `disable`, `reenable`, `mask`, `unmask` and `is-enabled`: the
//! symlinks of `[Install]`, made exactly as `systemctl` makes them, in
//! corral's own units directory (the first directory of the search path,
//! `$XDG_CONFIG_HOME/corral/units`).
//!
//! - `WantedBy=T` → `T.wants/NAME`, `RequiredBy=T` → `T.requires/NAME`,
//!   `Alias=A` → `A`, each a symlink to the unit file's absolute path; `Also=`
//!   units are enabled along. A template is enabled per instance
//!   (`enable memcached@11212` → `default.target.wants/memcached@11212.service
//!   → …/memcached@.service`), or with its `DefaultInstance=`.
//! - `disable` removes every symlink in the units directory that has the
//!   unit's name (or an instance of it, for a template) or points to it, then
//!   symlinks to what it removed, and empty directories, as systemd does.
//! - `mask` is a symlink to /dev/null under the unit's name.
//! - runit service directories are enabled by removing their `down` file and
//!   disabled by creating it.
//!
//! Every operation returns the list of [`Change`]s, which print as systemctl
//! prints them ("Created symlink A → B.", `Removed "A".`). The checks and
//! messages are those of systemd 252 (src/shared/install.c); the layout is
//! compared with Debian's `systemctl --root=DIR --global enable` in the
//! tests.

use std::collections::BTreeSet;
use std::fmt;
use std::fs;
use std::io;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use thiserror::Error;

use super::loader::{Loader, is_masked_file};
use super::model::{Unit, UnitSource};
use super::name::UnitName;

/// The targets corral's manager starts at boot: always there, even with no file.
const BUILTIN_TARGETS: &[&str] = &["default.target", super::timer::TIMERS_TARGET];

/// How many symlink hops are followed when resolving a link's destination.
const MAX_HOPS: usize = 32;

/// Errors of the install operations, worded as systemctl words them.
#[derive(Debug, Error)]
pub enum InstallError {
    /// The unit is nowhere in the search path.
    #[error("Failed to {verb} unit, unit {name} does not exist.")]
    NotFound {
        /// "enable", "disable", …
        verb: &'static str,
        /// The unit asked for.
        name: String,
    },
    /// The name is not a valid unit name.
    #[error("Failed to {verb} unit: {source}")]
    BadName {
        /// "enable", "disable", …
        verb: &'static str,
        /// Why.
        #[source]
        source: super::UnitError,
    },
    /// The unit is masked.
    #[error("Failed to {verb} unit, unit {} is masked.", .path.display())]
    Masked {
        /// "enable", …
        verb: &'static str,
        /// The mask symlink.
        path: PathBuf,
    },
    /// The name given is an alias symlink, not a unit file.
    #[error("Failed to {verb} unit, refusing to operate on linked unit file {name}.")]
    Linked {
        /// "enable", …
        verb: &'static str,
        /// The alias name.
        name: String,
    },
    /// Something else is already where a symlink must go.
    #[error("Failed to {verb} unit, file \"{}\" already exists{}.", .path.display(),
        .target.as_ref().map(|t| format!(" and is a symlink to \"{}\"", t.display())).unwrap_or_default())]
    Exists {
        /// "enable", "mask", …
        verb: &'static str,
        /// The path in the way.
        path: PathBuf,
        /// Where it points, when it is a symlink.
        target: Option<PathBuf>,
    },
    /// A template without DefaultInstance= enabled without an instance.
    #[error(
        "Failed to enable {name}, destination unit {target} is a non-template unit. Enable an instance instead: corral enable {prefix}@INSTANCE.{kind}"
    )]
    TemplateWithoutInstance {
        /// The template.
        name: String,
        /// The WantedBy=/RequiredBy= target.
        target: String,
        /// The template's prefix, for the hint.
        prefix: String,
        /// Its type suffix.
        kind: String,
    },
    /// The unit could not be read.
    #[error("Failed to {verb} unit {name}: {source}")]
    Load {
        /// "enable", …
        verb: &'static str,
        /// The unit.
        name: String,
        /// What went wrong.
        #[source]
        source: super::UnitError,
    },
    /// A file operation failed.
    #[error("Failed to {op} {}: {source}", .path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// On what.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

/// One change made to the units directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A symlink was created.
    Symlink {
        /// The new symlink.
        link: PathBuf,
        /// What it points to.
        target: PathBuf,
    },
    /// A symlink (or a runit `down` file) was removed.
    Removed {
        /// What was removed.
        path: PathBuf,
    },
    /// A runit `down` file was created.
    Created {
        /// The new file.
        path: PathBuf,
    },
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::Symlink { link, target } => write!(
                f,
                "Created symlink {} → {}.",
                link.display(),
                target.display()
            ),
            Change::Removed { path } => write!(f, "Removed \"{}\".", path.display()),
            Change::Created { path } => write!(f, "Created \"{}\".", path.display()),
        }
    }
}

/// What an operation did, for the CLI to print (all on stderr, as systemctl).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// The changes, in the order made.
    pub changes: Vec<Change>,
    /// Notices that do not fail the operation ("… is added as a dependency
    /// to a non-existent unit …", "… is masked, ignoring.").
    pub warnings: Vec<String>,
}

impl Outcome {
    fn merge(&mut self, other: Outcome) {
        self.changes.extend(other.changes);
        self.warnings.extend(other.warnings);
    }
}

/// The message systemctl prints when `enable` finds nothing to install.
pub const NO_INSTALL_INFO: &str = "\
The unit files have no installation config (WantedBy=, RequiredBy=, Also=,
Alias= settings in the [Install] section, and DefaultInstance= for template
units). This means they are not meant to be enabled using corral.
 
Possible reasons for having this kind of units are:
• A unit may be statically enabled by being symlinked from another unit's
  .wants/ or .requires/ directory.
• A unit's purpose may be to act as a helper for some other unit which has
  a requirement dependency on it.
• A unit may be started when needed via activation (socket, path, timer,
  D-Bus, udev, scripted systemctl call, ...).
• In case of template units, the unit is meant to be enabled with some
  instance name specified.";

/// `is-enabled`'s answer, named as systemctl names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnablementState {
    /// Linked from a `.wants/`/`.requires/` directory or by an Alias= symlink.
    Enabled,
    /// Has `[Install]` rules, not linked.
    Disabled,
    /// No `[Install]` rules: started only as a dependency or by hand.
    Static,
    /// A symlink to /dev/null.
    Masked,
    /// The name is an alias of another unit file.
    Alias,
    /// Not enabled itself, but Also= lists units to enable, or it is
    /// linked under names its `[Install]` does not make (another instance).
    Indirect,
    /// The unit file itself is a symlink in the units directory.
    Linked,
}

impl EnablementState {
    /// The word systemctl prints.
    pub fn as_str(self) -> &'static str {
        match self {
            EnablementState::Enabled => "enabled",
            EnablementState::Disabled => "disabled",
            EnablementState::Static => "static",
            EnablementState::Masked => "masked",
            EnablementState::Alias => "alias",
            EnablementState::Indirect => "indirect",
            EnablementState::Linked => "linked",
        }
    }

    /// Whether `is-enabled` exits 0 for this state (systemctl's table).
    pub fn is_enabled(self) -> bool {
        matches!(
            self,
            EnablementState::Enabled
                | EnablementState::Static
                | EnablementState::Alias
                | EnablementState::Indirect
        )
    }
}

impl fmt::Display for EnablementState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The install operations over a loader's search path; symlinks go into its
/// first directory.
#[derive(Debug, Clone)]
pub struct Installer<'a> {
    loader: &'a Loader,
    config: PathBuf,
}

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> InstallError {
    let path = path.to_path_buf();
    move |source| InstallError::Io { op, path, source }
}

fn parse_name(verb: &'static str, s: &str) -> Result<UnitName, InstallError> {
    UnitName::parse(s).map_err(|source| InstallError::BadName { verb, source })
}

/// The path `p` points to, made absolute against its directory.
fn absolute_target(p: &Path) -> Option<PathBuf> {
    let t = fs::read_link(p).ok()?;
    Some(if t.is_absolute() {
        t
    } else {
        p.parent().unwrap_or(Path::new("/")).join(t)
    })
}

/// Follows a chain of symlinks to its end (which need not exist).
fn chase(p: &Path) -> PathBuf {
    let mut cur = p.to_path_buf();
    for _ in 0..MAX_HOPS {
        match absolute_target(&cur) {
            Some(next) => cur = next,
            None => break,
        }
    }
    cur
}

impl<'a> Installer<'a> {
    /// Install operations for `loader`'s units, writing into its first unit directory.
    pub fn new(loader: &'a Loader) -> Installer<'a> {
        let config = loader
            .unit_paths()
            .first()
            .cloned()
            .unwrap_or_else(|| PathBuf::from("."));
        Installer { loader, config }
    }

    /// The directory the symlinks are made in.
    pub fn config_dir(&self) -> &Path {
        &self.config
    }

    fn load(&self, verb: &'static str, name: &UnitName) -> Result<Unit, InstallError> {
        self.loader.load(name).map_err(|e| match e {
            super::UnitError::NotFound { .. } => InstallError::NotFound {
                verb,
                name: name.to_string(),
            },
            source => InstallError::Load {
                verb,
                name: name.to_string(),
                source,
            },
        })
    }

    /// Whether a unit named `name` exists anywhere (for the "non-existent unit" notice).
    fn exists(&self, name: &UnitName) -> bool {
        BUILTIN_TARGETS.contains(&name.as_str()) || self.loader.load(name).is_ok()
    }

    /// `corral enable NAME...`.
    pub fn enable(&self, names: &[String]) -> Result<Outcome, InstallError> {
        let mut out = Outcome::default();
        let mut done = BTreeSet::new();
        let mut any_rules = false;
        for n in names {
            let name = parse_name("enable", n)?;
            any_rules |= self.enable_one(&name, false, &mut done, &mut out)?;
        }
        if !any_rules {
            out.warnings.push(NO_INSTALL_INFO.to_string());
        }
        Ok(out)
    }

    /// Enables one unit and its Also= units; returns whether it had any
    /// installation rules at all.
    fn enable_one(
        &self,
        name: &UnitName,
        auxiliary: bool,
        done: &mut BTreeSet<UnitName>,
        out: &mut Outcome,
    ) -> Result<bool, InstallError> {
        if !done.insert(name.clone()) {
            return Ok(true);
        }
        let unit = match self.load("enable", name) {
            Ok(u) => u,
            // A missing Also= unit is skipped, as systemd does.
            Err(InstallError::NotFound { .. }) if auxiliary => return Ok(false),
            Err(e) => return Err(e),
        };
        if unit.masked {
            return Err(InstallError::Masked {
                verb: "enable",
                path: unit
                    .fragment()
                    .unwrap_or_else(|| self.config.join(name.as_str())),
            });
        }
        if let UnitSource::Runit(r) = &unit.source {
            let down = r.dir.join("down");
            if down.exists() {
                fs::remove_file(&down).map_err(io_err("remove", &down))?;
                out.changes.push(Change::Removed { path: down });
            }
            return Ok(true);
        }
        if unit.aliases.contains(name) {
            return Err(InstallError::Linked {
                verb: "enable",
                name: name.to_string(),
            });
        }
        let Some(file) = unit.fragment() else {
            return Err(InstallError::NotFound {
                verb: "enable",
                name: name.to_string(),
            });
        };
        let install = &unit.install;
        let has_rules = !install.wanted_by.is_empty()
            || !install.required_by.is_empty()
            || !install.alias.is_empty()
            || !install.also.is_empty()
            || (unit.name.is_template() && install.default_instance.is_some());

        // Alias= first, then WantedBy=, then RequiredBy=, as systemd.
        for alias in &install.alias {
            let alias = match (unit.name.instance(), alias.is_template()) {
                (Some(i), true) => alias
                    .with_instance(i)
                    .map_err(|source| InstallError::Load {
                        verb: "enable",
                        name: name.to_string(),
                        source,
                    })?,
                _ => alias.clone(),
            };
            let link = self.config.join(alias.as_str());
            self.create_symlink("enable", &file, &link, false, out)?;
        }
        // The name the .wants/.requires links carry.
        let link_name = if unit.name.is_template() {
            match &install.default_instance {
                Some(i) => {
                    Some(
                        unit.name
                            .with_instance(i)
                            .map_err(|source| InstallError::Load {
                                verb: "enable",
                                name: name.to_string(),
                                source,
                            })?,
                    )
                }
                None => None,
            }
        } else {
            Some(unit.name.clone())
        };
        for (targets, suffix) in [
            (&install.wanted_by, "wants"),
            (&install.required_by, "requires"),
        ] {
            for target in targets {
                let Some(link_name) = &link_name else {
                    return Err(InstallError::TemplateWithoutInstance {
                        name: unit.name.to_string(),
                        target: target.to_string(),
                        prefix: unit.name.prefix().to_string(),
                        kind: unit.name.kind().suffix().to_string(),
                    });
                };
                // A template target (`wayland-instance@.target`) keeps its
                // own .wants/, which applies to all its instances; only a
                // `%i` in the directive names an instance.
                let link = self
                    .config
                    .join(format!("{target}.{suffix}"))
                    .join(link_name.as_str());
                self.create_symlink("enable", &file, &link, true, out)?;
                if !self.exists(target) {
                    out.warnings.push(format!(
                        "Unit {} is added as a dependency to a non-existent unit {target}.",
                        file.display()
                    ));
                }
            }
        }
        for also in &install.also {
            self.enable_one(also, true, done, out)?;
        }
        Ok(has_rules)
    }

    /// Makes `link` point to `target`. An equal link is left alone; a
    /// different one is replaced when `force` (the .wants/ links) and an
    /// error otherwise (Alias=, mask).
    fn create_symlink(
        &self,
        verb: &'static str,
        target: &Path,
        link: &Path,
        force: bool,
        out: &mut Outcome,
    ) -> Result<(), InstallError> {
        if let Some(dir) = link.parent() {
            fs::create_dir_all(dir).map_err(io_err("create directory", dir))?;
        }
        match fs::symlink_metadata(link) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("inspect", link)(e)),
            Ok(md) if !md.file_type().is_symlink() => {
                return Err(InstallError::Exists {
                    verb,
                    path: link.to_path_buf(),
                    target: None,
                });
            }
            Ok(_) => {
                let old = absolute_target(link).unwrap_or_default();
                if self.equivalent(&old, target) {
                    return Ok(());
                }
                if !force {
                    return Err(InstallError::Exists {
                        verb,
                        path: link.to_path_buf(),
                        target: Some(old),
                    });
                }
                fs::remove_file(link).map_err(io_err("remove", link))?;
                out.changes.push(Change::Removed {
                    path: link.to_path_buf(),
                });
            }
        }
        symlink(target, link).map_err(io_err("create symlink", link))?;
        out.changes.push(Change::Symlink {
            link: link.to_path_buf(),
            target: target.to_path_buf(),
        });
        Ok(())
    }

    /// systemd's "equivalent symlinks": the same path, or the same unit file
    /// name in two directories of the search path.
    fn equivalent(&self, a: &Path, b: &Path) -> bool {
        if a == b {
            return true;
        }
        let in_search = |p: &Path| {
            p.parent()
                .is_some_and(|d| self.loader.unit_paths().iter().any(|s| s == d))
        };
        a.file_name() == b.file_name() && in_search(a) && in_search(b)
    }

    /// `corral disable NAME...`.
    pub fn disable(&self, names: &[String]) -> Result<Outcome, InstallError> {
        let mut out = Outcome::default();
        let mut marked: BTreeSet<String> = BTreeSet::new();
        let mut queue: Vec<(UnitName, bool)> = Vec::new();
        for n in names {
            queue.push((parse_name("disable", n)?, false));
        }
        let mut seen = BTreeSet::new();
        while let Some((name, auxiliary)) = queue.pop() {
            if !seen.insert(name.clone()) {
                continue;
            }
            match self.loader.load(&name) {
                Ok(u) if u.masked => {
                    let path = u
                        .fragment()
                        .unwrap_or_else(|| self.config.join(name.as_str()));
                    out.warnings
                        .push(format!("Unit {} is masked, ignoring.", path.display()));
                    continue;
                }
                Ok(u) => {
                    if let UnitSource::Runit(r) = &u.source {
                        let down = r.dir.join("down");
                        if !down.exists() {
                            fs::write(&down, b"").map_err(io_err("create", &down))?;
                            out.changes.push(Change::Created { path: down });
                        }
                        continue;
                    }
                    marked.insert(u.name.to_string());
                    queue.extend(u.install.also.iter().map(|a| (a.clone(), true)));
                }
                // Leftover links of a unit whose file is gone are still removed.
                Err(_) if !auxiliary => out.warnings.push(
                    InstallError::NotFound {
                        verb: "disable",
                        name: name.to_string(),
                    }
                    .to_string(),
                ),
                Err(_) => {}
            }
            marked.insert(name.to_string());
        }
        self.remove_marked(&mut marked, &mut out)?;
        Ok(out)
    }

    /// Removes, until nothing changes, the symlinks of the units directory
    /// named after a marked unit (or an instance of a marked template) or
    /// pointing to a marked name or path; then the directories left empty.
    fn remove_marked(
        &self,
        marked: &mut BTreeSet<String>,
        out: &mut Outcome,
    ) -> Result<(), InstallError> {
        loop {
            let mut removed_any = false;
            let mut links = Vec::new();
            collect_links(&self.config, &mut links)?;
            links.sort();
            for link in links {
                let name = link
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let Ok(unit_name) = UnitName::parse_strict(&name) else {
                    continue;
                };
                let mut found = marked.contains(&name)
                    || unit_name
                        .template()
                        .is_some_and(|t| marked.contains(t.as_str()));
                if !found {
                    let dest = chase(&link);
                    found = marked.contains(&dest.to_string_lossy().into_owned())
                        || dest
                            .file_name()
                            .is_some_and(|b| marked.contains(&b.to_string_lossy().into_owned()));
                }
                if !found {
                    continue;
                }
                fs::remove_file(&link).map_err(io_err("remove", &link))?;
                out.changes.push(Change::Removed { path: link.clone() });
                // Symlinks to the symlink just removed go as well.
                marked.insert(link.to_string_lossy().into_owned());
                removed_any = true;
            }
            if !removed_any {
                break;
            }
        }
        remove_empty_dirs(&self.config);
        Ok(())
    }

    /// `corral reenable NAME...`: disable, then enable.
    pub fn reenable(&self, names: &[String]) -> Result<Outcome, InstallError> {
        let mut out = self.disable(names)?;
        out.merge(self.enable(names)?);
        Ok(out)
    }

    /// `corral mask NAME...`: a symlink to /dev/null under each name.
    pub fn mask(&self, names: &[String]) -> Result<Outcome, InstallError> {
        let mut out = Outcome::default();
        for n in names {
            let name = parse_name("mask", n)?;
            let link = self.config.join(name.as_str());
            self.create_symlink("mask", Path::new("/dev/null"), &link, false, &mut out)?;
        }
        Ok(out)
    }

    /// `corral unmask NAME...`: removes the /dev/null symlinks.
    pub fn unmask(&self, names: &[String]) -> Result<Outcome, InstallError> {
        let mut out = Outcome::default();
        for n in names {
            let name = parse_name("unmask", n)?;
            let link = self.config.join(name.as_str());
            if fs::symlink_metadata(&link).is_ok() && is_masked_file(&link) {
                fs::remove_file(&link).map_err(io_err("remove", &link))?;
                out.changes.push(Change::Removed { path: link });
            }
        }
        Ok(out)
    }

    /// `corral is-enabled NAME`.
    pub fn is_enabled(&self, n: &str) -> Result<EnablementState, InstallError> {
        let name = parse_name("get unit file state for", n)?;
        let unit = self.load("get unit file state for", &name)?;
        if unit.masked {
            return Ok(EnablementState::Masked);
        }
        if let UnitSource::Runit(r) = &unit.source {
            return Ok(if r.down {
                EnablementState::Disabled
            } else {
                EnablementState::Enabled
            });
        }
        let Some(file) = unit.fragment() else {
            return Ok(EnablementState::Static);
        };
        let file_name = file
            .file_name()
            .map(|b| b.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name.as_str() != file_name && !unit.name.is_instance() {
            return Ok(EnablementState::Alias);
        }
        if let Some(state) = self.find_symlinks(&unit, &file, true) {
            return Ok(state);
        }
        if self.find_symlinks(&unit, &file, false).is_some() {
            return Ok(EnablementState::Indirect);
        }
        let i = &unit.install;
        Ok(
            if !i.alias.is_empty() || !i.wanted_by.is_empty() || !i.required_by.is_empty() {
                EnablementState::Disabled
            } else if !i.also.is_empty() {
                EnablementState::Indirect
            } else {
                EnablementState::Static
            },
        )
    }

    /// systemd's `find_symlinks_in_scope`: looks through every directory of
    /// the search path for links to the unit. With `match_name`, only links
    /// under names its [Install] section would create count.
    fn find_symlinks(&self, unit: &Unit, file: &Path, match_name: bool) -> Option<EnablementState> {
        let mut ignore_same_name = false;
        let mut same_name_config = false;
        let mut enabled_elsewhere = false;
        for (idx, dir) in self.loader.unit_paths().iter().enumerate() {
            let mut same_name = false;
            if self.find_in_dir(unit, dir, match_name, ignore_same_name, &mut same_name) {
                if idx == 0 {
                    return Some(EnablementState::Enabled);
                }
                enabled_elsewhere = true;
            } else if same_name && idx == 0 {
                same_name_config = true;
            }
            if !ignore_same_name && file.starts_with(dir) {
                ignore_same_name = true;
            }
        }
        if same_name_config {
            return Some(EnablementState::Linked);
        }
        enabled_elsewhere.then_some(EnablementState::Enabled)
    }

    fn find_in_dir(
        &self,
        unit: &Unit,
        dir: &Path,
        match_name: bool,
        ignore_same_name: bool,
        same_name: &mut bool,
    ) -> bool {
        let Ok(rd) = fs::read_dir(dir) else {
            return false;
        };
        let mut entries: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
        entries.sort();
        for sub in &entries {
            let n = sub.file_name().unwrap_or_default().to_string_lossy();
            if (n.ends_with(".wants") || n.ends_with(".requires")) && sub.is_dir() {
                let Ok(rd) = fs::read_dir(sub) else {
                    continue;
                };
                let mut links: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
                links.sort();
                if self.check_links(
                    unit,
                    sub,
                    &links,
                    true,
                    match_name,
                    ignore_same_name,
                    same_name,
                ) {
                    return true;
                }
            }
        }
        self.check_links(
            unit,
            dir,
            &entries,
            false,
            match_name,
            ignore_same_name,
            same_name,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn check_links(
        &self,
        unit: &Unit,
        dir: &Path,
        links: &[PathBuf],
        ignore_destination: bool,
        match_name: bool,
        ignore_same_name: bool,
        same_name: &mut bool,
    ) -> bool {
        let me = unit.name.as_str();
        for link in links {
            if !fs::symlink_metadata(link).is_ok_and(|m| m.file_type().is_symlink()) {
                continue;
            }
            let base = link.file_name().unwrap_or_default().to_string_lossy();
            let mut found_dest = false;
            if !ignore_destination {
                let Some(dest) = absolute_target(link) else {
                    continue;
                };
                found_dest = dest.file_name().is_some_and(|b| b == me);
            }
            let mut found_path = false;
            if ignore_destination || !ignore_same_name {
                found_path = base == me;
            }
            if !found_path
                && ignore_destination
                && let Ok(n) = UnitName::parse_strict(&base)
                && let Some(t) = n.template()
            {
                found_dest = t.as_str() == me;
            }
            if found_path && found_dest && dir == self.config {
                *same_name = true;
            } else if (found_path || found_dest) && (!match_name || self.is_known_name(unit, &base))
            {
                return true;
            }
        }
        false
    }

    /// Whether `link_name` is one of the names `enable` creates for `unit`.
    fn is_known_name(&self, unit: &Unit, link_name: &str) -> bool {
        if link_name == unit.name.as_str() {
            return true;
        }
        let inst = unit.name.instance();
        if unit
            .install
            .alias
            .iter()
            .any(|a| match (inst, a.is_template()) {
                (Some(i), true) => a.with_instance(i).is_ok_and(|a| a.as_str() == link_name),
                _ => a.as_str() == link_name,
            })
        {
            return true;
        }
        match (&unit.install.default_instance, unit.name.is_template()) {
            (Some(i), true) => unit
                .name
                .with_instance(i)
                .is_ok_and(|n| n.as_str() == link_name),
            _ => false,
        }
    }
}

/// Every symlink under `dir`, recursively.
fn collect_links(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), InstallError> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err("list directory", dir)(e)),
    };
    for e in rd.flatten() {
        let p = e.path();
        match e.file_type() {
            Ok(t) if t.is_symlink() => out.push(p),
            Ok(t) if t.is_dir() => collect_links(&p, out)?,
            _ => {}
        }
    }
    Ok(())
}

/// Removes the empty directories below `dir` (not `dir` itself), as systemd
/// does after disabling; non-empty ones stay, silently.
fn remove_empty_dirs(dir: &Path) {
    let Ok(rd) = fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            let p = e.path();
            remove_empty_dirs(&p);
            let _ = fs::remove_dir(&p);
        }
    }
}

/// The state `list-unit-files` shows for each unit file of the search path:
/// every name the loader lists, with its [`EnablementState`] (templates and
/// aliases included, as systemctl shows them).
pub fn list_unit_files(loader: &Loader) -> Vec<(UnitName, PathBuf, EnablementState)> {
    let installer = Installer::new(loader);
    loader
        .list()
        .into_iter()
        .filter_map(|(name, path, _)| {
            let state = installer.is_enabled(name.as_str()).ok()?;
            Some((name, path, state))
        })
        .collect()
}

#[cfg(test)]
mod tests;
