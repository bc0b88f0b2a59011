//! `corral journal`: journalctl's flags over corral's journal store.
//!
//! Where the entries come from:
//! - `--socket PATH` (or `$CORRAL_SOCKET`): that manager answers everything,
//!   over its control socket; an unreachable socket is an error, never a quiet
//!   fall-back to another store.
//! - `-f` with no `-D`/`--file`: the user's own manager streams new entries as
//!   it commits them, when it is running; otherwise the store file is followed
//!   with inotify.
//! - `--disk-usage` and `--vacuum-*` with no `-D`/`--file`: the user's own
//!   manager, when one answers on its socket (its journal writer thread owns
//!   the store's write transaction, so only it can vacuum while it runs);
//!   otherwise the store is opened directly. With `-D`/`--file` naming the
//!   store a running manager holds, the vacuum is handed to that manager.
//! - everything else reads the store directly, read-only (beside a running
//!   manager, which shares the file in redb's SingleWriter mode): measured, a
//!   whole `corral journal -u U -n 100` costs less this way than a round trip
//!   through the manager, which would run the same query.
//!
//! Printing is separate from fetching: [`print_entries`] takes any iterator of
//! entries, whichever source they come from.

use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;

use super::exit;
use crate::ipc::client::is_refusal;
use crate::ipc::proto::{Request, Response};
use crate::ipc::{Client, ErrorCode, IpcError};
use crate::journal::output::{self, Format, OutputOptions};
use crate::journal::query::{parse_field_matches, parse_priority_range, parse_span, parse_time};
use crate::journal::{
    DiskUsage, Entry, JournalError, Query, Store, StoreOptions, Stream, VacuumReport,
};

/// `corral journal`: show what the services printed.
#[derive(Debug, Clone, Args)]
pub struct JournalArgs {
    /// Only this unit (repeatable; globs like 'memcached@*'). --user-unit is the same.
    #[arg(
        short = 'u',
        long = "unit",
        visible_alias = "user-unit",
        value_name = "UNIT"
    )]
    pub units: Vec<String>,
    /// Field matches: FIELD=VALUE (the same field twice: either value; different
    /// fields: both), and + between groups of them (either group).
    #[arg(value_name = "MATCHES")]
    pub matches: Vec<String>,
    /// Accepted as by journalctl: corral's journal is always the calling user's.
    #[arg(long)]
    pub user: bool,
    /// Only entries with this SYSLOG_IDENTIFIER (repeatable: any of them).
    #[arg(short = 't', long = "identifier", value_name = "ID")]
    pub identifiers: Vec<String>,
    /// Not the entries with this SYSLOG_IDENTIFIER (repeatable; journalctl has it since systemd 256).
    #[arg(short = 'T', long = "exclude-identifier", value_name = "ID")]
    pub exclude_identifiers: Vec<String>,
    /// Start the pager at the end; means -n 1000 unless -n is given.
    #[arg(short = 'e', long)]
    pub pager_end: bool,
    /// Only this boot: with no -D/--file, the running kernel's boot (its boot id,
    /// /proc/sys/kernel/random/boot_id); with them, the boot of the store's newest
    /// entry, as journalctl does with --file. Also a 32-digit boot id; 0 is this boot.
    #[arg(short = 'b', long, value_name = "ID", num_args = 0..=1, default_missing_value = "0",
          allow_negative_numbers = true)]
    pub boot: Option<String>,
    /// Accepted as by journalctl; corral has no message catalog, so nothing is added.
    #[arg(short = 'x', long)]
    pub catalog: bool,
    /// Show messages with unprintable characters as they are, instead of "[N blob data]".
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Leave the host name out of the short formats.
    #[arg(long)]
    pub no_hostname: bool,
    /// Only the newest N entries ("all" for every entry; -n alone means 10).
    #[arg(short = 'n', long, value_name = "N", num_args = 0..=1, default_missing_value = "10")]
    pub lines: Option<String>,
    /// Keep printing new entries as they are written.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Entries on or after this time ("2026-11-23 10:00", "10:00", today, yesterday, -1h, "2 days ago", @EPOCH).
    #[arg(short = 'S', long, value_name = "TIME", allow_hyphen_values = true)]
    pub since: Option<String>,
    /// Entries on or before this time (same syntax as --since).
    #[arg(short = 'U', long, value_name = "TIME", allow_hyphen_values = true)]
    pub until: Option<String>,
    /// A priority (emerg..debug or 0..7, meaning it and more severe) or a range err..warning.
    #[arg(short = 'p', long, value_name = "PRIORITY")]
    pub priority: Option<String>,
    /// Only messages matching this regex (case-insensitive unless it has capitals).
    #[arg(short = 'g', long, value_name = "REGEX")]
    pub grep: Option<String>,
    /// Force case sensitivity of --grep on or off.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub case_sensitive: Option<bool>,
    /// Only the latest invocation of the unit(s).
    #[arg(short = 'I')]
    pub latest_invocation: bool,
    /// Only this invocation: an id, or an offset (0 = latest, -1 = the one before...).
    #[arg(long, value_name = "ID", allow_hyphen_values = true)]
    pub invocation: Option<String>,
    /// Newest first.
    #[arg(short = 'r', long)]
    pub reverse: bool,
    /// Only stdout, stderr or manager entries.
    #[arg(long, value_name = "STREAM", value_parser = ["stdout", "stderr", "manager"])]
    pub stream: Option<String>,
    /// Output format.
    #[arg(short = 'o', long, value_name = "FORMAT", default_value = "short",
          value_parser = clap::builder::PossibleValuesParser::new(Format::NAMES))]
    pub output: String,
    /// Fields to show in json, export and verbose output (comma-separated).
    #[arg(long, value_name = "FIELDS", value_delimiter = ',')]
    pub output_fields: Option<Vec<String>>,
    /// Start at the entry of this cursor.
    #[arg(short = 'c', long, value_name = "CURSOR")]
    pub cursor: Option<String>,
    /// Start after the entry of this cursor.
    #[arg(long, value_name = "CURSOR")]
    pub after_cursor: Option<String>,
    /// Print the cursor of the last entry at the end.
    #[arg(long)]
    pub show_cursor: bool,
    /// Never pipe the output into a pager.
    #[arg(long)]
    pub no_pager: bool,
    /// Show how much disk the journal uses.
    #[arg(long)]
    pub disk_usage: bool,
    /// Remove the oldest entries until the journal file takes at most this much on
    /// disk (e.g. 500M, 1G; K/M/G are 1024-based). The size is the file's, compacted
    /// (blocks, indexes and the store's own pages): free pages go first, then the
    /// oldest blocks, and the newest entries that fit are kept.
    #[arg(long, value_name = "BYTES")]
    pub vacuum_size: Option<String>,
    /// Remove entries older than this (e.g. 2weeks, 10d, 12h), per unit, a block at a
    /// time: a block goes when its newest entry is older.
    #[arg(long, value_name = "TIMESPAN")]
    pub vacuum_time: Option<String>,
    /// Accepted as by journalctl, which removes archived journal files beyond N: the
    /// corral journal is a single file that is never archived, so this removes nothing.
    #[arg(long, value_name = "N")]
    pub vacuum_files: Option<u64>,
    /// The journal directory (default: $XDG_STATE_HOME/corral/journal).
    #[arg(short = 'D', long, value_name = "DIR", conflicts_with = "file")]
    pub directory: Option<PathBuf>,
    /// The journal store file itself.
    #[arg(long, value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Don't print "-- No entries --".
    #[arg(short = 'q', long)]
    pub quiet: bool,
}

