//! `corral man DIR`: man pages for `corral`, each of its verbs, `corral
//! --system`, `corrald --user` and `corrald --system`, rendered from the clap
//! definitions the parsers use, into DIR/man1 and DIR/man8.

use std::path::{Path, PathBuf};

use clap::CommandFactory;
use clap_mangen::Man;

use super::exit;
use super::system_status::SystemCli;
use crate::supervisor::cli::UserArgs;
use crate::system::cli::SystemArgs;

/// The pages written, or the first failure with the path it concerns.
pub fn generate(dir: &Path) -> Result<Vec<PathBuf>, (PathBuf, std::io::Error)> {
    let (man1, man8) = (dir.join("man1"), dir.join("man8"));
    for d in [&man1, &man8] {
        std::fs::create_dir_all(d).map_err(|e| (d.clone(), e))?;
    }
    // One page per verb (corral-start.1, corral-journal.1, ...) and corral.1.
    clap_mangen::generate_to(super::Cli::command(), &man1).map_err(|e| (man1.clone(), e))?;
    let pages = [
        (SystemCli::command(), "corral-system", "1", &man1),
        (UserArgs::command(), "corrald", "8", &man8),
        (SystemArgs::command(), "corrald-system", "8", &man8),
    ];
    for (cmd, title, section, to) in pages {
        // The file is named for the display name; "corrald --system" is
        // not a file name a man path can hold.
        Man::new(cmd.display_name(title))
            .title(title)
            .section(section)
            .generate_to(to)
            .map_err(|e| (to.clone(), e))?;
    }
    let mut written = Vec::new();
    for d in [&man1, &man8] {
        let rd = std::fs::read_dir(d).map_err(|e| (d.clone(), e))?;
        for e in rd {
            let e = e.map_err(|e| (d.clone(), e))?;
            written.push(e.path());
        }
    }
    written.sort();
    Ok(written)
}

/// Writes the pages and lists them.
pub fn run(dir: &Path) -> u8 {
    match generate(dir) {
        Ok(pages) => {
            for p in pages {
                println!("{}", p.display());
            }
            exit::OK
        }
        Err((path, e)) => {
            eprintln!("corral man: cannot write {}: {e}", path.display());
            exit::ERROR
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_for_every_verb_and_both_daemons() {
        let tmp = tempfile::tempdir().unwrap();
        let pages = generate(tmp.path()).unwrap();
        let names: Vec<String> = pages
            .iter()
            .map(|p| p.strip_prefix(tmp.path()).unwrap().display().to_string())
            .collect();
        for want in [
            "man1/corral.1",
            "man1/corral-start.1",
            "man1/corral-journal.1",
            "man1/corral-system.1",
            "man8/corrald.8",
            "man8/corrald-system.8",
        ] {
            assert!(names.iter().any(|n| n == want), "{want} missing: {names:?}");
        }
        // The journal verb's flags are deferred (cli::Lazy); its page must
        // still document them.
        let journal = std::fs::read_to_string(tmp.path().join("man1/corral-journal.1")).unwrap();
        assert!(journal.contains("vacuum\\-size"), "{journal}");
        let corrald = std::fs::read_to_string(tmp.path().join("man8/corrald.8")).unwrap();
        assert!(corrald.contains("units\\-dir"), "{corrald}");
    }

    #[test]
    fn an_unwritable_directory_names_the_path() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("file");
        std::fs::write(&file, "").unwrap();
        let (path, _) = generate(&file).unwrap_err();
        assert_eq!(path, file.join("man1"));
    }
}
