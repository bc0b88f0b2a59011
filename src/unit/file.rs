//! Reading the files users write (unit files, drop-ins, environment files,
//! stored symlinks) so that none of them can hang or bloat the reader: the
//! manager and `corral verify` both read through [`read_user_file`].
//!
//! A FIFO would block `open()` until a writer comes, `/dev/zero` (or
//! `/dev/urandom`) never ends, and a huge file would be held in memory:
//! only regular files are read, opened with `O_NONBLOCK`, and at most
//! [`MAX_UNIT_FILE`] bytes of them.

use std::fs::{File, Metadata};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

use super::UnitError;

/// Largest unit file, drop-in or environment file read (systemd has no such
/// limit, but a file this big is a mistake, and the manager should not load
/// it).
pub const MAX_UNIT_FILE: u64 = 16 << 20;

/// What a file is read as; names it in messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserFile {
    /// A unit file (fragment).
    Unit,
    /// A drop-in `*.conf`.
    Dropin,
    /// An `EnvironmentFile=`.
    Environment,
    /// A plain file probed as a stored symlink.
    StoredLink,
    /// A service's `PIDFile=`.
    PidFile,
    /// A `LoadCredential=` file.
    Credential,
}

impl UserFile {
    /// The noun used in messages ("unit file", ...).
    pub fn noun(self) -> &'static str {
        match self {
            UserFile::Unit => "unit file",
            UserFile::Dropin => "drop-in",
            UserFile::Environment => "environment file",
            UserFile::StoredLink => "stored symlink",
            UserFile::PidFile => "PID file",
            UserFile::Credential => "credential file",
        }
    }

    fn read_op(self) -> &'static str {
        match self {
            UserFile::Unit => "read unit file",
            UserFile::Dropin => "read drop-in",
            UserFile::Environment => "read environment file",
            UserFile::StoredLink => "read stored symlink",
            UserFile::PidFile => "read PID file",
            UserFile::Credential => "read credential file",
        }
    }
}

/// Whether `md` is `/dev/null` (character device 1:3).
pub fn is_dev_null(md: &Metadata) -> bool {
    md.file_type().is_char_device() && md.rdev() == libc::makedev(1, 3)
}

/// What kind of non-regular file `md` is, for messages.
fn kind_of(md: &Metadata) -> &'static str {
    let t = md.file_type();
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else {
        "not a regular file"
    }
}

/// Why `path` (whose metadata, symlinks followed, is `md`) is not read as
/// `what`, or None when it may be: it must be a regular file of at most
/// [`MAX_UNIT_FILE`] bytes. `/dev/null` is read as empty.
pub fn refusal(path: &Path, md: &Metadata, what: UserFile) -> Option<UnitError> {
    if is_dev_null(md) {
        return None;
    }
    let reason = if !md.is_file() {
        let via = std::fs::read_link(path)
            .map(|t| format!(" (a symlink to {})", t.display()))
            .unwrap_or_default();
        format!(
            "it is {}{via}, not a regular file; {}s must be plain files: replace it with one or remove it",
            kind_of(md),
            what.noun()
        )
    } else if md.len() > MAX_UNIT_FILE {
        too_large(md.len(), what)
    } else {
        return None;
    };
    Some(UnitError::Refused {
        what: what.noun(),
        path: path.to_path_buf(),
        reason,
    })
}

fn too_large(len: u64, what: UserFile) -> String {
    format!(
        "it is {len} bytes, more than the {MAX_UNIT_FILE} bytes (16 MiB) a {} may have; make it smaller",
        what.noun()
    )
}

/// Reads `path` as `what` under the rules of this module: the refusal
/// ([`refusal`]) or I/O error names the path. Never blocks on a FIFO and
/// never reads more than [`MAX_UNIT_FILE`] + 1 bytes.
pub fn read_user_file(path: &Path, what: UserFile) -> Result<Vec<u8>, UnitError> {
    let io = |source| UnitError::Io {
        op: what.read_op(),
        path: path.to_path_buf(),
        source,
    };
    // Checked before opening, so that no device is ever opened (opening
    // some has side effects); checked again on the open file, as the path
    // may have been replaced in between.
    let md = std::fs::metadata(path).map_err(io)?;
    if let Some(e) = refusal(path, &md, what) {
        return Err(e);
    }
    if is_dev_null(&md) {
        return Ok(Vec::new());
    }
    let f = File::options()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(path)
        .map_err(io)?;
    let md = f.metadata().map_err(io)?;
    if let Some(e) = refusal(path, &md, what) {
        return Err(e);
    }
    let mut bytes = Vec::with_capacity(md.len() as usize);
    // A file that grows while it is read still stops at the cap.
    f.take(MAX_UNIT_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > MAX_UNIT_FILE {
        return Err(UnitError::Refused {
            what: what.noun(),
            path: path.to_path_buf(),
            reason: too_large(bytes.len() as u64, what),
        });
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_fifos_devices_and_directories_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo.service");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let zero = dir.path().join("zero.service");
        std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
        for (p, kind) in [
            (&fifo, "a FIFO"),
            (&zero, "a character device (a symlink to /dev/zero)"),
            (&dir.path().to_path_buf(), "a directory"),
        ] {
            let e = read_user_file(p, UserFile::Unit).unwrap_err().to_string();
            assert!(e.contains(kind), "{e}");
            assert!(e.contains(&p.display().to_string()), "{e}");
            assert!(e.contains("unit files must be plain files"), "{e}");
        }
    }

    #[test]
    fn reads_regular_files_and_dev_null_and_caps_the_size() {
        let dir = tempfile::tempdir().unwrap();
        let ok = dir.path().join("ok.service");
        std::fs::write(&ok, "[Service]\n").unwrap();
        assert_eq!(read_user_file(&ok, UserFile::Unit).unwrap(), b"[Service]\n");
        let null = read_user_file(Path::new("/dev/null"), UserFile::Environment).unwrap();
        assert!(null.is_empty());
        let big = dir.path().join("big.conf");
        File::create(&big)
            .unwrap()
            .set_len(MAX_UNIT_FILE + 1)
            .unwrap();
        let e = read_user_file(&big, UserFile::Dropin)
            .unwrap_err()
            .to_string();
        assert!(e.contains("16 MiB) a drop-in may have"), "{e}");
        let missing = read_user_file(&dir.path().join("nope"), UserFile::Unit).unwrap_err();
        assert!(matches!(missing, UnitError::Io { .. }), "{missing}");
    }
}
