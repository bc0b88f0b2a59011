//! The control-protocol server and clients over real Unix sockets in temp
//! dirs: replies, streams, bad frames, stuck clients, versions, shutdown.

mod common;

use std::io::Write;
use std::os::unix::net::UnixStream as StdUnixStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use corral::ipc::client::is_refusal;
use corral::ipc::frame::{read_frame_blocking, write_frame_blocking};
use corral::ipc::server::serve_with;
use corral::ipc::{
    AsyncClient, Client, ClientOptions, ErrorCode, Frame, Handler, Hello, IpcError, MAX_FRAME,
    PROTOCOL_VERSION, PeerCred, Replies, ServerConfig, Welcome, bind_private,
};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use common::ipc::{expect_error_then_close, raw_after_handshake, raw_connect};

/// The test protocol's requests.
#[derive(Debug, Serialize, Deserialize)]
enum Req {
    /// Reply once with the text and the caller's uid.
    Echo(String),
    /// Stream `n` items then end.
    Count(u32),
    /// Stream `n` items in one batch, then `n` more one by one; end by returning.
    Batch(u32),
    /// Stream 3 items, then wait until the client goes away; report it.
    Follow,
    /// Stream 64 KiB items until a write fails; report how it failed.
    Flood,
    /// Return without answering.
    Silent,
    /// Return an error.
    Fail,
    /// Panic in the handler.
    Panic,
    /// Answer nothing until the client goes away.
    Hang,
}

/// The test protocol's responses.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
enum Resp {
    Echoed(String, u32),
    Item(u32),
    Blob(Vec<u8>),
}

/// What handlers report to the test.
#[derive(Debug, PartialEq)]
enum Event {
    FollowStopped,
    FloodEnded(String),
}

struct TestHandler {
    events: mpsc::UnboundedSender<Event>,
}

impl Handler for TestHandler {
    type Request = Req;
    type Response = Resp;

    async fn handle(
        &self,
        peer: &PeerCred,
        request: Req,
        replies: &mut Replies<'_, Resp>,
    ) -> Result<(), IpcError> {
        match request {
            Req::Echo(s) => replies.reply(&Resp::Echoed(s, peer.uid)).await,
            Req::Count(n) => {
                for i in 0..n {
                    replies.item(&Resp::Item(i)).await?;
                }
                replies.end().await
            }
            Req::Batch(n) => {
                let batch: Vec<_> = (0..n).map(Resp::Item).collect();
                replies.items(&batch).await?;
                for i in n..2 * n {
                    replies.item(&Resp::Item(i)).await?;
                }
                Ok(())
            }
            Req::Follow => {
                for i in 0..3 {
                    replies.item(&Resp::Item(i)).await?;
                }
                replies.closed().await;
                let _ = self.events.send(Event::FollowStopped);
                Ok(())
            }
            Req::Flood => {
                let blob = Resp::Blob(vec![7; 64 * 1024]);
                let err = loop {
                    if let Err(e) = replies.item(&blob).await {
                        break e;
                    }
                };
                let kind = match err {
                    IpcError::WriteTimeout { .. } => "timeout".to_string(),
                    IpcError::ClientGone => "gone".to_string(),
                    other => other.to_string(),
                };
                let _ = self.events.send(Event::FloodEnded(kind));
                Ok(())
            }
            Req::Silent => Ok(()),
            Req::Fail => Err(IpcError::Unexpected("the test handler fails".into())),
            Req::Panic => panic!("the test handler panics"),
            Req::Hang => {
                replies.closed().await;
                Ok(())
            }
        }
    }
}

/// A running server on a socket in its own temp dir.
struct TestServer {
    _dir: tempfile::TempDir,
    path: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    join: Option<JoinHandle<Result<(), IpcError>>>,
    events: mpsc::UnboundedReceiver<Event>,
}

