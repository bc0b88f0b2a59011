//! For the journal_* suites: a store and its writer in a temp dir, entries,
//! and the `corral journal` CLI on a store.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use corral::journal::{NewEntry, Store, StoreOptions, Stream, Writer, WriterHandle, WriterOptions};

/// A fresh store in a temp dir with its writer.
pub fn open(dir: &std::path::Path) -> (Store, WriterHandle) {
    open_with(dir, StoreOptions::default(), WriterOptions::default())
}

/// Like [`open`] with options.
pub fn open_with(
    dir: &std::path::Path,
    so: StoreOptions,
    wo: WriterOptions,
) -> (Store, WriterHandle) {
    let store = Store::open(dir, so).expect("open store");
    let w = Writer::spawn(store.clone(), wo).expect("spawn writer");
    (store, w)
}

/// Like [`open`], with a writer that merges small blocks only when asked
/// ([`WriterHandle::maintain`]), so a test sees the blocks before and after.
pub fn open_merging_when_asked(dir: &std::path::Path) -> (Store, WriterHandle) {
    open_with(
        dir,
        StoreOptions::default(),
        WriterOptions {
            merge_interval: std::time::Duration::from_secs(3600),
            idle_after: std::time::Duration::from_secs(3600),
            ..Default::default()
        },
    )
}

/// A stdout entry of `unit` with message `msg`.
pub fn ne(unit: &str, msg: &str) -> NewEntry {
    NewEntry {
        unit: Arc::from(unit),
        invocation: 0,
        pid: Some(42),
        stream: Stream::Stdout,
        priority: 6,
        identifier: Arc::from(unit),
        comm: Arc::from(""),
        message_id: 0,
        message: msg.as_bytes().to_vec(),
        flags: 0,
        realtime: None,
        monotonic: None,
    }
}

/// Entries to compare with journalctl: several identifiers, PIDs, priorities and units, a manager line
/// without a PID (with its MESSAGE_ID), and messages journalctl shows specially without -a.
pub fn varied_entries() -> Vec<NewEntry> {
    let mut v = Vec::new();
    let mut add = |unit: &str, ident: &str, pid: Option<u32>, prio: u8, msg: &[u8]| {
        let mut e = ne(unit, "");
        e.identifier = ident.into();
        e.comm = ident.into();
        e.pid = pid;
        e.priority = prio;
        e.message = msg.to_vec();
        v.push(e);
    };
    add("web.service", "web", Some(101), 6, b"listening on :8080");
    add("web.service", "web", Some(102), 3, b"ssh-agent error\r");
    add("job.service", "sh", Some(201), 6, b"first command");
    add("job.service", "run", Some(202), 4, b"tab\tseparated");
    add(
        "job.service",
        "run",
        Some(202),
        6,
        b"\x1b[31mred\x1b[0m text",
    );
    add(
        "web.service",
        "web",
        Some(101),
        6,
        b"carriage\rreturn inside",
    );
    add("web.service", "web", Some(101), 6, b"two\nlines");
    add("web.service", "web", Some(101), 6, b"bell\x07");
    add(
        "web.service",
        "web",
        Some(101),
        6,
        "caf\u{e9} \u{2603}".as_bytes(),
    );
    add(
        "web.service",
        "web",
        Some(101),
        6,
        "c1 \u{85} control".as_bytes(),
    );
    add("web.service", "web", Some(101), 6, b"not utf-8 \xff");
    let mut big = vec![b'x'; 2000];
    big.push(1);
    add("web.service", "web", Some(101), 6, &big);
    add("web.service", "web", Some(101), 6, b"");
    let mut mgr = NewEntry::manager("web.service", 0xabc, "Started web.service.");
    mgr.priority = 5;
    mgr.message_id = corral::journal::catalog::id_number(corral::journal::catalog::UNIT_STARTED);
    v.push(mgr);
    let mut err = ne("db.service", "db: disk full");
    err.identifier = "db".into();
    err.stream = Stream::Stderr;
    err.priority = 2;
    v.push(err);
    v
}

