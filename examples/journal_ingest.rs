//! Ingests standard input (a pipe) into a journal store as one unit, the way the manager
//! ingests a service's stdout; used by scripts/bench-journal.sh for end-to-end numbers.
//!
//! `journal_ingest DIR UNIT [WINDOW_BYTES [no-side-log] [commit=BYTES]]` (the writer's
//! budget, default [`corral::journal::writer::WINDOW_BYTES`]; `no-side-log`: without the
//! side log, so every byte of the window waits for its commit; `commit=`: the commit
//! window, [`corral::journal::WriterOptions::commit_bytes`]): prints `lines seconds lines/s peak_rss`
//! on stderr once everything is durable, then `window BYTES AGE_MS COMMIT_BYTES`: the
//! largest window of output read and not in the side log the writer saw (what a kill -9
//! at the worst moment would have lost), the longest time from read to commit, and the
//! largest commit (what a machine crash would have lost on top).

use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::Arc;
use std::time::Instant;

use corral::journal::ingest::{SourceMeta, spawn_pipe_reader};
use corral::journal::{Store, StoreOptions, Stream, Writer, WriterOptions};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: journal_ingest DIR UNIT [WINDOW_BYTES [no-side-log] [commit=BYTES]]");
        std::process::exit(2);
    }
    let t0 = Instant::now();
    let store = Store::open(&args[1], StoreOptions::default())?;
    let mut opts = WriterOptions::default();
    if let Some(b) = args.get(3) {
        opts.queue_bytes = b.parse()?;
    }
    for a in args.iter().skip(4) {
        match a.strip_prefix("commit=") {
            Some(n) => opts.commit_bytes = n.parse()?,
            None if a == "no-side-log" => opts.side_log = false,
            None => return Err(format!("unknown option {a:?}").into()),
        }
    }
    let w = Writer::spawn(store, opts)?;
    // SAFETY: fd 0 is ours for the life of the process and handed over exactly once.
    let fd = unsafe { OwnedFd::from_raw_fd(0) };
    let meta = SourceMeta {
        unit: Arc::from(args[2].as_str()),
        invocation: corral::journal::random_id(),
        pid: None,
        stream: Stream::Stdout,
        default_priority: 6,
        level_prefix: true,
        identifier: Arc::from(args[2].as_str()),
        comm: Arc::from(""),
        rate_limit: None,
    };
    let stats = spawn_pipe_reader(fd, meta, w.clone()).await??;
    w.flush().await?;
    let window = w.window_seen();
    w.shutdown().await?;
    let secs = t0.elapsed().as_secs_f64();
    let rss = std::fs::read_to_string("/proc/self/status")?
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:").map(|v| v.trim().to_owned()))
        .unwrap_or_default();
    eprintln!(
        "{} {:.3} {:.0} {}",
        stats.entries,
        secs,
        stats.entries as f64 / secs,
        rss
    );
    eprintln!(
        "window {} {:.1} {}",
        window.bytes,
        window.age_usec as f64 / 1000.0,
        window.commit_bytes
    );
    Ok(())
}