impl TestServer {
    fn start(tweak: impl FnOnce(&mut ServerConfig)) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("corral/control.sock");
        let listener = bind_private(&path).unwrap();
        let (tx, events) = mpsc::unbounded_channel();
        let (stop, stopped) = oneshot::channel::<()>();
        let mut config = ServerConfig::owner(nix::unistd::geteuid().as_raw());
        tweak(&mut config);
        let handler = Arc::new(TestHandler { events: tx });
        let join = tokio::spawn(serve_with(listener, handler, config, stopped));
        TestServer {
            _dir: dir,
            path,
            stop: Some(stop),
            join: Some(join),
            events,
        }
    }

    async fn client(&self) -> AsyncClient<Req, Resp> {
        AsyncClient::connect(&self.path).await.unwrap()
    }

    /// Stops the server and waits until `serve` returned.
    async fn shutdown(&mut self) {
        self.stop.take().unwrap().send(()).unwrap();
        self.join.take().unwrap().await.unwrap().unwrap();
    }

    /// Proves the server still answers a fresh client.
    async fn assert_serving(&self) {
        let mut c = self.client().await;
        let r = c.request(&Req::Echo("still here".into())).await.unwrap();
        assert_eq!(r, Resp::Echoed("still here".into(), my_uid()));
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(j) = self.join.take() {
            j.abort();
        }
    }
}