/// The default journal directory of the calling user.
pub fn default_directory() -> PathBuf {
    state_directory().join("journal")
}

/// The calling user's corral state directory: $XDG_STATE_HOME/corral, as corrald's.
pub fn state_directory() -> PathBuf {
    if let Some(s) = std::env::var_os("XDG_STATE_HOME").filter(|s| !s.is_empty()) {
        return PathBuf::from(s).join("corral");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/"));
    home.join(".local/state/corral")
}

/// A user-facing failure of `corral journal`.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The journal said no.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// A flag's value is wrong.
    #[error("{0}")]
    Usage(String),
    /// Writing the output failed (other than a closed pipe).
    #[error("writing output: {0}")]
    Output(io::Error),
    /// The manager could not be reached or answered with an error.
    #[error(transparent)]
    Ipc(#[from] crate::ipc::IpcError),
    /// The manager refused or failed the query.
    #[error("the corral manager says: {0}")]
    Remote(String),
    /// The store named by `-D`/`--file` is another user's.
    #[error(
        "permission denied reading the journal at {}: a journal is readable only by its \
         user and root; read your own (without -D), or ask its user ({source})",
        path.display()
    )]
    Denied {
        /// The directory or file given.
        path: PathBuf,
        /// The refusal.
        source: JournalError,
    },
}

/// Whether opening a store failed because its file or a directory on the way
/// is not ours to read.
fn denied(e: &JournalError) -> bool {
    let kind = match e {
        JournalError::Io { source, .. } => source.kind(),
        JournalError::Db { source, .. } => match &**source {
            redb::Error::Io(io) => io.kind(),
            _ => return false,
        },
        _ => return false,
    };
    kind == io::ErrorKind::PermissionDenied
}

