//! The store and writer on a real redb file: fields, order, indexes, queries,
//! follow, merging, retention, read-only access beside the writer.

mod common;

use std::time::{Duration, Instant};

use common::journal::{msgs, ne, noise, open, open_merging_when_asked, open_with};
use corral::journal::{Entry, Query, Store, StoreOptions, Stream, WriterOptions, parse_cursor};

#[tokio::test]
async fn fields_and_order_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (store, w) = open(dir.path());
    let mut batch = Vec::new();
    for i in 0..3000 {
        let mut e = ne(["a", "b", "c"][i % 3], &format!("line {i}"));
        e.invocation = 0x1234_5678_9abc_def0_1122_3344_5566_7788;
        e.priority = (i % 8) as u8;
        e.stream = if i % 2 == 0 {
            Stream::Stdout
        } else {
            Stream::Stderr
        };
        e.pid = if i % 5 == 0 {
            None
        } else {
            Some(1000 + i as u32)
        };
        batch.push(e);
    }
    w.append_batch(batch).await.unwrap();
    assert_eq!(w.flush().await.unwrap(), 3001);
    let all = store.query(&Query::default()).unwrap();
    assert_eq!(all.len(), 3000);
    for (i, e) in all.iter().enumerate() {
        assert_eq!(e.seq, i as u64 + 1);
        assert_eq!(e.unit, ["a", "b", "c"][i % 3]);
        assert_eq!(e.message, format!("line {i}").into_bytes());
        assert_eq!(e.priority, (i % 8) as u8);
        assert_eq!(
            e.pid,
            if i % 5 == 0 {
                None
            } else {
                Some(1000 + i as u32)
            }
        );
        assert_eq!(e.invocation, 0x1234_5678_9abc_def0_1122_3344_5566_7788);
        assert_eq!(e.uid, nix::unistd::getuid().as_raw());
        assert_eq!(e.boot_id, corral::journal::boot_id());
        assert!(e.realtime > 1_600_000_000_000_000);
        assert!(e.monotonic > 0);
    }
    w.shutdown().await.unwrap();
    drop(w);
    drop(store);
    let store = Store::open_read_only(dir.path()).unwrap();
    let again = store.query(&Query::default()).unwrap();
    assert_eq!(again, all);
}

