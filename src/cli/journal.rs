//! `corral journal`: journalctl's flags over corral's journal store.
//!
//! For now it reads the store directly, read-only (beside a running manager, which
//! shares the file in redb's SingleWriter mode). Printing is separate from fetching:
//! [`print_entries`] takes any iterator of entries, so the same code prints what the
//! manager streams over the control socket.

use std::io::{self, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::exit;
use crate::journal::output::{self, Format, OutputOptions};
use crate::journal::query::{parse_priority_range, parse_span, parse_time};
use crate::journal::{Entry, JournalError, Query, Store, StoreOptions, Stream};

/// `corral journal`: show what the services printed.
#[derive(Debug, Clone, Args)]
pub struct JournalArgs {
    /// Only this unit (repeatable; globs like 'memcached@*').
    #[arg(short = 'u', long = "unit", value_name = "UNIT")]
    pub units: Vec<String>,
    /// Only the newest N entries ("all" for every entry; -n alone means 10).
    #[arg(short = 'n', long, value_name = "N", num_args = 0..=1, default_missing_value = "10")]
    pub lines: Option<String>,
    /// Keep printing new entries as they are written.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Entries on or after this time ("2026-11-23 10:00", "10:00", today, yesterday, -1h, "2 days ago", @EPOCH).
    #[arg(short = 'S', long, value_name = "TIME")]
    pub since: Option<String>,
    /// Entries on or before this time (same syntax as --since).
    #[arg(short = 'U', long, value_name = "TIME")]
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
    /// Remove the oldest entries until the journal takes at most this much (e.g. 500M, 1G).
    #[arg(long, value_name = "BYTES")]
    pub vacuum_size: Option<String>,
    /// Remove entries older than this (e.g. 2weeks, 10d, 12h).
    #[arg(long, value_name = "TIMESPAN")]
    pub vacuum_time: Option<String>,
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
    if let Some(s) = std::env::var_os("XDG_STATE_HOME").filter(|s| !s.is_empty()) {
        return PathBuf::from(s).join("corral/journal");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/"));
    home.join(".local/state/corral/journal")
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
}

/// Runs `corral journal`.
pub fn run(args: JournalArgs) -> ExitCode {
    match run_inner(&args) {
        Ok(()) => ExitCode::from(exit::OK),
        Err(CliError::Output(e)) if e.kind() == io::ErrorKind::BrokenPipe => {
            ExitCode::from(exit::OK)
        }
        Err(e) => {
            eprintln!("corral journal: {e}");
            ExitCode::from(exit::ERROR)
        }
    }
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

fn run_inner(args: &JournalArgs) -> Result<(), CliError> {
    let loc = location(args);
    if args.vacuum_size.is_some() || args.vacuum_time.is_some() {
        return vacuum(args, &loc);
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
        Err(e) => return Err(e.into()),
    };
    if args.disk_usage {
        let u = store.disk_usage()?;
        println!(
            "Journal {} takes up {} on disk ({} in {} entries, {} blocks).",
            store.path().display(),
            human(u.file_bytes),
            human(u.stored_bytes),
            u.entries,
            u.blocks
        );
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
    let mut opts = OutputOptions::new(
        Format::parse(&args.output).expect("clap checked the format"),
        store.store_id(),
    );
    opts.fields = args.output_fields.clone();
    opts.color = tty && std::env::var_os("NO_COLOR").is_none();
    // Where following starts when nothing matched yet.
    let follow_from = store.next_seq()?;
    let mut failed = None;
    let entries = store.query_iter(&query)?.map_while(|r| match r {
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
        let mut pager = Pager::start();
        let r = print_entries(entries, pager.writer(), &opts);
        let r2 = pager.finish();
        (shown, last) = r.map_err(CliError::Output)?;
        r2.map_err(CliError::Output)?;
    } else {
        let mut out = io::BufWriter::with_capacity(64 * 1024, stdout.lock());
        (shown, last) = print_entries(entries, &mut out, &opts).map_err(CliError::Output)?;
        out.flush().map_err(CliError::Output)?;
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

fn is_short(f: Format) -> bool {
    matches!(
        f,
        Format::Short | Format::ShortIso | Format::ShortPrecise | Format::ShortMonotonic
    )
}

/// Builds the [`Query`] of the flags (resolving times, priorities and invocation offsets).
pub fn build_query(args: &JournalArgs, store: &Store) -> Result<Query, CliError> {
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
    if let Some(n) = &args.lines {
        q.lines = match n.as_str() {
            "all" => None,
            n => Some(n.trim_start_matches('+').parse().map_err(|_| {
                CliError::Usage(format!("--lines {n:?} is not a number (or \"all\")"))
            })?),
        };
    }
    if let Some(inv) = &args.invocation {
        q.invocation = Some(resolve_invocation(inv, &args.units, store)?);
    }
    Ok(q)
}

fn resolve_invocation(s: &str, units: &[String], store: &Store) -> Result<u128, CliError> {
    let hex: String = s.chars().filter(|c| *c != '-').collect();
    if hex.len() == 32 {
        return u128::from_str_radix(&hex, 16)
            .map_err(|_| CliError::Usage(format!("--invocation {s:?} is not a 128-bit hex id")));
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
    use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
    let path = store.path().to_owned();
    let ino = Inotify::init(InitFlags::IN_CLOEXEC)
        .map_err(|e| JournalError::io("inotify_init", &path, e.into()))?;
    ino.add_watch(&path, AddWatchFlags::IN_MODIFY)
        .map_err(|e| JournalError::io("watch", &path, e.into()))?;
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
        // Blocks until the writer writes to the file: no polling.
        ino.read_events()
            .map_err(|e| JournalError::io("read inotify events for", &path, e.into()))?;
    }
}

fn vacuum(args: &JournalArgs, loc: &std::path::Path) -> Result<(), CliError> {
    if !crate::journal::store::store_file(loc).exists() {
        println!("No journal at {}: nothing to vacuum.", loc.display());
        return Ok(());
    }
    let store = Store::open(loc, StoreOptions::default()).map_err(|e| match e {
        JournalError::Locked { path } => CliError::Usage(format!(
            "journal {} is held by the running manager; vacuuming through the manager is not available yet, stop it (corral exit) and retry",
            path.display()
        )),
        e => CliError::Journal(e),
    })?;
    let before = store.disk_usage()?;
    let mut removed = 0;
    if let Some(t) = &args.vacuum_time {
        let us = parse_span(t).ok_or_else(|| {
            CliError::Usage(format!(
                "--vacuum-time {t:?} is not a time span like 2weeks, 10d, 12h"
            ))
        })?;
        removed += store.vacuum_time(std::time::Duration::from_micros(us))?;
    }
    if let Some(s) = &args.vacuum_size {
        let bytes = parse_size(s).ok_or_else(|| {
            CliError::Usage(format!("--vacuum-size {s:?} is not a size like 500M or 1G"))
        })?;
        removed += store.vacuum_size(bytes)?;
    }
    let after = store.disk_usage()?;
    println!(
        "Vacuuming done, removed {removed} entries, freed {} of {} ({} left).",
        human(before.file_bytes.saturating_sub(after.file_bytes)),
        store.path().display(),
        human(after.file_bytes)
    );
    Ok(())
}

/// A pager child (`$SYSTEMD_PAGER`, `$PAGER`, else `less`), as journalctl uses one.
struct Pager {
    child: Option<std::process::Child>,
    direct: io::Stdout,
}

impl Pager {
    fn start() -> Pager {
        let cmd = std::env::var("SYSTEMD_PAGER")
            .or_else(|_| std::env::var("PAGER"))
            .unwrap_or_else(|_| "less".into());
        let child = if cmd.is_empty() || cmd == "cat" {
            None
        } else {
            std::process::Command::new("sh")
                .arg("-c")
                .arg(&cmd)
                .env(
                    "LESS",
                    std::env::var("LESS").unwrap_or_else(|_| "FRSXMK".into()),
                )
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