/// Runs `corral journal`.
///
/// `socket` is the global `--socket`/`$CORRAL_SOCKET`: when given, that
/// manager answers the query.
pub fn run(args: JournalArgs, socket: Option<PathBuf>) -> u8 {
    let explicit_store = args.file.is_some() || args.directory.is_some();
    // A bad --vacuum-* value is reported whichever way the vacuum would go.
    let checked = match is_vacuum(&args) {
        true => vacuum_limits(&args).map(drop),
        false => Ok(()),
    };
    let result = checked.and_then(|()| match socket {
        Some(sock) if !explicit_store => run_remote(&args, &sock),
        _ if !explicit_store && (args.disk_usage || is_vacuum(&args)) => {
            let sock = super::common::socket_path(None);
            // The running manager owns the store; with none listening, the store
            // file is used directly.
            match Client::<Request, Response>::connect(&sock) {
                Ok(client) => maintain_remote(&args, client, true),
                Err(e) if no_manager(&e) => run_inner(&args, None),
                Err(e) => Err(e.into()),
            }
        }
        _ if args.follow && !explicit_store => {
            let sock = super::common::socket_path(None);
            // Only a manager that answers takes the follow; a missing or stale
            // socket means it is down and the store file is followed instead.
            match Client::<Request, Response>::connect(&sock) {
                Ok(client) => run_remote_with(&args, client),
                Err(_) => run_inner(&args, None),
            }
        }
        _ => run_inner(&args, socket.as_deref()),
    });
    match result {
        Ok(()) => exit::OK,
        Err(CliError::Output(e)) if e.kind() == io::ErrorKind::BrokenPipe => exit::OK,
        Err(e) => {
            eprintln!("corral journal: {e}");
            exit::ERROR
        }
    }
}

fn run_remote(args: &JournalArgs, socket: &Path) -> Result<(), CliError> {
    if args.disk_usage || is_vacuum(args) {
        return maintain_remote(args, Client::connect(socket)?, false);
    }
    run_remote_with(args, Client::connect(socket)?)
}

fn is_vacuum(args: &JournalArgs) -> bool {
    args.vacuum_size.is_some() || args.vacuum_time.is_some() || args.vacuum_files.is_some()
}

/// Whether a failed connect means that no manager is running (no socket, or a
/// stale one), as opposed to one that is there and refused or failed.
fn no_manager(e: &IpcError) -> bool {
    matches!(e, IpcError::Unreachable { source, .. }
        if matches!(source.kind(), io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused))
}

/// `--vacuum-size` and `--vacuum-time`, parsed.
struct VacuumLimits {
    max_bytes: Option<u64>,
    max_age: Option<Duration>,
}

fn vacuum_limits(args: &JournalArgs) -> Result<VacuumLimits, CliError> {
    let max_age = match &args.vacuum_time {
        Some(t) => Some(Duration::from_micros(parse_span(t).ok_or_else(|| {
            CliError::Usage(format!(
                "--vacuum-time {t:?} is not a time span like 2weeks, 10d, 12h"
            ))
        })?)),
        None => None,
    };
    let max_bytes = match &args.vacuum_size {
        Some(s) => Some(parse_size(s).ok_or_else(|| {
            CliError::Usage(format!("--vacuum-size {s:?} is not a size like 500M or 1G"))
        })?),
        None => None,
    };
    Ok(VacuumLimits { max_bytes, max_age })
}

/// `--disk-usage` or `--vacuum-*` by the manager on `client`, which owns the
/// store. `fallback`: the manager is the caller's own (not one named by
/// `--socket`), so its store is the default one, which a manager too old to
/// measure it lets us read directly.
fn maintain_remote(
    args: &JournalArgs,
    mut client: Client<Request, Response>,
    fallback: bool,
) -> Result<(), CliError> {
    let request = if is_vacuum(args) {
        let l = vacuum_limits(args)?;
        Request::JournalVacuum {
            max_bytes: l.max_bytes,
            max_age_usec: l.max_age.map(|d| d.as_micros() as u64),
        }
    } else {
        Request::JournalDiskUsage
    };
    match client.request(&request) {
        Ok(Response::JournalUsage { path, usage }) => print_usage(Path::new(&path), &usage),
        Ok(Response::Vacuumed { path, report }) => print_vacuum(Path::new(&path), &report),
        Ok(Response::Error(f)) => return Err(CliError::Remote(f.message)),
        Ok(other) => {
            return Err(CliError::Remote(format!(
                "unexpected answer to a journal maintenance request: {}",
                super::common::describe(&other)
            )));
        }
        // A manager from before these requests cannot decode them.
        Err(e) if is_refusal(&e, ErrorCode::MALFORMED) => {
            if fallback && !is_vacuum(args) {
                return run_inner(args, None);
            }
            return Err(CliError::Remote(format!(
                "the running corrald {} does not know {}; restart it after upgrading \
                 (or stop it, and corral opens the journal itself)",
                client.server_version(),
                if is_vacuum(args) {
                    "--vacuum-*"
                } else {
                    "--disk-usage"
                }
            )));
        }
        Err(e) => return Err(e.into()),
    }
    Ok(())
}

