//! `corral verify PATH...`: check unit files and runit service directories.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;

use super::exit;
use crate::unit::SpecifierContext;
use crate::unit::verify::{UnitCgroup, VerifyOptions, verify_paths_with_options};

/// Arguments of `corral verify`.
#[derive(Debug, Args)]
#[command(
    after_help = "Exit status: 0 when there is no error (warnings allowed); 1 when there \
is any error, a path that is missing or cannot be read included; 2 only when the arguments \
themselves are wrong. (Unlike the other verbs, where 2 means an error: verify is for finding \
mistakes, and every mistake it finds is a 1.)\n\n\
verify reports every bad assignment as an error. The manager is more lenient, as systemd 252 is: \
it drops a bad assignment with a warning and loads the unit, and refuses a unit only where \
systemd does (a bad ExecStart=, no ExecStart=, a bad section header, ...)."
)]
pub struct VerifyArgs {
    /// Unit files, drop-ins, runit service directories, or directories to search recursively.
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Print only errors, not warnings.
    #[arg(short, long)]
    pub quiet: bool,
    /// Read a plain file that holds only a unit name or /dev/null (without a
    /// newline) as the symlink it stands for, as git checkouts without
    /// symlink support and some package extractions leave symlinks.
    #[arg(long)]
    pub stored_symlinks: bool,
    /// The cgroup the manager runs units under, as `corrald --cgroup-root`
    /// (default: the one it would pick: this process's own cgroup when it
    /// is delegated, for root <cgroup2>/corral/user-0). Resource directives
    /// whose controller it does not enable are warnings.
    #[arg(long, value_name = "PATH")]
    pub cgroup_root: Option<PathBuf>,
}

/// The cgroup a manager started here would run units under, found without
/// creating anything (`pick_root` would create it), and the controllers it
/// enables; None when there is none (the manager could not start either).
fn manager_cgroup(explicit: Option<PathBuf>) -> Option<UnitCgroup> {
    use crate::cgroup::mount::is_delegated;
    let root = match explicit {
        Some(p) => p,
        None => {
            let mount = crate::cgroup::find_mount().ok()?;
            let own = crate::cgroup::own_cgroup().ok()?;
            let euid = nix::unistd::geteuid().as_raw();
            if own != mount && is_delegated(&own, euid) {
                own
            } else if euid == 0 {
                mount.join("corral").join("user-0")
            } else {
                return None;
            }
        }
    };
    // A root the manager has yet to create enables nothing.
    let enabled = std::fs::read_to_string(root.join("cgroup.subtree_control"))
        .map(|t| t.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default();
    Some(UnitCgroup { root, enabled })
}

/// Runs the check and prints `file:line: error|warning: directive: message`
/// lines; exit 0 without errors, 1 with any error (unreadable paths too).
pub fn run(args: &VerifyArgs) -> u8 {
    let opts = VerifyOptions {
        stored_symlinks: args.stored_symlinks,
        cgroup: manager_cgroup(args.cgroup_root.clone()),
    };
    let report = verify_paths_with_options(&args.paths, SpecifierContext::current(), opts);
    let mut out = std::io::stdout().lock();
    let mut lines = String::new();
    for d in &report.diagnostics {
        if args.quiet && !d.is_error() {
            continue;
        }
        lines.push_str(&format!("{d}\n"));
    }
    // A closed pipe (`corral verify . | head`) is not an error worth reporting.
    let _ = out.write_all(lines.as_bytes());
    let _ = out.flush();
    let mut err = std::io::stderr().lock();
    for e in &report.io_errors {
        let shown = e.to_string();
        let _ = writeln!(
            err,
            "corral verify: error: {}",
            crate::unit::escape_control(&shown)
        );
    }
    let _ = writeln!(
        err,
        "{} unit(s), {} drop-in(s) checked: {} error(s), {} warning(s)",
        report.units,
        report.dropins,
        report.error_count() + report.io_errors.len(),
        report.warning_count()
    );
    if report.has_errors() {
        exit::NEGATIVE
    } else {
        exit::OK
    }
}
