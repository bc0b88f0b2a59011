//! `corrald --user`'s command line, in the library so that `corral man`
//! renders the page from the same definition the daemon parses with.

use std::path::PathBuf;

use clap::Parser;

/// corrald: supervise a user's services, each in its own cgroup.
#[derive(Debug, Parser)]
#[command(name = "corrald", version, about, long_about = None)]
pub struct UserArgs {
    /// Run as a user's manager: your services, each in its own cgroup.
    #[arg(long)]
    pub user: bool,
    /// Run the system manager (root): one user manager per logged-in or
    /// lingering user. Its own flags: `corrald --system --help`.
    #[arg(long, conflicts_with = "user")]
    pub system: bool,
    /// A unit directory, highest priority first (repeatable; default:
    /// $XDG_CONFIG_HOME/corral/units, /etc/corral/user, /usr/lib/corral/user).
    #[arg(long = "units-dir", value_name = "DIR")]
    pub units_dirs: Vec<PathBuf>,
    /// A directory of runit service directories (default: ~/service; one made
    /// after the manager started is read at the next daemon-reload).
    #[arg(long, value_name = "DIR")]
    pub runit_dir: Option<PathBuf>,
    /// Persistent state (default: $XDG_STATE_HOME/corral).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Runtime files, control.sock among them (default: $XDG_RUNTIME_DIR/corral).
    #[arg(long, value_name = "DIR")]
    pub runtime_dir: Option<PathBuf>,
    /// The cgroup under which unit cgroups are made (default: our own cgroup, if delegated).
    #[arg(long, value_name = "PATH")]
    pub cgroup_root: Option<PathBuf>,
    /// Write one line to this fd once the socket listens and autostart units have started.
    #[arg(long, value_name = "N")]
    pub ready_fd: Option<i32>,
}
