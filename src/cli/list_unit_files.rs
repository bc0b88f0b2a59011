//! `corral list-unit-files [PATTERN...]`: every unit file and runit service
//! of the search path with its enablement state, as `systemctl
//! list-unit-files` shows them. The search path is the running manager's
//! (asked over the socket); without a manager, the user's defaults.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;

use super::exit;
use crate::unit::Loader;
use crate::unit::condition::wildcard_match;
use crate::unit::install::list_unit_files;

/// Arguments of `list-unit-files`.
#[derive(Debug, Args)]
pub struct ListUnitFilesArgs {
    /// Only unit files whose name matches one of these shell patterns.
    #[arg(value_name = "PATTERN")]
    pub patterns: Vec<String>,
    /// Only these states (comma-separated or repeated): enabled, disabled,
    /// static, masked, alias, indirect, linked.
    #[arg(long, value_delimiter = ',')]
    pub state: Vec<String>,
    /// Only these unit types (comma-separated or repeated): service, target, socket, …
    #[arg(short = 't', long = "type", value_delimiter = ',')]
    pub types: Vec<String>,
    /// Leave out the header and the count.
    #[arg(long)]
    pub no_legend: bool,
    /// Unit directories, highest priority first (default: the running
    /// manager's search path, else the user search path).
    #[arg(long = "units-dir", value_name = "DIR")]
    pub units_dir: Vec<PathBuf>,
}

/// The table `list-unit-files` prints.
pub fn render(loader: &Loader, args: &ListUnitFilesArgs) -> String {
    let rows: Vec<(String, String)> = list_unit_files(loader)
        .into_iter()
        .filter(|(name, _, _)| {
            args.patterns.is_empty()
                || args
                    .patterns
                    .iter()
                    .any(|p| wildcard_match(p, name.as_str()))
        })
        .filter(|(_, _, state)| {
            args.state.is_empty() || args.state.iter().any(|s| s == state.as_str())
        })
        .filter(|(name, _, _)| {
            args.types.is_empty() || args.types.iter().any(|t| t == name.kind().suffix())
        })
        .map(|(name, _, state)| (name.to_string(), state.to_string()))
        .collect();
    let width = rows
        .iter()
        .map(|(n, _)| n.len())
        .chain(std::iter::once("UNIT FILE".len()))
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    if !args.no_legend {
        out.push_str(&format!("{:<width$} STATE\n", "UNIT FILE"));
    }
    for (name, state) in &rows {
        out.push_str(&format!("{name:<width$} {state}\n"));
    }
    if !args.no_legend {
        out.push_str(&format!(
            "\n{} unit file{} listed.\n",
            rows.len(),
            if rows.len() == 1 { "" } else { "s" }
        ));
    }
    out
}

/// Runs `list-unit-files` over the search path of the manager at `socket`
/// (the defaults when none answers); exit 0 (systemctl exits 0 even when
/// nothing matches).
pub fn run(args: &ListUnitFilesArgs, socket: Option<PathBuf>) -> u8 {
    let loader = match super::enable::loader_for(&args.units_dir, socket) {
        Ok(l) => l,
        Err(e) => return super::common::report(&e),
    };
    let text = render(&loader, args);
    // A closed pipe (`corral list-unit-files | head`) is not an error worth reporting.
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
    exit::OK
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::enable::{InstallVerb, apply, loader};

    #[test]
    fn table_lists_states_and_filters() {
        let tmp = tempfile::tempdir().unwrap();
        let units = tmp.path().join("units");
        std::fs::create_dir_all(&units).unwrap();
        let Some(corpus) = crate::test_corpus::corpus() else {
            return;
        };
        let corpus = corpus.join("systemd-user");
        for f in [
            "mpd/mpd.service",
            "mpd/mpd.socket",
            "dbus-broker/dbus-broker.service",
        ] {
            let src = corpus.join(f);
            std::fs::copy(&src, units.join(src.file_name().unwrap())).unwrap();
        }
        std::fs::write(
            units.join("helper.service"),
            "[Service]\nExecStart=/bin/true\n",
        )
        .unwrap();
        let l = loader(std::slice::from_ref(&units));
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        apply(
            InstallVerb::Enable,
            &l,
            &names(&["mpd.service", "dbus-broker.service"]),
        )
        .unwrap();
        apply(InstallVerb::Mask, &l, &names(&["ghost.service"])).unwrap();
        let args = |patterns: &[&str], state: &[&str]| ListUnitFilesArgs {
            patterns: names(patterns),
            state: names(state),
            types: Vec::new(),
            no_legend: false,
            units_dir: Vec::new(),
        };
        assert_eq!(
            render(&l, &args(&[], &[])),
            "UNIT FILE           STATE\n\
             dbus-broker.service enabled\n\
             dbus.service        alias\n\
             ghost.service       masked\n\
             helper.service      static\n\
             mpd.service         enabled\n\
             mpd.socket          disabled\n\
             \n\
             6 unit files listed.\n"
        );
        assert_eq!(
            render(&l, &args(&["mpd*"], &["disabled"])),
            "UNIT FILE  STATE\nmpd.socket disabled\n\n1 unit file listed.\n"
        );
        let mut quiet = args(&[], &[]);
        quiet.no_legend = true;
        quiet.types = names(&["socket"]);
        assert_eq!(render(&l, &quiet), "mpd.socket disabled\n");
    }
}
