//! `corral --system status [USER]`: the system manager's view: each user's
//! sessions, linger, manager state and cgroup tree. Root sees every user, a
//! user only themselves.
//!
//! It has its own small parser because `--system` switches the whole command
//! line to the system manager's verbs, before the user verbs are parsed.

use std::fmt::Write;

use clap::{Parser, Subcommand};

use super::exit;
use super::login::{SystemSocket, call, report, resolve_uid};
use crate::ipc::system_proto::{ManagerState, SystemRequest, SystemResponse, UserStatus};

/// `corral --system VERB`: talk to corrald --system.
#[derive(Debug, Parser)]
#[command(name = "corral --system", bin_name = "corral --system", version)]
pub struct SystemCli {
    /// Selects the system manager (always set here).
    #[arg(long)]
    pub system: bool,
    /// What to ask.
    #[command(subcommand)]
    pub command: SystemCommand,
}

/// The system manager's verbs.
#[derive(Debug, Subcommand)]
pub enum SystemCommand {
    /// Users' managers, sessions, linger and cgroup trees.
    Status {
        /// Only this user (name or uid).
        user: Option<String>,
        /// Where the system manager listens.
        #[command(flatten)]
        socket: SystemSocket,
    },
}

/// True when the command line starts with `--system`.
pub fn wanted() -> bool {
    std::env::args_os().nth(1).is_some_and(|a| a == "--system")
}

/// Parses and runs `corral --system ...`.
pub fn main() -> u8 {
    let cli = SystemCli::parse();
    match cli.command {
        SystemCommand::Status { user, socket } => status(user.as_deref(), &socket),
    }
}

fn status(user: Option<&str>, socket: &SystemSocket) -> u8 {
    let uid = match user.map(|u| resolve_uid(Some(u))).transpose() {
        Ok(uid) => uid,
        Err(e) => {
            eprintln!("corral --system status: {e}");
            return exit::ERROR;
        }
    };
    match report(
        "--system status",
        call(socket, &SystemRequest::Status { uid }, None),
    ) {
        Some(SystemResponse::Status(users)) if users.is_empty() => {
            println!("no user managers");
            exit::NEGATIVE
        }
        Some(SystemResponse::Status(users)) => {
            print!("{}", render(&users));
            exit::OK
        }
        Some(other) => {
            eprintln!("corral --system status: unexpected answer: {other:?}");
            exit::ERROR
        }
        None => exit::ERROR,
    }
}

/// Formats users the way `corral --system status` prints them.
pub fn render(users: &[UserStatus]) -> String {
    let mut out = String::new();
    for u in users {
        let state = match u.state {
            ManagerState::Starting => "starting",
            ManagerState::Running => "running",
            ManagerState::Restarting => "restarting",
            ManagerState::Stopping => "stopping",
            ManagerState::Failed => "failed",
            ManagerState::Stopped => "stopped",
        };
        let _ = writeln!(out, "{} (uid {})", u.name, u.uid);
        let pid = u
            .manager_pid
            .map(|p| format!(" (pid {p})"))
            .unwrap_or_default();
        let _ = writeln!(out, "  manager: {state}{pid}, restarts: {}", u.restarts);
        if let Some(error) = &u.last_error {
            let _ = writeln!(out, "  last error: {error}");
        }
        let linger = if u.linger { "yes" } else { "no" };
        let _ = writeln!(out, "  sessions: {}, linger: {linger}", u.sessions);
        let _ = writeln!(out, "  runtime dir: {}", u.runtime_dir.display());
        for node in &u.cgroups {
            let depth = node.path.matches('/').count();
            let indent = "  ".repeat(depth + 1);
            let pids: Vec<String> = node.pids.iter().map(u32::to_string).collect();
            let pids = if pids.is_empty() {
                String::new()
            } else {
                format!(": {}", pids.join(" "))
            };
            let _ = writeln!(out, "{indent}{}{pids}", node.path);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipc::system_proto::CgroupNode;

    #[test]
    fn status_shows_state_sessions_and_the_tree_indented() {
        let users = [UserStatus {
            uid: 1000,
            name: "alice".into(),
            sessions: 2,
            linger: true,
            state: ManagerState::Running,
            manager_pid: Some(4242),
            restarts: 1,
            runtime_dir: "/run/user/1000".into(),
            cgroups: vec![
                CgroupNode {
                    path: "user-1000".into(),
                    pids: vec![],
                },
                CgroupNode {
                    path: "user-1000/manager".into(),
                    pids: vec![4242],
                },
                CgroupNode {
                    path: "user-1000/ssh-agent".into(),
                    pids: vec![4300, 4301],
                },
            ],
            last_error: Some("the user manager of uid 1000 killed by SIGKILL".into()),
        }];
        assert_eq!(
            render(&users),
            "alice (uid 1000)\n\
             \x20 manager: running (pid 4242), restarts: 1\n\
             \x20 last error: the user manager of uid 1000 killed by SIGKILL\n\
             \x20 sessions: 2, linger: yes\n\
             \x20 runtime dir: /run/user/1000\n\
             \x20 user-1000\n\
             \x20   user-1000/manager: 4242\n\
             \x20   user-1000/ssh-agent: 4300 4301\n"
        );
    }
}
