//! The server half: an accept loop that gives every connection its own task,
//! checks the handshake and the peer's uid, then feeds requests to a
//! [`Handler`] that answers through [`Replies`].
//!
//! Isolation rules: a connection's reads and writes happen only in its own
//! task, every write has a timeout, a frame once begun must be complete
//! within a deadline, one uid holds at most a share of the connections
//! (root keeps a reserve), an idle connection gives its slot up to a
//! newcomer who needs it, and a bad frame closes only that connection — so
//! a stuck, slow or hostile client never delays or locks out anyone else.

use std::future::Future;
use std::io::Write;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::timeout;

use super::frame::{self, FrameRef};
use super::peer::{PeerCred, authorize_owner};
use super::slots::{Limits, Refusal, Slot, Slots};
use super::{CORRAL_VERSION, ErrorCode, Hello, IpcError, PROTOCOL_VERSION, ProtoError, Welcome};

/// Answers requests; one value serves every connection concurrently.
pub trait Handler: Send + Sync + 'static {
    /// The request enum clients send.
    type Request: DeserializeOwned + Send + 'static;
    /// The response enum sent back, as replies or stream items.
    type Response: Serialize + Send + Sync + 'static;

    /// Answers one request through `replies`: exactly one `reply`, or any
    /// number of `item`s then `end`, or one `error`. Returning without
    /// answering sends an INTERNAL error; returning mid-stream sends `End`;
    /// returning `Err` sends it as an error frame if nothing final was sent.
    /// Do not hold locks shared with other connections across `replies`
    /// awaits: a slow client would then stall everyone who needs that lock.
    fn handle(
        &self,
        peer: &PeerCred,
        request: Self::Request,
        replies: &mut Replies<'_, Self::Response>,
    ) -> impl Future<Output = Result<(), IpcError>> + Send;
}

/// Who may complete the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Only this uid and root (a user manager's socket); others are refused
    /// at the handshake with PERMISSION_DENIED.
    Owner(u32),
    /// Everyone; the handler authorises each request from the [`PeerCred`]
    /// it is given (the system socket, where users may act on themselves).
    Anyone,
}

/// Limits and identity of a server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Who may connect.
    pub access: Access,
    /// Connections served at once; beyond it (and with no idle connection
    /// to close instead) a client gets BUSY at once instead of hanging in
    /// the listen backlog.
    pub max_connections: usize,
    /// Connections one non-root uid may hold at once, so one user cannot
    /// take everyone's slots; beyond it that uid gets BUSY.
    pub max_per_uid: usize,
    /// Slots only root may take (the PAM module runs as root in login,
    /// sshd and su), however many connections the users hold.
    pub root_reserve: usize,
    /// How long a new connection may take to send its [`Hello`], so idle
    /// connects cannot hold connection slots.
    pub handshake_timeout: Duration,
    /// How long the rest of a request frame may take once its first byte
    /// arrived; a peer that starts a frame and stalls is sent TIMEOUT and
    /// dropped, so half frames cannot hold connection slots.
    pub frame_timeout: Duration,
    /// How long one frame write may take before the client is considered
    /// stuck and its connection dropped (this frees a follow's handler too).
    pub write_timeout: Duration,
    /// After shutdown, how long in-flight requests may run before their
    /// connections are dropped.
    pub shutdown_grace: Duration,
    /// Sent in [`Welcome`] and version-mismatch errors.
    pub server_version: String,
}

impl ServerConfig {
    /// Defaults for a socket that only `uid` (and root) may use: the owner
    /// may take every slot but root's reserve.
    pub fn owner(uid: u32) -> ServerConfig {
        ServerConfig {
            access: Access::Owner(uid),
            max_connections: 64,
            max_per_uid: 60,
            root_reserve: 4,
            handshake_timeout: Duration::from_secs(5),
            frame_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(5),
            server_version: CORRAL_VERSION.to_string(),
        }
    }