fn print_usage(path: &Path, u: &DiskUsage) {
    println!(
        "Journal {} takes up {} on disk ({} in {} entries, {} blocks).",
        path.display(),
        human(u.file_bytes),
        human(u.stored_bytes),
        u.entries,
        u.blocks
    );
}

fn print_vacuum(path: &Path, r: &VacuumReport) {
    println!(
        "Vacuuming done, removed {} entries, freed {} of {} ({} left).",
        r.removed,
        human(r.before.file_bytes.saturating_sub(r.after.file_bytes)),
        path.display(),
        human(r.after.file_bytes)
    );
}

/// Asks the manager on `client` for the entries (and, with `-f`, new ones
/// as it commits them) and prints them.
fn run_remote_with(
    args: &JournalArgs,
    mut client: Client<Request, Response>,
) -> Result<(), CliError> {
    if args
        .invocation
        .as_deref()
        .is_some_and(|i| i.chars().filter(|c| *c != '-').count() != 32)
    {
        return Err(CliError::Usage(
            "--invocation offsets are resolved against the store: give the 32-digit invocation id, \
             or read the store with -D DIR"
                .into(),
        ));
    }
    let mut query = build_query_with(args, None)?;
    if args.follow
        && query.lines.is_none()
        && query.cursor.is_none()
        && query.after_cursor.is_none()
    {
        query.lines = Some(10);
    }
    let stdout = io::stdout();
    let tty = stdout.is_terminal();
    // Cursors printed from a remote answer carry no store id; `--after-cursor`
    // reads only the sequence number, so they still work against this manager.
    let opts = output_options(args, 0, tty);
    let request = Request::Journal {
        query: Box::new(query),
        follow: args.follow,
    };
    let mut failed = None;
    let mut out = io::BufWriter::with_capacity(64 * 1024, stdout.lock());
    let mut shown = 0;
    let mut last = None;
    for reply in client.request_stream(&request)? {
        let batch = match reply {
            Ok(Response::Entries(batch)) => batch,
            Ok(Response::Warning(w)) => {
                // Said between entries as it happens; stdout keeps only entries.
                out.flush().map_err(CliError::Output)?;
                eprintln!("corral journal: warning: {w}");
                continue;
            }
            Ok(Response::Error(f)) => {
                failed = Some(CliError::Remote(f.message));
                break;
            }
            Ok(other) => {
                failed = Some(CliError::Remote(format!(
                    "unexpected answer to a journal query: {}",
                    super::common::describe(&other)
                )));
                break;
            }
            Err(e) => {
                failed = Some(e.into());
                break;
            }
        };
        let (n, l) = print_entries(batch, &mut out, &opts).map_err(CliError::Output)?;
        shown += n;
        if l.is_some() {
            last = l;
        }
        // Followed entries must show up at once, not when the buffer fills.
        if args.follow {
            out.flush().map_err(CliError::Output)?;
        }
    }
    out.flush().map_err(CliError::Output)?;
    drop(out);
    if let Some(e) = failed {
        return Err(e);
    }
    if shown == 0 && !args.quiet && !args.follow && is_short(opts.format) {
        println!("-- No entries --");
    }
    if let (true, Some(e)) = (args.show_cursor, &last) {
        println!("-- cursor: {}", e.cursor(0));
    }
    Ok(())
}

fn location(args: &JournalArgs) -> PathBuf {
    match (&args.file, &args.directory) {
        (Some(f), _) => f.clone(),
        (None, Some(d)) => d.clone(),
        (None, None) => default_directory(),
    }
}

/// Parses a size like `500M`, `1G`, `64K`, `1000`.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
        Some((i, _)) => {
            let m: u64 = match s[i..].to_ascii_uppercase().trim_end_matches('B') {
                "" => 1,
                "K" | "KI" => 1 << 10,
                "M" | "MI" => 1 << 20,
                "G" | "GI" => 1 << 30,
                "T" | "TI" => 1 << 40,
                _ => return None,
            };
            (&s[..i], m)
        }
        None => (s, 1),
    };
    let n: f64 = num.trim().parse().ok()?;
    Some((n * mult as f64) as u64)
}

fn human(n: u64) -> String {
    let units = ["B", "K", "M", "G", "T"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < units.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{n}B")
    } else {
        format!("{v:.1}{}", units[i])
    }
}

