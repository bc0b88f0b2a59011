//! `/run/user/UID`: the user's XDG_RUNTIME_DIR, created when nothing else
//! (logind, elogind) manages it, and removed at the last logout only if the
//! system manager made it.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::unistd::{Gid, Uid, chown};

use super::SystemError;

/// The runtime directory of `uid` below `base` (normally `/run/user`).
pub fn path(base: &Path, uid: u32) -> PathBuf {
    base.join(uid.to_string())
}

/// Makes sure `base/UID` exists, 0700 and owned by the user, with the user
/// manager's socket directory `corral/` (0700) inside.
///
/// Returns whether this call created it (and so owns its removal). An existing
/// directory is left as it is: whoever made it manages it.
pub fn ensure(base: &Path, uid: u32, gid: u32) -> Result<bool, SystemError> {
    let dir = path(base, uid);
    let io = |op: &'static str, path: &Path| {
        let path = path.to_owned();
        move |source| SystemError::Io { op, path, source }
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(base)
        .map_err(io("create directory", base))?;
    match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(false),
        Err(e) => return Err(io("create directory", &dir)(e)),
    }
    // The manager's socket directory, 0700 as its socket requires whatever
    // the umask. Made while the parent is still root's, so the user has had
    // no chance to plant a symlink where root creates and chowns.
    let corral = dir.join("corral");
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&corral)
        .map_err(io("create directory", &corral))?;
    // The umask may have narrowed the modes; set them exactly, then hand over.
    for d in [&corral, &dir] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700))
            .map_err(io("chmod 0700", d))?;
        chown(d, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))
            .map_err(|e| io("chown", d)(e.into()))?;
    }
    Ok(true)
}

/// Removes `base/UID` and everything in it.
pub fn remove(base: &Path, uid: u32) -> Result<(), SystemError> {
    let dir = path(base, uid);
    // std's remove_dir_all does not follow symlinks the user may have planted.
    match std::fs::remove_dir_all(&dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(SystemError::Io {
            op: "remove directory",
            path: dir,
            source: e,
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;

    #[test]
    fn created_once_with_mode_and_owner_then_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().join("user");
        let uid = nix::unistd::getuid().as_raw();
        let gid = nix::unistd::getgid().as_raw();
        assert!(ensure(&base, uid, gid).unwrap());
        for dir in [path(&base, uid), path(&base, uid).join("corral")] {
            let meta = std::fs::metadata(&dir).unwrap();
            assert_eq!(meta.mode() & 0o7777, 0o700, "{}", dir.display());
            assert_eq!((meta.uid(), meta.gid()), (uid, gid));
        }
        std::fs::write(path(&base, uid).join("bus"), b"").unwrap();
        assert!(
            !ensure(&base, uid, gid).unwrap(),
            "second ensure must not claim it"
        );
        remove(&base, uid).unwrap();
        assert!(!path(&base, uid).exists());
        remove(&base, uid).unwrap();
    }
}
