//! The `corral` command line: argument parsing and one file per verb.
//!
//! The binary in `src/bin/corral.rs` only calls [`main`]; everything here is
//! library code so that tests can drive it and errors stay typed.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod enable;
pub mod list_unit_files;
pub mod verify;

/// Exit codes shared by every verb, as systemctl and journalctl use them.
pub mod exit {
    /// Success.
    pub const OK: u8 = 0;
    /// "Nothing found / not running / verification failed": a negative answer, not an error.
    pub const NEGATIVE: u8 = 1;
    /// An error: bad arguments, unreachable manager, I/O failure.
    pub const ERROR: u8 = 2;
    /// systemctl's "unit not found".
    pub const NO_SUCH_UNIT: u8 = 5;
}

/// corral: supervise your services in their own cgroups, and read what they print.
#[derive(Debug, Parser)]
#[command(name = "corral", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The verbs of `corral`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check unit files, drop-ins and runit service directories (no manager needed).
    Verify(verify::VerifyArgs),
    /// Enable units: create the symlinks their [Install] section asks for.
    Enable(enable::InstallArgs),
    /// Disable units: remove every symlink to them from the units directory.
    Disable(enable::InstallArgs),
    /// Disable, then enable units again.
    Reenable(enable::InstallArgs),
    /// Print whether units are enabled; exit 0 if at least one is.
    IsEnabled(enable::IsEnabledArgs),
    /// Mask units (a symlink to /dev/null): they cannot be started at all.
    Mask(enable::InstallArgs),
    /// Unmask units.
    Unmask(enable::InstallArgs),
    /// List unit files and runit services with their enablement state.
    ListUnitFiles(list_unit_files::ListUnitFilesArgs),
}

/// Parses the process arguments, runs the verb and returns its exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Verify(args) => ExitCode::from(verify::run(&args)),
        Command::Enable(a) => ExitCode::from(enable::run(enable::InstallVerb::Enable, &a)),
        Command::Disable(a) => ExitCode::from(enable::run(enable::InstallVerb::Disable, &a)),
        Command::Reenable(a) => ExitCode::from(enable::run(enable::InstallVerb::Reenable, &a)),
        Command::IsEnabled(a) => ExitCode::from(enable::run_is_enabled(&a)),
        Command::Mask(a) => ExitCode::from(enable::run(enable::InstallVerb::Mask, &a)),
        Command::Unmask(a) => ExitCode::from(enable::run(enable::InstallVerb::Unmask, &a)),
        Command::ListUnitFiles(a) => ExitCode::from(list_unit_files::run(&a)),
    }
}
