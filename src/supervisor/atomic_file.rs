//! Replacing a small state file so that a crash leaves the old content or
//! the new one (timer stamps, the environment block).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Writes `body` to `path` so that readers see the old content or the new,
/// never a part: a temporary file beside it, fsync, rename, fsync of the
/// directory. `prepare` may adjust the temporary file before the rename.
pub fn write_atomic(
    path: &Path,
    body: &[u8],
    prepare: impl FnOnce(&fs::File) -> std::io::Result<()>,
) -> Result<(), (&'static str, PathBuf, std::io::Error)> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(|e| ("create directory", dir.to_path_buf(), e))?;
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let write = || {
        let mut f = fs::File::create(&tmp).map_err(|e| ("create", tmp.clone(), e))?;
        f.write_all(body).map_err(|e| ("write", tmp.clone(), e))?;
        prepare(&f).map_err(|e| ("set the time of", tmp.clone(), e))?;
        f.sync_all().map_err(|e| ("fsync", tmp.clone(), e))
    };
    if let Err(e) = write() {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    if let Err(e) = fs::rename(&tmp, path) {
        let _ = fs::remove_file(&tmp);
        return Err(("rename into", path.to_path_buf(), e));
    }
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| ("fsync directory", dir.to_path_buf(), e))
}

/// Replaces `path` with `body` by rename, without fsync: for files on a
/// tmpfs (the runtime directory), where a sync buys nothing and the start
/// path must not wait for one. Readers see the old content or the new.
pub fn replace(path: &Path, body: &[u8]) -> Result<(), (&'static str, PathBuf, std::io::Error)> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let written = match fs::write(&tmp, body) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            fs::create_dir_all(dir).map_err(|e| ("create directory", dir.to_path_buf(), e))?;
            fs::write(&tmp, body)
        }
        r => r,
    };
    written.map_err(|e| ("write", tmp.clone(), e))?;
    fs::rename(&tmp, path).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        ("rename into", path.to_path_buf(), e)
    })
}
