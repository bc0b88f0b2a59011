//! `corral journal-upload` into a real systemd-journal-remote on loopback:
//! what it wrote, read back with journalctl, must be the entries of the store,
//! each once, across a receiver that dies and comes back and an uploader that
//! is restarted.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::journal::{Receiver, corral_journal, ne, open, varied_entries};
use common::{show, wait_until};
use corral::journal::{NewEntry, Store};
use nix::sys::signal::Signal;
use serde_json::{Map, Value};

/// `corral journal-upload --url URL -D STORE --save-state STATE ARGS...`.
fn uploader(url: &str, store: &Path, state: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_corral"));
    c.args(["journal-upload", "--url", url, "-D"])
        .arg(store)
        .arg(format!("--save-state={}", state.display()))
        .args(args);
    c
}

/// A `--follow` uploader, its stderr in a file; killed (by PID) on drop.
struct Follower {
    child: Child,
    stderr: PathBuf,
}

impl Follower {
    fn start(url: &str, store: &Path, state: &Path, stderr: PathBuf) -> Follower {
        let err = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&stderr)
            .unwrap();
        let child = uploader(url, store, state, &["--follow"])
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .unwrap();
        Follower { child, stderr }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The objects of `corral journal -D DIR -o json`, without the cursor (each
/// journal makes its own).
fn corral_objects(dir: &Path) -> Vec<Map<String, Value>> {
    let out = corral_journal(dir, &["-o", "json"]);
    serde_json::Deserializer::from_slice(&out)
        .into_iter::<Value>()
        .map(|v| match v.unwrap() {
            Value::Object(mut m) => {
                m.remove("__CURSOR");
                m
            }
            v => panic!("not an object: {v}"),
        })
        .collect()
}

/// The cursor in the uploader's state file, if there is one.
fn saved_seq(state: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(state).ok()?;
    let cursor = text.lines().find_map(|l| l.strip_prefix("LAST_CURSOR="))?;
    Some(corral::journal::parse_cursor(cursor).unwrap())
}

/// Waits until the uploader has saved the cursor of the store's newest entry.
fn wait_uploaded(store: &Store, state: &Path, f: &Follower) {
    let last = store.next_seq().unwrap() - 1;
    wait_until(30, &format!("the upload of seq {last}"), || {
        saved_seq(state) == Some(last)
    });
    assert!(f.stderr().is_empty(), "uploader stderr: {}", f.stderr());
}

/// A store in a temp dir with its writer, and the uploader's cursor file beside it.
struct Fixture {
    dir: tempfile::TempDir,
    store_dir: PathBuf,
    state: PathBuf,
    store: Store,
    w: corral::journal::WriterHandle,
    rt: tokio::runtime::Runtime,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let store_dir = dir.path().join("store");
        let (store, w) = open(&store_dir);
        Fixture {
            state: dir.path().join("state"),
            dir,
            store_dir,
            store,
            w,
            rt: common::rt(),
        }
    }

    /// Commits `entries` (durably: the uploader can read them).
    fn write(&self, entries: Vec<NewEntry>) {
        self.rt.block_on(async {
            self.w.append_batch(entries).await.unwrap();
            self.w.flush().await.unwrap();
        });
    }

    /// Writes entries `seq FROM`..`seq TO-1` of unit app.service.
    fn write_seqs(&self, range: std::ops::Range<u32>) {
        self.write(
            range
                .map(|i| ne("app.service", &format!("seq {i}")))
                .collect(),
        );
    }

    /// The uploader on this store and cursor file.
    fn uploader(&self, url: &str, args: &[&str]) -> Command {
        uploader(url, &self.store_dir, &self.state, args)
    }
}

#[test]
fn every_entry_arrives_with_its_fields_and_a_second_run_sends_nothing() {
    let fx = Fixture::new();
    fx.write(varied_entries());
    let (dir, store_dir, state) = (&fx.dir, &fx.store_dir, &fx.state);
    let rx = Receiver::start(&dir.path().join("remote"));
    let out = uploader(&rx.url(), store_dir, state, &[]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(out.stderr.is_empty(), "{}", show(&out));

    // Every field of every entry, as `corral journal -o json` shows it, is what
    // journalctl shows of what journal-remote wrote: MESSAGE (binary ones too),
    // PRIORITY, _SYSTEMD_USER_UNIT, the timestamps, the boot id...
    let ours = corral_objects(store_dir);
    let theirs = rx.entries();
    assert_eq!(ours.len(), varied_entries().len());
    assert_eq!(theirs.len(), ours.len(), "{theirs:#?}");
    for (o, t) in ours.iter().zip(&theirs) {
        for k in [
            "MESSAGE",
            "PRIORITY",
            "_SYSTEMD_USER_UNIT",
            "__REALTIME_TIMESTAMP",
        ] {
            assert!(o.contains_key(k), "{k} missing from {o:?}");
        }
        for (k, v) in o {
            assert_eq!(t.get(k), Some(v), "field {k}: {o:?} vs {t:?}");
        }
    }
    assert!(
        theirs.iter().any(|t| t["MESSAGE"].is_array()),
        "a binary message arrived as bytes"
    );

    // The cursor names the last entry; a second run finds nothing after it.
    assert_eq!(saved_seq(state), Some(fx.store.next_seq().unwrap() - 1));
    let again = uploader(&rx.url(), store_dir, state, &[]).output().unwrap();
    assert_eq!(again.status.code(), Some(0), "{}", show(&again));
    assert_eq!(rx.entries().len(), ours.len(), "nothing is sent twice");

    // -u: only that unit's entries go, to a receiver of its own.
    let rx2 = Receiver::start(&dir.path().join("remote2"));
    let only = uploader(
        &rx2.url(),
        store_dir,
        &dir.path().join("state2"),
        &["-u", "job"],
    )
    .output()
    .unwrap();
    assert_eq!(only.status.code(), Some(0), "{}", show(&only));
    let units: Vec<Value> = rx2
        .entries()
        .iter()
        .map(|t| t["_SYSTEMD_USER_UNIT"].clone())
        .collect();
    assert_eq!(units, vec![Value::from("job.service"); 3]);
}

#[test]
fn a_killed_receiver_and_a_restarted_uploader_lose_nothing_and_repeat_nothing() {
    let fx = Fixture::new();
    let (dir, store_dir, state, store) = (&fx.dir, &fx.store_dir, &fx.state, &fx.store);
    let out = dir.path().join("remote");
    let stderr = dir.path().join("uploader.err");
    let mut rx = Receiver::start(&out);
    let port = rx.port;

    fx.write_seqs(0..50);
    let f = Follower::start(&rx.url(), store_dir, state, stderr.clone());
    wait_uploaded(store, state, &f);
    // --follow: entries written after the start go too.
    fx.write_seqs(50..100);
    wait_uploaded(store, state, &f);

    // The receiver dies; what is written meanwhile waits in the store.
    rx.kill(Signal::SIGKILL);
    let acked = saved_seq(state);
    fx.write_seqs(100..150);
    wait_until(30, "the uploader to say the receiver is down", || {
        f.stderr().contains("failed")
    });
    // Several back-off steps (200, 400, 800 ms) pass: said once, not per retry.
    std::thread::sleep(Duration::from_millis(1600));
    fx.write_seqs(150..160);
    assert_eq!(
        saved_seq(state),
        acked,
        "nothing is acknowledged while down"
    );
    let rx = Receiver::start_on(&out, port);
    let last = store.next_seq().unwrap() - 1;
    wait_until(30, "the upload after the outage", || {
        saved_seq(state) == Some(last)
    });
    let said = f.stderr();
    let lines: Vec<&str> = said.lines().collect();
    assert_eq!(lines.len(), 2, "one line when down, one when back: {said}");
    assert!(
        lines[0].contains(&format!(
            "Upload to http://127.0.0.1:{port}/upload failed: "
        )) && lines[0].contains("retrying with back-off"),
        "{said}"
    );
    let attempts: u32 = lines[1]
        .split("after ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{said}"));
    assert!(attempts >= 3, "retried with back-off: {said}");

    // The uploader is killed and started again: it goes on from its cursor.
    drop(f);
    fx.write_seqs(160..200);
    let f = Follower::start(&rx.url(), store_dir, state, dir.path().join("second.err"));
    wait_uploaded(store, state, &f);
    assert_eq!(f.stderr(), "");

    let mut seen = vec![0; 200];
    for t in rx.entries() {
        let m = t["MESSAGE"].as_str().unwrap();
        let i: usize = m.strip_prefix("seq ").unwrap().parse().unwrap();
        seen[i] += 1;
    }
    let wrong: Vec<(usize, i32)> = seen
        .iter()
        .enumerate()
        .filter(|(_, n)| **n != 1)
        .map(|(i, n)| (i, *n))
        .collect();
    assert!(
        wrong.is_empty(),
        "(seq, times received) not once: {wrong:?}"
    );
}

#[test]
fn refusals_say_why_and_exit_1() {
    let fx = Fixture::new();
    fx.write_seqs(0..3);
    let run = |url: &str, args: &[&str]| {
        let o = fx.uploader(url, args).output().unwrap();
        assert_eq!(o.status.code(), Some(1), "{}", show(&o));
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    assert!(run("https://127.0.0.1:9", &[]).contains("https is not supported"));
    assert!(run("127.0.0.1:9", &[]).contains("means https://"));
    assert!(run("ftp://127.0.0.1:9", &[]).contains("ftp:// is not supported"));
    assert!(run("http://127.0.0.1:9", &["-u", "http://x"]).contains("-u is a unit name"));
    // Nothing listens: without --follow, as systemd-journal-upload, that ends the run.
    let port = common::free_port();
    let said = run(&format!("http://127.0.0.1:{port}"), &[]);
    assert!(
        said.contains(&format!(
            "Upload to http://127.0.0.1:{port}/upload failed: "
        )),
        "{said}"
    );
    assert_eq!(saved_seq(&fx.state), None, "nothing was acknowledged");
}

#[test]
fn runs_as_a_unit_of_a_real_manager_and_ships_its_services_lines() {
    let receiver_dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start(receiver_dir.path());
    let Some(td) = common::TestDaemon::start_with(|td| {
        let state = td.dir.path().join("state");
        // The sample unit of docs/JOURNAL-FORMAT.md, with this manager's store.
        td.write_unit(
            "corral-journal-upload.service",
            &format!(
                "[Unit]\nDescription=Upload the journal to a systemd-journal-remote\n\
                 [Service]\nExecStart={} journal-upload --follow --url {} -D {} \
                 --save-state={}\nRestart=on-failure\n",
                env!("CARGO_BIN_EXE_corral"),
                rx.url(),
                state.join("journal").display(),
                state.join("journal-upload/state").display()
            ),
        );
        td.write_unit(
            "talker.service",
            "[Service]\nType=oneshot\n\
             ExecStart=/bin/sh -c 'for i in 0 1 2 3 4; do echo seq $i; done'\n",
        );
    }) else {
        return;
    };
    td.ok(&["start", "corral-journal-upload"]);
    td.ok(&["start", "talker"]);
    let got = common::eventually(Duration::from_secs(30), || {
        let msgs: Vec<String> = rx
            .entries()
            .iter()
            .filter(|t| t["_SYSTEMD_USER_UNIT"] == "talker.service")
            .filter_map(|t| t["MESSAGE"].as_str().map(str::to_owned))
            .filter(|m| m.starts_with("seq "))
            .collect();
        (msgs.len() >= 5).then_some(msgs)
    })
    .unwrap_or_else(|| panic!("talker's lines never arrived; {}", td.log()));
    assert_eq!(got, ["seq 0", "seq 1", "seq 2", "seq 3", "seq 4"]);
    // It stops as any service does, cleanly.
    td.ok(&["stop", "corral-journal-upload"]);
    assert_eq!(td.prop("corral-journal-upload", "ActiveState"), "inactive");
}

/// What a [`recording_receiver`] got: each request's head and de-chunked body.
type Recorded = std::thread::JoinHandle<Vec<(String, Vec<u8>)>>;

/// A stand-in receiver for what journal-remote does not show: the request
/// itself. It answers the connections it gets with `answers` in turn (status
/// lines with a body), and returns each request's head and de-chunked body.
fn recording_receiver(answers: Vec<&'static str>) -> (u16, Recorded) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let t = std::thread::spawn(move || {
        let mut got = Vec::new();
        for answer in answers {
            let (sock, _) = listener.accept().unwrap();
            let mut r = BufReader::new(sock.try_clone().unwrap());
            let mut head = String::new();
            loop {
                let mut l = String::new();
                r.read_line(&mut l).unwrap();
                if l == "\r\n" {
                    break;
                }
                head.push_str(&l);
            }
            let mut body = Vec::new();
            loop {
                let mut size = String::new();
                r.read_line(&mut size).unwrap();
                let n = usize::from_str_radix(size.trim(), 16)
                    .unwrap_or_else(|_| panic!("not a chunk size: {size:?}; head {head}"));
                let mut chunk = vec![0; n + 2];
                r.read_exact(&mut chunk).unwrap();
                body.extend_from_slice(&chunk[..n]);
                if n == 0 {
                    break;
                }
            }
            let (status, text) = answer.split_once(' ').unwrap();
            write!(
                &sock,
                "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                text.len()
            )
            .unwrap();
            got.push((head, body));
        }
        got
    });
    (port, t)
}

