//! `corral completions SHELL`: the shell completion script, generated from
//! the same clap definitions the parser uses, so it never falls behind a verb.

use std::io::Write;

use clap::CommandFactory;
use clap_complete::Shell;

use super::{Cli, exit};

/// Writes the completion script for `shell` to `out`.
pub fn write(shell: Shell, out: &mut dyn Write) {
    let mut cmd = Cli::command();
    clap_complete::generate(shell, &mut cmd, "corral", out);
}

/// Prints the completion script on stdout.
pub fn run(shell: Shell) -> u8 {
    let mut out = std::io::stdout().lock();
    write(shell, &mut out);
    match out.flush() {
        Ok(()) => exit::OK,
        // `corral completions bash | head`: a closed pipe is not an error.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => exit::OK,
        Err(e) => {
            eprintln!("corral completions: cannot write the script: {e}");
            exit::ERROR
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn script(shell: Shell) -> String {
        let mut buf = Vec::new();
        write(shell, &mut buf);
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn every_shell_knows_the_verbs_and_the_deferred_flags() {
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let s = script(shell);
            for verb in ["start", "journal", "list-unit-files", "completions", "man"] {
                assert!(s.contains(verb), "{shell}: no {verb} in\n{s}");
            }
            // The journal's flags are built lazily (cli::Lazy); the script
            // must still offer them.
            for flag in ["unit", "follow", "vacuum-size"] {
                assert!(s.contains(flag), "{shell}: no --{flag}");
            }
        }
    }
}
