//! The `corral` command line: argument parsing and one file per verb.
//!
//! The binary in `src/bin/corral.rs` only calls [`main`]; everything here is
//! library code so that tests can drive it and errors stay typed.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use enable::InstallVerb;

pub mod calendar;
pub mod cat;
pub mod common;
pub mod completions;
pub mod daemon_reexec;
pub mod daemon_reload;
pub mod edit;
pub mod enable;
pub mod environment;
pub mod fast_path;
pub mod is_active;
pub mod jobs;
pub mod journal;
pub mod journal_upload;
pub mod kill;
pub mod linger;
pub mod list;
pub mod list_dependencies;
pub mod list_sockets;
pub mod list_timers;
pub mod list_unit_files;
pub mod login;
pub mod man;
pub mod reload;
pub mod reset_failed;
pub mod restart;
pub mod show;
pub mod start;
pub mod status;
pub mod stop;
pub mod system_status;
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

/// A verb's arguments, built only when that verb is parsed or its help shown.
///
/// clap builds the arguments of every verb on each run otherwise: a quarter of
/// the CPU time of `corral journal -u U -n 100` went into setting up the
/// flags of verbs that were not called.
#[derive(Debug, Clone)]
pub struct Lazy<T>(pub T);

impl<T> std::ops::Deref for Lazy<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: clap::FromArgMatches> clap::FromArgMatches for Lazy<T> {
    fn from_arg_matches(m: &clap::ArgMatches) -> Result<Self, clap::Error> {
        T::from_arg_matches(m).map(Lazy)
    }
    fn from_arg_matches_mut(m: &mut clap::ArgMatches) -> Result<Self, clap::Error> {
        T::from_arg_matches_mut(m).map(Lazy)
    }
    fn update_from_arg_matches(&mut self, m: &clap::ArgMatches) -> Result<(), clap::Error> {
        self.0.update_from_arg_matches(m)
    }
    fn update_from_arg_matches_mut(&mut self, m: &mut clap::ArgMatches) -> Result<(), clap::Error> {
        self.0.update_from_arg_matches_mut(m)
    }
}

impl<T: clap::Args> clap::Args for Lazy<T> {
    fn group_id() -> Option<clap::Id> {
        T::group_id()
    }
    fn augment_args(cmd: clap::Command) -> clap::Command {
        cmd.defer(|c| keep_about(c, T::augment_args))
    }
    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        cmd.defer(|c| keep_about(c, T::augment_args_for_update))
    }
}

