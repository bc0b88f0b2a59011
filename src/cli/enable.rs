//! `corral enable|disable|reenable|mask|unmask UNIT...` and `corral
//! is-enabled UNIT...`: the `[Install]` symlinks in the user's units directory,
//! made and reported as systemctl does. No manager is needed: these verbs
//! only change files (the manager sees them at its next daemon-reload).

use std::io::Write;
use std::path::PathBuf;

use clap::Args;

use super::exit;
use crate::unit::install::{InstallError, Installer, Outcome};
use crate::unit::{Loader, SpecifierContext};

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
    /// Unit directories, highest priority first; symlinks go into the first
    /// (default: $XDG_CONFIG_HOME/corral/units, /etc/corral/user, /usr/lib/corral/user).
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
    /// Unit directories, highest priority first (default: the user search path).
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

/// The loader for these verbs: the directories given, or the user's search path.
pub fn loader(units_dir: &[PathBuf]) -> Loader {
    if units_dir.is_empty() {
        Loader::with_defaults()
    } else {
        Loader::new(units_dir.to_vec(), Vec::new(), SpecifierContext::current())
    }
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
pub fn run(verb: InstallVerb, args: &InstallArgs) -> u8 {
    let loader = loader(&args.units_dir);
    let mut err = std::io::stderr().lock();
    match apply(verb, &loader, &args.units) {
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

/// Runs an install verb and, with `--now` and when it succeeded, the start
/// or stop that follows (through the manager at `socket`).
pub fn run_then_now(verb: InstallVerb, args: &InstallArgs, socket: Option<PathBuf>) -> u8 {
    let code = run(verb, args);
    if code != exit::OK || !args.now {
        return code;
    }
    let result = match verb.now_follow_up() {
        Some(FollowUp::Start) => super::start::run(socket, args.units.clone()),
        Some(FollowUp::Stop) => super::stop::run(socket, args.units.clone()),
        None => return code,
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

/// Runs `is-enabled`.
pub fn run_is_enabled(args: &IsEnabledArgs) -> u8 {
    let loader = loader(&args.units_dir);
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
    fn now_follows_up_like_systemctl() {
        assert_eq!(InstallVerb::Enable.now_follow_up(), Some(FollowUp::Start));
        assert_eq!(InstallVerb::Disable.now_follow_up(), Some(FollowUp::Stop));
        assert_eq!(InstallVerb::Mask.now_follow_up(), Some(FollowUp::Stop));
        assert_eq!(InstallVerb::Unmask.now_follow_up(), None);
    }
}
