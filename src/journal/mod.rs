//! The embedded structured journal.
//!
//! # Layout
//!
//! - [`Entry`] / [`NewEntry`]: one stored line, and what producers hand in.
//! - [`store`]: the redb store of compressed blocks, its indexes, queries,
//!   merging and retention ([`Store`]). The format is in docs/JOURNAL-FORMAT.md.
//! - [`writer`]: the single writer thread with group commit, back-pressure and
//!   subscriptions ([`Writer`], [`WriterHandle`]).
//! - [`ingest`]: reading a service's stdout/stderr pipe into entries.
//! - [`query`]: [`Query`], what a reader asks for, and the time syntax of
//!   `--since`/`--until`.
//! - [`output`]: journalctl's output formats; [`catalog`]: the MESSAGE_ID of a manager line.
//! - [`follow`]: a query followed live in the manager (stored, then committed entries).
//! - [`salvage`]: damaged stores: set aside on open, entries salvaged from the raw file.

pub mod block;
pub mod catalog;
pub mod error;
pub mod follow;
pub mod ingest;
pub mod output;
pub mod query;
pub mod salvage;
pub mod sidelog;
pub mod store;
pub mod writer;

use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use error::{JournalError, Result};
pub use query::Query;
pub use store::{DiskUsage, Store, StoreOptions, VacuumReport};
pub use writer::{Writer, WriterHandle, WriterOptions};

/// Which stream of the service an entry came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Stream {
    /// The service's standard output.
    Stdout,
    /// The service's standard error.
    Stderr,
    /// The manager's own event about the unit (started, stopped, failed...).
    Manager,
}

impl Stream {
    /// The stable one-byte code used in stored blocks.
    pub fn code(self) -> u8 {
        match self {
            Stream::Stdout => 1,
            Stream::Stderr => 2,
            Stream::Manager => 3,
        }
    }

    /// The stream of a stored code; unknown codes (a newer writer) read as Manager.
    pub fn from_code(c: u8) -> Stream {
        match c {
            1 => Stream::Stdout,
            2 => Stream::Stderr,
            _ => Stream::Manager,
        }
    }

    /// The lower-case name used on the command line and in output.
    pub fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
            Stream::Manager => "manager",
        }
    }

    /// Parses `stdout`, `stderr` or `manager`.
    pub fn parse(s: &str) -> Option<Stream> {
        match s {
            "stdout" => Some(Stream::Stdout),
            "stderr" => Some(Stream::Stderr),
            "manager" => Some(Stream::Manager),
            _ => None,
        }
    }
}

/// Entry flags (a bit set stored with each entry).
pub mod flags {
    /// The line was longer than the maximum and was cut here; the next entry continues it.
    pub const SPLIT: u8 = 1;
    /// This entry continues a line that was split before it.
    pub const CONTINUED: u8 = 2;
    /// The stream ended (EOF) before a newline terminated this line.
    pub const NO_NEWLINE: u8 = 4;
}

/// The syslog priority names, index = numeric level.
pub const PRIORITY_NAMES: [&str; 8] = [
    "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug",
];

/// Parses a priority given as a number 0..7 or a syslog name.
pub fn parse_priority(s: &str) -> Option<u8> {
    if let Ok(n) = s.parse::<u8>() {
        return (n <= 7).then_some(n);
    }
    let s = s.to_ascii_lowercase();
    let alias = match s.as_str() {
        "emergency" | "panic" => "emerg",
        "critical" => "crit",
        "error" => "err",
        "warn" => "warning",
        "informational" => "info",
        other => other,
    };
    PRIORITY_NAMES
        .iter()
        .position(|n| *n == alias)
        .map(|p| p as u8)
}

/// One stored journal entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Sequence number, unique and increasing across the whole store.
    pub seq: u64,
    /// Wall-clock time, microseconds since the Unix epoch.
    pub realtime: u64,
    /// CLOCK_MONOTONIC at the time of the entry, microseconds (meaningful within one boot).
    pub monotonic: u64,
    /// The kernel's boot id of the boot the entry was written in.
    pub boot_id: u128,
    /// The uid of the manager that wrote the entry.
    pub uid: u32,
    /// The unit the entry belongs to.
    pub unit: String,
    /// The invocation (one start of the unit) the entry belongs to; 0 when unknown.
    pub invocation: u128,
    /// The process that wrote it, where known.
    pub pid: Option<u32>,
    /// Which stream it came from.
    pub stream: Stream,
    /// Syslog priority 0 (emerg) .. 7 (debug).
    pub priority: u8,
    /// SyslogIdentifier= of the unit (defaults to the program name).
    pub identifier: String,
    /// The message: bytes, not assumed to be UTF-8.
    pub message: Vec<u8>,
    /// [`flags`] bits.
    pub flags: u8,
    /// `_COMM`: the writing process's command name, as the kernel has it (the
    /// executable's file name, at most 15 bytes); empty when unknown (manager
    /// lines, entries stored before format v3).
    pub comm: String,
    /// `MESSAGE_ID` (a systemd catalog id) of a manager line; 0 when none.
    pub message_id: u128,
}

