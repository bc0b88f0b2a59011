//! `corrald --system`'s command line: parsed here, not in `src/bin/corrald.rs`,
//! so the binary only has to route `--system` to [`main`].

use std::os::fd::RawFd;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use tokio::signal::unix::{SignalKind, signal};

use super::{Shutdown, SystemOptions, run};

/// corrald --system: start each user's corral manager at login or by linger.
#[derive(Debug, Parser)]
#[command(name = "corrald --system", bin_name = "corrald --system", version)]
pub struct SystemArgs {
    /// Run as the system manager (always set here).
    #[arg(long)]
    pub system: bool,
    /// Parent of the users' cgroups [default: <cgroup2 mount>/corral].
    #[arg(long)]
    pub cgroup_root: Option<PathBuf>,
    /// Directory of the system socket (system.sock).
    #[arg(long, default_value = "/run/corral")]
    pub runtime_dir: PathBuf,
    /// Linger files (linger/) and the journal of the user managers' output (journal/).
    #[arg(long, default_value = "/var/lib/corral")]
    pub state_dir: PathBuf,
    /// Write one line to this fd once the socket listens and lingering
    /// users' managers have been started.
    #[arg(long)]
    pub ready_fd: Option<RawFd>,
    /// Seconds a user manager may take to stop its units at the last logout
    /// before its whole subtree is killed.
    #[arg(long, default_value_t = 15.0)]
    pub stop_timeout: f64,
    /// The corrald binary started as each user's manager [default: this one].
    #[arg(long)]
    pub user_manager: Option<PathBuf>,
}

/// Parses the arguments, runs the system manager until SIGTERM or SIGINT
/// (user managers keep running) or SIGHUP (they are stopped first) and
/// returns the exit code.
pub fn main() -> ExitCode {
    let args = SystemArgs::parse();
    if !nix::unistd::geteuid().is_root() {
        eprintln!(
            "corrald --system: must run as root (it starts each user's manager as that user); \
             run `corrald --user` to supervise only your own services"
        );
        return ExitCode::from(2);
    }
    let options = SystemOptions {
        cgroup_root: args.cgroup_root,
        runtime_dir: args.runtime_dir,
        state_dir: args.state_dir,
        ready_fd: args.ready_fd,
        user_manager_exe: args.user_manager,
        stop_timeout: std::time::Duration::from_secs_f64(args.stop_timeout.max(0.0)),
        ..SystemOptions::default()
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("corrald --system: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(async {
        let (mut term, mut int, mut hup) = match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::hangup()),
        ) {
            (Ok(term), Ok(int), Ok(hup)) => (term, int, hup),
            (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
                return Err(format!(
                    "cannot install SIGTERM/SIGINT/SIGHUP handlers: {e}"
                ));
            }
        };
        // As runsvdir: TERM leaves the supervised processes running (a
        // restart carries on with them), HUP stops them all first.
        let shutdown = async move {
            tokio::select! {
                _ = term.recv() => Shutdown::Keep,
                _ = int.recv() => Shutdown::Keep,
                _ = hup.recv() => Shutdown::StopUsers,
            }
        };
        run(options, shutdown).await.map_err(|e| e.to_string())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("corrald --system: {e}");
            ExitCode::from(2)
        }
    }
}
