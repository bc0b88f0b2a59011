//! Helpers shared by the journal_* integration tests (`mod journal_common;`).
#![allow(dead_code)]

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
