//! A full disk: the store lives on a small tmpfs mounted by the test. Ingest from a
//! real process waits (the writer reports Stalled, the pipe reader stops, the child
//! blocks on its full pipe) instead of crashing or dropping lines, and everything
//! arrives once space is freed.

mod common;

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use common::journal::open_with;
use corral::journal::ingest::{SourceMeta, spawn_pipe_reader};
use corral::journal::writer::WriterStatus;
use corral::journal::{Query, Stream};

/// Unmounts the tmpfs even when the test fails.
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

fn mount_tmpfs(at: &Path, size: &str) -> Option<Mount> {
    std::fs::create_dir_all(at).unwrap();
    let r = nix::mount::mount(
        Some("tmpfs"),
        at,
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        Some(format!("size={size},mode=0700").as_str()),
    );
    match r {
        Ok(()) => Some(Mount(at.to_owned())),
        Err(e) => {
            if std::env::var_os("CORRAL_REQUIRE_CGROUP").is_some() {
                panic!("mounting a tmpfs at {} needs root: {e}", at.display());
            }
            eprintln!("note: skipping the full-disk test, cannot mount a tmpfs: {e}");
            None
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_makes_ingest_wait_and_resume() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(mount) = mount_tmpfs(&tmp.path().join("fs"), "40m") else {
        return;
    };
    // The input: ~12 MB of barely compressible base64 lines, kept off the tmpfs.
    let data = tmp.path().join("data.txt");
    let st = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "head -c 9000000 /dev/urandom | base64 > {}",
            data.display()
        ))
        .status()
        .unwrap();
    assert!(st.success());
    let want: Vec<String> = std::fs::read_to_string(&data)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    // Leave ~3 MB free: not enough for the store.
    let filler = mount.0.join("filler");
    let st = Command::new("dd")
        .args(["if=/dev/zero", "bs=1M", "count=37", "status=none"])
        .arg(format!("of={}", filler.display()))
        .status()
        .unwrap();
    assert!(st.success());

    // A small in-memory budget, so that waiting shows at the pipe, not in a queue.
    let (store, w) = open_with(
        &mount.0.join("journal"),
        Default::default(),
        corral::journal::WriterOptions {
            queue_bytes: 256 * 1024,
            ..Default::default()
        },
    );
    let mut status = w.status();
    let mut child = Command::new("cat")
        .arg(&data)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let fd: OwnedFd = child.stdout.take().unwrap().into();
    let meta = SourceMeta {
        unit: Arc::from("full.service"),
        invocation: 9,
        pid: Some(child.id()),
        stream: Stream::Stdout,
        default_priority: 6,
        level_prefix: true,
        identifier: Arc::from("full"),
        comm: Arc::from("full"),
        rate_limit: None,
    };
    let reader = spawn_pipe_reader(fd, meta, w.clone());

    // The writer hits ENOSPC and says so.
    tokio::time::timeout(
        Duration::from_secs(30),
        status.wait_for(|s| matches!(s, WriterStatus::Stalled { .. })),
    )
    .await
    .expect("the writer reports the full disk")
    .unwrap();
    let err = match &*status.borrow() {
        WriterStatus::Stalled { error, .. } => error.clone(),
        WriterStatus::Ok => unreachable!("wait_for returned on Stalled"),
    };
    eprintln!("stalled: {err}");
    // Ingest waits: the reader has not finished and the child is blocked on its pipe.
    tokio::time::sleep(Duration::from_millis(500)).await;

    assert!(
        !reader.is_finished(),
        "the reader must wait, not drop or fail"
    );
    assert!(
        child.try_wait().unwrap().is_none(),
        "the service blocks on its full pipe"
    );

    // Reads keep working meanwhile, from the last commit; --disk-usage answers.
    let usage = tokio::time::timeout(Duration::from_secs(10), w.disk_usage())
        .await
        .expect("disk usage answers while writes are blocked")
        .unwrap();
    let last = store
        .query(&Query {
            lines: Some(1),
            ..Query::default()
        })
        .unwrap();
    // The side log shares the disk and may have taken the room of the first commit:
    // then nothing is committed yet, and the query and the usage both say so.
    assert_eq!(
        last.last().map_or(0, |e| e.seq),
        usage.entries,
        "the last committed entry"
    );
    match &*w.status().borrow() {
        WriterStatus::Stalled { waiting, .. } => {
            assert_eq!(waiting, &["full.service".to_string()], "who waits")
        }
        WriterStatus::Ok => panic!("still stalled"),
    }

    // Space comes back: everything goes through.
    std::fs::remove_file(&filler).unwrap();
    let stats = tokio::time::timeout(Duration::from_secs(60), reader)
        .await
        .expect("ingest resumes after space is freed")
        .unwrap()
        .unwrap();
    assert!(child.wait().unwrap().success());
    w.flush().await.unwrap();
    assert_eq!(*w.status().borrow(), WriterStatus::Ok);
    let got = store
        .query(&Query {
            units: vec!["full.service".into()],
            stream: Some(Stream::Stdout),
            ..Query::default()
        })
        .unwrap();
    assert_eq!(stats.entries as usize, want.len());
    assert_eq!(got.len(), want.len(), "no line lost or duplicated");
    assert!(
        got.iter()
            .zip(&want)
            .all(|(e, l)| e.message == l.as_bytes())
    );
    assert!(got.windows(2).all(|p| p[0].seq < p[1].seq));
    // Once it worked again, the journal says for how long it did not, and who waited.
    w.flush().await.unwrap();
    let said = store
        .query(&Query {
            units: vec!["corrald".into()],
            ..Query::default()
        })
        .unwrap();
    assert_eq!(said.len(), 1, "{said:?}");
    let msg = String::from_utf8_lossy(&said[0].message);
    assert!(msg.contains("journal writes were blocked for"), "{msg}");
    assert!(msg.contains("full.service"), "{msg}");
    w.shutdown().await.unwrap();
    drop(store);
    drop(w);
}
