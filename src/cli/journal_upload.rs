//! `corral journal-upload`: sends the journal to a systemd-journal-remote
//! receiver the way systemd-journal-upload does.
//!
//! Each upload is one HTTP POST to `URL/upload` with `Content-Type:
//! application/vnd.fdo.journal` and a chunked body in the Journal Export
//! Format, streamed from the store as it is read. A request ends when it has
//! sent what the store held when it began (or [`REQUEST_BYTES`]): the receiver
//! answers only at the end of a request, and only its answer makes the cursor
//! safe to save. So the cursor file (`--save-state`) always names the last
//! entry the receiver acknowledged, written atomically (a temporary file
//! renamed over it), and a restarted uploader resends nothing acknowledged and
//! skips nothing that was not.
//!
//! With `--follow` it waits for the manager to write to the store (inotify)
//! and uploads what is new. A receiver that cannot be reached or answers 5xx
//! is retried with exponential back-off ([`BACKOFF_FIRST`] to [`BACKOFF_MAX`]);
//! stderr says so once when the outage begins and once when it ends. Without
//! `--follow`, as systemd-journal-upload, a failed upload ends the run (exit 1).
//!
//! The HTTP client is ureq without TLS (docs/DESIGN.md says why): `https://`
//! URLs, and URLs without a scheme (which systemd-journal-upload takes for
//! https), are refused with a message saying so. This code runs in the `corral`
//! CLI process only; corrald never links it in use.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;

use super::journal::{StoreWatch, open_for_reading, state_directory};
use crate::journal::output::{self, Format, OutputOptions};
use crate::journal::query::parse_priority_range;
use crate::journal::store::QueryIter;
use crate::journal::{Entry, JournalError, Query, Store, parse_cursor};

/// The port systemd-journal-remote listens on by default, taken when the URL has none.
pub const DEFAULT_PORT: u16 = 19532;

/// A request ends once its body reaches this many bytes, so that a large
/// backlog is acknowledged (and its cursor saved) piece by piece.
pub const REQUEST_BYTES: usize = 8 << 20;

/// The first wait before retrying an unreachable receiver.
pub const BACKOFF_FIRST: Duration = Duration::from_millis(200);

/// The longest wait between two retries.
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// The media type systemd-journal-remote requires of an upload.
pub const CONTENT_TYPE: &str = "application/vnd.fdo.journal";

/// `corral journal-upload`: send the journal to a systemd-journal-remote.
#[derive(Debug, Clone, Args)]
pub struct UploadArgs {
    /// The receiver: http://HOST[:PORT] (port 19532 when none is given); entries
    /// are POSTed to URL/upload. https is not supported.
    #[arg(long, value_name = "URL", required = true)]
    pub url: String,
    /// Keep running and upload new entries as they are written (--follow=no: upload
    /// what is there, then exit).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "yes",
          default_value = "no", value_parser = parse_bool)]
    pub follow: bool,
    /// Only this unit (repeatable; globs like 'memcached@*'). --user-unit is the same.
    #[arg(
        short = 'u',
        long = "unit",
        visible_alias = "user-unit",
        value_name = "UNIT"
    )]
    pub units: Vec<String>,
    /// Only entries with this SYSLOG_IDENTIFIER (repeatable: any of them).
    #[arg(short = 't', long = "identifier", value_name = "ID")]
    pub identifiers: Vec<String>,
    /// Only this priority and more severe (emerg..debug or 0..7), or a range err..warning.
    #[arg(short = 'p', long, value_name = "PRIORITY")]
    pub priority: Option<String>,
    /// Accepted as by systemd-journal-upload: corral's journal is always the calling user's.
    #[arg(long)]
    pub user: bool,
    /// Start at the entry of this cursor (instead of after the saved one).
    #[arg(long, value_name = "CURSOR", conflicts_with = "after_cursor")]
    pub cursor: Option<String>,
    /// Start after the entry of this cursor (instead of after the saved one).
    #[arg(long, value_name = "CURSOR")]
    pub after_cursor: Option<String>,
    /// Where the cursor of the last acknowledged entry is kept (default:
    /// $XDG_STATE_HOME/corral/journal-upload/state; one file per receiver).
    #[arg(long, value_name = "FILE", num_args = 0..=1)]
    pub save_state: Option<Option<PathBuf>>,
    /// The journal directory (default: $XDG_STATE_HOME/corral/journal).
    #[arg(short = 'D', long, value_name = "DIR", conflicts_with = "file")]
    pub directory: Option<PathBuf>,
    /// The journal store file itself.
    #[arg(long, value_name = "FILE")]
    pub file: Option<PathBuf>,
}