#[tokio::test]
async fn last_n_of_a_unit_spans_blocks_and_reverse() {
    let dir = tempfile::tempdir().unwrap();
    let (store, w) = open(dir.path());
    for round in 0..5 {
        let batch: Vec<_> = (0..2000)
            .map(|i| {
                ne(
                    if i % 10 == 0 { "rare" } else { "busy" },
                    &format!("{round}-{i}"),
                )
            })
            .collect();
        w.append_batch(batch).await.unwrap();
        w.flush().await.unwrap();
    }
    let q = Query {
        units: vec!["rare".into()],
        lines: Some(250),
        ..Default::default()
    };
    let got = store.query(&q).unwrap();
    assert_eq!(got.len(), 250);
    assert!(got.windows(2).all(|p| p[0].seq < p[1].seq));
    assert_eq!(msgs(&got).last().unwrap(), "4-1990");
    assert!(got.iter().all(|e| e.unit == "rare"));
    let rev = store
        .query(&Query {
            reverse: true,
            ..q.clone()
        })
        .unwrap();
    let mut fwd = got.clone();
    fwd.reverse();
    assert_eq!(rev, fwd);
    // Across all units: the newest 3 in order.
    let all3 = store
        .query(&Query {
            lines: Some(3),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(msgs(&all3), vec!["4-1997", "4-1998", "4-1999"]);
    // Globs.
    let g = store
        .query(&Query {
            units: vec!["b*".into()],
            lines: Some(1),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(g[0].unit, "busy");
}

#[tokio::test]
async fn since_until_grep_priority_stream_cursor() {
    let dir = tempfile::tempdir().unwrap();
    let (store, w) = open(dir.path());
    let base = 1_700_000_000_000_000u64;
    for chunk in 0..10 {
        let batch: Vec<_> = (0..100)
            .map(|i| {
                let n = chunk * 100 + i;
                let mut e = ne(
                    if n % 2 == 0 { "even" } else { "odd" },
                    &format!("Msg number {n}"),
                );
                e.realtime = Some(base + n as u64 * 1_000_000);
                e.priority = if n % 7 == 0 { 3 } else { 6 };
                e.stream = if n % 3 == 0 {
                    Stream::Stderr
                } else {
                    Stream::Stdout
                };
                e
            })
            .collect();
        w.append_batch(batch).await.unwrap();
        w.flush().await.unwrap();
    }
    let window = Query {
        since: Some(base + 300_000_000),
        until: Some(base + 309_000_000),
        ..Default::default()
    };
    let got = store.query(&window).unwrap();
    assert_eq!(
        msgs(&got),
        (300..=309)
            .map(|n| format!("Msg number {n}"))
            .collect::<Vec<_>>()
    );
    let odd = store
        .query(&Query {
            units: vec!["odd".into()],
            ..window.clone()
        })
        .unwrap();
    assert_eq!(odd.len(), 5);
    // Smart case: lower-case pattern matches "Msg"; upper-case is exact.
    let g = store
        .query(&Query {
            grep: Some("msg number 99[0-9]".into()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(g.len(), 10);
    let g2 = store
        .query(&Query {
            grep: Some("MSG".into()),
            ..Default::default()
        })
        .unwrap();
    assert!(g2.is_empty());
    let p = store
        .query(&Query {
            priority: Some((0, 3)),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(p.len(), (0..1000).filter(|n| n % 7 == 0).count());
    let s = store
        .query(&Query {
            stream: Some(Stream::Stderr),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(s.len(), (0..1000).filter(|n| n % 3 == 0).count());
    // Cursors: inclusive and exclusive.
    let c = got[0].cursor(store.store_id());
    assert_eq!(parse_cursor(&c).unwrap(), got[0].seq);
    let from = store
        .query(&Query {
            cursor: Some(c.clone()),
            lines: None,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(from[0].seq, got[0].seq);
    assert_eq!(from.len(), 700);
    let after = store
        .query(&Query {
            after_cursor: Some(c),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(after[0].seq, got[0].seq + 1);
    assert!(
        store
            .query(&Query {
                grep: Some("(".into()),
                ..Default::default()
            })
            .is_err()
    );
}

#[tokio::test]
async fn invocations_and_latest_invocation() {
    let dir = tempfile::tempdir().unwrap();
    let (store, w) = open(dir.path());
    for inv in 1..=3u128 {
        let batch: Vec<_> = (0..50)
            .map(|i| {
                let mut e = ne("svc", &format!("inv{inv} line{i}"));
                e.invocation = inv;
                e
            })
            .chain((0..5).map(|i| {
                let mut e = ne("other", &format!("other {inv} {i}"));
                e.invocation = 100 + inv;
                e
            }))
            .collect();
        w.append_batch(batch).await.unwrap();
        w.flush().await.unwrap();
    }
    let two = store
        .query(&Query {
            invocation: Some(2),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(two.len(), 50);
    assert!(two.iter().all(|e| e.invocation == 2 && e.unit == "svc"));
    let latest = store
        .query(&Query {
            units: vec!["svc".into()],
            latest_invocation: true,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(latest.len(), 50);
    assert!(latest.iter().all(|e| e.invocation == 3));
    assert_eq!(store.latest_invocation("other").unwrap(), Some(103));
    assert!(
        store
            .query(&Query {
                invocation: Some(999),
                ..Default::default()
            })
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn follow_sees_new_entries_quickly() {
    let dir = tempfile::tempdir().unwrap();
    let (_store, w) = open(dir.path());
    let q = Query {
        lines: Some(0),
        ..Default::default()
    };
    let mut rx = corral::journal::follow::follow(w.clone(), q).await.unwrap();
    let mut worst = Duration::ZERO;
    for i in 0..20 {
        let t0 = Instant::now();
        w.append(ne("f", &format!("follow {i}"))).await.unwrap();
        let got = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("a committed entry reaches the follower")
            .unwrap()
            .unwrap();
        worst = worst.max(t0.elapsed());
        assert_eq!(msgs(&got), vec![format!("follow {i}")]);
    }
    // The 50 ms target is measured in benches; here, print it for the record.
    eprintln!("follow: worst append->follower latency {worst:?}");
}

#[tokio::test]
async fn small_blocks_are_merged_without_changing_results() {
    let dir = tempfile::tempdir().unwrap();
    let (store, w) = open_merging_when_asked(dir.path());
    // Trickle logging: every commit holds a few lines of each unit.
    for i in 0..120 {
        w.append_batch(vec![
            ne("trickle", &format!("t{i}")),
            ne("trickle", &format!("t{i}b")),
            ne("side", &format!("s{i}")),
        ])
        .await
        .unwrap();
        w.flush().await.unwrap();
    }
    let before = store.query(&Query::default()).unwrap();
    assert_eq!(store.block_count("trickle").unwrap(), 120);
    let usage_before = store.disk_usage().unwrap();
    let r = w.maintain().await.unwrap();
    assert!(r.merged_blocks >= 2 * 119 - 2, "{r:?}");
    assert_eq!(store.block_count("trickle").unwrap(), 1);
    assert_eq!(store.block_count("side").unwrap(), 1);
    let after = store.query(&Query::default()).unwrap();
    assert_eq!(after, before);
    let usage = store.disk_usage().unwrap();
    assert_eq!(usage.entries, 360);
    assert!(
        usage.stored_bytes < usage_before.stored_bytes / 4,
        "{usage:?} vs {usage_before:?}"
    );
    // Time and seq indexes still answer after the merge.
    let last = store
        .query(&Query {
            units: vec!["trickle".into()],
            lines: Some(2),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(msgs(&last), vec!["t119", "t119b"]);
    let since = store
        .query(&Query {
            units: vec!["side".into()],
            since: Some(before[before.len() - 1].realtime),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(msgs(&since), vec!["s119"]);
    // New entries after a merge land after the merged block.
    w.append(ne("trickle", "later")).await.unwrap();
    w.flush().await.unwrap();
    let last = store
        .query(&Query {
            units: vec!["trickle".into()],
            lines: Some(1),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(msgs(&last), vec!["later"]);
}

#[tokio::test]
async fn retention_by_size_keeps_the_file_within_max_use() {
    let dir = tempfile::tempdir().unwrap();
    let max = 4 * 1024 * 1024;
    let (store, w) = open_with(
        dir.path(),
        StoreOptions {
            max_use: Some(max),
            ..Default::default()
        },
        WriterOptions::default(),
    );
    // ~12 MB of nearly incompressible messages: three times the limit.
    let mut peak = 0;
    for round in 0..60u64 {
        let batch: Vec<_> = (0..200)
            .map(|i| {
                ne(
                    "big",
                    &format!("{round}:{i}:{}", noise(round * 1000 + i, 1000)),
                )
            })
            .collect();
        w.append_batch(batch).await.unwrap();
        w.flush().await.unwrap();
        peak = peak.max(store.disk_usage().unwrap().file_bytes);
    }
    w.maintain().await.unwrap();
    let usage = store.disk_usage().unwrap();
    eprintln!("retention: peak file {peak} B, after maintain {usage:?}, max_use {max}");
    assert!(usage.file_bytes <= max, "{usage:?}");
    assert!(usage.entries < 12_000 && usage.entries > 0);
    let all = store.query(&Query::default()).unwrap();
    // The oldest went first: what remains is a suffix ending with the newest entry.
    assert!(msgs(&all).last().unwrap().starts_with("59:199:"));
    assert!(all.windows(2).all(|p| p[1].seq == p[0].seq + 1));
    assert!(all[0].seq > 1);
    // Explicit vacuum: usage drops below the requested size.
    let removed = store.vacuum_size(1024 * 1024).unwrap();
    let after = store.disk_usage().unwrap();
    assert!(removed > 0);
    assert!(after.file_bytes <= 1024 * 1024, "{after:?}");
    assert!(after.entries < usage.entries);
    // And appends go on.
    w.append(ne("big", "still writing")).await.unwrap();
    w.flush().await.unwrap();
    assert_eq!(
        msgs(
            &store
                .query(&Query {
                    lines: Some(1),
                    ..Default::default()
                })
                .unwrap()
        ),
        vec!["still writing"]
    );
}

#[tokio::test]
async fn vacuum_time_removes_old_entries() {
    let dir = tempfile::tempdir().unwrap();
    let (store, w) = open(dir.path());
    let now = corral::journal::realtime_now();
    let mut old = ne("u", "old");
    old.realtime = Some(now - 3 * 86_400_000_000);
    w.append(old).await.unwrap();
    w.flush().await.unwrap();
    w.append(ne("u", "new")).await.unwrap();
    w.flush().await.unwrap();
    assert_eq!(store.vacuum_time(Duration::from_secs(86_400)).unwrap(), 1);
    assert_eq!(msgs(&store.query(&Query::default()).unwrap()), vec!["new"]);
}

/// A unit that logs all the time gets its blocks merged into one that starts
/// old and ends recent; it must not hold up the old blocks of other units
/// behind it in seq order (regression: --vacuum-time removed only from the
/// front of the store, and removed nothing beside a busy unit).
#[tokio::test]
async fn vacuum_time_is_not_held_up_by_a_busy_units_merged_block() {
    let dir = tempfile::tempdir().unwrap();
    let (store, w) = open(dir.path());
    let now = corral::journal::realtime_now();
    let at = |unit: &str, msg: &str, days_ago: u64| {
        let mut e = ne(unit, msg);
        e.realtime = Some(now - days_ago * 86_400_000_000);
        e
    };
    for e in [
        at("busy", "busy-old", 3),
        at("quiet", "quiet-old", 2),
        at("busy", "busy-new", 0),
    ] {
        w.append(e).await.unwrap();
        w.flush().await.unwrap();
    }
    w.maintain().await.unwrap();
    assert_eq!(store.block_count("busy").unwrap(), 1);
    assert_eq!(store.vacuum_time(Duration::from_secs(86_400)).unwrap(), 1);
    assert_eq!(
        msgs(&store.query(&Query::default()).unwrap()),
        vec!["busy-old", "busy-new"]
    );
    assert_eq!(store.units().unwrap(), vec!["busy"]);
    assert_eq!(store.disk_usage().unwrap().entries, 2);
}

#[tokio::test]
async fn read_only_open_beside_the_writer_sees_commits() {
    let dir = tempfile::tempdir().unwrap();
    let (_store, w) = open(dir.path());
    w.append(ne("u", "first")).await.unwrap();
    w.flush().await.unwrap();
    let ro = Store::open_read_only(dir.path()).expect("read-only open beside the writer");
    assert_eq!(msgs(&ro.query(&Query::default()).unwrap()), vec!["first"]);
    for i in 0..50 {
        w.append(ne("u", &format!("n{i}"))).await.unwrap();
        w.flush().await.unwrap();
        let got = ro
            .query(&Query {
                lines: Some(1),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(msgs(&got), vec![format!("n{i}")]);
    }
}

#[tokio::test]
async fn regression_invocation_filter_inside_a_merged_block() {
    // Two invocations' entries merged into one block: each query must still see only its own.
    let dir = tempfile::tempdir().unwrap();
    let (store, w) = open(dir.path());
    for inv in [1u128, 2] {
        for i in 0..3 {
            let mut e = ne("svc", &format!("inv{inv} {i}"));
            e.invocation = inv;
            w.append(e).await.unwrap();
            w.flush().await.unwrap();
        }
    }
    w.maintain().await.unwrap();
    assert_eq!(store.block_count("svc").unwrap(), 1);
    let one = store
        .query(&Query {
            invocation: Some(1),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(msgs(&one), vec!["inv1 0", "inv1 1", "inv1 2"]);
    let latest = store
        .query(&Query {
            latest_invocation: true,
            lines: Some(10),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(msgs(&latest), vec!["inv2 0", "inv2 1", "inv2 2"]);
}

#[tokio::test]
async fn retention_by_age_in_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    let (store, w) = open_with(
        dir.path(),
        StoreOptions {
            max_retention: Some(Duration::from_secs(3600)),
            ..Default::default()
        },
        WriterOptions::default(),
    );
    let now = corral::journal::realtime_now();
    let mut old = ne("u", "two hours old");
    old.realtime = Some(now - 2 * 3_600_000_000);
    w.append(old).await.unwrap();
    w.flush().await.unwrap();
    w.append(ne("u", "fresh")).await.unwrap();
    w.flush().await.unwrap();
    let r = w.maintain().await.unwrap();
    assert_eq!(r.removed_entries, 1);
    assert_eq!(
        msgs(&store.query_async(Query::default()).await.unwrap()),
        vec!["fresh"]
    );
}

/// Pages of a follow until `n` entries came, each page within 10 s.
async fn follow_pages(
    rx: &mut corral::journal::follow::FollowReceiver,
    n: usize,
) -> Vec<Vec<Entry>> {
    let mut pages = Vec::new();
    let mut got = 0;
    while got < n {
        let page = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("followed entries arrive")
            .expect("the follow goes on")
            .unwrap();
        got += page.len();
        pages.push(page);
    }
    pages
}

#[tokio::test]
async fn follow_in_the_manager_has_no_gap_even_when_lagging() {
    let dir = tempfile::tempdir().unwrap();
    let (_store, w) = open(dir.path());
    for i in 0..5 {
        w.append(ne("f", &format!("old {i}"))).await.unwrap();
    }
    w.flush().await.unwrap();
    let q = Query {
        units: vec!["f".into()],
        lines: Some(2),
        ..Default::default()
    };
    let mut rx = corral::journal::follow::follow(w.clone(), q).await.unwrap();
    // 2000 commits while nobody reads: the follower holds one page and waits; the
    // rest stays in the store until it is read.
    for i in 0..2000 {
        w.append(ne("other", "noise")).await.unwrap();
        w.append(ne("f", &format!("new {i}"))).await.unwrap();
        if i % 10 == 0 {
            w.flush().await.unwrap();
        }
    }
    w.flush().await.unwrap();
    let pages = follow_pages(&mut rx, 2002).await;
    assert!(
        pages
            .iter()
            .all(|p| p.len() <= corral::journal::follow::PAGE_ENTRIES),
        "a page over the limit"
    );
    let got: Vec<String> = pages.iter().flat_map(|p| msgs(p)).collect();
    let mut want = vec!["old 3".to_string(), "old 4".to_string()];
    want.extend((0..2000).map(|i| format!("new {i}")));
    assert_eq!(got, want);
    // And live ones keep coming.
    w.append(ne("f", "live")).await.unwrap();
    assert_eq!(msgs(&follow_pages(&mut rx, 1).await[0]), vec!["live"]);
}

/// A query answered in pages (as the manager answers `corral journal`) gives
/// what the query gives at once, and ends.
#[tokio::test]
async fn query_pages_give_the_query_answer() {
    let dir = tempfile::tempdir().unwrap();
    let (store, w) = open(dir.path());
    for i in 0..3000 {
        w.append(ne(["a", "b"][i % 2], &format!("m {i} {}", i % 7)))
            .await
            .unwrap();
    }
    w.flush().await.unwrap();
    let queries = [
        Query::default(),
        Query {
            units: vec!["a".into()],
            lines: Some(700),
            ..Default::default()
        },
        Query {
            grep: Some(" 3$".into()),
            lines: Some(5000),
            ..Default::default()
        },
        Query {
            after_cursor: Some("i=100".into()),
            lines: Some(0),
            ..Default::default()
        },
    ];
    for q in queries {
        let want = store.query(&q).unwrap();
        let mut rx = corral::journal::follow::query_pages(store.clone(), q.clone())
            .await
            .unwrap();
        let mut got = Vec::new();
        while let Some(page) = rx.recv().await {
            got.extend(page.unwrap());
        }
        assert_eq!(got.len(), want.len(), "{q:?}");
        assert!(got == want, "{q:?}");
    }
}

/// A page ends at PAGE_BYTES of messages too: long lines do not make pages of
/// 256 x 48 KiB in the manager.
#[tokio::test]
async fn follow_pages_are_bounded_in_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let (_store, w) = open(dir.path());
    let q = Query {
        cursor: Some("i=1".into()),
        ..Default::default()
    };
    let mut rx = corral::journal::follow::follow(w.clone(), q).await.unwrap();
    let long = "x".repeat(40 * 1024);
    for i in 0..64 {
        w.append(ne("long", &format!("{i} {long}"))).await.unwrap();
    }
    w.flush().await.unwrap();
    let pages = follow_pages(&mut rx, 64).await;
    for p in &pages {
        let bytes: usize = p.iter().map(|e| e.message.len()).sum();
        // A page stops once it reached the limit: at most one entry beyond it.
        assert!(
            bytes < corral::journal::follow::PAGE_BYTES + 41 * 1024,
            "a page of {bytes} bytes"
        );
    }
    let got: Vec<u64> = pages.iter().flatten().map(|e| e.seq).collect();
    assert_eq!(got, (1..=64).collect::<Vec<u64>>());
}

#[tokio::test]
async fn the_writer_merges_trickle_blocks_while_busy() {
    let dir = tempfile::tempdir().unwrap();
    // A merge pass after every commit, and never idle: only the busy path merges.
    let (store, w) = open_with(
        dir.path(),
        StoreOptions::default(),
        WriterOptions {
            merge_interval: Duration::ZERO,
            idle_after: Duration::from_secs(3600),
            ..Default::default()
        },
    );
    for i in 0..100 {
        w.append(ne("trickle", &format!("t{i}"))).await.unwrap();
        w.flush().await.unwrap();
    }
    let blocks = store.block_count("trickle").unwrap();
    assert!(blocks <= 3, "{blocks} blocks for 100 one-line commits");
    assert_eq!(
        msgs(&store.query(&Query::default()).unwrap()),
        (0..100).map(|i| format!("t{i}")).collect::<Vec<_>>()
    );
}

/// A block fills one 32 KiB page (lines that compress to ~60%: more than a 16 KiB
/// page holds) or stops at `MAX_BLOCK_RAW` of text (lines that compress very well:
/// 1024 of 100 bytes), whether written at once or merged from one-line commits.
#[tokio::test]
async fn blocks_fill_their_page_or_stop_at_the_text_cap() {
    use corral::journal::store::{BLOCK_PAGE, MAX_BLOCK_RAW, block_target};
    let dir = tempfile::tempdir().unwrap();
    let (store, w) = open_merging_when_asked(dir.path());
    let noisy = |i: u64| ne("noisy", &noise(i, 100));
    let plain_msg = |i: u64| format!("{i:06} {}", "x".repeat(93));
    // One large commit of each, then 700 one-line commits of each to merge.
    w.append_batch((0..3000).map(noisy).collect())
        .await
        .unwrap();
    w.append_batch((0..3000).map(|i| ne("plain", &plain_msg(i))).collect())
        .await
        .unwrap();
    w.flush().await.unwrap();
    for i in 3000..3700 {
        w.append_batch(vec![noisy(i), ne("plain", &plain_msg(i))])
            .await
            .unwrap();
        w.flush().await.unwrap();
    }
    assert!(store.block_count("plain").unwrap() > 700);
    w.maintain().await.unwrap();
    for unit in ["noisy", "plain"] {
        let sizes = store.block_sizes(unit).unwrap();
        assert_eq!(sizes.iter().map(|s| s.0).sum::<u32>(), 3700, "{unit}");
        for &(count, _, stored) in &sizes {
            assert!(stored as usize <= block_target(unit), "{unit} {sizes:?}");
            // Each entry's estimate is its 100 bytes and 12.
            assert!(count as usize * 112 <= MAX_BLOCK_RAW, "{unit} {sizes:?}");
        }
    }
    let noisy_first = store.block_sizes("noisy").unwrap()[0];
    assert!(
        noisy_first.2 as usize > BLOCK_PAGE / 2,
        "a full block of noisy lines fills a 32 KiB page: {noisy_first:?}"
    );
    let plain = store.block_sizes("plain").unwrap();
    assert_eq!(plain[0].0 as usize, MAX_BLOCK_RAW / 112, "{plain:?}");
    assert!((plain[0].2 as usize) < BLOCK_PAGE / 4, "{plain:?}");
    assert!(plain.len() <= 5, "one-line blocks are merged: {plain:?}");
    let all = store.query(&Query::default()).unwrap();
    assert_eq!(all.len(), 7400);
    assert_eq!(
        msgs(&all)
            .into_iter()
            .filter(|m| m.starts_with(|c: char| c.is_ascii_digit()))
            .collect::<Vec<_>>(),
        (0..3700).map(plain_msg).collect::<Vec<_>>()
    );
}

/// Regression: the journal directory was 0755 and the store 0644, so any
/// user could read another user's journal.
#[tokio::test]
async fn the_store_is_private_to_its_owner_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let jdir = dir.path().join("state/corral/journal");
    // A directory an older version left open to everyone is closed again.
    std::fs::create_dir_all(&jdir).unwrap();
    std::fs::set_permissions(&jdir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (store, w) = open(&jdir);
    w.append(ne("a", "secret")).await.unwrap();
    w.flush().await.unwrap();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&jdir), 0o700);
    assert_eq!(mode(store.path()), 0o600, "{}", store.path().display());
    drop(w);
}

/// A writer that ended without closing the store left entries in its side log that
/// no commit holds (the last one torn): the next writable open commits them after
/// the last commit, drops the torn record, says both in its note, deletes the side
/// log, and the next writer continues the seqs after the note.
#[tokio::test]
async fn an_unclean_open_replays_the_side_log_past_the_last_commit() {
    use corral::journal::sidelog::SideLog;
    use corral::journal::store::Staged;
    let dir = tempfile::tempdir().unwrap();
    let (store, w) = open(dir.path());
    w.append_batch((0..10).map(|i| ne("a", &format!("line {i}"))).collect())
        .await
        .unwrap();
    assert_eq!(w.flush().await.unwrap(), 11);
    w.shutdown().await.unwrap();
    let (file, id) = (store.path().to_owned(), store.store_id());
    drop((w, store));
    let side_files = || {
        std::fs::read_dir(dir.path())
            .unwrap()
            .map(|d| d.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.contains(".side."))
            .collect::<Vec<_>>()
    };
    assert!(side_files().is_empty(), "a clean end leaves no side log");
    // What the writer had staged past its last commit: seqs 9..=15 (9 and 10 were
    // committed too), the record of 14 and 15 cut inside its write.
    let staged = |seqs: std::ops::RangeInclusive<u64>| -> Vec<Staged> {
        seqs.map(|seq| Staged {
            seq,
            realtime: corral::journal::realtime_now(),
            monotonic: corral::journal::monotonic_now(),
            boot_id: corral::journal::boot_id(),
            uid: 1000,
            new: ne(
                if seq == 12 { "b" } else { "a" },
                &format!("line {}", seq - 1),
            ),
        })
        .collect()
    };
    let mut log = SideLog::new(&file, id);
    log.append(&staged(9..=13)).unwrap();
    log.append(&staged(14..=15)).unwrap();
    let [name] = side_files().try_into().unwrap();
    let path = dir.path().join(name);
    let len = std::fs::metadata(&path).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len - 5)
        .unwrap();
    drop(log);

    let (store, w) = open(dir.path());
    assert!(side_files().is_empty(), "replayed, then deleted");
    let all = store.query(&Query::default()).unwrap();
    assert_eq!(all.len(), 14, "10 committed, 3 replayed, the note");
    for (i, e) in all[..13].iter().enumerate() {
        assert_eq!(e.seq, i as u64 + 1);
        assert_eq!(e.message, format!("line {i}").into_bytes());
        assert_eq!(e.unit, if e.seq == 12 { "b" } else { "a" });
    }
    assert_eq!(all[12].uid, 1000, "replayed as the side log has it");
    let note = &all[13];
    assert_eq!(
        (note.seq, note.unit.as_str(), note.priority),
        (14, "corrald", 4)
    );
    let msg = String::from_utf8_lossy(&note.message);
    assert!(msg.contains("ended without closing it"), "{msg}");
    assert!(msg.contains("3 entries (21 bytes)"), "{msg}");
    assert!(msg.contains("1 torn or damaged record"), "{msg}");
    assert!(msg.contains("the last entry being seq 13 of a"), "{msg}");
    w.append(ne("a", "after")).await.unwrap();
    assert_eq!(w.flush().await.unwrap(), 16);
    assert_eq!(store.disk_usage().unwrap().entries, 15);
    w.shutdown().await.unwrap();
}