    /// Defaults for a socket everyone may use (per-request authorisation):
    /// 8 connections per uid, 32 of 128 slots kept for root.
    pub fn anyone() -> ServerConfig {
        ServerConfig {
            access: Access::Anyone,
            max_connections: 128,
            max_per_uid: 8,
            root_reserve: 32,
            ..ServerConfig::owner(0)
        }
    }

    /// The slot limits this configuration asks for.
    fn limits(&self) -> Limits {
        Limits {
            max: self.max_connections,
            per_uid: self.max_per_uid,
            root_reserve: self.root_reserve,
        }
    }
}

/// Serves `listener` until `shutdown` resolves, allowing only our own
/// effective uid and root ([`ServerConfig::owner`]).
pub async fn serve<H: Handler>(
    listener: UnixListener,
    handler: Arc<H>,
    shutdown: impl Future,
) -> Result<(), IpcError> {
    let config = ServerConfig::owner(nix::unistd::geteuid().as_raw());
    serve_with(listener, handler, config, shutdown).await
}

/// Serves `listener` with explicit limits until `shutdown` resolves: then
/// stops accepting, lets in-flight requests finish for
/// [`ServerConfig::shutdown_grace`] (streams are told through
/// [`Replies::closed`]), drops what is left and returns.
pub async fn serve_with<H: Handler>(
    listener: UnixListener,
    handler: Arc<H>,
    config: ServerConfig,
    shutdown: impl Future,
) -> Result<(), IpcError> {
    let config = Arc::new(config);
    let slots = Slots::new(config.limits());
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let busy = frame::encode(&FrameRef::<()>::Error(&ProtoError {
        code: ErrorCode::BUSY,
        message: format!(
            "the corral manager is serving its maximum of {} connections; try again shortly",
            config.max_connections
        ),
    }))?;
    tokio::pin!(shutdown);

    loop {
        tokio::select! {
            // First: after a shutdown is asked, no connection is accepted
            // (daemon-reexec leaves them in the backlog for the new image).
            biased;
            _ = &mut shutdown => break,
            // Reap finished connections so the set does not grow forever.
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    // A peer gone before we could ask who it was concerns nobody.
                    let Ok(peer) = PeerCred::from_socket(&stream) else {
                        continue;
                    };
                    let slot = match slots.admit(peer.uid) {
                        Ok(slot) => slot,
                        Err(Refusal::Full) => {
                            refuse_busy(stream, &busy);
                            continue;
                        }
                        Err(Refusal::UidFull) => {
                            refuse_busy(stream, &uid_busy(peer.uid, config.max_per_uid)?);
                            continue;
                        }
                    };
                    let handler = handler.clone();
                    let config = config.clone();
                    let stop = stop_rx.clone();
                    tasks.spawn(async move {
                        // Errors end only this connection; they were already
                        // reported to the client where it could hear them.
                        let _ = connection(stream, peer, slot, handler, config, stop).await;
                    });
                }
                // Out of fds or memory: retrying at once would spin. A
                // closing connection frees an fd, so wait for one; with none
                // of ours open, the shortage is elsewhere and only time helps.
                Err(e) if is_resource_exhaustion(&e) => tokio::select! {
                    _ = &mut shutdown => break,
                    Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                    _ = tokio::time::sleep(Duration::from_millis(100)), if tasks.is_empty() => {}
                },
                // A client that gave up before we accepted (ECONNABORTED and
                // the like) concerns nobody else.
                Err(_) => {}
            },
        }
    }

    drop(listener);
    stop_tx.send_replace(true);
    let drain = async { while tasks.join_next().await.is_some() {} };
    if timeout(config.shutdown_grace, drain).await.is_err() {
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }
    Ok(())
}