impl Entry {
    /// The cursor naming this entry (see [`parse_cursor`]).
    pub fn cursor(&self, store_id: u128) -> String {
        format!(
            "s={store_id:032x};i={:x};b={:032x};m={:x};t={:x}",
            self.seq, self.boot_id, self.monotonic, self.realtime
        )
    }
}

/// Extracts the sequence number from a cursor made by [`Entry::cursor`].
pub fn parse_cursor(cursor: &str) -> Result<u64> {
    cursor
        .split(';')
        .find_map(|kv| kv.strip_prefix("i="))
        .and_then(|v| u64::from_str_radix(v, 16).ok())
        .ok_or_else(|| {
            JournalError::BadQuery(format!(
                "cursor {cursor:?} is not a corral journal cursor (expected s=...;i=SEQ;...); take one from --show-cursor or -o json"
            ))
        })
}

/// What a producer hands to the writer; the writer assigns the sequence number,
/// boot id, uid, and the times when they are absent.
#[derive(Debug, Clone)]
pub struct NewEntry {
    /// The unit.
    pub unit: Arc<str>,
    /// The invocation id; 0 when unknown.
    pub invocation: u128,
    /// The writing process, where known.
    pub pid: Option<u32>,
    /// Which stream.
    pub stream: Stream,
    /// Syslog priority 0..7.
    pub priority: u8,
    /// SyslogIdentifier.
    pub identifier: Arc<str>,
    /// `_COMM` of the writing process; empty when unknown.
    pub comm: Arc<str>,
    /// `MESSAGE_ID`; 0 when none.
    pub message_id: u128,
    /// The message bytes (no trailing newline).
    pub message: Vec<u8>,
    /// [`flags`] bits.
    pub flags: u8,
    /// Wall-clock time in µs, when the producer knows it better than the writer (e.g. read time).
    pub realtime: Option<u64>,
    /// CLOCK_MONOTONIC in µs, likewise.
    pub monotonic: Option<u64>,
}

impl NewEntry {
    /// A manager event about `unit` (priority info unless changed).
    pub fn manager(unit: &str, invocation: u128, message: impl Into<Vec<u8>>) -> NewEntry {
        NewEntry {
            unit: Arc::from(unit),
            invocation,
            pid: None,
            stream: Stream::Manager,
            priority: 6,
            identifier: Arc::from("corrald"),
            comm: Arc::from(""),
            message_id: 0,
            message: message.into(),
            flags: 0,
            realtime: None,
            monotonic: None,
        }
    }
}

/// Wall-clock now in µs since the epoch.
pub fn realtime_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// CLOCK_MONOTONIC now in µs.
pub fn monotonic_now() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1000
}

/// The command name the kernel gives a process that executed `program`: its file
/// name, cut to 15 bytes (TASK_COMM_LEN less the NUL), as `_COMM` shows it.
pub fn comm_of(program: &std::path::Path) -> String {
    let name = program
        .file_name()
        .map(|n| n.as_encoded_bytes())
        .unwrap_or_default();
    String::from_utf8_lossy(&name[..name.len().min(15)]).into_owned()
}

/// The kernel's boot id (/proc/sys/kernel/random/boot_id) as a 128-bit number; 0 if unreadable.
pub fn boot_id() -> u128 {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .and_then(|s| u128::from_str_radix(&s.trim().replace('-', ""), 16).ok())
        .unwrap_or(0)
}

/// A fresh random 128-bit id (for store ids and invocation ids).
pub fn random_id() -> u128 {
    let mut b = [0u8; 16];
    // SAFETY: getrandom fills the buffer we own, at most its length.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    if n != 16 {
        // getrandom cannot fail for 16 bytes once the pool is initialised; mix time as a fallback.
        let t = realtime_now() as u128 ^ ((monotonic_now() as u128) << 64);
        return t ^ (std::process::id() as u128) << 32;
    }
    u128::from_le_bytes(b)
}