/// systemd's boolean spellings.
fn parse_bool(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "1" | "yes" | "y" | "true" | "t" | "on" => Ok(true),
        "0" | "no" | "n" | "false" | "f" | "off" => Ok(false),
        _ => Err(format!("{s:?} is not a boolean (yes or no)")),
    }
}

/// A failure of `corral journal-upload`.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// A flag's value is wrong.
    #[error("{0}")]
    Usage(String),
    /// Reading the journal failed.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// Reading or writing the cursor file failed.
    #[error("{op} {}: {source}", path.display())]
    State {
        /// What we were doing.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The receiver could not be reached, or the connection broke.
    #[error("Upload to {url} failed: {message}")]
    Unreachable {
        /// The upload URL.
        url: String,
        /// The transport's error.
        message: String,
    },
    /// The receiver answered with an error status.
    #[error("Upload to {url} failed with code {status}: {body}")]
    Refused {
        /// The upload URL.
        url: String,
        /// The HTTP status.
        status: u16,
        /// What the receiver said.
        body: String,
    },
}

impl UploadError {
    /// Whether trying again later may succeed: the receiver is down, busy or failing
    /// (5xx), not refusing what was sent (4xx).
    fn transient(&self) -> bool {
        match self {
            UploadError::Unreachable { .. } => true,
            UploadError::Refused { status, .. } => *status >= 500,
            _ => false,
        }
    }
}

/// Runs `corral journal-upload`.
pub fn run(args: UploadArgs) -> u8 {
    match upload(&args) {
        Ok(()) => super::exit::OK,
        Err(e) => {
            eprintln!("corral journal-upload: {e}");
            // systemd-journal-upload's EXIT_FAILURE.
            1
        }
    }
}

/// The upload URL (`.../upload`) of `--url`, as systemd-journal-upload makes it:
/// https is the default scheme, 19532 the default port, trailing slashes go.
/// Only http is supported.
pub fn upload_url(url: &str) -> Result<String, UploadError> {
    let (scheme, rest) = match url.split_once("://") {
        Some((s, r)) => (s.to_ascii_lowercase(), r),
        None => {
            return Err(UploadError::Usage(format!(
                "--url {url:?} has no scheme, which means https:// (as for systemd-journal-upload), \
                 and corral journal-upload speaks plain HTTP only (TLS is not built in); \
                 write http://{url}"
            )));
        }
    };
    match scheme.as_str() {
        "http" => {}
        "https" => {
            return Err(UploadError::Usage(format!(
                "--url {url:?}: https is not supported: corral journal-upload speaks plain HTTP \
                 only (TLS is not built in); use http://HOST:PORT, for a remote receiver through \
                 a TLS-terminating proxy or tunnel"
            )));
        }
        other => {
            return Err(UploadError::Usage(format!(
                "--url {url:?}: the scheme {other}:// is not supported; use http://HOST[:PORT]"
            )));
        }
    }
    let rest = rest.trim_end_matches('/');
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    if authority.is_empty() {
        return Err(UploadError::Usage(format!("--url {url:?} names no host")));
    }
    // An IPv6 literal's colons are inside its brackets.
    let host_end = authority.rfind(']').unwrap_or(0);
    let port = match authority[host_end..].contains(':') {
        true => String::new(),
        false => format!(":{DEFAULT_PORT}"),
    };
    Ok(format!("http://{authority}{port}{path}/upload"))
}