/// True for accept errors that go away only when fds or memory are freed.
fn is_resource_exhaustion(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// The BUSY frame for a uid at its own connection cap.
fn uid_busy(uid: u32, cap: usize) -> Result<Vec<u8>, IpcError> {
    frame::encode(&FrameRef::<()>::Error(&ProtoError {
        code: ErrorCode::BUSY,
        message: format!(
            "uid {uid} already holds its maximum of {cap} connections to this corral manager; \
             close some of them (a `corral journal -f`, a waiting `corral login --wait`) and try again"
        ),
    }))
}

/// Tells a client over the connection limit so, without a task: a fresh
/// socket's send buffer is empty, so one non-blocking write of a small frame
/// completes or fails at once.
fn refuse_busy(stream: UnixStream, busy: &[u8]) {
    if let Ok(std) = stream.into_std() {
        let _ = (&std).write(busy);
    }
}

/// Serves one connection: handshake, then requests until EOF, a bad frame,
/// a broken reply or shutdown.
async fn connection<H: Handler>(
    stream: UnixStream,
    peer: PeerCred,
    slot: Slot,
    handler: Arc<H>,
    config: Arc<ServerConfig>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), IpcError> {
    let (reader, mut writer) = stream.into_split();
    let mut reader = BufReader::new(reader);
    // Bound after the socket halves so that it is dropped before them: once
    // a client sees its connection close, its slot is free again.
    let slot = slot;

    let hello = match timeout(
        config.handshake_timeout,
        frame::read_frame::<Hello, _>(&mut reader),
    )
    .await
    {
        Err(_) => {
            let message = format!(
                "no Hello frame within {:?} of connecting; closing the connection",
                config.handshake_timeout
            );
            return send_error(&mut writer, &config, ErrorCode::TIMEOUT, message).await;
        }
        Ok(Ok(Some(hello))) => hello,
        Ok(Ok(None)) => return Ok(()),
        Ok(Err(e)) => return reject_frame(&mut writer, &config, e, "handshake").await,
    };
    // The uid is checked first: a stranger learns nothing, not even our version.
    if let Access::Owner(owner) = config.access
        && let Err(e) = authorize_owner(&peer, owner)
    {
        return send_error(&mut writer, &config, e.code(), e.to_string()).await;
    }
    if hello.protocol != PROTOCOL_VERSION {
        let e = IpcError::VersionMismatch {
            client_protocol: hello.protocol,
            client_version: hello.client_version,
            server_protocol: PROTOCOL_VERSION,
            server_version: config.server_version.clone(),
            path: None,
        };
        return send_error(&mut writer, &config, e.code(), e.to_string()).await;
    }
    let welcome = Welcome {
        protocol: PROTOCOL_VERSION,
        server_version: config.server_version.clone(),
    };
    send(&mut writer, &config, &FrameRef::Reply(&welcome)).await?;

    loop {
        // Idle until a request begins: the slot may go to a newcomer
        // meanwhile. A request already buffered has begun.
        if reader.buffer().is_empty() {
            slot.set_idle();
        }
        let began = tokio::select! {
            r = reader.fill_buf() => r.map(|buf| !buf.is_empty()),
            _ = slot.evicted() => return evicted(&mut writer, &config).await,
            _ = stopped(&mut stop) => return shutting_down(&mut writer, &config).await,
        };
        match began {
            Ok(true) => {}
            Ok(false) => return Ok(()),
            Err(e) => return Err(IpcError::io("read frame", None, e)),
        }
        if !slot.set_busy() {
            // Evicted just as the request began: the slot is someone else's now.
            return evicted(&mut writer, &config).await;
        }
        let limit = config.frame_timeout;
        let request = tokio::select! {
            r = timeout(limit, frame::read_frame::<H::Request, _>(&mut reader)) => r,
            _ = stopped(&mut stop) => return shutting_down(&mut writer, &config).await,
        };
        let request = match request {
            Err(_) => {
                let message = format!(
                    "incomplete request frame: the rest did not arrive within {limit:?} \
                     of its first byte; closing the connection"
                );
                return send_error(&mut writer, &config, ErrorCode::TIMEOUT, message).await;
            }
            Ok(Ok(Some(r))) => r,
            Ok(Ok(None)) => return Ok(()),
            Ok(Err(e)) => return reject_frame(&mut writer, &config, e, "request").await,
        };
        let mut replies = Replies {
            reader: &mut reader,
            writer: &mut writer,
            stop: &mut stop,
            write_timeout: config.write_timeout,
            state: State::Pending,
            hung_up: false,
            stopping: false,
            _response: PhantomData,
        };
        let result = handler.handle(&peer, request, &mut replies).await;
        let keep = replies.finish(result).await?;
        if !keep {
            return Ok(());
        }
    }
}

/// Tells an idle client its connection is closed to make room, then closes.
async fn evicted(writer: &mut OwnedWriteHalf, config: &ServerConfig) -> Result<(), IpcError> {
    let message = "closing this idle connection: the corral manager needed its slot \
                   for another client; connect again for the next request"
        .to_string();
    send_error(writer, config, ErrorCode::BUSY, message).await
}

/// Tells a client the server is stopping, then closes.
async fn shutting_down(writer: &mut OwnedWriteHalf, config: &ServerConfig) -> Result<(), IpcError> {
    let message = "the corral manager is shutting down".to_string();
    send_error(writer, config, ErrorCode::SHUTTING_DOWN, message).await
}

/// Resolves once shutdown was signalled (at once if it already was).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    // An error means the sender is gone, which only happens after shutdown
    // too; the guard must not live across awaits (it is not Send).
    let _ = stop.wait_for(|s| *s).await.map(|_| ());
}

