//! Format compatibility: stores written by format v1, v2 and v3 (checked in as
//! tests/fixtures/journal-v1.redb, -v2.redb and -v3.redb, the same entries) must keep
//! opening, read the same, print the same (tests/fixtures/journal-v1.json, -v2.json,
//! -v3.json: v3's adds `_COMM` and the stored `MESSAGE_ID`), and accept appends; an older
//! store opened for writing becomes v3 and its small blocks are rewritten as v3 blocks by
//! merging, entries unchanged.
//!
//! `CORRAL_REGEN_JOURNAL_FIXTURE=1 cargo test --test journal_format` rewrites the
//! fixture of the current version (v3); do that only together with a new format version
//! and a note in docs/JOURNAL-FORMAT.md.

mod common;

use std::path::Path;
use std::sync::Arc;

use common::fixture;
use corral::journal::output::{Format, OutputOptions, write_entry};
use corral::journal::{NewEntry, Query, Store, StoreOptions, Stream, Writer, WriterOptions, flags};

const BOOT: u128 = 0x0123_4567_89ab_cdef_0123_4567_89ab_cdef;
const T0: u64 = 1_700_000_000_000_000;

fn e(i: u64, unit: &str, inv: u128, msg: &[u8]) -> NewEntry {
    NewEntry {
        unit: Arc::from(unit),
        invocation: inv,
        pid: Some(100 + i as u32),
        stream: if i.is_multiple_of(2) {
            Stream::Stdout
        } else {
            Stream::Stderr
        },
        priority: (i % 8) as u8,
        identifier: Arc::from(unit.trim_end_matches(".service")),
        comm: Arc::from(unit.trim_end_matches(".service")),
        message_id: 0,
        message: msg.to_vec(),
        flags: 0,
        realtime: Some(T0 + i * 1000),
        monotonic: Some(5_000_000 + i * 1000),
    }
}

async fn regenerate(path: &Path) {
    let _ = std::fs::remove_file(path);
    let store = Store::open(path, StoreOptions::default()).unwrap();
    let w = Writer::spawn(
        store.clone(),
        WriterOptions {
            boot_id: Some(BOOT),
            uid: Some(1000),
            ..Default::default()
        },
    )
    .unwrap();
    let mut i = 0;
    let mut next = |unit: &str, inv: u128, msg: &[u8]| {
        i += 1;
        e(i, unit, inv, msg)
    };
    let mut batch = vec![
        next("web.service", 0xa1, b"listening on :8080"),
        next("web.service", 0xa1, b"GET / 200"),
        next("db.service", 0xb1, b"bin\x00ary\xff"),
    ];
    let mut long = next("db.service", 0xb1, &[b'y'; 100]);
    long.flags = flags::SPLIT;
    batch.push(long);
    let mut cont = next("db.service", 0xb1, b"tail");
    cont.flags = flags::CONTINUED;
    batch.push(cont);
    let mut m = next("web.service", 0xa1, b"Started web.service.");
    m.stream = Stream::Manager;
    m.pid = None;
    m.comm = Arc::from("");
    m.message_id = 0x39f5_3479_d3a0_45ac_8e11_7862_4823_1fbf;
    batch.push(m);
    w.append_batch(batch).await.unwrap();
    w.flush().await.unwrap();
    // Trickle logging, then a merge: the fixture holds merged blocks too.
    for k in 0..20 {
        w.append(next(
            "trickle.service",
            0xc1 + (k / 10) as u128,
            format!("tick {k}").as_bytes(),
        ))
        .await
        .unwrap();
        w.flush().await.unwrap();
    }
    w.maintain().await.unwrap();
    w.shutdown().await.unwrap();
    drop(w);
    drop(store);
}

fn golden_json(store: &Store) -> Vec<u8> {
    let mut opts = OutputOptions::new(Format::Json, store.store_id());
    opts.hostname = "fixture-host".into();
    let mut out = Vec::new();
    for en in store.query(&Query::default()).unwrap() {
        write_entry(&mut out, &en, &opts).unwrap();
    }
    out
}

fn format_version(path: &Path) -> u64 {
    use redb::ReadableDatabase;
    let db = redb::Builder::new().open_read_only(path).unwrap();
    let txn = db.begin_read().unwrap();
    let meta = txn
        .open_table(redb::TableDefinition::<&str, u64>::new("meta"))
        .unwrap();
    meta.get("format_version").unwrap().unwrap().value()
}

fn codecs(path: &Path) -> Vec<u8> {
    use redb::{ReadableDatabase, ReadableTable};
    let db = redb::Builder::new().open_read_only(path).unwrap();
    let txn = db.begin_read().unwrap();
    let blocks = txn
        .open_table(redb::TableDefinition::<(&str, u64), &[u8]>::new("blocks"))
        .unwrap();
    blocks
        .iter()
        .unwrap()
        .map(|r| r.unwrap().1.value()[0])
        .collect()
}