fn my_uid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_blocking_and_async() {
    let mut server = TestServer::start(|_| {});
    let path = server.path.clone();
    let answers = tokio::task::spawn_blocking(move || {
        let mut c = Client::<Req, Resp>::connect(&path).unwrap();
        assert_eq!(c.server_version(), corral::ipc::CORRAL_VERSION);
        // Several requests on one connection.
        (0..3)
            .map(|i| c.request(&Req::Echo(format!("hi {i}"))).unwrap())
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    assert_eq!(answers[2], Resp::Echoed("hi 2".into(), my_uid()));
    server.assert_serving().await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_sent_with_the_hello_is_answered_and_the_connection_lives_on() {
    let mut server = TestServer::start(|_| {});
    let path = server.path.clone();
    let answers = tokio::task::spawn_blocking(move || {
        let (mut c, first) =
            Client::<Req, Resp>::connect_and_request(&path, &Req::Echo("first".into())).unwrap();
        assert_eq!(c.server_version(), corral::ipc::CORRAL_VERSION);
        (first, c.request(&Req::Echo("second".into())).unwrap())
    })
    .await
    .unwrap();
    assert_eq!(answers.0, Resp::Echoed("first".into(), my_uid()));
    assert_eq!(answers.1, Resp::Echoed("second".into(), my_uid()));
    server.assert_serving().await;
    server.shutdown().await;
}

#[test]
fn the_first_request_arrives_in_the_same_write_as_the_hello() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("one-read.sock");
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        // One read: the client has not seen a Welcome yet, so everything it
        // sends before it reads must already be here.
        let mut buf = vec![0u8; 4096];
        let n = std::io::Read::read(&mut s, &mut buf).unwrap();
        let mut got = &buf[..n];
        let hello: Hello = read_frame_blocking(&mut got).unwrap().unwrap();
        let req: Req = read_frame_blocking(&mut got).unwrap().unwrap();
        assert!(got.is_empty());
        let w = Frame::Reply(Welcome {
            protocol: hello.protocol,
            server_version: "test".into(),
        });
        write_frame_blocking(&mut s, &w).unwrap();
        let Req::Echo(text) = req else {
            panic!("not the request sent: {req:?}")
        };
        write_frame_blocking(&mut s, &Frame::Reply(Resp::Echoed(text, 7))).unwrap();
    });
    let (c, answer) =
        Client::<Req, Resp>::connect_and_request(&path, &Req::Echo("early".into())).unwrap();
    server.join().unwrap();
    assert_eq!(c.server_version(), "test");
    assert_eq!(answer, Resp::Echoed("early".into(), 7));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_ends_with_end_frame_and_connection_is_reusable() {
    let mut server = TestServer::start(|_| {});
    let mut c = server.client().await;
    let mut stream = c.request_stream(&Req::Count(5)).await.unwrap();
    let mut got = Vec::new();
    while let Some(item) = stream.next().await {
        got.push(item.unwrap());
    }
    assert_eq!(got, (0..5).map(Resp::Item).collect::<Vec<_>>());
    drop(stream);
    // A batch, and a stream the handler ends by returning.
    let mut stream = c.request_stream(&Req::Batch(50)).await.unwrap();
    let mut got = Vec::new();
    while let Some(item) = stream.next().await {
        got.push(item.unwrap());
    }
    assert_eq!(got, (0..100).map(Resp::Item).collect::<Vec<_>>());
    drop(stream);
    // An empty stream is End alone.
    let mut stream = c.request_stream(&Req::Count(0)).await.unwrap();
    assert!(stream.next().await.is_none());
    drop(stream);
    assert_eq!(
        c.request(&Req::Echo("after".into())).await.unwrap(),
        Resp::Echoed("after".into(), my_uid())
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_stops_when_the_blocking_client_drops_the_stream() {
    let mut server = TestServer::start(|_| {});
    let path = server.path.clone();
    tokio::task::spawn_blocking(move || {
        let mut c = Client::<Req, Resp>::connect(&path).unwrap();
        let mut stream = c.request_stream(&Req::Follow).unwrap();
        for i in 0..3 {
            assert_eq!(stream.next().unwrap().unwrap(), Resp::Item(i));
        }
        // Like `corral journal -f` interrupted: the stream is dropped mid-way.
        drop(stream);
        let err = c.request(&Req::Echo("x".into())).unwrap_err();
        assert!(err.to_string().contains("open a new one"), "{err}");
    })
    .await
    .unwrap();
    assert_eq!(server.events.recv().await, Some(Event::FollowStopped));
    server.assert_serving().await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_stops_when_the_async_client_drops_the_stream() {
    let mut server = TestServer::start(|_| {});
    let mut c = server.client().await;
    let mut stream = c.request_stream(&Req::Follow).await.unwrap();
    assert_eq!(stream.next().await.unwrap().unwrap(), Resp::Item(0));
    drop(stream);
    assert_eq!(server.events.recv().await, Some(Event::FollowStopped));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_request_gets_an_error_and_a_close_and_others_are_served() {
    let mut server = TestServer::start(|_| {});
    let path = server.path.clone();
    let message = tokio::task::spawn_blocking(move || {
        let mut s = raw_after_handshake(&path);
        // Variant index 200 of a 6-variant enum.
        s.write_all(&[2, 0, 0, 0, 0xc8, 0x01]).unwrap();
        expect_error_then_close(&mut s, ErrorCode::MALFORMED)
    })
    .await
    .unwrap();
    assert!(message.contains("bad request frame"), "{message}");
    assert!(message.contains("closing the connection"), "{message}");
    server.assert_serving().await;

    // Garbage instead of a Hello, too.
    let path = server.path.clone();
    tokio::task::spawn_blocking(move || {
        let mut s = raw_connect(&path);
        s.write_all(&[3, 0, 0, 0, 0xff, 0xff, 0xff]).unwrap();
        expect_error_then_close(&mut s, ErrorCode::MALFORMED)
    })
    .await
    .unwrap();
    server.assert_serving().await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_length_prefix_is_refused_without_waiting_for_the_payload() {
    let mut server = TestServer::start(|_| {});
    let path = server.path.clone();
    let message = tokio::task::spawn_blocking(move || {
        let mut s = raw_after_handshake(&path);
        // Only the 4-byte prefix, and the socket stays open: a server that
        // tried to read (or allocate) 4 GiB would never answer.
        s.write_all(&u32::MAX.to_le_bytes()).unwrap();
        expect_error_then_close(&mut s, ErrorCode::OVERSIZED)
    })
    .await
    .unwrap();
    assert!(
        message.contains(&format!(
            "4294967295 bytes exceeds the limit of {MAX_FRAME} bytes"
        )),
        "{message}"
    );
    server.assert_serving().await;

    // The same before the handshake, and just over the limit.
    let path = server.path.clone();
    tokio::task::spawn_blocking(move || {
        let mut s = raw_connect(&path);
        s.write_all(&(MAX_FRAME as u32 + 1).to_le_bytes()).unwrap();
        expect_error_then_close(&mut s, ErrorCode::OVERSIZED)
    })
    .await
    .unwrap();
    server.assert_serving().await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_blocks_nobody_else() {
    // A long write timeout: the flooded connection stays stuck while we work.
    let mut server = TestServer::start(|c| c.write_timeout = Duration::from_secs(600));
    let mut stuck = server.client().await;
    let stream = stuck.request_stream(&Req::Flood).await.unwrap();
    // Never read `stream`. Others are served meanwhile, by both client kinds.
    for _ in 0..3 {
        server.assert_serving().await;
    }
    let path = server.path.clone();
    tokio::task::spawn_blocking(move || {
        let mut c = Client::<Req, Resp>::connect(&path).unwrap();
        let items: Vec<_> = c.request_stream(&Req::Count(100)).unwrap().collect();
        assert_eq!(items.len(), 100);
    })
    .await
    .unwrap();
    // The flood's handler is still blocked on its stuck client...
    assert!(server.events.try_recv().is_err());
    // ...until the client hangs up.
    drop(stream);
    drop(stuck);
    assert_eq!(
        server.events.recv().await,
        Some(Event::FloodEnded("gone".into()))
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_client_is_dropped_after_the_write_timeout() {
    let mut server = TestServer::start(|c| c.write_timeout = Duration::from_millis(200));
    let mut stuck = server.client().await;
    let _stream = stuck.request_stream(&Req::Flood).await.unwrap();
    assert_eq!(
        server.events.recv().await,
        Some(Event::FloodEnded("timeout".into()))
    );
    server.assert_serving().await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_with_another_protocol_version_gets_a_clear_error() {
    let mut server = TestServer::start(|_| {});
    let options = ClientOptions {
        protocol: PROTOCOL_VERSION + 98,
        client_version: "9.9.9".into(),
        ..ClientOptions::default()
    };
    let err = AsyncClient::<Req, Resp>::connect_with(&server.path, options.clone())
        .await
        .err()
        .unwrap();
    assert!(is_refusal(&err, ErrorCode::VERSION_MISMATCH), "{err:?}");
    let text = err.to_string();
    assert!(
        text.starts_with(&format!(
            "protocol version mismatch: this corral 9.9.9 speaks protocol {}, the manager (corrald {}) speaks protocol {PROTOCOL_VERSION}",
            PROTOCOL_VERSION + 98,
            corral::ipc::CORRAL_VERSION
        )),
        "{text}"
    );
    assert!(
        text.contains("use the corral binary that matches"),
        "{text}"
    );
    let path = server.path.clone();
    let err = tokio::task::spawn_blocking(move || {
        Client::<Req, Resp>::connect_with(&path, options)
            .err()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(is_refusal(&err, ErrorCode::VERSION_MISMATCH), "{err:?}");
    server.assert_serving().await;
    server.shutdown().await;
}

#[test]
fn server_with_another_protocol_version_gets_a_clear_error() {
    // A fake server from another release, speaking only the frozen handshake.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.sock");
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    // Two connections: a plain handshake, then one with a request behind its Hello.
    let fake = std::thread::spawn(move || {
        for _ in 0..2 {
            let (mut s, _) = listener.accept().unwrap();
            let _: Hello = read_frame_blocking(&mut s).unwrap().unwrap();
            let w = Frame::Reply(Welcome {
                protocol: PROTOCOL_VERSION + 1,
                server_version: "99.0.0".into(),
            });
            write_frame_blocking(&mut s, &w).unwrap();
        }
    });
    let err = Client::<Req, Resp>::connect(&path).err().unwrap();
    assert!(matches!(err, IpcError::VersionMismatch { .. }), "{err:?}");
    // The request sent behind the Hello changes nothing: the mismatch is
    // still what the client reports.
    let early = Client::<Req, Resp>::connect_and_request(&path, &Req::Echo("x".into()));
    fake.join().unwrap();
    assert!(
        matches!(early, Err(IpcError::VersionMismatch { .. })),
        "{:?}",
        early.err()
    );
    assert_eq!(
        err.to_string(),
        format!(
            "protocol version mismatch: this corral {} speaks protocol {PROTOCOL_VERSION}, \
             the manager at {} (corrald 99.0.0) speaks protocol {}; use the corral binary \
             that matches the running corrald, or restart corrald after upgrading",
            corral::ipc::CORRAL_VERSION,
            path.display(),
            PROTOCOL_VERSION + 1
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_without_answer_or_with_error_gets_an_error_frame_and_the_connection_lives_on() {
    let mut server = TestServer::start(|_| {});
    let mut c = server.client().await;
    let err = c.request(&Req::Silent).await.unwrap_err();
    assert!(is_refusal(&err, ErrorCode::INTERNAL), "{err:?}");
    assert!(err.to_string().contains("sent no answer"), "{err}");
    let err = c.request(&Req::Fail).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "protocol violation: the test handler fails"
    );
    assert_eq!(
        c.request(&Req::Echo("ok".into())).await.unwrap(),
        Resp::Echoed("ok".into(), my_uid())
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_handler_ends_only_its_own_connection() {
    let mut server = TestServer::start(|_| {});
    let mut bystander = server.client().await;
    let mut c = server.client().await;
    let err = c.request(&Req::Panic).await.unwrap_err();
    assert!(matches!(err, IpcError::Closed { .. }), "{err:?}");
    assert_eq!(
        bystander.request(&Req::Echo("b".into())).await.unwrap(),
        Resp::Echoed("b".into(), my_uid())
    );
    server.assert_serving().await;
    server.shutdown().await;
}

/// A server with room for `n` connections in all, none of them kept for root
/// (the tests may run as root or not).
fn limited(n: usize) -> impl FnOnce(&mut ServerConfig) {
    move |c| {
        c.max_connections = n;
        c.root_reserve = 0;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_limit_are_told_busy() {
    let mut server = TestServer::start(limited(1));
    // Inside a request (its first item proves the server read it), so its
    // slot cannot be taken.
    let mut first = server.client().await;
    let mut stream = first.request_stream(&Req::Follow).await.unwrap();
    assert_eq!(stream.next().await.unwrap().unwrap(), Resp::Item(0));
    let err = AsyncClient::<Req, Resp>::connect(&server.path)
        .await
        .err()
        .unwrap();
    assert!(is_refusal(&err, ErrorCode::BUSY), "{err:?}");
    assert!(err.to_string().contains("try again"), "{err}");
    // The connection that holds the slot is unaffected.
    for i in 1..3 {
        assert_eq!(stream.next().await.unwrap().unwrap(), Resp::Item(i));
    }
    drop(stream);
    assert_eq!(server.events.recv().await, Some(Event::FollowStopped));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_gives_its_slot_to_a_newcomer() {
    let mut server = TestServer::start(limited(2));
    let path = server.path.clone();
    // Two connections idle between requests, the older one first.
    let (older, newer) = tokio::task::spawn_blocking(move || {
        let older = raw_after_handshake(&path);
        let newer = raw_after_handshake(&path);
        (older, newer)
    })
    .await
    .unwrap();
    let mut newcomer = server.client().await;
    assert_eq!(
        newcomer.request(&Req::Echo("in".into())).await.unwrap(),
        Resp::Echoed("in".into(), my_uid())
    );
    let (message, mut newer) = tokio::task::spawn_blocking(move || {
        let mut older = older;
        (expect_error_then_close(&mut older, ErrorCode::BUSY), newer)
    })
    .await
    .unwrap();
    assert!(
        message.contains("closing this idle connection"),
        "{message}"
    );
    // The newer idle connection kept its slot and is still served.
    let answer = tokio::task::spawn_blocking(move || {
        write_frame_blocking(&mut newer, &Req::Echo("kept".into())).unwrap();
        read_frame_blocking::<Frame<Resp>, _>(&mut newer)
            .unwrap()
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(answer, Frame::Reply(Resp::Echoed("kept".into(), my_uid())));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_frame_is_dropped_after_the_frame_deadline() {
    let mut server = TestServer::start(|c| c.frame_timeout = Duration::from_millis(200));
    let path = server.path.clone();
    let message = tokio::task::spawn_blocking(move || {
        let mut s = raw_after_handshake(&path);
        // A 50-byte request of which one byte arrives; the socket stays open.
        s.write_all(&[50, 0, 0, 0, 1]).unwrap();
        expect_error_then_close(&mut s, ErrorCode::TIMEOUT)
    })
    .await
    .unwrap();
    assert!(message.contains("incomplete request frame"), "{message}");
    assert!(message.contains("200ms"), "{message}");
    server.assert_serving().await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_frames_cannot_keep_others_out_past_the_frame_deadline() {
    let mut server = TestServer::start(|c| {
        limited(4)(c);
        c.frame_timeout = Duration::from_millis(300);
    });
    let path = server.path.clone();
    // Every slot held by a connection stalled in the middle of a header.
    let stalled = tokio::task::spawn_blocking(move || {
        (0..4)
            .map(|_| {
                let mut s = raw_after_handshake(&path);
                s.write_all(&[50, 0]).unwrap();
                s
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    let messages = tokio::task::spawn_blocking(move || {
        stalled
            .into_iter()
            .map(|mut s| expect_error_then_close(&mut s, ErrorCode::TIMEOUT))
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    // A slot is free before its connection closes, so a newcomer gets in now.
    server.assert_serving().await;
    assert_eq!(messages.len(), 4);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_connection_is_closed_after_the_handshake_timeout() {
    let mut server = TestServer::start(|c| c.handshake_timeout = Duration::from_millis(100));
    let path = server.path.clone();
    let message = tokio::task::spawn_blocking(move || {
        let mut s = raw_connect(&path);
        expect_error_then_close(&mut s, ErrorCode::TIMEOUT)
    })
    .await
    .unwrap();
    assert!(message.contains("no Hello frame"), "{message}");
    server.assert_serving().await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_stops_accepting_ends_follows_and_returns() {
    let mut server = TestServer::start(|_| {});
    let mut idle = server.client().await;
    let mut following = server.client().await;
    let mut stream = following.request_stream(&Req::Follow).await.unwrap();
    for i in 0..3 {
        assert_eq!(stream.next().await.unwrap().unwrap(), Resp::Item(i));
    }
    server.shutdown().await;
    // The follow's handler saw the shutdown, and the client was told.
    assert_eq!(server.events.recv().await, Some(Event::FollowStopped));
    let err = stream.next().await.unwrap().unwrap_err();
    assert!(is_refusal(&err, ErrorCode::SHUTTING_DOWN), "{err:?}");
    assert_eq!(err.to_string(), "the corral manager is shutting down");
    assert!(stream.next().await.is_none());
    drop(stream);
    // The idle connection was told, or closed.
    match idle.request(&Req::Echo("late".into())).await {
        Err(e) if is_refusal(&e, ErrorCode::SHUTTING_DOWN) => {}
        Err(IpcError::Closed { .. } | IpcError::Io { .. }) => {}
        other => panic!("unexpected answer after shutdown: {other:?}"),
    }
    // Nobody listens any more: a stale socket, and the client says so.
    let err = AsyncClient::<Req, Resp>::connect(&server.path)
        .await
        .err()
        .unwrap();
    let text = err.to_string();
    assert!(text.contains("connection refused"), "{text}");
    assert!(text.contains("is corrald --user running?"), "{text}");
}

#[test]
fn a_socket_path_that_is_a_regular_file_is_said_to_be_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("control.sock");
    std::fs::write(&path, "").unwrap();
    let err = Client::<Req, Resp>::connect(&path).err().unwrap();
    let text = err.to_string();
    assert!(
        text.contains("it is not a socket but a regular file"),
        "{text}"
    );
    assert!(!text.contains("stale"), "{text}");
    assert!(text.contains("point --socket/CORRAL_SOCKET"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_manager_is_reported_and_the_connection_is_not_reused() {
    let mut server = TestServer::start(|_| {});
    let path = server.path.clone();
    tokio::task::spawn_blocking(move || {
        let options = ClientOptions {
            reply_timeout: Some(Duration::from_millis(100)),
            ..ClientOptions::default()
        };
        let mut c = Client::<Req, Resp>::connect_with(&path, options).unwrap();
        let err = c.request(&Req::Hang).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "no answer from the corral manager at {} within 100ms; it may be hung \
                 — check its journal or restart it",
                path.display()
            )
        );
        let err = c.request(&Req::Echo("late".into())).unwrap_err();
        assert!(err.to_string().contains("out of step"), "{err}");
    })
    .await
    .unwrap();
    server.assert_serving().await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_total_timeout_bounds_a_request_that_has_no_reply_timeout() {
    let mut server = TestServer::start(|_| {});
    let path = server.path.clone();
    tokio::task::spawn_blocking(move || {
        let options = ClientOptions {
            reply_timeout: None,
            total_timeout: Some(Duration::from_millis(200)),
            ..ClientOptions::default()
        };
        let mut c = Client::<Req, Resp>::connect_with(&path, options).unwrap();
        // Without the total timeout this would wait for ever.
        let err = c.request(&Req::Hang).unwrap_err();
        assert!(matches!(err, IpcError::ReadTimeout { .. }), "{err:?}");
    })
    .await
    .unwrap();
    server.assert_serving().await;
    server.shutdown().await;
}

#[test]
fn a_server_whose_listen_queue_is_full_is_reported_not_waited_on() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("control.sock");
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    // A hung server: it accepts nothing, and its queue (one pending
    // connection for a backlog of 0) is taken.
    // SAFETY: listen on a socket we own.
    assert_eq!(
        unsafe { libc::listen(std::os::fd::AsRawFd::as_raw_fd(&listener), 0) },
        0
    );
    let _filler = StdUnixStream::connect(&path).unwrap();
    for options in [
        ClientOptions {
            handshake_timeout: Duration::from_millis(100),
            ..ClientOptions::default()
        },
        ClientOptions {
            total_timeout: Some(Duration::from_millis(100)),
            ..ClientOptions::default()
        },
    ] {
        let err = Client::<Req, Resp>::connect_with(&path, options)
            .err()
            .unwrap();
        assert!(
            err.to_string()
                .contains("accepted no connection within 100ms")
                && err.to_string().contains("listen queue is full"),
            "{err}"
        );
    }
}

#[test]
fn missing_socket_error_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("control.sock");
    let err = Client::<Req, Resp>::connect(&path).err().unwrap();
    assert_eq!(
        err.to_string(),
        format!(
            "cannot reach the corral manager at {}: no such file — is corrald --user running? \
             Start it, or point --socket/CORRAL_SOCKET at its control.sock",
            path.display()
        )
    );
}
