//! Faults of the journal's disk with a real manager and real stores: a full file
//! system under the state directory (logged once, reads and `--disk-usage` keep
//! answering, nothing lost once space returns), stores damaged while the manager
//! was down (truncated, first 4 KiB zeroed: set aside, a new store started,
//! `--file` salvages the old one), and flipped bytes in one block (that block
//! skipped, the rest returned).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use common::{Out, TestDaemon, eventually};
use corral::journal::NewEntry;

/// Unmounts the tmpfs even when the test fails (lazily: the manager may still hold files).
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// Runs the real `corral` against `td` and gives up after `secs` (a hang is the bug
/// these tests look for, so it must fail the test, not stall it).
fn corral_within(td: &TestDaemon, secs: u32, args: &[&str]) -> Out {
    corral_timed(Some(&td.socket), secs, args)
}

/// `corral` on a store file, without any manager.
fn corral_file(args: &[&str]) -> Out {
    corral_timed(None, 60, args)
}

fn corral_timed(socket: Option<&Path>, secs: u32, args: &[&str]) -> Out {
    let mut cmd = Command::new("timeout");
    cmd.arg(secs.to_string())
        .arg(env!("CARGO_BIN_EXE_corral"))
        .args(args)
        .env_remove("CORRAL_SOCKET")
        .stdin(Stdio::null());
    if let Some(s) = socket {
        cmd.env("CORRAL_SOCKET", s);
    }
    let out = cmd.output().expect("run corral");
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn a_full_disk_is_logged_once_reads_answer_and_nothing_is_lost() {
    let mut mount = None;
    let mut data = PathBuf::new();
    let td = TestDaemon::start_with(|td| {
        let state = td.dir.path().join("state");
        let r = nix::mount::mount(
            Some("tmpfs"),
            &state,
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            Some("size=24m,mode=0700"),
        );
        r.unwrap_or_else(|e| panic!("mount a tmpfs at {}: {e}", state.display()));
        mount = Some(Mount(state.clone()));
        // ~8 MB of barely compressible lines, kept off the tmpfs.
        data = td.dir.path().join("data.txt");
        let st = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "head -c 6000000 /dev/urandom | base64 > {}",
                data.display()
            ))
            .status()
            .unwrap();
        assert!(st.success());
        // Leave ~3 MB: room for the manager's start, not for the flood.
        let st = Command::new("dd")
            .args(["if=/dev/zero", "bs=1M", "count=21", "status=none"])
            .arg(format!("of={}", state.join("filler").display()))
            .status()
            .unwrap();
        assert!(st.success());
        td.write_unit(
            "flood.service",
            &format!(
                "[Service]\nType=oneshot\nExecStart=/bin/cat {}\n",
                data.display()
            ),
        );
    });
    let Some(td) = td else { return };
    let _mount = mount.expect("mounted in setup");
    let want: Vec<String> = std::fs::read_to_string(&data)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();

    // Something committed before the disk fills, for the reads below: the
    // flood's first batch may already be too large for the room left.
    let before = eventually(Duration::from_secs(20), || {
        let o = corral_within(&td, 20, &["journal", "-u", "default.target", "-o", "cat"]);
        (o.code == 0 && !o.stdout.is_empty()).then_some(o.stdout)
    })
    .expect("the manager's start is committed");

    // A oneshot: `start` returns when cat is done, so it runs in the background.
    let sock = td.socket.clone();
    let starter = std::thread::spawn(move || {
        Command::new(env!("CARGO_BIN_EXE_corral"))
            .args(["start", "flood"])
            .env("CORRAL_SOCKET", sock)
            .stdin(Stdio::null())
            .output()
            .expect("run corral start")
    });
    let said = "journal: cannot write";
    eventually(Duration::from_secs(60), || {
        td.log().contains(said).then_some(())
    })
    .unwrap_or_else(|| panic!("the full disk was not logged; log:\n{}", td.log()));

    // While blocked: status says so and names the unit that waits.
    let st = corral_within(&td, 20, &["status"]);
    assert_eq!(st.code, 0, "{st:?}");
    let line = st
        .stdout
        .lines()
        .find(|l| l.trim_start().starts_with("Journal:"))
        .unwrap_or_else(|| panic!("no Journal: line in status:\n{}", st.stdout));
    assert!(line.contains("writes blocked"), "{line}");
    assert!(line.contains("No space left on device"), "{line}");
    assert!(line.contains("flood.service"), "{line}");
    // --disk-usage answers (through the manager's writer).
    let du = corral_within(&td, 20, &["journal", "--disk-usage"]);
    assert_eq!(du.code, 0, "--disk-usage did not answer: {du:?}");
    assert!(du.stdout.contains("takes up"), "{du:?}");
    // Queries answer, through the manager and straight from the file: what
    // was committed before the stall, and of the flood whatever of it was.
    let dir = td.dir.path().join("state/journal");
    let dir = dir.to_str().unwrap();
    for via in [&[][..], &["-D", dir][..]] {
        let ask = |unit: &str, extra: &[&str]| {
            let mut args = vec!["journal"];
            args.extend_from_slice(via);
            args.extend_from_slice(&["-u", unit, "-o", "cat"]);
            args.extend_from_slice(extra);
            // A reader in another process may find the file mid-way through one
            // of the writer's reopen attempts ("needs a repair"): it answers on
            // the next try; what it answers is checked below.
            eventually(Duration::from_secs(20), || {
                let o = corral_within(&td, 20, &args);
                (o.code == 0 || !o.stderr.contains("needs a repair")).then_some(o)
            })
            .expect("the store is readable during the stall")
        };
        let q = ask("default.target", &[]);
        assert_eq!(q.code, 0, "{via:?}: {q:?}");
        assert_eq!(q.stdout, before, "{via:?}");
        // What cat wrote; the manager's "Starting flood.service..." is not part of it.
        let q = ask("flood", &["--stream", "stdout"]);
        assert_eq!(q.code, 0, "{via:?}: {q:?}");
        let got: Vec<&str> = q.stdout.lines().collect();
        assert!(
            got.len() < want.len(),
            "{via:?}: all lines before space came back"
        );
        assert!(
            got.iter().zip(&want).all(|(g, w)| g == w),
            "{via:?}: the committed part is the flood's beginning"
        );
    }

    // Space comes back: everything arrives, once.
    std::fs::remove_file(td.dir.path().join("state/filler")).unwrap();
    let started = starter.join().unwrap();
    assert!(started.status.success(), "{started:?}");
    // The unit is done once cat's last line was read; its commit follows.
    let all = eventually(Duration::from_secs(60), || {
        let all = corral_within(
            &td,
            60,
            &[
                "journal", "-u", "flood", "--stream", "stdout", "-o", "cat", "-n", "all",
            ],
        );
        assert_eq!(all.code, 0, "{:?}", all.stderr);
        (all.stdout.lines().count() >= want.len()).then_some(all)
    })
    .expect("every line arrives once space is back");
    let got: Vec<&str> = all.stdout.lines().collect();
    assert_eq!(got.len(), want.len(), "no line lost or duplicated");
    assert!(got.iter().zip(&want).all(|(g, w)| g == w));

    // Said once when it began, once when it ended, and in the journal.
    eventually(Duration::from_secs(20), || {
        td.log()
            .contains("journal: writing works again")
            .then_some(())
    })
    .unwrap_or_else(|| panic!("the end of the stall was not logged; log:\n{}", td.log()));
    let log = td.log();
    assert_eq!(log.matches(said).count(), 1, "log:\n{log}");
    let j = corral_within(&td, 20, &["journal", "-u", "corrald", "-o", "cat"]);
    let entry = j
        .stdout
        .lines()
        .find(|l| l.contains("journal writes were blocked for"))
        .unwrap_or_else(|| panic!("no journal entry about the stall: {j:?}"));
    assert!(entry.contains("flood.service"), "{entry}");
    let j = corral_within(
        &td,
        20,
        &["journal", "-u", "flood", "-p", "warning", "-o", "cat"],
    );
    assert!(
        j.stdout.contains("this unit's output waited"),
        "the unit's journal says it waited: {j:?}"
    );
    let st = corral_within(&td, 20, &["status"]);
    assert!(!st.stdout.contains("Journal:"), "{}", st.stdout);
}