/// Works on the store file itself. `socket`: the `--socket` given beside
/// `-D`/`--file`, the manager to hand a vacuum to when it holds that store.
fn run_inner(args: &JournalArgs, socket: Option<&Path>) -> Result<(), CliError> {
    let loc = location(args);
    if is_vacuum(args) {
        return vacuum(args, &loc, socket);
    }
    let store = match open_for_reading(&loc) {
        Ok(s) => s,
        Err(JournalError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
            if !args.quiet && !args.disk_usage {
                println!("-- No entries --");
            }
            if args.disk_usage {
                println!("No journal at {}: it takes up 0B.", loc.display());
            }
            return Ok(());
        }
        Err(e) if denied(&e) => {
            return Err(CliError::Denied {
                path: loc,
                source: e,
            });
        }
        Err(e) if crate::journal::salvage::is_damaged(&e) && !args.disk_usage => {
            return print_salvaged(args, &crate::journal::store::store_file(&loc), &e);
        }
        Err(e) => return Err(e.into()),
    };
    if args.disk_usage {
        print_usage(store.path(), &store.disk_usage()?);
        return Ok(());
    }
    let mut query = build_query(args, &store)?;
    if args.follow
        && query.lines.is_none()
        && query.cursor.is_none()
        && query.after_cursor.is_none()
    {
        query.lines = Some(10);
    }
    let stdout = io::stdout();
    let tty = stdout.is_terminal();
    let opts = output_options(args, store.store_id(), tty);
    // Where following starts when nothing matched yet.
    let follow_from = store.next_seq()?;
    let mut failed = None;
    let mut iter = store.query_iter(&query)?;
    let entries = iter.by_ref().map_while(|r| match r {
        Ok(e) => Some(e),
        Err(e) => {
            failed = Some(e);
            None
        }
    });
    let use_pager = tty && !args.no_pager && !args.follow;
    let shown;
    let last;
    if use_pager {
        let mut pager = Pager::start(args.pager_end);
        let r = print_entries(entries, pager.writer(), &opts);
        let r2 = pager.finish();
        (shown, last) = r.map_err(CliError::Output)?;
        r2.map_err(CliError::Output)?;
    } else {
        let mut out = io::BufWriter::with_capacity(64 * 1024, stdout.lock());
        (shown, last) = print_entries(entries, &mut out, &opts).map_err(CliError::Output)?;
        out.flush().map_err(CliError::Output)?;
    }
    let skipped = iter.skipped();
    if skipped.blocks > 0 {
        eprintln!(
            "corral journal: warning: skipped {} damaged block(s) of {} holding {} entries; \
             printed the rest ({})",
            skipped.blocks,
            store.path().display(),
            skipped.entries,
            skipped.first_error.as_deref().unwrap_or("")
        );
    }
    if let Some(e) = failed {
        return Err(e.into());
    }
    if shown == 0 && !args.quiet && !args.follow && is_short(opts.format) {
        println!("-- No entries --");
    }
    if let (true, Some(e)) = (args.show_cursor, &last) {
        println!("-- cursor: {}", e.cursor(store.store_id()));
    }
    if args.follow {
        follow(&store, query, last, follow_from, &opts)?;
    }
    Ok(())
}

/// A store redb cannot open: prints what [`crate::journal::salvage::salvage`] finds in
/// the raw file, filtered like a query, and says on stderr how much it found and skipped.
fn print_salvaged(args: &JournalArgs, file: &Path, why: &JournalError) -> Result<(), CliError> {
    if args.follow {
        return Err(CliError::Usage(format!(
            "{why}; a damaged store cannot be followed (without -f, what can be salvaged from it is shown)"
        )));
    }
    let found = crate::journal::salvage::salvage(file)?;
    let query = build_query_with(args, None)?;
    let cq = crate::journal::query::CompiledQuery::new(&query)?;
    let mut entries: Vec<Entry> = found
        .entries
        .into_iter()
        .filter(|e| cq.matches_entry(e))
        .filter(|e| query.invocation.is_none_or(|i| e.invocation == i))
        .collect();
    if let Some(n) = query.lines {
        entries.drain(..entries.len().saturating_sub(n));
    }
    if query.reverse {
        entries.reverse();
    }
    let opts = output_options(args, 0, false);
    let stdout = io::stdout();
    let mut out = io::BufWriter::with_capacity(64 * 1024, stdout.lock());
    let (shown, _) = print_entries(entries, &mut out, &opts).map_err(CliError::Output)?;
    out.flush().map_err(CliError::Output)?;
    drop(out);
    let unknown = match found.unknown_unit {
        0 => String::new(),
        n => format!("; {n} entries whose unit was not found show unit ?"),
    };
    eprintln!(
        "corral journal: {why}\ncorral journal: salvaged {} entries from {} blocks found in the raw file \
         (printed {shown}); skipped {} damaged blocks{unknown}",
        found.entries_total, found.blocks, found.skipped
    );
    Ok(())
}

