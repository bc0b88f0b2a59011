//! Control-protocol latency over a real Unix socket: a small request's round
//! trip on an open connection (blocking and async clients), a whole CLI-style
//! exchange (connect + handshake + one request), and streamed items.

use std::sync::Arc;

use corral::ipc::{AsyncClient, Client, Handler, IpcError, PeerCred, Replies, bind_private, serve};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
enum Req {
    Status(String),
    Lines(u32),
    LinesBatched(u32),
}

#[derive(Debug, Serialize, Deserialize)]
enum Resp {
    Active { unit: String, pid: u32 },
    Line(String),
}

struct Bench;

impl Handler for Bench {
    type Request = Req;
    type Response = Resp;

    async fn handle(
        &self,
        peer: &PeerCred,
        request: Req,
        replies: &mut Replies<'_, Resp>,
    ) -> Result<(), IpcError> {
        match request {
            Req::Status(unit) => {
                let pid = peer.pid as u32;
                replies.reply(&Resp::Active { unit, pid }).await
            }
            Req::Lines(n) => {
                let line = Resp::Line("memcached: accepted connection from 127.0.0.1".into());
                for _ in 0..n {
                    replies.item(&line).await?;
                }
                replies.end().await
            }
            Req::LinesBatched(n) => {
                let batch: Vec<_> = (0..100)
                    .map(|_| Resp::Line("memcached: accepted connection from 127.0.0.1".into()))
                    .collect();
                for _ in 0..n / 100 {
                    replies.items(&batch).await?;
                }
                replies.end().await
            }
        }
    }
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("corral/control.sock");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = {
        let _guard = rt.enter();
        let listener = bind_private(&path).unwrap();
        rt.spawn(serve(listener, Arc::new(Bench), stopped))
    };

    let mut client = Client::<Req, Resp>::connect(&path).unwrap();
    let req = Req::Status("memcached@11212.service".into());
    c.bench_function("ipc round trip, blocking client", |b| {
        b.iter(|| client.request(&req).unwrap())
    });

    let mut async_client = rt
        .block_on(AsyncClient::<Req, Resp>::connect(&path))
        .unwrap();
    c.bench_function("ipc round trip, async client", |b| {
        b.iter(|| rt.block_on(async_client.request(&req)).unwrap())
    });

    c.bench_function("ipc connect + handshake + request", |b| {
        b.iter(|| {
            let mut c = Client::<Req, Resp>::connect(&path).unwrap();
            c.request(&req).unwrap()
        })
    });

    let mut group = c.benchmark_group("ipc stream");
    group.throughput(Throughput::Elements(1000));
    group.bench_function("1000 streamed items", |b| {
        b.iter(|| {
            let mut n = 0;
            for item in client.request_stream(&Req::Lines(1000)).unwrap() {
                item.unwrap();
                n += 1;
            }
            assert_eq!(n, 1000);
        })
    });
    group.bench_function("1000 streamed items, batches of 100", |b| {
        b.iter(|| {
            let mut n = 0;
            for item in client.request_stream(&Req::LinesBatched(1000)).unwrap() {
                item.unwrap();
                n += 1;
            }
            assert_eq!(n, 1000);
        })
    });
    group.finish();

    drop(client);
    drop(async_client);
    stop.send(()).unwrap();
    rt.block_on(server).unwrap().unwrap();
}

criterion_group!(benches, bench);
criterion_main!(benches);