/// The cursor file `--save-state` names, or the default one.
fn state_path(args: &UploadArgs) -> PathBuf {
    match &args.save_state {
        Some(Some(p)) => p.clone(),
        _ => state_directory().join("journal-upload/state"),
    }
}

/// The cursor saved in a state file (systemd-journal-upload's format:
/// `LAST_CURSOR=...`); None when there is no file yet.
pub fn load_state(path: &Path) -> Result<Option<String>, UploadError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(UploadError::State {
                op: "read",
                path: path.to_owned(),
                source,
            });
        }
    };
    Ok(text
        .lines()
        .find_map(|l| l.strip_prefix("LAST_CURSOR="))
        .map(str::to_owned))
}

/// Replaces the state file with one naming `cursor`: written beside it, synced,
/// renamed over it, so a crash leaves the old cursor or the new one, never a torn file.
pub fn save_state(path: &Path, cursor: &str) -> Result<(), UploadError> {
    let err = |op, p: &Path| {
        let p = p.to_owned();
        move |source| UploadError::State {
            op,
            path: p,
            source,
        }
    };
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(err("create directory", dir))?;
    let mut tmp_name = path.file_name().unwrap_or_default().to_owned();
    tmp_name.push(".tmp");
    let tmp = dir.join(tmp_name);
    let mut f = std::fs::File::create(&tmp).map_err(err("create", &tmp))?;
    f.write_all(
        format!("# This is private data. Do not parse.\nLAST_CURSOR={cursor}\n").as_bytes(),
    )
    .and_then(|()| f.sync_all())
    .map_err(err("write", &tmp))?;
    std::fs::rename(&tmp, path).map_err(err("rename into", path))?;
    // The rename itself is durable only once the directory is synced.
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(err("sync", dir))
}

/// The seq the upload starts at: `--cursor`, `--after-cursor`, else after the
/// saved cursor when it is of this store (a store made anew starts again at 1).
fn start_seq(args: &UploadArgs, saved: Option<&str>, store: &Store) -> Result<u64, UploadError> {
    if let Some(c) = &args.cursor {
        return Ok(parse_cursor(c)?);
    }
    if let Some(c) = &args.after_cursor {
        return Ok(parse_cursor(c)? + 1);
    }
    let Some(c) = saved else { return Ok(0) };
    let this_store = format!("s={:032x}", store.store_id());
    if !c.split(';').any(|kv| kv == this_store) {
        eprintln!(
            "corral journal-upload: the saved cursor is of another journal store than {}; \
             uploading it from its beginning",
            store.path().display()
        );
        return Ok(0);
    }
    Ok(parse_cursor(c)? + 1)
}