/// Writes `n` entries of `unit` into a new store at `dir` with the real writer.
fn write_store(dir: &Path, unit: &str, n: usize) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (_store, w) = common::journal::open(dir);
        let unit: Arc<str> = Arc::from(unit);
        for chunk in (0..n).collect::<Vec<_>>().chunks(4096) {
            let batch: Vec<NewEntry> = chunk
                .iter()
                .map(|i| common::journal::ne(&unit, &format!("line {i} of {unit}")))
                .collect();
            w.append_batch(batch).await.unwrap();
        }
        w.flush().await.unwrap();
        w.shutdown().await.unwrap();
    });
}

/// A store damaged while no manager ran: the manager sets it aside, logs it, starts
/// a new store that takes the units' output, and `--file` salvages the old one.
/// Returns how many of the old entries were salvaged.
fn damaged_store_is_set_aside(damage: impl FnOnce(&Path)) -> usize {
    const N: usize = 20_000;
    let Some(td) = TestDaemon::start_with(|td| {
        let dir = td.dir.path().join("state/journal");
        write_store(&dir, "old.service", N);
        damage(&dir.join("journal.redb"));
        td.write_unit(
            "new.service",
            "[Service]\nType=oneshot\nExecStart=/bin/echo written after the damage\n",
        );
    }) else {
        return N;
    };
    let log = td.log();
    assert!(
        log.contains("could not be opened") && log.contains("moved it aside"),
        "log:\n{log}"
    );
    let dir = td.dir.path().join("state/journal");
    let aside: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains("journal.redb~corrupt-"))
        .collect();
    assert_eq!(aside.len(), 1, "one store set aside: {aside:?}");

    // The new store has the manager's word on it and takes new output.
    // (Committed within milliseconds of readiness: asked until it is there.)
    let said = |unit: &str, what: &str| {
        eventually(Duration::from_secs(10), || {
            let j = td.ok(&["journal", "-u", unit, "-o", "cat"]);
            j.stdout.contains(what).then_some(())
        })
        .is_some()
    };
    assert!(said("corrald", "moved it aside"), "log:\n{log}");
    td.ok(&["start", "new"]);
    assert!(said("new", "written after the damage"));

    // The old one: whatever can be found, said how much.
    let old = corral_file(&[
        "journal",
        "--file",
        aside[0].to_str().unwrap(),
        "-u",
        "old",
        "-o",
        "cat",
        "--no-pager",
    ]);
    assert_eq!(old.code, 0, "{old:?}");
    assert!(old.stderr.contains("salvaged"), "{}", old.stderr);
    assert!(old.stderr.contains("skipped"), "{}", old.stderr);
    let lines: Vec<&str> = old.stdout.lines().collect();
    let mut prev = None;
    for l in &lines {
        let i: usize = l
            .strip_prefix("line ")
            .and_then(|r| r.strip_suffix(" of old.service"))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("not an entry of the old store: {l:?}"));
        assert!(prev.is_none_or(|p| p < i), "in order, once each");
        prev = Some(i);
    }
    lines.len()
}

