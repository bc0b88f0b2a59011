//! The `corral` command line: argument parsing and one file per verb.
//!
//! The binary in `src/bin/corral.rs` only calls [`main`]; everything here is
//! library code so that tests can drive it and errors stay typed.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

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
}

/// Parses the process arguments, runs the verb and returns its exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Verify(args) => ExitCode::from(verify::run(&args)),
    }
}