/// Uploads until done (or, following, forever); returns on the first
/// permanent failure.
fn upload(args: &UploadArgs) -> Result<(), UploadError> {
    let url = upload_url(&args.url)?;
    // systemd-journal-upload's -u is --url; here it is the unit, as in `corral journal`.
    if let Some(u) = args.units.iter().find(|u| u.contains("://")) {
        return Err(UploadError::Usage(format!(
            "-u {u:?}: -u is a unit name here (--unit, as for corral journal), not \
             systemd-journal-upload's --url; give the receiver with --url"
        )));
    }
    let mut filter = Query {
        units: args.units.clone(),
        identifiers: args.identifiers.clone(),
        ..Default::default()
    };
    if let Some(p) = &args.priority {
        filter.priority = Some(parse_priority_range(p)?);
    }
    let loc = match (&args.file, &args.directory) {
        (Some(f), _) => f.clone(),
        (None, Some(d)) => d.clone(),
        (None, None) => super::journal::default_directory(),
    };
    let state = state_path(args);
    let saved = load_state(&state)?;
    let store = open_store(&loc, args.follow)?;
    let watch = match args.follow {
        true => Some(StoreWatch::new(&store)?),
        false => None,
    };
    let agent = ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .user_agent(format!(
                "corral-journal-upload {}",
                env!("CARGO_PKG_VERSION")
            ))
            .timeout_connect(Some(Duration::from_secs(10)))
            // A receiver that stops reading is as good as gone: retry elsewhen.
            .timeout_per_write(Some(Duration::from_secs(60)))
            .timeout_recv_response(Some(Duration::from_secs(60)))
            .build(),
    );
    let mut uploader = Uploader {
        agent,
        url,
        state,
        store_id: store.store_id(),
        outage: None,
    };
    let mut from = start_seq(args, saved.as_deref(), &store)?;
    let mut backoff = BACKOFF_FIRST;
    loop {
        // Entries below this are in the snapshot of the query that follows.
        let committed = store.next_seq()?;
        let query = Query {
            cursor: Some(format!("i={from:x}")),
            ..filter.clone()
        };
        let mut body = ExportBody::new(store.query_iter(&query)?, store.store_id());
        body.fill()?;
        if body.entries == 0 {
            // Nothing (more) matches below `committed`: no need to look there again.
            from = from.max(committed);
            match &watch {
                Some(w) => {
                    w.wait()?;
                    continue;
                }
                None => return Ok(()),
            }
        }
        match uploader.post(&mut body) {
            Ok(last) => {
                backoff = BACKOFF_FIRST;
                from = last.seq + 1;
                if !body.capped {
                    from = from.max(committed);
                }
            }
            Err(e) if e.transient() && args.follow => {
                uploader.down(&e);
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
            Err(e) => return Err(e),
        }
        let skipped = body.iter.skipped();
        if skipped.blocks > 0 {
            eprintln!(
                "corral journal-upload: warning: skipped {} damaged block(s) of {} holding {} \
                 entries ({})",
                skipped.blocks,
                store.path().display(),
                skipped.entries,
                skipped.first_error.as_deref().unwrap_or("")
            );
        }
    }
}

/// Opens the store to upload from. Following, a store that does not exist yet
/// (no manager has run) is an error too: there is no file to watch.
fn open_store(loc: &Path, follow: bool) -> Result<Store, UploadError> {
    match open_for_reading(loc) {
        Err(JournalError::Io { source, .. })
            if source.kind() == io::ErrorKind::NotFound && !follow =>
        {
            Err(UploadError::Usage(format!(
                "no journal at {}: nothing to upload",
                loc.display()
            )))
        }
        r => Ok(r?),
    }
}

/// The connection side of an upload: the client, where to, and the outage
/// being reported.
struct Uploader {
    agent: ureq::Agent,
    url: String,
    state: PathBuf,
    store_id: u128,
    /// Failed attempts since the receiver was last reached (0: it answers).
    outage: Option<u32>,
}

impl Uploader {
    /// POSTs `body`; once the receiver acknowledged it, saves the cursor of its
    /// last entry and returns that entry.
    fn post(&mut self, body: &mut ExportBody) -> Result<Entry, UploadError> {
        let sent = self
            .agent
            .post(&self.url)
            .header("Content-Type", CONTENT_TYPE)
            .send(ureq::SendBody::from_reader(body));
        // A store read that failed mid-body is the store's error, not the network's.
        if let Some(e) = body.failed.take() {
            return Err(e.into());
        }
        let mut response = sent.map_err(|e| UploadError::Unreachable {
            url: self.url.clone(),
            message: e.to_string(),
        })?;
        let status = response.status().as_u16();
        if !(200..300).contains(&status) {
            let text = response.body_mut().read_to_string().unwrap_or_default();
            return Err(UploadError::Refused {
                url: self.url.clone(),
                status,
                body: text.trim_end().to_owned(),
            });
        }
        if let Some(n) = self.outage.take() {
            eprintln!(
                "corral journal-upload: {} answers again; uploading resumed after {n} failed attempt(s)",
                self.url
            );
        }
        let last = body
            .last
            .take()
            .expect("a body is posted only with an entry in it");
        save_state(&self.state, &last.cursor(self.store_id))?;
        Ok(last)
    }