/// Opens the store read-only. A store whose writer was killed needs redb's recovery
/// before a read-only handle accepts it; with no manager holding it, we run that recovery
/// (what the manager does on start) and read afterwards.
pub fn open_for_reading(loc: &std::path::Path) -> Result<Store, JournalError> {
    match Store::open_read_only(loc) {
        Err(JournalError::NeedsRepair { .. }) => {
            match Store::open(loc, StoreOptions::default()) {
                Ok(s) => drop(s),
                // The manager started meanwhile and recovers it itself.
                Err(JournalError::Locked { .. }) => {}
                Err(e) => return Err(e),
            }
            Store::open_read_only(loc)
        }
        r => r,
    }
}

/// The output options of the flags; `tty`: colors unless $NO_COLOR.
fn output_options(args: &JournalArgs, store_id: u128, tty: bool) -> OutputOptions {
    let mut opts = OutputOptions::new(
        Format::parse(&args.output).expect("clap checked the format"),
        store_id,
    );
    opts.fields = args.output_fields.clone();
    opts.color = tty && std::env::var_os("NO_COLOR").is_none();
    opts.all = args.all;
    opts.no_hostname = args.no_hostname;
    opts
}

fn is_short(f: Format) -> bool {
    matches!(
        f,
        Format::Short
            | Format::ShortIso
            | Format::ShortPrecise
            | Format::ShortMonotonic
            | Format::ShortUnix
            | Format::WithUnit
    )
}

/// Builds the [`Query`] of the flags (resolving times, priorities and invocation offsets).
pub fn build_query(args: &JournalArgs, store: &Store) -> Result<Query, CliError> {
    build_query_with(args, Some(store))
}

/// [`build_query`] with the store optional: without it, invocation offsets
/// cannot be resolved (callers check before).
fn build_query_with(args: &JournalArgs, store: Option<&Store>) -> Result<Query, CliError> {
    let now = crate::journal::realtime_now();
    let mut q = Query {
        units: args.units.clone(),
        reverse: args.reverse,
        cursor: args.cursor.clone(),
        after_cursor: args.after_cursor.clone(),
        latest_invocation: args.latest_invocation,
        ..Default::default()
    };
    if let Some(s) = &args.since {
        q.since = Some(parse_time(s, now)?);
    }
    if let Some(s) = &args.until {
        q.until = Some(parse_time(s, now)?);
    }
    if let Some(p) = &args.priority {
        q.priority = Some(parse_priority_range(p)?);
    }
    if let Some(g) = &args.grep {
        q.grep = Some(match args.case_sensitive {
            Some(true) if !g.chars().any(char::is_uppercase) => {
                // Smart case would make it insensitive: an empty upper-case class forces it.
                format!("(?-i){g}")
            }
            Some(false) => format!("(?i){g}"),
            _ => g.clone(),
        });
    }
    if let Some(s) = &args.stream {
        q.stream = Stream::parse(s);
    }
    q.identifiers = args.identifiers.clone();
    q.exclude_identifiers = args.exclude_identifiers.clone();
    // `-b _PID=1`: clap took the first match for -b's optional value.
    let mut matches = Vec::new();
    let boot = match args.boot.as_deref() {
        Some(m) if m == "+" || m.contains('=') => {
            matches.push(m.to_owned());
            Some("0")
        }
        b => b,
    };
    matches.extend(args.matches.iter().cloned());
    q.field_matches = parse_field_matches(&matches)?;
    if let Some(b) = boot {
        q.boot_id = Some(resolve_boot(b, args, store)?);
    }
    if args.pager_end && args.lines.is_none() {
        q.lines = Some(1000);
    }
    if let Some(n) = &args.lines {
        q.lines = match n.as_str() {
            "all" => None,
            n => Some(n.trim_start_matches('+').parse().map_err(|_| {
                CliError::Usage(format!("--lines {n:?} is not a number (or \"all\")"))
            })?),
        };
    }
    if let Some(inv) = &args.invocation {
        q.invocation = Some(match store {
            Some(store) => resolve_invocation(inv, &args.units, store)?,
            None => resolve_invocation_id(inv)?,
        });
    }
    Ok(q)
}