/// Runs a deferred `augment` without letting the argument struct's own doc
/// comment replace the verb's (derive sets the verb's about after augmenting;
/// deferred, the augmenting comes last).
fn keep_about(cmd: clap::Command, augment: fn(clap::Command) -> clap::Command) -> clap::Command {
    let about = cmd.get_about().cloned();
    let long = cmd.get_long_about().cloned();
    let cmd = augment(cmd);
    let cmd = match about {
        Some(a) => cmd.about(a),
        None => cmd.about(None::<&'static str>),
    };
    match long {
        Some(l) => cmd.long_about(l),
        None => cmd.long_about(None::<&'static str>),
    }
}

/// corral: supervise your services in their own cgroups, and read what they print.
#[derive(Debug, Parser)]
#[command(name = "corral", version, about, long_about = None)]
pub struct Cli {
    /// The manager's control socket (default: $XDG_RUNTIME_DIR/corral/control.sock).
    #[arg(long, global = true, env = "CORRAL_SOCKET", value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The verbs of `corral`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start units; returns when each is active or has failed.
    Start {
        /// Unit names ("memcached" means memcached.service).
        #[arg(required = true)]
        units: Vec<String>,
    },
    /// Stop units; returns when not one of their processes is left.
    Stop {
        /// Unit names.
        #[arg(required = true)]
        units: Vec<String>,
    },
    /// Stop (if running) and start units.
    Restart {
        /// Unit names.
        #[arg(required = true)]
        units: Vec<String>,
    },
    /// Restart units that are running; leave the others stopped.
    TryRestart {
        /// Unit names.
        #[arg(required = true)]
        units: Vec<String>,
    },
    /// Reload units (ExecReload=).
    Reload {
        /// Unit names.
        #[arg(required = true)]
        units: Vec<String>,
    },
    /// Reload units that can (active, with ExecReload=); restart the others
    /// (start them if not running).
    ReloadOrRestart {
        /// Unit names.
        #[arg(required = true)]
        units: Vec<String>,
    },
    /// Reload units that can; restart the other running ones; leave stopped
    /// units alone.
    TryReloadOrRestart {
        /// Unit names.
        #[arg(required = true)]
        units: Vec<String>,
    },
    /// Send a signal to the processes of units.
    Kill {
        /// The signal: a name (TERM, SIGHUP) or a number.
        #[arg(short, long, default_value = "TERM", value_parser = kill::parse_signal)]
        signal: i32,
        /// Which processes.
        #[arg(long, value_enum, default_value = "all")]
        kill_whom: kill::Whom,
        /// Unit names.
        #[arg(required = true)]
        units: Vec<String>,
    },
    /// Show the state of units, or of the manager and all its units.
    Status {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Unit names (none: the whole tree).
        units: Vec<String>,
    },
    /// List units (running and failed ones; --all for every known unit).
    #[command(alias = "list-units")]
    List {
        /// Also list inactive units.
        #[arg(short, long)]
        all: bool,
        /// Only units in these states: ACTIVE (active, failed, inactive, ...),
        /// SUB (running, exited, listening, ...) or LOAD (loaded, error,
        /// masked, not-found) words, comma-separated or repeated; inactive
        /// units are listed when a state asks for them.
        #[arg(long, value_name = "STATE", value_delimiter = ',')]
        state: Vec<String>,
        /// Only failed units (--state=failed).
        #[arg(long)]
        failed: bool,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// List timers: when each elapses next and last triggered, and what it starts.
    ListTimers {
        /// Also list inactive timers.
        #[arg(short, long)]
        all: bool,
    },
    /// List the sockets the manager listens on (LISTEN, UNIT, ACTIVATES).
    ListSockets {
        /// Also list the sockets of inactive socket units.
        #[arg(short, long)]
        all: bool,
    },
    /// Show the properties of units as key=value lines.
    Show {
        /// Only these properties (repeatable, or comma-separated).
        #[arg(short = 'p', long = "property")]
        property: Vec<String>,
        /// Print only the values.
        #[arg(long)]
        value: bool,
        /// Print JSON instead of key=value lines.
        #[arg(long)]
        json: bool,
        /// Unit names.
        #[arg(required = true)]
        units: Vec<String>,
    },
    /// Print the files that define units.
    Cat {
        /// Unit names.
        #[arg(required = true)]
        units: Vec<String>,
    },
    /// Edit a unit's drop-in (or with --full its whole file) in your editor, then reload
    Edit(Lazy<edit::EditArgs>),
    /// Read the unit files again.
    DaemonReload,
    /// Reexecute the manager (the corrald file on disk, so an upgrade takes
    /// effect), keeping every unit running and its output.
    DaemonReexec,
    /// Forget the failed state of units (all when none is named).
    ResetFailed {
        /// Unit names.
        units: Vec<String>,
    },
    /// Print whether units are active; exit 0 if at least one is.
    IsActive {
        /// Print nothing, only set the exit code.
        #[arg(short, long)]
        quiet: bool,
        /// Unit names.
        #[arg(required = true)]
        units: Vec<String>,
    },
    /// Print whether units have failed; exit 0 if at least one has.
    IsFailed {
        /// Print nothing, only set the exit code.
        #[arg(short, long)]
        quiet: bool,
        /// Unit names.
        #[arg(required = true)]
        units: Vec<String>,
    },
    /// Register a session with corrald --system (starts your manager).
    Login(Lazy<login::LoginArgs>),
    /// End a session; the last one stops your manager unless you linger.
    Logout(Lazy<login::LogoutArgs>),
    /// Keep your manager running without a login, and start it at boot.
    EnableLinger(Lazy<linger::LingerArgs>),
    /// Stop lingering.
    DisableLinger(Lazy<linger::LingerArgs>),
    /// Check unit files, drop-ins and runit service directories (no manager needed).
    Verify(Lazy<verify::VerifyArgs>),
    /// Enable units: create the symlinks their [Install] section asks for.
    Enable(Lazy<enable::InstallArgs>),
    /// Disable units: remove every symlink to them from the units directory.
    Disable(Lazy<enable::InstallArgs>),
    /// Disable, then enable units again.
    Reenable(Lazy<enable::InstallArgs>),
    /// Print whether units are enabled; exit 0 if at least one is.
    IsEnabled(Lazy<enable::IsEnabledArgs>),
    /// Mask units (a symlink to /dev/null): they cannot be started at all.
    Mask(Lazy<enable::InstallArgs>),
    /// Unmask units.
    Unmask(Lazy<enable::InstallArgs>),
    /// List unit files and runit services with their enablement state.
    ListUnitFiles(Lazy<list_unit_files::ListUnitFilesArgs>),
    /// Show the tree of units a unit pulls in (default.target when none is named).
    ListDependencies {
        /// Show what pulls the unit in instead.
        #[arg(long)]
        reverse: bool,
        /// Expand every unit, not only targets.
        #[arg(short, long)]
        all: bool,
        /// The unit.
        unit: Option<String>,
    },
    /// Set variables in the manager's environment block (for units started afterwards).
    SetEnvironment {
        /// NAME=value assignments.
        #[arg(required = true, value_name = "NAME=VALUE")]
        assignments: Vec<String>,
    },
    /// Remove variables from the manager's environment block.
    UnsetEnvironment {
        /// Names (NAME=value removes NAME only while it has that value).
        #[arg(required = true, value_name = "NAME")]
        names: Vec<String>,
    },
    /// Copy variables of this shell into the manager's environment block
    /// (NAME copies, NAME=value sets, NAME= sets empty).
    ImportEnvironment {
        /// Names or assignments; none imports the whole environment.
        #[arg(value_name = "NAME")]
        names: Vec<String>,
    },
    /// Print the manager's environment block.
    ShowEnvironment,
    /// Show the normalized form and next elapses of calendar events
    /// (OnCalendar=), as `systemd-analyze calendar` does; needs no manager.
    Calendar(Lazy<calendar::CalendarArgs>),
    /// Show what the services printed (journalctl's flags).
    Journal(Lazy<Box<journal::JournalArgs>>),
    /// Send the journal to a systemd-journal-remote over HTTP (as systemd-journal-upload).
    JournalUpload(Lazy<journal_upload::UploadArgs>),
    /// Print a shell completion script:
    /// `corral completions bash > /usr/share/bash-completion/completions/corral`.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write man pages (corral, each verb, corrald) into DIR/man1 and DIR/man8:
    /// `corral man /usr/local/share/man`.
    Man {
        /// The man directory to fill.
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
}

/// Parses the process arguments, runs the verb and returns its exit code.
pub fn main() -> u8 {
    // `corral --system VERB` speaks to corrald --system with its own verbs.
    if system_status::wanted() {
        return system_status::main();
    }
    let args: Vec<_> = std::env::args_os().collect();
    let cli = fast_path::parse(&args, std::env::var_os("CORRAL_SOCKET").as_ref())
        .unwrap_or_else(|| Cli::parse_from(args));
    let socket = cli.socket;
    let result = match cli.command {
        Command::Start { units } => start::run(socket, units),
        Command::Stop { units } => stop::run(socket, units),
        Command::Restart { units } => restart::run(socket, units, false),
        Command::TryRestart { units } => restart::run(socket, units, true),
        Command::Reload { units } => reload::run(socket, units),
        Command::ReloadOrRestart { units } => reload::or_restart(socket, units, false),
        Command::TryReloadOrRestart { units } => reload::or_restart(socket, units, true),
        Command::Kill {
            signal,
            kill_whom,
            units,
        } => kill::run(socket, units, signal, kill_whom),
        Command::Status { json, units } => status::run(socket, units, json),
        Command::List {
            all,
            mut state,
            failed,
            json,
        } => {
            if failed {
                state.push("failed".into());
            }
            list::run(socket, all, &state, json)
        }
        Command::ListTimers { all } => list_timers::run(socket, all),
        Command::ListSockets { all } => list_sockets::run(socket, all),
        Command::Show {
            property,
            value,
            json,
            units,
        } => show::run(socket, units, property, value, json),
        Command::Cat { units } => cat::run(socket, units),
        Command::Edit(a) => return edit::run(&a, socket),
        Command::DaemonReload => daemon_reload::run(socket),
        Command::DaemonReexec => daemon_reexec::run(socket),
        Command::ResetFailed { units } => reset_failed::run(socket, units),
        Command::IsActive { quiet, units } => is_active::run(socket, units, false, quiet),
        Command::IsFailed { quiet, units } => is_active::run(socket, units, true, quiet),
        Command::Login(args) => return login::login(args.0),
        Command::Logout(args) => return login::logout(args.0),
        Command::EnableLinger(args) => return linger::run(args.0, true),
        Command::DisableLinger(args) => return linger::run(args.0, false),
        Command::Verify(args) => return verify::run(&args),
        Command::Journal(args) => return journal::run(*args.0, socket),
        Command::Calendar(args) => return calendar::run(&args),
        Command::JournalUpload(args) => return journal_upload::run(args.0),
        Command::Enable(a) => {
            return enable::run_then_now(InstallVerb::Enable, &a, socket);
        }
        Command::Disable(a) => {
            return enable::run_then_now(InstallVerb::Disable, &a, socket);
        }
        Command::Reenable(a) => {
            return enable::run_then_now(InstallVerb::Reenable, &a, socket);
        }
        Command::IsEnabled(a) => return enable::run_is_enabled(&a, socket),
        Command::Mask(a) => {
            return enable::run_then_now(InstallVerb::Mask, &a, socket);
        }
        Command::Unmask(a) => {
            return enable::run_then_now(InstallVerb::Unmask, &a, socket);
        }
        Command::ListUnitFiles(a) => return list_unit_files::run(&a, socket),
        Command::ListDependencies { reverse, all, unit } => {
            list_dependencies::run(socket, unit, reverse, all)
        }
        Command::SetEnvironment { assignments } => environment::set(socket, assignments),
        Command::UnsetEnvironment { names } => environment::unset(socket, names),
        Command::ImportEnvironment { names } => environment::import(socket, names),
        Command::ShowEnvironment => environment::show(socket),
        Command::Completions { shell } => return completions::run(shell),
        Command::Man { dir } => return man::run(&dir),
    };
    result.unwrap_or_else(|e| common::report(&e))
}