    /// Counts a failed attempt; the first of an outage is said on stderr.
    fn down(&mut self, e: &UploadError) {
        match &mut self.outage {
            Some(n) => *n += 1,
            None => {
                eprintln!(
                    "corral journal-upload: {e}; retrying with back-off (up to every {}s) until it answers",
                    BACKOFF_MAX.as_secs()
                );
                self.outage = Some(1);
            }
        }
    }
}

/// The body of one upload request: entries of a query in the Journal Export
/// Format, produced as the client reads, up to [`REQUEST_BYTES`].
struct ExportBody {
    iter: QueryIter,
    opts: OutputOptions,
    /// Export text of the entry being sent, and how much of it is sent.
    buf: Vec<u8>,
    pos: usize,
    /// Bytes put into the body so far.
    bytes: usize,
    /// Entries put into the body so far.
    entries: usize,
    /// The last entry put into the body (whose cursor is saved once acknowledged).
    last: Option<Entry>,
    /// The body ended at [`REQUEST_BYTES`], not at the end of the query.
    capped: bool,
    /// A store read failed (the client sees an I/O error).
    failed: Option<JournalError>,
}

impl ExportBody {
    fn new(iter: QueryIter, store_id: u128) -> ExportBody {
        ExportBody {
            iter,
            opts: OutputOptions::new(Format::Export, store_id),
            buf: Vec::with_capacity(4096),
            pos: 0,
            bytes: 0,
            entries: 0,
            last: None,
            capped: false,
            failed: None,
        }
    }

    /// Makes the next entry's text when the last one is sent; Ok(false) at the end.
    fn fill(&mut self) -> Result<bool, JournalError> {
        if self.pos < self.buf.len() {
            return Ok(true);
        }
        self.buf.clear();
        self.pos = 0;
        if self.bytes >= REQUEST_BYTES {
            self.capped = true;
            return Ok(false);
        }
        let Some(e) = self.iter.next().transpose()? else {
            return Ok(false);
        };
        output::write_entry(&mut self.buf, &e, &self.opts).expect("writing to a Vec");
        self.bytes += self.buf.len();
        self.entries += 1;
        self.last = Some(e);
        Ok(true)
    }
}

impl Read for ExportBody {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        match self.fill() {
            Ok(true) => {}
            Ok(false) => return Ok(0),
            Err(e) => {
                let err = io::Error::other(e.to_string());
                self.failed = Some(e);
                return Err(err);
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_as_systemd_journal_upload_makes_them() {
        let ok = |u: &str| upload_url(u).unwrap();
        assert_eq!(ok("http://127.0.0.1:8080"), "http://127.0.0.1:8080/upload");
        assert_eq!(
            ok("http://logs.example"),
            "http://logs.example:19532/upload"
        );
        assert_eq!(
            ok("http://logs.example/"),
            "http://logs.example:19532/upload"
        );
        assert_eq!(ok("HTTP://[::1]"), "http://[::1]:19532/upload");
        assert_eq!(ok("http://[::1]:99/x/"), "http://[::1]:99/x/upload");
        let refused = |u: &str| upload_url(u).unwrap_err().to_string();
        assert!(refused("https://h").contains("https is not supported"));
        assert!(refused("h:1").contains("means https://"));
        assert!(refused("ftp://h").contains("ftp:// is not supported"));
        assert!(refused("http:///").contains("names no host"));
    }

    #[test]
    fn state_is_replaced_whole_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/state");
        assert_eq!(load_state(&p).unwrap(), None);
        save_state(&p, "s=1;i=2").unwrap();
        save_state(&p, "s=1;i=3").unwrap();
        assert_eq!(load_state(&p).unwrap().as_deref(), Some("s=1;i=3"));
        let names: Vec<_> = std::fs::read_dir(p.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["state"], "no temporary file is left");
    }
}
