//! `corral verify PATH...`: check unit files and runit service directories.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;

use super::exit;
use crate::unit::verify::verify_paths;

/// Arguments of `corral verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Unit files, drop-ins, runit service directories, or directories to search recursively.
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Print only errors, not warnings.
    #[arg(short, long)]
    pub quiet: bool,
}

/// Runs the check and prints `file:line: error|warning: directive: message`
/// lines; exit 0 without errors, 1 with errors, 2 when a path cannot be read.
pub fn run(args: &VerifyArgs) -> u8 {
    let report = verify_paths(&args.paths);
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
        let _ = writeln!(err, "corral verify: {e}");
    }
    let _ = writeln!(
        err,
        "{} unit(s), {} drop-in(s) checked: {} error(s), {} warning(s)",
        report.units,
        report.dropins,
        report.error_count(),
        report.warning_count()
    );
    if !report.io_errors.is_empty() {
        exit::ERROR
    } else if report.has_errors() {
        exit::NEGATIVE
    } else {
        exit::OK
    }
}