#[test]
fn a_truncated_store_is_set_aside_and_salvaged() {
    let salvaged = damaged_store_is_set_aside(|file| {
        let len = std::fs::metadata(file).unwrap().len();
        let f = std::fs::OpenOptions::new().write(true).open(file).unwrap();
        f.set_len(len / 2).unwrap();
    });
    // Half of the file held about half of the blocks.
    assert!(salvaged > 0, "salvaged {salvaged}");
    eprintln!("truncated: salvaged {salvaged} of 20000");
}

#[test]
fn a_store_with_its_first_4k_zeroed_is_set_aside_and_salvaged_whole() {
    let salvaged = damaged_store_is_set_aside(|file| {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new().write(true).open(file).unwrap();
        f.write_all_at(&[0u8; 4096], 0).unwrap();
    });
    // Only redb's header was lost: every block is still in the file.
    assert_eq!(salvaged, 20_000);
}

#[test]
fn a_query_skips_a_block_with_flipped_bytes_and_returns_the_rest() {
    const N: usize = 200_000;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("journal");
    write_store(&dir, "fl.service", N);
    let file = dir.join("journal.redb");
    let mut data = std::fs::read(&file).unwrap();
    // A block in the middle of the journal; every copy of it in the file (redb's
    // copy-on-write leaves old ones in free pages), so that the live one is hit.
    let frames = corral::journal::salvage::scan(&data);
    let target = frames
        .iter()
        .filter_map(|f| f.entries.as_ref())
        .map(|e| (e[0].seq, e.len()))
        .find(|&(seq, n)| seq > N as u64 / 2 && n > 100)
        .expect("a full block past the middle");
    let mut hit = 0;
    for f in frames
        .iter()
        .filter(|f| f.entries.as_ref().is_some_and(|e| e[0].seq == target.0))
    {
        for b in &mut data[f.zstd + 40..f.zstd + 90] {
            *b ^= 0xff;
        }
        hit += 1;
    }
    assert!(hit > 0);
    std::fs::write(&file, &data).unwrap();

    let unit_fl = |more: &[&str]| {
        let mut args = vec!["journal", "--file", file.to_str().unwrap(), "-u", "fl"];
        args.extend_from_slice(more);
        corral_file(&args)
    };
    let skipped = format!("skipped 1 damaged block(s) of {}", file.display());
    let out = unit_fl(&["-o", "cat", "--no-pager"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.stdout.lines().count(),
        N - target.1,
        "every entry but the damaged block's"
    );
    assert!(out.stderr.contains(&skipped), "{}", out.stderr);
    assert!(
        out.stderr
            .contains(&format!("holding {} entries", target.1))
    );
    // The same through -g, whose blocks are decoded by the pool's threads and the
    // reading thread: the damaged one's error comes back from whichever decoded it.
    let out = unit_fl(&["-g", "of fl", "-o", "cat", "--no-pager"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout.lines().count(), N - target.1);
    assert!(out.stderr.contains(&skipped), "{}", out.stderr);
    // -n reaches past it too.
    let out = unit_fl(&["-n", "5"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout.lines().count(), 5);

    // Through a manager that owns the damaged store: the same entries, and the
    // warning reaches the client (not only the manager's stderr).
    let Some(td) = TestDaemon::start_with(|td| {
        std::fs::create_dir_all(td.journal_dir()).unwrap();
        std::fs::copy(&file, td.journal_dir().join("journal.redb")).unwrap();
    }) else {
        return;
    };
    let out = td.corral(&["journal", "-u", "fl", "-o", "cat", "--no-pager"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout.lines().count(), N - target.1);
    assert!(
        out.stderr.contains(&format!(
            "warning: skipped 1 damaged block(s) holding {} entries",
            target.1
        )),
        "{}",
        out.stderr
    );
}
