//! Builds a multi-unit store the way scripts/bench-journal.sh builds its peers' stores:
//! U generator processes run at once, each one a unit whose stdout is ingested.
//!
//! `journal_units DIR GEN PER RATE U`: runs `GEN PER unitNN RATE` for NN = 01..U.
//! Prints `entries seconds peak_rss` on stderr once everything is durable and merged.

use std::os::fd::OwnedFd;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use corral::journal::ingest::{SourceMeta, spawn_pipe_reader};
use corral::journal::{Store, StoreOptions, Stream, Writer, WriterOptions};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a: Vec<String> = std::env::args().collect();
    if a.len() != 6 {
        eprintln!("usage: journal_units DIR GEN PER RATE U");
        std::process::exit(2);
    }
    let (dir, gen_path, per, rate) = (&a[1], &a[2], &a[3], &a[4]);
    let units: usize = a[5].parse()?;
    let t0 = Instant::now();
    let store = Store::open(dir, StoreOptions::default())?;
    let w = Writer::spawn(store, WriterOptions::default())?;
    let mut children = Vec::new();
    let mut readers = Vec::new();
    for i in 1..=units {
        let name = format!("unit{i:02}");
        let mut child = Command::new(gen_path)
            .args([per.as_str(), name.as_str(), rate.as_str()])
            .stdout(Stdio::piped())
            .spawn()?;
        let fd: OwnedFd = child.stdout.take().expect("piped").into();
        let meta = SourceMeta {
            unit: Arc::from(name.as_str()),
            invocation: corral::journal::random_id(),
            pid: Some(child.id()),
            stream: Stream::Stdout,
            default_priority: 6,
            level_prefix: true,
            identifier: Arc::from(name.as_str()),
            comm: Arc::from("gen"),
            rate_limit: None,
        };
        readers.push(spawn_pipe_reader(fd, meta, w.clone()));
        children.push(child);
    }
    let mut entries = 0;
    for r in readers {
        entries += r.await??.entries;
    }
    for mut c in children {
        c.wait()?;
    }
    w.flush().await?;
    let m = w.maintain().await?;
    w.shutdown().await?;
    let rss = std::fs::read_to_string("/proc/self/status")?
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:").map(|v| v.trim().to_owned()))
        .unwrap_or_default();
    eprintln!(
        "{entries} {:.3} {rss} (merged {} blocks)",
        t0.elapsed().as_secs_f64(),
        m.merged_blocks
    );
    Ok(())
}
