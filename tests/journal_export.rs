//! `-o export` is systemd's Journal Export Format: Debian's systemd-journal-remote
//! ingests what `corral journal -o export` prints, and `journalctl --file` then shows
//! the same messages, fields and timestamps as `corral journal -o json`.

mod common;

use std::process::Command;

use common::journal::{corral_journal, ne, open, to_journal_file};
use corral::journal::Stream;
use serde_json::Value;

fn json_lines(b: &[u8]) -> Vec<serde_json::Map<String, Value>> {
    String::from_utf8(b.to_vec())
        .unwrap()
        .lines()
        .map(|l| match serde_json::from_str(l).unwrap() {
            Value::Object(m) => m,
            v => panic!("not an object: {v}"),
        })
        .collect()
}

#[tokio::test]
async fn export_round_trips_through_systemd_journal_remote() {
    let dir = tempfile::tempdir().unwrap();
    let (_store, w) = open(dir.path());
    let mut batch = vec![
        ne("web.service", "plain text line"),
        ne("web.service", "two\nlines"),
        ne("db.service", "tab\tand unicode é ✓"),
    ];
    let mut bin = ne("db.service", "");
    bin.message = b"bin\x00ary\xff\xfe".to_vec();
    bin.priority = 3;
    bin.stream = Stream::Stderr;
    batch.push(bin);
    let mut mgr = corral::journal::NewEntry::manager(
        "web.service",
        0xdead_beef_0000_0000_0000_0000_0000_0001,
        "Started web.service.",
    );
    mgr.priority = 5;
    batch.push(mgr);
    let mut empty = ne("web.service", "");
    empty.pid = None;
    batch.push(empty);
    w.append_batch(batch).await.unwrap();
    w.flush().await.unwrap();

    let export = corral_journal(dir.path(), &["-o", "export"]);
    let ours = json_lines(&corral_journal(dir.path(), &["-o", "json"]));
    assert_eq!(ours.len(), 6);

    let jfile = dir.path().join("remote.journal");
    to_journal_file(&export, &jfile);

    let out = common::stdout_of(Command::new("journalctl").arg("--file").arg(&jfile).args([
        "-o",
        "json",
        "--no-pager",
    ]));
    let theirs = json_lines(&out);
    assert_eq!(theirs.len(), ours.len());
    for (o, t) in ours.iter().zip(&theirs) {
        for (k, v) in o {
            if k == "__CURSOR" {
                continue;
            }
            assert_eq!(t.get(k), Some(v), "field {k} of {o:?} vs {t:?}");
        }
    }
    // Spot checks of what journalctl made of the tricky ones.
    assert_eq!(theirs[1]["MESSAGE"], "two\nlines");
    assert_eq!(
        theirs[3]["MESSAGE"],
        Value::Array(b"bin\x00ary\xff\xfe".iter().map(|b| (*b).into()).collect())
    );
    assert_eq!(theirs[3]["PRIORITY"], "3");
    assert_eq!(
        theirs[4]["_SYSTEMD_INVOCATION_ID"],
        "deadbeef000000000000000000000001"
    );
    assert_eq!(theirs[4]["_TRANSPORT"], "journal");
    assert!(theirs[5].get("_PID").is_none());
    // The export stream itself: text fields as NAME=value, binary ones length-prefixed.
    let needle = b"MESSAGE\n\x09\x00\x00\x00\x00\x00\x00\x00two\nlines\n";
    assert!(export.windows(needle.len()).any(|w| w == needle));
}
