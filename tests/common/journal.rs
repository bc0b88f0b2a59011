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

/// A stdout entry of `unit` with message `msg`.
pub fn ne(unit: &str, msg: &str) -> NewEntry {
    NewEntry {
        unit: Arc::from(unit),
        invocation: 0,
        pid: Some(42),
        stream: Stream::Stdout,
        priority: 6,
        identifier: Arc::from(unit),
        message: msg.as_bytes().to_vec(),
        flags: 0,
        realtime: None,
        monotonic: None,
    }
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
