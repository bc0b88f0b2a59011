//! `corral kill [--signal S] [--kill-whom main|control|all] UNIT...`.

use std::path::PathBuf;

use clap::ValueEnum;

use crate::ipc::proto::{KillWhom, Request};

use super::common::VerbError;
use super::jobs;

/// `--kill-whom`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Whom {
    /// The main process.
    Main,
    /// The control process.
    Control,
    /// Every process of the unit.
    All,
}

/// Parses a signal as systemctl accepts it: `TERM`, `SIGTERM`, `15`.
pub fn parse_signal(s: &str) -> Result<i32, String> {
    if let Ok(n) = s.parse::<i32>() {
        return nix::sys::signal::Signal::try_from(n)
            .map(|sig| sig as i32)
            .map_err(|_| format!("unknown signal number {n}"));
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    name.parse::<nix::sys::signal::Signal>()
        .map(|sig| sig as i32)
        .map_err(|_| format!("unknown signal {s:?}; use a name such as TERM or HUP, or a number"))
}

/// Runs `corral kill`.
pub fn run(
    socket: Option<PathBuf>,
    units: Vec<String>,
    signal: i32,
    whom: Whom,
) -> Result<u8, VerbError> {
    jobs::need_units("kill", &units)?;
    let whom = match whom {
        Whom::Main => KillWhom::Main,
        Whom::Control => KillWhom::Control,
        Whom::All => KillWhom::All,
    };
    jobs::run(
        socket,
        "kill",
        Request::Kill {
            units,
            signal,
            whom,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_by_name_and_number() {
        assert_eq!(parse_signal("TERM"), Ok(libc::SIGTERM));
        assert_eq!(parse_signal("sighup"), Ok(libc::SIGHUP));
        assert_eq!(parse_signal("9"), Ok(libc::SIGKILL));
        assert!(parse_signal("NOPE").is_err());
        assert!(parse_signal("999").is_err());
    }
}
