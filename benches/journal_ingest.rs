//! Ingest throughput inside one process: splitting 100-byte lines into entries, and
//! splitting + durable group commit into a real store (the writer thread, fsync'd).
//! The end-to-end pipe number (gen | store) is in scripts/bench-journal.sh.

use std::sync::Arc;

use corral::journal::ingest::{SourceMeta, Splitter};
use corral::journal::{Store, StoreOptions, Stream, Writer, WriterOptions};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const LINES: usize = 100_000;

fn meta() -> SourceMeta {
    SourceMeta {
        unit: Arc::from("bench.service"),
        invocation: 1,
        pid: Some(1),
        stream: Stream::Stdout,
        default_priority: 6,
        level_prefix: true,
        identifier: Arc::from("bench"),
        comm: Arc::from("bench"),
        rate_limit: None,
    }
}

fn input() -> Vec<u8> {
    let mut v = Vec::with_capacity(LINES * 100);
    for n in 0..LINES {
        let mut l =
            format!("bench seq={n:07} lorem ipsum dolor sit amet consectetur ").into_bytes();
        l.resize(99, b'x');
        l.push(b'\n');
        v.extend_from_slice(&l);
    }
    v
}

fn bench(c: &mut Criterion) {
    let data = input();
    let mut g = c.benchmark_group("journal_ingest");
    g.throughput(Throughput::Elements(LINES as u64));
    g.sample_size(10);
    g.bench_function("split 100k lines", |b| {
        b.iter(|| {
            let mut s = Splitter::new(meta());
            let mut n = 0;
            for chunk in data.chunks(256 * 1024) {
                n += s.push(chunk).len();
            }
            n
        })
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let w = Writer::spawn(store, WriterOptions::default()).unwrap();
    g.bench_function("split + durable commit 100k lines", |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut s = Splitter::new(meta());
                for chunk in data.chunks(256 * 1024) {
                    w.append_batch(s.push(chunk)).await.unwrap();
                }
                w.flush().await.unwrap()
            })
        })
    });
    g.finish();
    // -f through the writer: from append to a follower receiving the committed entry
    // (group-commit deadline + fsync + the follower's read of the store); the target
    // is 50 ms.
    let mut rx = rt
        .block_on(corral::journal::follow::follow(
            w.clone(),
            corral::journal::Query {
                lines: Some(0),
                ..Default::default()
            },
        ))
        .unwrap();
    let mut f = c.benchmark_group("journal_follow");
    f.sample_size(20);
    f.bench_function("append -> follower", |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut s = Splitter::new(meta());
                w.append_batch(s.push(b"one line\n")).await.unwrap();
                rx.recv().await.unwrap().unwrap()
            })
        })
    });
    f.finish();
    rt.block_on(w.shutdown()).unwrap();
}

criterion_group!(benches, bench);
criterion_main!(benches);