/// Answers a frame that could not be read: oversized and malformed frames get
/// an error reply (the stream is out of sync after them, so it is closed);
/// EOF mid-frame and I/O errors just close.
async fn reject_frame(
    writer: &mut OwnedWriteHalf,
    config: &ServerConfig,
    e: IpcError,
    what: &str,
) -> Result<(), IpcError> {
    match e {
        IpcError::Oversized { .. }
        | IpcError::Malformed { .. }
        | IpcError::TrailingBytes { .. } => {
            let message = format!(
                "bad {what} frame: {e}; closing the connection \
                 (if client and manager are different corral versions, use matching ones)"
            );
            send_error(writer, config, e.code(), message).await
        }
        other => Err(other),
    }
}

/// Sends one error frame, the last thing on this connection.
async fn send_error(
    writer: &mut OwnedWriteHalf,
    config: &ServerConfig,
    code: ErrorCode,
    message: String,
) -> Result<(), IpcError> {
    let error = ProtoError { code, message };
    send(writer, config, &FrameRef::<()>::Error(&error)).await
}

/// Writes one frame within the write timeout.
async fn send<T: Serialize>(
    writer: &mut OwnedWriteHalf,
    config: &ServerConfig,
    value: &T,
) -> Result<(), IpcError> {
    let buf = frame::encode(value)?;
    write_timed(writer, config.write_timeout, &buf).await
}

/// Writes encoded bytes, failing with [`IpcError::WriteTimeout`] if the peer
/// does not make room in time.
async fn write_timed(
    writer: &mut OwnedWriteHalf,
    limit: Duration,
    buf: &[u8],
) -> Result<(), IpcError> {
    match timeout(limit, frame::write_bytes(writer, buf)).await {
        Ok(r) => r,
        Err(_) => Err(IpcError::WriteTimeout {
            timeout: limit,
            path: None,
        }),
    }
}

/// Where a request's answer stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Nothing sent yet.
    Pending,
    /// At least one stream item sent, no `End` yet.
    Streaming,
    /// A reply, `End` or error was sent; the request is answered.
    Done,
}

