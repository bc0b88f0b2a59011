//! `corral enable|disable|reenable|mask|unmask UNIT...` and `corral
//! is-enabled UNIT...`: the `[Install]` symlinks in the user's units directory,
//! made and reported as systemctl does.
//!
//! The files are changed by the CLI itself, in the search path of the
//! manager it talks to (asked over the socket with `SearchPaths`, so that a
//! manager started with `--units-dir`/`--runit-dir` is served too; the
//! defaults when no manager answers). Then, as systemctl does, the running
//! manager is told to reload (unless `--no-reload`; without a manager there
//! is nothing to tell), and only then does `--now` start or stop the units.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;

use super::common::{VerbError, call};
use super::exit;
use crate::ipc::client::is_refusal;
use crate::ipc::proto::{Request, Response};
use crate::ipc::{ErrorCode, IpcError};
use crate::unit::install::{InstallError, Installer, Outcome};
use crate::unit::{Loader, SpecifierContext, UnitName};

/// Arguments of enable, disable, reenable, mask and unmask.
#[derive(Debug, Args)]
pub struct InstallArgs {
    /// Unit names ("memcached@11212" means memcached@11212.service).
    #[arg(required = true, value_name = "UNIT")]
    pub units: Vec<String>,
    /// Then start (enable) or stop (disable, mask) the units through the
    /// manager, as systemctl's --now.
    #[arg(long)]
    pub now: bool,
    /// Do not ask the running manager to reload its unit files afterwards.
    #[arg(long)]
    pub no_reload: bool,
    /// Unit directories, highest priority first; symlinks go into the first
    /// (default: the running manager's search path, else
    /// $XDG_CONFIG_HOME/corral/units, /etc/corral/user, /usr/lib/corral/user).
    #[arg(long = "units-dir", value_name = "DIR")]
    pub units_dir: Vec<PathBuf>,
}

/// Arguments of `is-enabled`.
#[derive(Debug, Args)]
pub struct IsEnabledArgs {
    /// Unit names.
    #[arg(required = true, value_name = "UNIT")]
    pub units: Vec<String>,
    /// Print nothing, only set the exit code.
    #[arg(short, long)]
    pub quiet: bool,
    /// Unit directories, highest priority first (default: the running
    /// manager's search path, else the user search path).
    #[arg(long = "units-dir", value_name = "DIR")]
    pub units_dir: Vec<PathBuf>,
}

/// Which of the install verbs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstallVerb {
    /// `enable`.
    Enable,
    /// `disable`.
    Disable,
    /// `reenable`.
    Reenable,
    /// `mask`.
    Mask,
    /// `unmask`.
    Unmask,
}

/// What `--now` adds after a successful install verb, as systemctl does it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FollowUp {
    /// Start the units (`enable --now`).
    Start,
    /// Stop the units (`disable --now`, `mask --now`).
    Stop,
}

impl InstallVerb {
    /// The verb `--now` runs afterwards on the same units, if any
    /// (systemctl: only for enable, disable and mask).
    pub fn now_follow_up(self) -> Option<FollowUp> {
        match self {
            InstallVerb::Enable => Some(FollowUp::Start),
            InstallVerb::Disable | InstallVerb::Mask => Some(FollowUp::Stop),
            InstallVerb::Reenable | InstallVerb::Unmask => None,
        }
    }
}

/// The loader over the directories given (no runit directories).
pub fn loader(units_dir: &[PathBuf]) -> Loader {
    if units_dir.is_empty() {
        Loader::with_defaults()
    } else {
        Loader::new(units_dir.to_vec(), Vec::new(), SpecifierContext::current())
    }
}

/// Whether an error means that no manager is there to ask: nothing listens
/// on the socket, or the manager predates the request (`MALFORMED`).
fn no_manager(e: &VerbError) -> bool {
    matches!(e, VerbError::Ipc(IpcError::Unreachable { .. }))
        || matches!(e, VerbError::Ipc(i) if is_refusal(i, ErrorCode::MALFORMED))
}