#[tokio::test]
async fn format_v1_fixture_still_opens_reads_and_appends() {
    fixture_opens_reads_and_appends("journal-v1.redb", 1).await;
}

#[tokio::test]
async fn format_v2_fixture_still_opens_reads_and_appends() {
    fixture_opens_reads_and_appends("journal-v2.redb", 2).await;
}

#[tokio::test]
async fn format_v3_fixture_opens_reads_and_appends() {
    let path = fixture("journal-v3.redb");
    if std::env::var_os("CORRAL_REGEN_JOURNAL_FIXTURE").is_some() {
        regenerate(&path).await;
        let store = Store::open_read_only(&path).unwrap();
        std::fs::write(fixture("journal-v3.json"), golden_json(&store)).unwrap();
    }
    fixture_opens_reads_and_appends("journal-v3.redb", 3).await;
    // Only v3 stores _COMM; MESSAGE_ID is stored in v3 and recognised from the
    // manager line's wording in the older ones.
    let json = std::fs::read_to_string(fixture("journal-v3.json")).unwrap();
    assert!(json.contains(r#""_COMM":"web""#), "{json}");
    for v in ["v1", "v2"] {
        let old = std::fs::read_to_string(fixture(&format!("journal-{v}.json"))).unwrap();
        assert!(!old.contains("_COMM"), "{v}");
        assert!(
            old.contains(r#""MESSAGE_ID":"39f53479d3a045ac8e11786248231fbf""#),
            "{v}"
        );
    }
    let store = Store::open_read_only(&path).unwrap();
    let m = store
        .query(&Query {
            field_matches: vec![vec!["MESSAGE_ID=39f53479d3a045ac8e11786248231fbf".into()]],
            ..Default::default()
        })
        .unwrap();
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].message_id, 0x39f5_3479_d3a0_45ac_8e11_7862_4823_1fbf);
    let db = store
        .query(&Query {
            field_matches: vec![vec!["_COMM=db".into()]],
            ..Default::default()
        })
        .unwrap();
    assert_eq!(db.len(), 3);
}

async fn fixture_opens_reads_and_appends(name: &str, version: u64) {
    let path = fixture(name);
    assert_eq!(format_version(&path), version);
    // Read-only, straight from the checked-in file: both versions print the same.
    let store = Store::open_read_only(&path).unwrap();
    // The same entries; only the store id in the cursors differs.
    let want = std::fs::read(fixture(&name.replace(".redb", ".json"))).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&golden_json(&store)),
        String::from_utf8_lossy(&want)
    );
    let all = store.query(&Query::default()).unwrap();
    assert_eq!(all.len(), 26);
    assert_eq!(store.block_count("trickle.service").unwrap(), 1);
    assert_eq!(
        store.latest_invocation("trickle.service").unwrap(),
        Some(0xc2)
    );
    let q = Query {
        units: vec!["db.service".into()],
        ..Default::default()
    };
    let db = store.query(&q).unwrap();
    assert_eq!(db[0].message, b"bin\x00ary\xff");
    assert_eq!(db[1].flags, flags::SPLIT);
    assert_eq!(db[2].flags, flags::CONTINUED);
    let window = store
        .query(&Query {
            since: Some(T0 + 7_000),
            until: Some(T0 + 9_000),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(window.len(), 3);
    drop(store);

    // A writer opens a copy and appends after the old entries.
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("journal.redb");
    std::fs::copy(&path, &copy).unwrap();
    let store = Store::open(&copy, StoreOptions::default()).unwrap();
    let w = Writer::spawn(store.clone(), WriterOptions::default()).unwrap();
    w.append(e(99, "web.service", 0xa2, b"after upgrade"))
        .await
        .unwrap();
    w.flush().await.unwrap();
    let last = store
        .query(&Query {
            lines: Some(1),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(last[0].seq, 27);
    assert_eq!(last[0].message, b"after upgrade");
    assert_eq!(store.query(&Query::default()).unwrap()[..26], all[..]);
    // Merging rewrites small neighbours, old blocks among them, as one v3 block (a
    // block alone stays as it is); the entries stay what they were.
    w.maintain().await.unwrap();
    w.shutdown().await.unwrap();
    drop(w);
    assert_eq!(store.block_count("web.service").unwrap(), 1);
    drop(store);
    assert_eq!(format_version(&copy), 3);
    // Blocks in key order: db.service, trickle.service, web.service.
    assert_eq!(codecs(&copy), [version as u8, version as u8, 3]);
    let store = Store::open_read_only(&copy).unwrap();
    assert_eq!(store.query(&Query::default()).unwrap()[..26], all[..]);
}
