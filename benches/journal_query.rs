//! Query latency on a 1 M-entry store of 50 units (20 k lines each, interleaved over
//! 20 s of realtime like the peers' store in ../shared/bench-peers/query.sh). The
//! store is built once, outside the timed loops. Whole-process numbers (the CLI) are
//! in scripts/bench-journal.sh.

use std::sync::Arc;

use corral::journal::{NewEntry, Query, Store, StoreOptions, Stream, Writer, WriterOptions};
use criterion::{Criterion, criterion_group, criterion_main};

const UNITS: usize = 50;
const PER: usize = 20_000;
const T0: u64 = 1_700_000_000_000_000;

fn build(dir: &std::path::Path) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = Store::open(dir, StoreOptions::default()).unwrap();
        let w = Writer::spawn(store, WriterOptions::default()).unwrap();
        let names: Vec<Arc<str>> = (1..=UNITS)
            .map(|i| Arc::from(format!("unit{i:02}").as_str()))
            .collect();
        // 10 ms ticks of 10 lines per unit: 1000 lines/s per unit, 20 s in all.
        for tick in 0..PER / 10 {
            let mut batch = Vec::with_capacity(UNITS * 10);
            for (u, name) in names.iter().enumerate() {
                for k in 0..10 {
                    let n = tick * 10 + k;
                    let mut msg =
                        format!("{name} seq={n:07} lorem ipsum dolor sit amet consectetur ")
                            .into_bytes();
                    msg.resize(99, b'x');
                    batch.push(NewEntry {
                        unit: name.clone(),
                        invocation: u as u128 + 1,
                        pid: Some(1000 + u as u32),
                        stream: Stream::Stdout,
                        priority: 6,
                        identifier: name.clone(),
                        comm: name.clone(),
                        message_id: 0,
                        message: msg,
                        flags: 0,
                        realtime: Some(T0 + tick as u64 * 10_000 + (u * 10 + k) as u64 * 10),
                        monotonic: None,
                    });
                }
            }
            w.append_batch(batch).await.unwrap();
        }
        w.flush().await.unwrap();
        w.maintain().await.unwrap();
        w.shutdown().await.unwrap();
    });
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path());
    let store = Store::open_read_only(dir.path()).unwrap();
    let u = store.disk_usage().unwrap();
    eprintln!("store: {u:?}");
    // The middle 1% of the time range: ~10 k entries across all units, ~200 of one.
    let a = T0 + 10 * 1_000_000;
    let b = a + 200_000;
    let unit07 = |q: Query| Query {
        units: vec!["unit07".into()],
        ..q
    };
    let last100 = Query {
        lines: Some(100),
        ..Default::default()
    };
    let window = Query {
        since: Some(a),
        until: Some(b),
        ..Default::default()
    };
    eprintln!(
        "window sizes: all {} unit07 {}",
        store.query(&window).unwrap().len(),
        store.query(&unit07(window.clone())).unwrap().len()
    );
    let mut g = c.benchmark_group("journal_query");
    g.sample_size(30);
    g.bench_function("unit07 -n 100", |bch| {
        bch.iter(|| store.query(&unit07(last100.clone())).unwrap())
    });
    g.bench_function("all units -n 100", |bch| {
        bch.iter(|| store.query(&last100).unwrap())
    });
    g.bench_function("unit07 window (200)", |bch| {
        bch.iter(|| store.query(&unit07(window.clone())).unwrap())
    });
    g.bench_function("all units window (10k)", |bch| {
        bch.iter(|| store.query(&window).unwrap())
    });
    g.bench_function("open read-only + unit07 -n 100", |bch| {
        bch.iter(|| {
            let s = Store::open_read_only(dir.path()).unwrap();
            s.query(&unit07(last100.clone())).unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
