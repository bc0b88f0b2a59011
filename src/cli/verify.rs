//! `corral verify PATH...`: check unit files and runit service directories.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;

use super::exit;
use crate::unit::SpecifierContext;
use crate::unit::verify::{VerifyOptions, verify_paths_with_options};

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
}

/// Runs the check and prints `file:line: error|warning: directive: message`
/// lines; exit 0 without errors, 1 with any error (unreadable paths too).
pub fn run(args: &VerifyArgs) -> u8 {
    let opts = VerifyOptions {
        stored_symlinks: args.stored_symlinks,
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
