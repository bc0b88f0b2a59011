//! `Persistent=` stamp files: the realtime of a timer's last trigger, one
//! file per timer in `<state dir>/timers/stamp-NAME.timer` (systemd keeps
//! them in ~/.local/share/systemd/timers/ under the same names). The file
//! holds the microseconds since the epoch as decimal text, and its mtime
//! is set to the same instant, as systemd's stamps (empty files read by
//! mtime) carry it. Written atomically: a crash leaves the old stamp or the
//! new one, never a torn one.

use std::fs;
use std::path::{Path, PathBuf};

/// Errors of the stamp files.
#[derive(Debug, thiserror::Error)]
pub enum StampError {
    /// A file operation failed.
    #[error("cannot {op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// On what.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The stamp holds something else than a time.
    #[error("the timer stamp {path} is damaged ({reason}); remove it to start afresh")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// The stamp file of `timer` (a `.timer` unit name) under `state_dir`.
pub fn stamp_path(state_dir: &Path, timer: &str) -> PathBuf {
    state_dir.join("timers").join(format!("stamp-{timer}"))
}

/// Records `realtime` (microseconds since the epoch) as the last trigger.
pub fn write(path: &Path, realtime: u64) -> Result<(), StampError> {
    let when = std::time::UNIX_EPOCH + std::time::Duration::from_micros(realtime);
    crate::supervisor::atomic_file::write_atomic(path, format!("{realtime}\n").as_bytes(), |f| {
        f.set_times(fs::FileTimes::new().set_modified(when).set_accessed(when))
    })
    .map_err(|(op, path, source)| StampError::Io { op, path, source })
}

/// The last trigger recorded, `None` when the timer never triggered (no
/// file). An empty file (systemd's kind) is read by its mtime.
pub fn read(path: &Path) -> Result<Option<u64>, StampError> {
    let io = |op, source| StampError::Io {
        op,
        path: path.to_path_buf(),
        source,
    };
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io("read", e)),
    };
    if text.is_empty() {
        let mtime = fs::metadata(path)
            .and_then(|m| m.modified())
            .map_err(|e| io("stat", e))?;
        let since =
            mtime
                .duration_since(std::time::UNIX_EPOCH)
                .map_err(|_| StampError::Corrupt {
                    path: path.to_path_buf(),
                    reason: "its time is before 1970".to_string(),
                })?;
        return Ok(Some(since.as_micros() as u64));
    }
    text.trim()
        .parse::<u64>()
        .map(Some)
        .map_err(|_| StampError::Corrupt {
            path: path.to_path_buf(),
            reason: format!("'{}' is not microseconds since the epoch", text.trim()),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamp_round_trips_and_carries_its_time_as_mtime() {
        let dir = tempfile::tempdir().unwrap();
        let p = stamp_path(dir.path(), "backup.timer");
        assert_eq!(read(&p).unwrap(), None);
        write(&p, 1_700_000_000_123_456).unwrap();
        assert_eq!(read(&p).unwrap(), Some(1_700_000_000_123_456));
        let mtime = fs::metadata(&p).unwrap().modified().unwrap();
        assert_eq!(
            mtime
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_micros(),
            1_700_000_000_123_456
        );
        write(&p, 1_800_000_000_000_000).unwrap();
        assert_eq!(read(&p).unwrap(), Some(1_800_000_000_000_000));
        // No temporary file is left beside it.
        let names: Vec<_> = fs::read_dir(p.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [std::ffi::OsString::from("stamp-backup.timer")]);
    }

    #[test]
    fn a_systemd_stamp_is_read_by_its_mtime() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("stamp-x.timer");
        let f = fs::File::create(&p).unwrap();
        let when = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_600_000_000);
        f.set_modified(when).unwrap();
        assert_eq!(read(&p).unwrap(), Some(1_600_000_000_000_000));
    }

    #[test]
    fn damage_and_unwritable_places_are_errors_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("stamp-x.timer");
        fs::write(&p, "yesterday\n").unwrap();
        let e = read(&p).unwrap_err().to_string();
        assert!(e.contains("stamp-x.timer") && e.contains("damaged"), "{e}");
        // The parent is a file: nothing can be created below it.
        let blocked = p.join("timers").join("stamp-y.timer");
        let e = write(&blocked, 1).unwrap_err().to_string();
        assert!(e.starts_with("cannot create directory"), "{e}");
    }
}
