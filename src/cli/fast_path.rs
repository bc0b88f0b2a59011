//! The everyday verbs parsed without clap.
//!
//! `corral start UNIT` is the command scripts and users wait on most, and
//! building clap's tree of every verb and flag was the largest part of the
//! CLI's start-up: ~0.3 ms and a third of its page faults, more than it then
//! spends talking to the manager (docs/ARCHITECTURE.md). A command made of
//! only `[--socket PATH] VERB UNIT...`, for the verbs below, is turned into
//! the same [`Cli`] clap would make; anything else (a flag, `--help`, `--`,
//! a missing unit, bytes that are not UTF-8) is left to clap, which gives the
//! help and the errors. `tests` holds the two to the same answers.

use std::ffi::OsString;
use std::path::PathBuf;

use super::{Cli, Command};

/// The verbs taken here: each takes only unit names.
const VERBS: &[&str] = &[
    "start",
    "stop",
    "restart",
    "try-restart",
    "reload",
    "status",
    "is-active",
    "is-failed",
    "reset-failed",
];

/// The command line as clap would parse it, when it is one of the simple
/// shapes above; `None` sends it to clap. `socket_env` is `CORRAL_SOCKET`.
pub fn parse(args: &[OsString], socket_env: Option<&OsString>) -> Option<Cli> {
    let mut words = args.iter().skip(1).map(|a| a.to_str());
    let mut socket = None;
    let verb = loop {
        match words.next()?? {
            // Given twice, clap refuses it.
            "--socket" if socket.is_none() => socket = Some(value(words.next()??)?),
            w if w.starts_with("--socket=") && socket.is_none() => {
                socket = Some(value(&w["--socket=".len()..])?);
            }
            w if VERBS.contains(&w) => break w,
            _ => return None,
        }
    };
    let units = words
        .map(|w| w.filter(|w| !w.starts_with('-')).map(str::to_owned))
        .collect::<Option<Vec<String>>>()?;
    let socket = match socket {
        Some(s) => Some(s),
        // clap takes the variable only when the flag is absent, and refuses
        // an empty one: let it say so.
        None => match socket_env {
            Some(v) if v.is_empty() => return None,
            v => v.map(PathBuf::from),
        },
    };
    let required = || (!units.is_empty()).then_some(());
    let command = match verb {
        "start" => required().map(|()| Command::Start { units }),
        "stop" => required().map(|()| Command::Stop { units }),
        "restart" => required().map(|()| Command::Restart { units }),
        "try-restart" => required().map(|()| Command::TryRestart { units }),
        "reload" => required().map(|()| Command::Reload { units }),
        "is-active" => required().map(|()| Command::IsActive {
            quiet: false,
            units,
        }),
        "is-failed" => required().map(|()| Command::IsFailed {
            quiet: false,
            units,
        }),
        "status" => Some(Command::Status { json: false, units }),
        "reset-failed" => Some(Command::ResetFailed { units }),
        _ => None,
    }?;
    Some(Cli { socket, command })
}

/// A `--socket` value clap would take as it is.
fn value(v: &str) -> Option<PathBuf> {
    (!v.is_empty() && !v.starts_with('-')).then(|| PathBuf::from(v))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn argv(line: &str) -> Vec<OsString> {
        std::iter::once("corral")
            .chain(line.split(' ').filter(|w| !w.is_empty()))
            .map(OsString::from)
            .collect()
    }

    /// What clap makes of the line, if it takes it, in the same Debug form.
    fn by_clap(args: &[OsString], socket_env: Option<&OsString>) -> Option<String> {
        // The derived parser reads CORRAL_SOCKET itself; the table passes the
        // fast path the value the test process has.
        assert_eq!(socket_env, std::env::var_os("CORRAL_SOCKET").as_ref());
        Cli::try_parse_from(args).ok().map(|c| format!("{c:?}"))
    }

    #[test]
    fn the_fast_path_answers_as_clap_does_or_leaves_the_line_to_it() {
        let env = std::env::var_os("CORRAL_SOCKET");
        // (line, whether the fast path takes it)
        let table = [
            ("start memcached", true),
            ("start a b c.service", true),
            ("stop sleeper", true),
            ("restart x", true),
            ("try-restart x y", true),
            ("reload x", true),
            ("status", true),
            ("status x.socket", true),
            ("is-active x", true),
            ("is-failed x y", true),
            ("reset-failed", true),
            ("reset-failed x", true),
            ("--socket /run/c.sock start x", true),
            ("--socket=/run/c.sock stop x", true),
            ("--socket /a --socket /b start x", false),
            ("memcached@11211 start", false),
            ("start", false),
            ("stop", false),
            ("is-active", false),
            ("start --help", false),
            ("start -h", false),
            ("start x --socket /s", false),
            ("start -- -x", false),
            ("status --json", false),
            ("is-active -q x", false),
            ("--socket start x", false),
            ("--socket= start x", false),
            ("--sock /s start x", false),
            ("--version", false),
            ("", false),
            ("Start x", false),
            ("list", false),
            ("kill x", false),
            ("journal -u x", false),
        ];
        for (line, fast) in table {
            let args = argv(line);
            let got = parse(&args, env.as_ref());
            assert_eq!(got.is_some(), fast, "{line:?}: fast path taken: {got:?}");
            if let Some(c) = got {
                assert_eq!(
                    Some(format!("{c:?}")),
                    by_clap(&args, env.as_ref()),
                    "{line:?}"
                );
            }
        }
    }

    #[test]
    fn bytes_that_are_not_utf8_are_left_to_clap() {
        use std::os::unix::ffi::OsStringExt;
        let mut args = argv("start");
        args.push(OsString::from_vec(vec![b'x', 0xff]));
        assert!(parse(&args, None).is_none());
    }

    #[test]
    fn the_socket_variable_is_used_only_without_the_flag_and_an_empty_one_goes_to_clap() {
        let env = OsString::from("/env/c.sock");
        let c = parse(&argv("start x"), Some(&env)).expect("taken");
        assert_eq!(c.socket, Some(PathBuf::from("/env/c.sock")));
        let c = parse(&argv("--socket /flag start x"), Some(&env)).expect("taken");
        assert_eq!(c.socket, Some(PathBuf::from("/flag")));
        assert!(parse(&argv("start x"), Some(&OsString::new())).is_none());
    }
}