#[test]
fn the_request_is_a_chunked_post_of_the_export_format() {
    let fx = Fixture::new();
    fx.write(varied_entries());
    let (port, got) = recording_receiver(vec!["202 OK."]);
    let out = fx
        .uploader(&format!("http://127.0.0.1:{port}"), &[])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let got = got.join().unwrap();
    let (head, body) = &got[0];
    let head = head.to_ascii_lowercase();
    assert!(head.starts_with("post /upload http/1.1\r\n"), "{head}");
    assert!(
        head.contains("\r\ncontent-type: application/vnd.fdo.journal\r\n"),
        "{head}"
    );
    assert!(
        head.contains("\r\ntransfer-encoding: chunked\r\n"),
        "{head}"
    );
    // Byte for byte what `corral journal -o export` prints.
    assert_eq!(
        String::from_utf8_lossy(body),
        String::from_utf8_lossy(&corral_journal(&fx.store_dir, &["-o", "export"]))
    );
}

#[test]
fn a_refusal_ends_the_run_and_a_busy_receiver_is_retried() {
    let fx = Fixture::new();
    fx.write_seqs(0..3);
    let (dir, store_dir, state, store) = (&fx.dir, &fx.store_dir, &fx.state, &fx.store);
    // 4xx: what was sent is refused; retrying would not change that, even following.
    let (port, got) = recording_receiver(vec![
        "415 Content-Type: application/vnd.fdo.journal is required.",
    ]);
    let url = format!("http://127.0.0.1:{port}");
    let out = uploader(&url, store_dir, state, &["--follow"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!(
            "Upload to {url}/upload failed with code 415: Content-Type: application/vnd.fdo.journal is required."
        )),
        "{}",
        show(&out)
    );
    got.join().unwrap();
    assert_eq!(saved_seq(state), None);
    // 503 (journal-remote's "too many connections"): tried again, then acknowledged.
    let (port, got) = recording_receiver(vec!["503 busy", "202 OK."]);
    let f = Follower::start(
        &format!("http://127.0.0.1:{port}"),
        store_dir,
        state,
        dir.path().join("f.err"),
    );
    let last = store.next_seq().unwrap() - 1;
    wait_until(30, "the upload after a 503", || {
        saved_seq(state) == Some(last)
    });
    let got = got.join().unwrap();
    assert_eq!(got[0].1, got[1].1, "the same entries again");
    let said = f.stderr();
    assert!(said.contains("failed with code 503: busy"), "{said}");
    assert!(said.contains("after 1 failed attempt"), "{said}");
}

