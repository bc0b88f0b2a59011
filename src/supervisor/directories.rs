//! `RuntimeDirectory=`, `StateDirectory=`, `CacheDirectory=`,
//! `LogsDirectory=` and `ConfigurationDirectory=`: made (with their
//! parents) before each command of the unit runs, their mode set, their
//! symlinks made, and `$RUNTIME_DIRECTORY` etc. exported; runtime
//! directories removed when the unit stops (`RuntimeDirectoryPreserve=`).
//!
//! The paths were resolved at load time below the user's XDG directories
//! (`unit::execution`). The manager runs as the user, so there is no
//! ownership to fix, unlike systemd's system manager.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::unit::execution::{DirectoryKind, ExecSettings, RuntimePreserve};

/// A managed directory could not be made.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    /// mkdir, chmod or symlink failed on `path`.
    #[error("cannot set up {directive}= {path}: {source}")]
    Io {
        /// `RuntimeDirectory` ...
        directive: &'static str,
        /// The directory or link.
        path: PathBuf,
        /// The failure.
        source: std::io::Error,
        /// Its kind, for the exit status.
        kind: DirectoryKind,
    },
}

impl DirectoryError {
    /// systemd's exit status: 233 RUNTIME_DIRECTORY, 238 STATE_DIRECTORY, ...
    pub fn exit_status(&self) -> u8 {
        match self {
            DirectoryError::Io { kind, .. } => kind.exit_status(),
        }
    }
}

/// Makes every managed directory of `exec` and returns the variables that
/// name them (`RUNTIME_DIRECTORY=/run/user/1000/foo:/run/user/1000/bar`).
pub fn create(exec: &ExecSettings) -> Result<Vec<(String, String)>, DirectoryError> {
    let mut env = Vec::new();
    for kind in DirectoryKind::ALL {
        let set = exec.directories(kind);
        if set.dirs.is_empty() {
            continue;
        }
        let io = |path: &Path, source: std::io::Error| DirectoryError::Io {
            directive: kind.directive(),
            path: path.to_path_buf(),
            source,
            kind,
        };
        for d in &set.dirs {
            let existed = d.path.is_dir();
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(&d.path)
                .map_err(|e| io(&d.path, e))?;
            // As systemd: an existing configuration directory keeps its mode
            // (a service seldom writes there); the others get *DirectoryMode=.
            if !(existed && kind == DirectoryKind::Configuration) {
                std::fs::set_permissions(&d.path, std::fs::Permissions::from_mode(set.mode))
                    .map_err(|e| io(&d.path, e))?;
            }
            for link in &d.links {
                make_link(&d.path, link).map_err(|e| io(link, e))?;
            }
        }
        let joined: Vec<String> = set
            .dirs
            .iter()
            .map(|d| d.path.to_string_lossy().into_owned())
            .collect();
        env.push((kind.env_var().to_string(), joined.join(":")));
    }
    Ok(env)
}

/// `link` -> `target`, replacing a symlink that points elsewhere.
fn make_link(target: &Path, link: &Path) -> std::io::Result<()> {
    if let Some(parent) = link.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(parent)?;
    }
    match std::fs::read_link(link) {
        Ok(t) if t == target => return Ok(()),
        Ok(_) => std::fs::remove_file(link)?,
        Err(_) => {}
    }
    std::os::unix::fs::symlink(target, link)
}

/// Removes the runtime directories (and their links) of a unit that
/// stopped, unless `RuntimeDirectoryPreserve=` keeps them: `yes` always,
/// `restart` when the unit is about to start again. Returns what could not
/// be removed, for the unit's log.
pub fn remove_runtime(exec: &ExecSettings, restarting: bool) -> Vec<String> {
    match exec.runtime_preserve {
        RuntimePreserve::Yes => return Vec::new(),
        RuntimePreserve::Restart if restarting => return Vec::new(),
        _ => {}
    }
    let mut problems = Vec::new();
    for d in &exec.directories(DirectoryKind::Runtime).dirs {
        for link in &d.links {
            if let Err(e) = std::fs::remove_file(link)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                problems.push(format!("cannot remove {}: {e}", link.display()));
            }
        }
        if let Err(e) = std::fs::remove_dir_all(&d.path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            problems.push(format!(
                "cannot remove RuntimeDirectory= {}: {e}",
                d.path.display()
            ));
        }
    }
    problems
}