/// The handler's way to answer one request: a single reply, or a stream of
/// items ended by `end` (or by returning), or an error.
pub struct Replies<'a, T> {
    /// The connection's read half: watched during a stream to notice a hang-up.
    reader: &'a mut BufReader<OwnedReadHalf>,
    /// The connection's write half.
    writer: &'a mut OwnedWriteHalf,
    /// Server shutdown, so a never-ending stream stops.
    stop: &'a mut watch::Receiver<bool>,
    /// Bound on each frame write.
    write_timeout: Duration,
    /// What has been sent so far.
    state: State,
    /// Set once the client is known gone or out of protocol: close after the handler.
    hung_up: bool,
    /// Set when [`Self::closed`] returned because of shutdown: the client is
    /// told so, then the connection closes.
    stopping: bool,
    /// The response type, fixed per handler.
    _response: PhantomData<fn(&T)>,
}

impl<T: Serialize> Replies<'_, T> {
    /// Sends the single answer to the request.
    pub async fn reply(&mut self, value: &T) -> Result<(), IpcError> {
        if self.state != State::Pending {
            return Err(IpcError::ReplyState(
                "reply() after the request was already answered or streamed",
            ));
        }
        self.write(&FrameRef::Reply(value)).await?;
        self.state = State::Done;
        Ok(())
    }

    /// Sends one item of a streamed answer.
    pub async fn item(&mut self, value: &T) -> Result<(), IpcError> {
        if self.state == State::Done {
            return Err(IpcError::ReplyState(
                "item() after the request was answered",
            ));
        }
        self.write(&FrameRef::StreamItem(value)).await?;
        self.state = State::Streaming;
        Ok(())
    }

    /// Sends one stream item to a client that may leave it unread for a long
    /// time (a `journal -f` piped into a stalled reader): instead of the write
    /// timeout, waits for room as long as the client stays connected, since a
    /// follower's backlog stays in the store, not here. A hang-up ends the wait
    /// ([`IpcError::ClientGone`]); so does a shutdown before any byte of the
    /// frame was written, after which [`Self::is_closed`] is true.
    pub async fn item_unhurried(&mut self, value: &T) -> Result<(), IpcError> {
        if self.state == State::Done {
            return Err(IpcError::ReplyState(
                "item_unhurried() after the request was answered",
            ));
        }
        if self.hung_up {
            return Err(IpcError::ClientGone);
        }
        let buf = frame::encode(&FrameRef::StreamItem(value))?;
        let mut written = 0;
        while written < buf.len() {
            tokio::select! {
                r = self.writer.write(&buf[written..]) => match r {
                    Ok(n) if n > 0 => written += n,
                    _ => {
                        self.hung_up = true;
                        return Err(IpcError::ClientGone);
                    }
                },
                // As in `closed`: EOF or a byte from the client means it is gone.
                _ = self.reader.fill_buf() => {
                    self.hung_up = true;
                    return Err(IpcError::ClientGone);
                }
                // Half a frame cannot be taken back: once started, it is finished
                // (or the connection dropped after the shutdown grace).
                _ = stopped(self.stop), if written == 0 => {
                    self.stopping = true;
                    return Ok(());
                }
            }
        }
        self.state = State::Streaming;
        Ok(())
    }

    /// Sends several stream items in one write: a query's backlog costs one
    /// syscall per batch instead of one per item.
    pub async fn items<'v>(
        &mut self,
        values: impl IntoIterator<Item = &'v T>,
    ) -> Result<(), IpcError>
    where
        T: 'v,
    {
        if self.state == State::Done {
            return Err(IpcError::ReplyState(
                "items() after the request was answered",
            ));
        }
        let mut buf = Vec::new();
        for v in values {
            buf.extend(frame::encode(&FrameRef::StreamItem(v))?);
        }
        if buf.is_empty() {
            return Ok(());
        }
        self.write_encoded(&buf).await?;
        self.state = State::Streaming;
        Ok(())
    }

    /// Ends a streamed answer (an empty stream if no item was sent).
    pub async fn end(&mut self) -> Result<(), IpcError> {
        if self.state == State::Done {
            return Err(IpcError::ReplyState("end() after the request was answered"));
        }
        self.write(&FrameRef::<T>::End).await?;
        self.state = State::Done;
        Ok(())
    }

    /// Answers with a protocol-level error (also ends a stream).
    pub async fn error(&mut self, code: ErrorCode, message: String) -> Result<(), IpcError> {
        if self.state == State::Done {
            return Err(IpcError::ReplyState(
                "error() after the request was answered",
            ));
        }
        let e = ProtoError { code, message };
        self.write(&FrameRef::<T>::Error(&e)).await?;
        self.state = State::Done;
        Ok(())
    }

    /// Resolves when the client hangs up or the server is shutting down, so a
    /// follow can stop: `select!` it against the next item, then return.
    /// Any byte the client sends during a stream also counts as a hang-up
    /// (clients send nothing until the answer is complete). Either way the
    /// connection closes after the handler returns; on shutdown the client is
    /// first sent a SHUTTING_DOWN error.
    ///
    /// ```no_run
    /// # use corral::ipc::{IpcError, Replies};
    /// # use tokio::sync::mpsc::Receiver;
    /// // `journal -f`: forward lines until the client hangs up.
    /// async fn follow(
    ///     replies: &mut Replies<'_, String>,
    ///     mut lines: Receiver<String>,
    /// ) -> Result<(), IpcError> {
    ///     loop {
    ///         tokio::select! {
    ///             _ = replies.closed() => return Ok(()),
    ///             line = lines.recv() => match line {
    ///                 Some(line) => replies.item(&line).await?,
    ///                 None => return replies.end().await,
    ///             },
    ///         }
    ///     }
    /// }
    /// ```
    pub async fn closed(&mut self) {
        if self.hung_up || self.stopping {
            return;
        }
        tokio::select! {
            // fill_buf does not consume, so a hang-up is seen without losing data.
            _ = self.reader.fill_buf() => self.hung_up = true,
            _ = stopped(self.stop) => self.stopping = true,
        }
    }

    /// True once the client is known to be gone or the server is stopping.
    pub fn is_closed(&self) -> bool {
        self.hung_up || self.stopping
    }

    /// Writes a frame; a failure marks the connection for closing and is
    /// reported to the handler as [`IpcError::ClientGone`] or a timeout.
    async fn write<F: Serialize>(&mut self, value: &F) -> Result<(), IpcError> {
        if self.hung_up {
            return Err(IpcError::ClientGone);
        }
        let buf = frame::encode(value)?;
        self.write_encoded(&buf).await
    }

    /// Writes encoded frames; see [`Self::write`].
    async fn write_encoded(&mut self, buf: &[u8]) -> Result<(), IpcError> {
        if self.hung_up {
            return Err(IpcError::ClientGone);
        }
        match write_timed(self.writer, self.write_timeout, buf).await {
            Ok(()) => Ok(()),
            Err(e) => {
                self.hung_up = true;
                Err(match e {
                    IpcError::Io { .. } => IpcError::ClientGone,
                    other => other,
                })
            }
        }
    }

    /// Completes the answer after the handler returned; says whether the
    /// connection may take another request.
    async fn finish(mut self, result: Result<(), IpcError>) -> Result<bool, IpcError> {
        if self.hung_up {
            return Ok(false);
        }
        if self.stopping {
            if self.state != State::Done {
                let message = "the corral manager is shutting down".to_string();
                self.error(ErrorCode::SHUTTING_DOWN, message).await?;
            }
            return Ok(false);
        }
        match (result, self.state) {
            (_, State::Done) => {}
            (Ok(()), State::Streaming) => self.end().await?,
            (Ok(()), State::Pending) => {
                let message = "the corral manager sent no answer to this request \
                               (a bug in corrald; please report it)"
                    .to_string();
                self.error(ErrorCode::INTERNAL, message).await?;
            }
            (Err(e), _) => self.error(e.code(), e.to_string()).await?,
        }
        Ok(true)
    }
}
