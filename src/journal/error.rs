//! The journal's error type.

use std::path::PathBuf;

/// Everything that can go wrong in the journal, each variant naming what failed and on what.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// An I/O operation on a file of the store failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What we were doing ("open", "read", "create directory", ...).
        op: &'static str,
        /// The file or directory it was done on.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// redb refused to open or use the store file.
    #[error("journal store {}: {what}: {source}", path.display())]
    Db {
        /// The store file.
        path: PathBuf,
        /// The operation that failed.
        what: &'static str,
        /// redb's error (boxed: it is large, and errors are rare).
        #[source]
        source: Box<redb::Error>,
    },
    /// The store is open for writing by another process that does not share it (or the
    /// manager holds it in a mode that excludes readers).
    #[error(
        "journal store {} is locked by another process (is corrald running?); ask the manager, or stop it to read the store directly",
        path.display()
    )]
    Locked {
        /// The store file.
        path: PathBuf,
    },
    /// The store was not cleanly closed and must be repaired by its writer before read-only use.
    #[error(
        "journal store {} needs a repair that only its writer (corrald) performs; start the manager once, then retry",
        path.display()
    )]
    NeedsRepair {
        /// The store file.
        path: PathBuf,
    },
    /// The store was written by a newer, unknown format version.
    #[error(
        "journal store {} has format version {found}, this corral reads up to {supported}; upgrade corral",
        path.display()
    )]
    UnsupportedFormat {
        /// The store file.
        path: PathBuf,
        /// The version found in the store.
        found: u64,
        /// The highest version this build reads.
        supported: u64,
    },
    /// A stored block could not be decoded.
    #[error("journal store {}: block ({unit}, {first_seq}) is corrupt: {detail}", path.display())]
    CorruptBlock {
        /// The store file.
        path: PathBuf,
        /// The unit of the block.
        unit: String,
        /// The block's first sequence number.
        first_seq: u64,
        /// What was wrong.
        detail: String,
    },
    /// A query could not be understood (bad regex, time, cursor, glob).
    #[error("{0}")]
    BadQuery(String),
    /// Maintenance (merging, retention, compaction) failed in the writer thread.
    #[error("journal maintenance failed: {0}")]
    Maintenance(String),
    /// Commits fail (a full disk): what needs a write waits for space.
    #[error(
        "journal writes to {} are blocked ({error}); try again once the file system has room",
        path.display()
    )]
    Blocked {
        /// The store file.
        path: PathBuf,
        /// Why the last commit failed.
        error: String,
    },
    /// `--vacuum-size` could not compact the file: another process holds a read
    /// snapshot of it, so its size cannot be measured (nothing is removed on a guess).
    #[error(
        "cannot vacuum {} to a size now: another process is reading it (redb cannot compact \
         a file under a read snapshot, so its size cannot be measured); {removed} entries \
         were removed before that; retry when that reader is done",
        path.display()
    )]
    CompactionBlocked {
        /// The store file.
        path: PathBuf,
        /// Entries removed before compaction was refused.
        removed: u64,
    },
    /// The writer thread is gone (the store was closed or the writer failed fatally).
    #[error("journal writer for {} has stopped", path.display())]
    WriterGone {
        /// The store file.
        path: PathBuf,
    },
}

/// Result alias of the journal.
pub type Result<T, E = JournalError> = std::result::Result<T, E>;

impl JournalError {
    /// Wraps a redb error with the store path and the operation.
    /// A read that met a failed write of the same handle (redb's PreviousIo: a
    /// full disk struck while the read was open); begun again, it goes through the
    /// store's read-only fallback.
    pub fn is_previous_io(&self) -> bool {
        matches!(self, JournalError::Db { source, .. }
            if matches!(**source, redb::Error::PreviousIo))
    }

    pub(crate) fn db(
        path: &std::path::Path,
        what: &'static str,
        e: impl Into<redb::Error>,
    ) -> Self {
        let source = e.into();
        match source {
            redb::Error::DatabaseAlreadyOpen => JournalError::Locked {
                path: path.to_owned(),
            },
            redb::Error::RepairAborted => JournalError::NeedsRepair {
                path: path.to_owned(),
            },
            source => JournalError::Db {
                path: path.to_owned(),
                what,
                source: Box::new(source),
            },
        }
    }

    /// Wraps an I/O error with the path and the operation.
    pub(crate) fn io(op: &'static str, path: &std::path::Path, source: std::io::Error) -> Self {
        JournalError::Io {
            op,
            path: path.to_owned(),
            source,
        }
    }
}