/// The boot `-b` names: a boot id, or 0 (or nothing) for this boot, which is the
/// kernel's boot, or with `-D`/`--file` the boot of the store's newest entry (as
/// journalctl with --file: the files may come from another machine or boot).
fn resolve_boot(b: &str, args: &JournalArgs, store: Option<&Store>) -> Result<u128, CliError> {
    let hex: String = b.chars().filter(|c| *c != '-').collect();
    if hex.len() == 32 {
        let id = u128::from_str_radix(&hex, 16)
            .map_err(|_| CliError::Usage(format!("--boot {b:?} is not a 128-bit hex boot id")))?;
        // As journalctl: a boot the journal has no entry of is an error, not an
        // empty answer.
        if let Some(store) = store {
            let any = store.query(&Query {
                boot_id: Some(id),
                lines: Some(1),
                ..Default::default()
            })?;
            if any.is_empty() {
                return Err(CliError::Usage(format!(
                    "Data from the specified boot ({id:032x}) is not available: no such boot id in the journal"
                )));
            }
        }
        return Ok(id);
    }
    if !matches!(b, "" | "0" | "+0" | "-0") {
        return Err(CliError::Usage(format!(
            "--boot {b:?}: corral keeps no list of boots, so only this boot (-b, -b 0) or a \
             32-digit boot id (the _BOOT_ID of -o json) can be given"
        )));
    }
    let explicit = args.file.is_some() || args.directory.is_some();
    if let (true, Some(store)) = (explicit, store) {
        let newest = store.query(&Query {
            lines: Some(1),
            ..Default::default()
        })?;
        if let Some(e) = newest.first() {
            return Ok(e.boot_id);
        }
    }
    Ok(crate::journal::boot_id())
}

/// Parses a 32-hex-digit invocation id (dashes allowed).
fn resolve_invocation_id(s: &str) -> Result<u128, CliError> {
    let hex: String = s.chars().filter(|c| *c != '-').collect();
    u128::from_str_radix(&hex, 16)
        .map_err(|_| CliError::Usage(format!("--invocation {s:?} is not a 128-bit hex id")))
}

fn resolve_invocation(s: &str, units: &[String], store: &Store) -> Result<u128, CliError> {
    if s.chars().filter(|c| *c != '-').count() == 32 {
        return resolve_invocation_id(s);
    }
    let off: i64 = s.parse().map_err(|_| {
        CliError::Usage(format!(
            "--invocation {s:?} is neither an invocation id (32 hex digits) nor an offset like 0 or -1"
        ))
    })?;
    let [unit] = units else {
        return Err(CliError::Usage(
            "--invocation with an offset needs exactly one -u UNIT".into(),
        ));
    };
    let invs = store.invocations(unit)?;
    let idx = if off <= 0 {
        invs.len() as i64 - 1 + off
    } else {
        off - 1
    };
    usize::try_from(idx)
        .ok()
        .and_then(|i| invs.get(i).copied())
        .ok_or_else(|| {
            CliError::Usage(format!(
                "unit {unit} has {} invocation(s) in the journal; offset {off} is out of range",
                invs.len()
            ))
        })
}

/// Prints entries in the chosen format; returns how many and the last one (for
/// `--show-cursor` and for following on from it).
pub fn print_entries(
    entries: impl IntoIterator<Item = Entry>,
    out: &mut dyn Write,
    opts: &OutputOptions,
) -> io::Result<(usize, Option<Entry>)> {
    let mut n = 0;
    let mut last = None;
    for e in entries {
        output::write_entry(out, &e, opts)?;
        n += 1;
        last = Some(e);
    }
    Ok((n, last))
}

/// `-f` on the store file: wait for the writer to touch it (inotify), print what was
/// committed after the last entry shown, repeat. Ends on a closed pipe (or Ctrl-C).
fn follow(
    store: &Store,
    mut query: Query,
    mut last: Option<Entry>,
    from_seq: u64,
    opts: &OutputOptions,
) -> Result<(), CliError> {
    let watch = StoreWatch::new(store)?;
    query.lines = None;
    query.reverse = false;
    if last.is_none() {
        query.after_cursor = None;
        query.cursor = Some(format!("i={from_seq:x}"));
    }
    let stdout = io::stdout();
    loop {
        if let Some(e) = &last {
            query.cursor = None;
            query.after_cursor = Some(e.cursor(store.store_id()));
        }
        let entries = store.query(&query)?;
        let mut out = stdout.lock();
        let (_, l) = print_entries(entries, &mut out, opts).map_err(CliError::Output)?;
        out.flush().map_err(CliError::Output)?;
        if l.is_some() {
            last = l;
        }
        watch.wait()?;
    }
}

/// Wakes its owner when a writer (the manager) writes to a store file.
pub struct StoreWatch {
    ino: nix::sys::inotify::Inotify,
    path: PathBuf,
}

impl StoreWatch {
    /// Watches the file of `store`; a commit after this call wakes [`StoreWatch::wait`].
    pub fn new(store: &Store) -> Result<StoreWatch, JournalError> {
        use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
        let path = store.path().to_owned();
        let ino = Inotify::init(InitFlags::IN_CLOEXEC)
            .map_err(|e| JournalError::io("inotify_init", &path, e.into()))?;
        ino.add_watch(&path, AddWatchFlags::IN_MODIFY)
            .map_err(|e| JournalError::io("watch", &path, e.into()))?;
        Ok(StoreWatch { ino, path })
    }