#[test]
fn cursor_flags_override_the_saved_one_and_another_stores_cursor_starts_over() {
    let fx = Fixture::new();
    fx.write_seqs(0..5);
    let (store, state) = (&fx.store, &fx.state);
    let entries = store.query(&Default::default()).unwrap();
    let cursor = |i: usize| entries[i].cursor(store.store_id());
    let sent = |args: &[&str]| {
        let (port, got) = recording_receiver(vec!["202 OK."]);
        let out = fx
            .uploader(&format!("http://127.0.0.1:{port}"), args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", show(&out));
        let body = got.join().unwrap().remove(0).1;
        let seqs: Vec<String> = String::from_utf8(body)
            .unwrap()
            .lines()
            .filter_map(|l| l.strip_prefix("MESSAGE=seq ").map(str::to_owned))
            .collect();
        (seqs, String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let c3 = cursor(3);
    assert_eq!(sent(&["--after-cursor", &c3]).0, ["4"]);
    assert_eq!(saved_seq(state), Some(entries[4].seq));
    // --cursor is inclusive, and wins over the saved cursor.
    let c1 = cursor(1);
    assert_eq!(sent(&["--cursor", &c1]).0, ["1", "2", "3", "4"]);
    // A cursor saved from another store (made anew since): from the beginning, said so.
    let other = format!("s={:032x};i=3", store.store_id() ^ 1);
    corral::cli::journal_upload::save_state(state, &other).unwrap();
    let (seqs, said) = sent(&[]);
    assert_eq!(seqs, ["0", "1", "2", "3", "4"]);
    assert!(said.contains("of another journal store"), "{said}");
}
