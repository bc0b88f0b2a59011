//! Linger settings, persisted as one empty file per user name in a directory
//! (`/var/lib/corral/linger/NAME`), the way systemd-logind keeps them, so an
//! administrator can list or remove them with ls and rm.

use std::path::{Path, PathBuf};

use super::SystemError;

/// The directory of linger files.
#[derive(Debug, Clone)]
pub struct LingerStore {
    /// `<state-dir>/linger`.
    dir: PathBuf,
}

impl LingerStore {
    /// Opens (creating) the linger directory below `state_dir`.
    pub fn open(state_dir: &Path) -> Result<Self, SystemError> {
        let dir = state_dir.join("linger");
        std::fs::create_dir_all(&dir).map_err(|source| SystemError::Io {
            op: "create directory",
            path: dir.clone(),
            source,
        })?;
        Ok(LingerStore { dir })
    }

    /// The directory holding the linger files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Records that `name` lingers.
    pub fn enable(&self, name: &str) -> Result<(), SystemError> {
        let path = self.path(name)?;
        std::fs::write(&path, b"").map_err(|source| SystemError::Io {
            op: "create linger file",
            path,
            source,
        })
    }

    /// Forgets that `name` lingers; not lingering already is fine.
    pub fn disable(&self, name: &str) -> Result<(), SystemError> {
        let path = self.path(name)?;
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(SystemError::Io {
                op: "remove linger file",
                path,
                source: e,
            }),
            _ => Ok(()),
        }
    }

    /// Whether `name` lingers.
    pub fn is_enabled(&self, name: &str) -> bool {
        self.path(name).map(|p| p.exists()).unwrap_or(false)
    }

    /// The names of every lingering user, sorted.
    pub fn list(&self) -> Result<Vec<String>, SystemError> {
        let rd = std::fs::read_dir(&self.dir).map_err(|source| SystemError::Io {
            op: "read directory",
            path: self.dir.clone(),
            source,
        })?;
        let mut names = Vec::new();
        for entry in rd {
            let entry = entry.map_err(|source| SystemError::Io {
                op: "read directory",
                path: self.dir.clone(),
                source,
            })?;
            if let Some(name) = entry.file_name().to_str()
                && !name.starts_with('.')
            {
                names.push(name.to_owned());
            }
        }
        names.sort();
        Ok(names)
    }

    fn path(&self, name: &str) -> Result<PathBuf, SystemError> {
        // A user name is a file name here: never let one climb out of the dir.
        if name.is_empty() || name.contains('/') || name.starts_with('.') {
            return Err(SystemError::BadUserName(name.to_owned()));
        }
        Ok(self.dir.join(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enable_list_disable_roundtrip() {
        let tmp = tempfile::tempdir().unwrap();
        let store = LingerStore::open(tmp.path()).unwrap();
        assert_eq!(store.list().unwrap(), Vec::<String>::new());
        store.enable("bob").unwrap();
        store.enable("alice").unwrap();
        store.enable("alice").unwrap();
        assert!(store.is_enabled("alice"));
        assert_eq!(store.list().unwrap(), ["alice", "bob"]);
        // Reopening sees the same: it is persisted, not held in memory.
        let again = LingerStore::open(tmp.path()).unwrap();
        assert_eq!(again.list().unwrap(), ["alice", "bob"]);
        again.disable("alice").unwrap();
        again.disable("alice").unwrap();
        assert!(!store.is_enabled("alice"));
        assert_eq!(store.list().unwrap(), ["bob"]);
    }

    #[test]
    fn names_cannot_escape_the_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let store = LingerStore::open(tmp.path()).unwrap();
        for bad in ["", "../etc", "a/b", ".hidden"] {
            assert!(store.enable(bad).is_err(), "{bad:?}");
        }
        assert!(!tmp.path().join("etc").exists());
    }
}