/// A loader over the search path and runit directories of the manager at
/// `socket`, if one answers.
pub fn manager_loader(socket: Option<PathBuf>) -> Result<Option<Loader>, VerbError> {
    match call(socket, &Request::SearchPaths) {
        Ok(Response::SearchPaths { units, runit }) => Ok(Some(Loader::new(
            units.into_iter().map(PathBuf::from).collect(),
            runit.into_iter().map(PathBuf::from).collect(),
            SpecifierContext::current(),
        ))),
        Ok(other) => Err(super::jobs::unexpected("search-paths", &other)),
        Err(e) if no_manager(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The loader the install verbs, `is-enabled` and `list-unit-files` work
/// with: the directories given with `--units-dir`; else the search path of
/// the manager at `socket` (its unit directories and runit directories),
/// so that they act on the files it loads; else, with no manager, the
/// user's defaults.
pub fn loader_for(units_dir: &[PathBuf], socket: Option<PathBuf>) -> Result<Loader, VerbError> {
    if !units_dir.is_empty() {
        return Ok(loader(units_dir));
    }
    Ok(manager_loader(socket)?.unwrap_or_else(Loader::with_defaults))
}

/// Asks the running manager to read the unit files again, as systemctl does
/// after changing them; with no manager there is nothing to tell.
pub fn reload_manager(socket: Option<PathBuf>) -> Result<(), VerbError> {
    match call(socket, &Request::DaemonReload) {
        Ok(Response::Done(_)) => Ok(()),
        Ok(other) => Err(super::jobs::unexpected("daemon-reload", &other)),
        Err(e) if no_manager(&e) => Ok(()),
        Err(e) => Err(e),
    }
}

/// The units `--now` starts or stops: the names given, except that a
/// template enabled through its `DefaultInstance=` starts that instance
/// (`enable --now mc@.service` starts `mc@11299.service`, the unit it
/// enabled). Other templates are passed on, and the manager refuses them.
pub fn now_units(follow_up: FollowUp, loader: &Loader, units: &[String]) -> Vec<String> {
    units
        .iter()
        .map(|u| {
            let Ok(name) = UnitName::parse(u) else {
                return u.clone();
            };
            if follow_up != FollowUp::Start || !name.is_template() {
                return u.clone();
            }
            loader
                .load(&name)
                .ok()
                .and_then(|unit| unit.install.default_instance.clone())
                .and_then(|i| name.with_instance(&i).ok())
                .map_or_else(|| u.clone(), |n| n.to_string())
        })
        .collect()
}

/// Applies the verb to the units (an operation over several units stops at
/// the first error, as systemctl does) and returns what happened.
pub fn apply(
    verb: InstallVerb,
    loader: &Loader,
    units: &[String],
) -> Result<Outcome, InstallError> {
    let i = Installer::new(loader);
    match verb {
        InstallVerb::Enable => i.enable(units),
        InstallVerb::Disable => i.disable(units),
        InstallVerb::Reenable => i.reenable(units),
        InstallVerb::Mask => i.mask(units),
        InstallVerb::Unmask => i.unmask(units),
    }
}

/// Runs an install verb and prints the changes and notices on stderr,
/// as systemctl does; exit 0 on success, 1 on failure.
pub fn run(verb: InstallVerb, loader: &Loader, args: &InstallArgs) -> u8 {
    let mut err = std::io::stderr().lock();
    match apply(verb, loader, &args.units) {
        Ok(out) => {
            for c in &out.changes {
                let _ = writeln!(err, "{c}");
            }
            for w in &out.warnings {
                let _ = writeln!(err, "{w}");
            }
            exit::OK
        }
        Err(e) => {
            let _ = writeln!(err, "{e}");
            exit::NEGATIVE
        }
    }
}

/// Runs an install verb in the search path of the manager at `socket`
/// and, when it succeeded, what systemctl runs after it: a reload of the
/// manager (unless `--no-reload`), then with `--now` the start or stop.
pub fn run_then_now(verb: InstallVerb, args: &InstallArgs, socket: Option<PathBuf>) -> u8 {
    let loader = match loader_for(&args.units_dir, socket.clone()) {
        Ok(l) => l,
        Err(e) => return super::common::report(&e),
    };
    let code = run(verb, &loader, args);
    if code != exit::OK {
        return code;
    }
    if !args.no_reload
        && let Err(e) = reload_manager(socket.clone())
    {
        return super::common::report(&e);
    }
    let Some(follow_up) = verb.now_follow_up().filter(|_| args.now) else {
        return code;
    };
    let units = now_units(follow_up, &loader, &args.units);
    let result = match follow_up {
        FollowUp::Start => super::start::run(socket, units),
        FollowUp::Stop => super::stop::run(socket, units),
    };
    result.unwrap_or_else(|e| super::common::report(&e))
}

/// The lines `is-enabled` prints on stdout and stderr, and its exit code:
/// 0 when at least one unit is in an "enabled" state (enabled, static,
/// alias, indirect), 1 otherwise.
pub fn is_enabled_report(loader: &Loader, units: &[String]) -> (Vec<String>, Vec<String>, u8) {
    let i = Installer::new(loader);
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let mut any = false;
    for u in units {
        match i.is_enabled(u) {
            Ok(state) => {
                any |= state.is_enabled();
                out.push(state.to_string());
            }
            Err(InstallError::NotFound { name, .. }) => err.push(format!(
                "Failed to get unit file state for {name}: No such file or directory"
            )),
            Err(e) => err.push(e.to_string()),
        }
    }
    (out, err, if any { exit::OK } else { exit::NEGATIVE })
}

/// Runs `is-enabled` (in the search path of the manager at `socket`, if one answers).
pub fn run_is_enabled(args: &IsEnabledArgs, socket: Option<PathBuf>) -> u8 {
    let loader = match loader_for(&args.units_dir, socket) {
        Ok(l) => l,
        Err(e) => return super::common::report(&e),
    };
    let (out, err, code) = is_enabled_report(&loader, &args.units);
    if !args.quiet {
        let mut stdout = std::io::stdout().lock();
        for l in out {
            // A closed pipe (`corral is-enabled x | head`) is not worth reporting.
            let _ = writeln!(stdout, "{l}");
        }
    }
    let mut stderr = std::io::stderr().lock();
    for l in err {
        let _ = writeln!(stderr, "{l}");
    }
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir_with_units() -> (tempfile::TempDir, Loader) {
        let tmp = tempfile::tempdir().unwrap();
        let units = tmp.path().join("units");
        std::fs::create_dir_all(&units).unwrap();
        std::fs::write(
            units.join("memcached@.service"),
            "[Service]\nExecStart=/usr/bin/memcached -p %i\n[Install]\nWantedBy=default.target\n",
        )
        .unwrap();
        // A vendor unit: only there can it be masked from the user's directory.
        let vendor = tmp.path().join("vendor");
        std::fs::create_dir_all(&vendor).unwrap();
        std::fs::write(
            vendor.join("helper.service"),
            "[Service]\nExecStart=/bin/true\n",
        )
        .unwrap();
        let l = loader(&[units, vendor]);
        (tmp, l)
    }

    #[test]
    fn is_enabled_exit_codes_follow_systemctl() {
        let (_tmp, l) = dir_with_units();
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let (out, err, code) = is_enabled_report(&l, &names(&["memcached@11212"]));
        assert_eq!((out, err, code), (vec!["disabled".to_string()], vec![], 1));
        apply(InstallVerb::Enable, &l, &names(&["memcached@11212"])).unwrap();
        let (out, _, code) = is_enabled_report(&l, &names(&["memcached@11212", "memcached@1"]));
        assert_eq!(out, ["enabled", "disabled"]);
        assert_eq!(code, 0, "one enabled unit is enough");
        let (out, _, code) = is_enabled_report(&l, &names(&["helper"]));
        assert_eq!((out, code), (vec!["static".to_string()], 0));
        let (out, err, code) = is_enabled_report(&l, &names(&["nosuch"]));
        assert!(out.is_empty());
        assert_eq!(
            err,
            ["Failed to get unit file state for nosuch.service: No such file or directory"]
        );
        assert_eq!(code, 1);
        apply(InstallVerb::Mask, &l, &names(&["helper"])).unwrap();
        let (out, _, code) = is_enabled_report(&l, &names(&["helper"]));
        assert_eq!((out, code), (vec!["masked".to_string()], 1));
    }

    #[test]
    fn now_starts_the_default_instance_of_a_template() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(
            tmp.path().join("mc@.service"),
            "[Service]\nExecStart=/bin/true %i\n[Install]\nWantedBy=default.target\nDefaultInstance=11299\n",
        )
        .unwrap();
        std::fs::write(
            tmp.path().join("bare@.service"),
            "[Service]\nExecStart=/bin/true %i\n",
        )
        .unwrap();
        let l = loader(&[tmp.path().to_path_buf()]);
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            now_units(
                FollowUp::Start,
                &l,
                &names(&["mc@.service", "mc@", "mc@7", "bare@", "plain"])
            ),
            [
                "mc@11299.service",
                "mc@11299.service",
                "mc@7",
                "bare@",
                "plain"
            ]
        );
        // disable/mask --now stop what was named, as systemctl 252 does.
        assert_eq!(
            now_units(FollowUp::Stop, &l, &names(&["mc@.service"])),
            ["mc@.service"]
        );
    }

    #[test]
    fn now_follows_up_like_systemctl() {
        assert_eq!(InstallVerb::Enable.now_follow_up(), Some(FollowUp::Start));
        assert_eq!(InstallVerb::Disable.now_follow_up(), Some(FollowUp::Stop));
        assert_eq!(InstallVerb::Mask.now_follow_up(), Some(FollowUp::Stop));
        assert_eq!(InstallVerb::Unmask.now_follow_up(), None);
    }
}