/// The messages of entries as strings.
pub fn msgs(es: &[corral::journal::Entry]) -> Vec<String> {
    es.iter()
        .map(|e| String::from_utf8_lossy(&e.message).into_owned())
        .collect()
}

/// `corral journal -D DIR ARGS...` on a store (no manager involved); fails
/// the test unless it exits 0, and returns its stdout.
pub fn corral_journal(dir: &Path, args: &[&str]) -> Vec<u8> {
    super::stdout_of(
        Command::new(env!("CARGO_BIN_EXE_corral"))
            .args(["journal", "-D"])
            .arg(dir)
            .args(args),
    )
}

/// Pseudo-random lowercase text: compresses to ~60%, so blocks have a known size.
pub fn noise(seed: u64, len: usize) -> String {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (b'a' + (x % 26) as u8) as char
        })
        .collect()
}

/// systemd's journal-remote, which writes a journal file from export format.
pub const REMOTE: &str = "/lib/systemd/systemd-journal-remote";

/// Writes `export` (Journal Export Format, as `corral journal -o export` prints it)
/// into the journal file `jfile` with systemd-journal-remote, for journalctl --file.
pub fn to_journal_file(export: &[u8], jfile: &Path) {
    use std::io::Write;
    use std::process::Stdio;
    assert!(
        Path::new(REMOTE).exists(),
        "{REMOTE} is missing: apt-get install systemd-journal-remote (scripts/test does)"
    );
    let mut remote = Command::new(REMOTE)
        .arg("-o")
        .arg(jfile)
        .arg("-")
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    remote.stdin.take().unwrap().write_all(export).unwrap();
    let r = remote.wait_with_output().unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
}

/// A real `systemd-journal-remote --listen-http=127.0.0.1:PORT --output=DIR/`,
/// killed (by its PID) on drop.
pub struct Receiver {
    child: Option<std::process::Child>,
    /// The port it listens on.
    pub port: u16,
    /// The directory it writes journal files into.
    pub out: std::path::PathBuf,
}

impl Receiver {
    /// Starts one on a free port, writing into `out` (created); returns once it
    /// accepts connections.
    pub fn start(out: &Path) -> Receiver {
        Self::start_on(out, super::free_port())
    }

    /// Starts one on `port` (again, after [`Receiver::kill`]).
    pub fn start_on(out: &Path, port: u16) -> Receiver {
        assert!(
            Path::new(REMOTE).exists(),
            "{REMOTE} is missing: apt-get install systemd-journal-remote (scripts/test does)"
        );
        std::fs::create_dir_all(out).unwrap();
        let child = Command::new(REMOTE)
            .arg(format!("--listen-http=127.0.0.1:{port}"))
            .arg(format!("--output={}/", out.display()))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let r = Receiver {
            child: Some(child),
            port,
            out: out.to_owned(),
        };
        // It says nothing when it listens: a connect tells.
        let up = super::eventually(std::time::Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        });
        assert!(up.is_some(), "journal-remote never listened on {port}");
        r
    }

    /// Its upload address, as `--url` takes it.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Ends it with `sig` and reaps it.
    pub fn kill(&mut self, sig: nix::sys::signal::Signal) {
        if let Some(mut c) = self.child.take() {
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(c.id() as i32), sig).unwrap();
            c.wait().unwrap();
        }
    }

    /// What it wrote, as `journalctl -D OUT -o json` objects (fields as
    /// journalctl prints them: binary values are arrays of bytes).
    pub fn entries(&self) -> Vec<serde_json::Map<String, serde_json::Value>> {
        let out = super::stdout_of(
            Command::new("journalctl")
                .args(["--no-pager", "-o", "json", "-D"])
                .arg(&self.out),
        );
        serde_json::Deserializer::from_slice(&out)
            .into_iter::<serde_json::Value>()
            .map(|v| match v.unwrap() {
                serde_json::Value::Object(m) => m,
                v => panic!("not an object: {v}"),
            })
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