    /// Blocks until the file was written since the last wait (or since
    /// [`StoreWatch::new`]): inotify, no polling.
    pub fn wait(&self) -> Result<(), JournalError> {
        self.ino
            .read_events()
            .map(drop)
            .map_err(|e| JournalError::io("read inotify events for", &self.path, e.into()))
    }
}

fn vacuum(args: &JournalArgs, loc: &Path, socket: Option<&Path>) -> Result<(), CliError> {
    let limits = vacuum_limits(args)?;
    if !crate::journal::store::store_file(loc).exists() {
        println!("No journal at {}: nothing to vacuum.", loc.display());
        return Ok(());
    }
    let store = match Store::open(loc, StoreOptions::default()) {
        Ok(s) => s,
        Err(JournalError::Locked { path }) => return vacuum_by_holder(args, &path, socket),
        Err(e) => return Err(e.into()),
    };
    let report = store.vacuum(limits.max_bytes, limits.max_age)?;
    print_vacuum(store.path(), &report);
    Ok(())
}

/// `-D DIR --vacuum-*` on a store that a process holds for writing: if that is
/// the manager at `socket` (default: the caller's own), it vacuums its store.
fn vacuum_by_holder(
    args: &JournalArgs,
    file: &Path,
    socket: Option<&Path>,
) -> Result<(), CliError> {
    let sock = super::common::socket_path(socket.map(Path::to_path_buf));
    let held = |why: String| {
        CliError::Usage(format!(
            "journal {} is held by another process, {why}; vacuum it through the manager \
             that writes it (--socket PATH), or stop that process and retry",
            file.display()
        ))
    };
    let mut client = Client::<Request, Response>::connect(&sock)
        .map_err(|e| held(format!("and no manager answers at {}: {e}", sock.display())))?;
    // Only the store's own writer may be asked to change it: check that the
    // manager's store is this very file before vacuuming.
    let answer = client.request(&Request::JournalDiskUsage).map_err(|e| {
        if is_refusal(&e, ErrorCode::MALFORMED) {
            held(format!(
                "and the manager at {} (corrald {}) is too old to vacuum through",
                sock.display(),
                client.server_version()
            ))
        } else {
            e.into()
        }
    })?;
    match answer {
        Response::JournalUsage { path, .. } if same_file(file, Path::new(&path)) => {}
        Response::JournalUsage { path, .. } => {
            return Err(held(format!(
                "not the manager at {} (whose journal is {path})",
                sock.display()
            )));
        }
        Response::Error(f) => return Err(CliError::Remote(f.message)),
        other => {
            return Err(CliError::Remote(format!(
                "unexpected answer to a journal maintenance request: {}",
                super::common::describe(&other)
            )));
        }
    }
    maintain_remote(args, client, false)
}

fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
        _ => false,
    }
}

/// A pager child (`$SYSTEMD_PAGER`, `$PAGER`, else `less`), as journalctl uses one.
struct Pager {
    child: Option<std::process::Child>,
    direct: io::Stdout,
}

impl Pager {
    /// `end`: open at the end of the text (`-e`), as journalctl asks less with +G.
    fn start(end: bool) -> Pager {
        let cmd = std::env::var("SYSTEMD_PAGER")
            .or_else(|_| std::env::var("PAGER"))
            .unwrap_or_else(|_| "less".into());
        let child = if cmd.is_empty() || cmd == "cat" {
            None
        } else {
            std::process::Command::new("sh")
                .arg("-c")
                .arg(&cmd)
                .env("LESS", {
                    let less = std::env::var("LESS").unwrap_or_else(|_| "FRSXMK".into());
                    if end { less + " +G" } else { less }
                })
                .stdin(std::process::Stdio::piped())
                .spawn()
                .ok()
        };
        Pager {
            child,
            direct: io::stdout(),
        }
    }

    fn writer(&mut self) -> &mut dyn Write {
        match self.child.as_mut().and_then(|c| c.stdin.as_mut()) {
            Some(stdin) => stdin,
            None => &mut self.direct,
        }
    }

    fn finish(mut self) -> io::Result<()> {
        if let Some(mut c) = self.child.take() {
            drop(c.stdin.take());
            c.wait()?;
        } else {
            self.direct.flush()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("500M"), Some(500 << 20));
        assert_eq!(parse_size("1G"), Some(1 << 30));
        assert_eq!(parse_size("1.5K"), Some(1536));
        assert_eq!(parse_size("100"), Some(100));
        assert_eq!(parse_size("10Q"), None);
    }
}
