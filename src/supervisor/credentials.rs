//! `SetCredential=` and `LoadCredential=`: the unit's credentials written
//! as read-only files into `%t/credentials/UNIT` (`$CREDENTIALS_DIRECTORY`,
//! `%d`) before each of its commands runs, and removed when it stops.
//!
//! A user manager has no ramfs of its own to mount, so (as systemd's user
//! manager) the directory is a plain one below `$XDG_RUNTIME_DIR`, which is
//! the user's own tmpfs: files 0400, the directory 0500.

use std::collections::BTreeMap;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::unit::execution::{CredentialSource, ExecSettings, credential_id_valid};
use crate::unit::file::{UserFile, read_user_file};

/// systemd 252's CREDENTIALS_TOTAL_SIZE_MAX: 1 MiB for all of a unit's credentials.
pub const TOTAL_MAX: usize = 1024 * 1024;

/// Where a credential named by a relative `LoadCredential=` is looked for
/// after the manager's own `$CREDENTIALS_DIRECTORY`.
const CREDSTORE: [&str; 3] = ["/etc/credstore", "/run/credstore", "/usr/lib/credstore"];

/// The credentials could not be passed (systemd: status 243/CREDENTIALS).
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// A `LoadCredential=` source could not be read and no `SetCredential=` stands in.
    #[error("cannot load credential {id}: {reason}")]
    Load {
        /// The credential ID.
        id: String,
        /// Why (names the path).
        reason: String,
    },
    /// Together more than [`TOTAL_MAX`] bytes.
    #[error("the credentials of the unit are larger than 1 MiB together (systemd's limit)")]
    TooLarge,
    /// Writing into the credentials directory failed.
    #[error("cannot write credentials into {path}: {source}")]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
}

/// systemd's exit status for every credential failure.
pub const EXIT_CREDENTIALS: u8 = 243;

/// Writes the credentials of `exec` into its credentials directory and
/// returns `$CREDENTIALS_DIRECTORY`, or None when the unit has none.
pub fn write(exec: &ExecSettings) -> Result<Option<(String, String)>, CredentialError> {
    let Some(dir) = &exec.credentials_dir else {
        return Ok(None);
    };
    let mut creds: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for c in &exec.credentials {
        let CredentialSource::Load(path) = &c.source else {
            continue;
        };
        match load(&c.id, path) {
            Ok(found) => creds.extend(found),
            Err(reason) => {
                // A SetCredential= of the same ID is the fallback.
                let fallback = exec
                    .credentials
                    .iter()
                    .any(|s| s.id == c.id && matches!(s.source, CredentialSource::Data(_)));
                if !fallback {
                    return Err(CredentialError::Load {
                        id: c.id.clone(),
                        reason,
                    });
                }
            }
        }
    }
    for c in &exec.credentials {
        if let CredentialSource::Data(b) = &c.source {
            creds.entry(c.id.clone()).or_insert_with(|| b.clone());
        }
    }
    if creds.values().map(Vec::len).sum::<usize>() > TOTAL_MAX {
        return Err(CredentialError::TooLarge);
    }
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| CredentialError::Write { path, source }
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io(dir))?;
    // Writable while it is filled (again, for a later command of the unit).
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io(dir))?;
    for (id, data) in &creds {
        let file = dir.join(id);
        let tmp = dir.join(format!(".{id}.new"));
        let _ = std::fs::remove_file(&tmp);
        std::fs::write(&tmp, data).map_err(io(&tmp))?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o400)).map_err(io(&tmp))?;
        std::fs::rename(&tmp, &file).map_err(io(&file))?;
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o500)).map_err(io(dir))?;
    Ok(Some((
        "CREDENTIALS_DIRECTORY".to_string(),
        dir.to_string_lossy().into_owned(),
    )))
}

/// The credentials of one `LoadCredential=`: a file, each file of a
/// directory (as `ID_NAME`), or a name found in the manager's own
/// credentials or the credstore directories.
fn load(id: &str, path: &str) -> Result<Vec<(String, Vec<u8>)>, String> {
    let read = |p: &Path| read_user_file(p, UserFile::Credential).map_err(|e| e.to_string());
    if !path.starts_with('/') {
        let received = std::env::var_os("CREDENTIALS_DIRECTORY").map(PathBuf::from);
        for d in received
            .iter()
            .map(PathBuf::as_path)
            .chain(CREDSTORE.iter().map(Path::new))
        {
            let p = d.join(path);
            if p.exists() {
                return Ok(vec![(id.to_string(), read(&p)?)]);
            }
        }
        return Err(format!(
            "no credential '{path}' in the manager's $CREDENTIALS_DIRECTORY nor in {}",
            CREDSTORE.join(", ")
        ));
    }
    let p = Path::new(path);
    if p.is_dir() {
        let mut out = Vec::new();
        load_dir(id, p, &mut out)?;
        return Ok(out);
    }
    Ok(vec![(id.to_string(), read(p)?)])
}

/// Every regular file below `dir`, recursively, as `ID_NAME`; symlinks are
/// skipped, as systemd skips them.
fn load_dir(id: &str, dir: &Path, out: &mut Vec<(String, Vec<u8>)>) -> Result<(), String> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    let mut entries: Vec<_> = entries.filter_map(Result::ok).collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let Ok(t) = e.file_type() else { continue };
        let name = format!("{id}_{}", e.file_name().to_string_lossy());
        if t.is_dir() {
            load_dir(&name, &e.path(), out)?;
        } else if t.is_file() && credential_id_valid(&name) {
            let data =
                read_user_file(&e.path(), UserFile::Credential).map_err(|e| e.to_string())?;
            out.push((name, data));
        }
    }
    Ok(())
}

/// Removes the credentials directory of a unit that stopped.
pub fn remove(exec: &ExecSettings) -> Option<String> {
    let dir = exec.credentials_dir.as_ref()?;
    // 0500 keeps even the owner from unlinking the files.
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Some(format!(
            "cannot remove the credentials directory {}: {e}",
            dir.display()
        )),
        _ => None,
    }
}
