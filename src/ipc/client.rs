//! The client half, in two forms sharing one protocol logic:
//!
//! - [`Client`], blocking (std sockets): what the `corral` CLI and the PAM
//!   module use. A CLI makes one request and exits; a tokio runtime would
//!   only add start-up time and threads, and a PAM module must not start
//!   threads inside the login process at all.
//! - [`AsyncClient`], tokio: for daemons (the system manager talking to user
//!   managers) and tests that run inside a runtime.

use std::io::{self, BufReader, Read, Write};
use std::marker::PhantomData;
use std::net::Shutdown;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream as StdUnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::BufReader as AsyncBufReader;
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

use super::frame;
use super::{CORRAL_VERSION, ErrorCode, Frame, Hello, IpcError, PROTOCOL_VERSION, Welcome};

/// What a client announces and how long it waits.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// The protocol announced in [`Hello`]; [`PROTOCOL_VERSION`] except to
    /// test how servers treat other versions.
    pub protocol: u32,
    /// The client version announced in [`Hello`].
    pub client_version: String,
    /// Bound on connect + handshake, so a hung manager is reported, not waited on.
    pub handshake_timeout: Duration,
    /// Bound on waiting for each answer frame; `None` waits for ever (a
    /// `stop` may take TimeoutStopSec, a follow has no end).
    pub reply_timeout: Option<Duration>,
    /// Bound on the whole conversation of a blocking [`Client`], from the
    /// start of connect: every step gets only what is left of it, so the
    /// steps cannot add up past it (the PAM module must never hold a login
    /// longer than its `timeout=`). `None`: each step has only its own bound.
    pub total_timeout: Option<Duration>,
    /// What to tell the user when the socket cannot be reached.
    pub hint: String,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            protocol: PROTOCOL_VERSION,
            client_version: CORRAL_VERSION.to_string(),
            handshake_timeout: Duration::from_secs(5),
            reply_timeout: None,
            total_timeout: None,
            hint: "is corrald --user running? Start it, or point --socket/CORRAL_SOCKET \
                   at its control.sock"
                .to_string(),
        }
    }
}

/// Turns a failed connect into an error that says what to do; `limit` is
/// how long the connect could wait for room in the server's listen queue.
fn unreachable(path: &Path, e: io::Error, options: &ClientOptions, limit: Duration) -> IpcError {
    let (reason, hint) = match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => (
            format!(
                "it accepted no connection within {limit:?} (its listen queue is full: \
                 the server is hung or overloaded)"
            ),
            options.hint.clone(),
        ),
        io::ErrorKind::NotFound => ("no such file".to_string(), options.hint.clone()),
        // connect(2) answers ECONNREFUSED for a path that is not a socket at
        // all too: say which of the two it is.
        io::ErrorKind::ConnectionRefused => match not_a_socket(path) {
            Some(what) => (
                format!("it is not a socket but {what}"),
                "point --socket/CORRAL_SOCKET at a manager's control.sock ($XDG_RUNTIME_DIR/corral/control.sock)"
                    .to_string(),
            ),
            None => (
                "connection refused (a stale socket: no manager is listening on it)".to_string(),
                options.hint.clone(),
            ),
        },
        io::ErrorKind::PermissionDenied => (
            "permission denied (the socket or its directory belongs to another user)".to_string(),
            "each user can reach only their own manager: use your own socket, or run as root"
                .to_string(),
        ),
        _ => (e.to_string(), options.hint.clone()),
    };
    IpcError::Unreachable {
        path: path.to_path_buf(),
        reason,
        hint,
        source: e,
    }
}

/// What `path` is when it exists and is not a socket ("a regular file", ...).
fn not_a_socket(path: &Path) -> Option<&'static str> {
    use std::os::unix::fs::FileTypeExt;
    let t = std::fs::metadata(path).ok()?.file_type();
    Some(if t.is_socket() {
        return None;
    } else if t.is_file() {
        "a regular file"
    } else if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else {
        "a device or other special file"
    })
}

/// Reads the server's answer to [`Hello`]: its version, or why it refused.
fn check_welcome(
    answer: Option<Frame<Welcome>>,
    options: &ClientOptions,
    path: &Path,
) -> Result<String, IpcError> {
    match answer {
        Some(Frame::Reply(w)) if w.protocol == options.protocol => Ok(w.server_version),
        Some(Frame::Reply(w)) => Err(IpcError::VersionMismatch {
            client_protocol: options.protocol,
            client_version: options.client_version.clone(),
            server_protocol: w.protocol,
            server_version: w.server_version,
            path: Some(path.to_path_buf()),
        }),
        Some(Frame::Error(e)) => Err(IpcError::Remote(e)),
        Some(Frame::StreamItem(_)) | Some(Frame::End) => Err(IpcError::Unexpected(
            "the manager answered the handshake with a stream frame".into(),
        )),
        None => Err(IpcError::Closed {
            path: Some(path.to_path_buf()),
        }),
    }
}

/// Reads the answer to a plain request.
fn single_reply<Resp>(answer: Option<Frame<Resp>>, path: &Path) -> Result<Resp, IpcError> {
    match answer {
        Some(Frame::Reply(r)) => Ok(r),
        Some(Frame::Error(e)) => Err(IpcError::Remote(e)),
        Some(Frame::StreamItem(_)) | Some(Frame::End) => Err(IpcError::Unexpected(
            "the manager streamed its answer to a single request; use request_stream".into(),
        )),
        None => Err(IpcError::Closed {
            path: Some(path.to_path_buf()),
        }),
    }
}

/// One step of a streamed answer: `(item, stream_finished)`.
fn stream_step<Resp>(
    answer: Option<Frame<Resp>>,
    path: &Path,
) -> (Option<Result<Resp, IpcError>>, bool) {
    match answer {
        Some(Frame::StreamItem(r)) => (Some(Ok(r)), false),
        Some(Frame::End) => (None, true),
        // A handler may answer a stream request with a single reply: one item.
        Some(Frame::Reply(r)) => (Some(Ok(r)), true),
        Some(Frame::Error(e)) => (Some(Err(IpcError::Remote(e))), true),
        None => (
            Some(Err(IpcError::Closed {
                path: Some(path.to_path_buf()),
            })),
            true,
        ),
    }
}

/// The error for using a connection whose last answer was abandoned or
/// failed half-way: its next frame could belong to that answer.
fn abandoned() -> IpcError {
    IpcError::Unexpected(
        "this connection is out of step (an earlier answer was abandoned or failed); \
         open a new one"
            .into(),
    )
}

/// A step's bound as reported in errors: its own, or the whole
/// conversation's when that is shorter or the step has none.
fn bounded(step: Option<Duration>, options: &ClientOptions) -> Option<Duration> {
    match (step, options.total_timeout) {
        (Some(step), Some(total)) => Some(step.min(total)),
        (step, total) => step.or(total),
    }
}

/// Maps a read failure that was a timeout to [`IpcError::ReadTimeout`].
fn read_error(e: IpcError, limit: Option<Duration>, path: &Path) -> IpcError {
    match (&e, limit) {
        (IpcError::Io { source, .. }, Some(timeout))
            if matches!(
                source.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            IpcError::ReadTimeout {
                timeout,
                path: Some(path.to_path_buf()),
            }
        }
        _ => e.at_path(path),
    }
}

/// Connects to `path`, waiting at most `limit` for room in the server's
/// listen queue. A blocking connect to a server that stopped accepting (its
/// backlog full: hung) would wait for ever; Linux bounds a Unix stream
/// connect by SO_SNDTIMEO, which a socket can only get before it connects,
/// so the socket is made by hand rather than by `UnixStream::connect`.
fn connect_within(path: &Path, limit: Duration) -> io::Result<StdUnixStream> {
    use nix::errno::Errno;
    use nix::sys::socket::{self, AddressFamily, SockFlag, SockType, UnixAddr, sockopt};
    let fd = socket::socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    socket::setsockopt(&fd, sockopt::SendTimeout, &timeval(limit))?;
    let addr = UnixAddr::new(path)?;
    loop {
        match socket::connect(fd.as_raw_fd(), &addr) {
            Ok(()) => break,
            // Nothing is half-done on a Unix socket: connecting again is safe.
            Err(Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let stream = StdUnixStream::from(fd);
    // Back to blocking writes until a step sets its own bound.
    stream.set_write_timeout(None)?;
    Ok(stream)
}

/// `limit` as a socket timeout, never zero (which would mean "no timeout").
fn timeval(limit: Duration) -> nix::sys::time::TimeVal {
    let secs = limit.as_secs().min(u32::MAX as u64);
    let micros = limit.subsec_micros();
    let micros = if secs == 0 && micros == 0 { 1 } else { micros };
    nix::sys::time::TimeVal::new(secs as libc::time_t, micros as libc::suseconds_t)
}

/// The time left until `deadline`, or a timeout error once it has passed.
fn time_left(deadline: Instant) -> io::Result<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(io::ErrorKind::TimedOut.into());
    }
    Ok(left)
}

/// The socket of a blocking [`Client`]: every read and write is bounded by
/// the current step's timeout and, when there is a deadline, by the time
/// left until it, so that many steps cannot add up past it.
struct Conn {
    stream: StdUnixStream,
    /// The current step's own bound (`None`: none).
    step: Option<Duration>,
    /// The end of the whole conversation ([`ClientOptions::total_timeout`]).
    deadline: Option<Instant>,
}

impl Conn {
    /// Starts a step bounded by `limit` (`None`: unbounded but for the deadline).
    fn set_step(&mut self, limit: Option<Duration>) -> io::Result<()> {
        self.step = limit;
        if self.deadline.is_none() {
            // No deadline: the step's bound is set once, not per call.
            self.stream.set_read_timeout(limit)?;
            self.stream.set_write_timeout(limit)?;
        }
        Ok(())
    }

    /// Bounds the next read or write by what is left of the step and deadline.
    fn arm(&self, read: bool) -> io::Result<()> {
        let Some(deadline) = self.deadline else {
            return Ok(());
        };
        let left = time_left(deadline)?;
        let limit = Some(self.step.map_or(left, |step| step.min(left)));
        if read {
            self.stream.set_read_timeout(limit)
        } else {
            self.stream.set_write_timeout(limit)
        }
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.arm(true)?;
        self.stream.read(buf)
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.arm(false)?;
        self.stream.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.stream.flush()
    }
}

/// A blocking connection to a corral manager, handshake done.
pub struct Client<Req, Resp> {
    /// Buffered reads (one syscall per frame, not two); writes go to `get_mut()`.
    reader: BufReader<Conn>,
    /// The socket path, for error messages.
    path: PathBuf,
    /// The manager's corral version from [`Welcome`].
    server_version: String,
    /// Timeouts and identity.
    options: ClientOptions,
    /// Set when a stream was dropped half-read: the next frame would be stale.
    broken: bool,
    /// The request and response enums of this protocol.
    _types: PhantomData<fn(&Req) -> Resp>,
}

impl<Req: Serialize, Resp: DeserializeOwned> Client<Req, Resp> {
    /// Connects to the manager at `path` and shakes hands, with default options.
    pub fn connect(path: impl AsRef<Path>) -> Result<Self, IpcError> {
        Self::connect_with(path, ClientOptions::default())
    }

    /// Connects and shakes hands with explicit options.
    pub fn connect_with(path: impl AsRef<Path>, options: ClientOptions) -> Result<Self, IpcError> {
        Self::open(path.as_ref(), options, None)
    }

    /// Connects with default options and makes one request, sent in the same
    /// write as the Hello: the manager reads both on one wake-up instead of
    /// waiting for us to read its Welcome first (a round trip, two process
    /// wake-ups, less before a `start` reaches it). A manager that refuses
    /// the Hello never reads the request.
    pub fn connect_and_request(
        path: impl AsRef<Path>,
        request: &Req,
    ) -> Result<(Self, Resp), IpcError> {
        let mut client = Self::open(path.as_ref(), ClientOptions::default(), Some(request))?;
        let answer = client.read_reply();
        answer.map(|a| (client, a))
    }

    /// Connect + Hello (+ the first request, written with it) + Welcome.
    fn open(path: &Path, options: ClientOptions, first: Option<&Req>) -> Result<Self, IpcError> {
        let path = path.to_path_buf();
        let deadline = options.total_timeout.map(|total| Instant::now() + total);
        let handshake = bounded(Some(options.handshake_timeout), &options);
        let connect_limit = handshake.unwrap_or(options.handshake_timeout);
        let stream = connect_within(&path, connect_limit)
            .map_err(|e| unreachable(&path, e, &options, connect_limit))?;
        let mut conn = Conn {
            stream,
            step: None,
            deadline,
        };
        conn.set_step(Some(options.handshake_timeout))
            .map_err(|e| IpcError::io("set socket timeout", Some(&path), e))?;
        let hello = Hello {
            protocol: options.protocol,
            client_version: options.client_version.clone(),
        };
        let mut reader = BufReader::new(conn);
        let mut out = frame::encode(&hello)?;
        if let Some(request) = first {
            out.extend_from_slice(&frame::encode(request)?);
        }
        let sent = reader
            .get_mut()
            .write_all(&out)
            .map_err(|e| IpcError::io("write frame", None, e));
        // A server that refuses (busy, wrong uid) may close before reading our
        // Hello; its error frame is still there to read and says more than EPIPE.
        let answer = frame::read_frame_blocking::<Frame<Welcome>, _>(&mut reader);
        let server_version = match (sent, answer) {
            (_, Ok(Some(Frame::Error(e)))) => return Err(IpcError::Remote(e)),
            (Err(e), _) => return Err(e.at_path(&path)),
            (Ok(()), Ok(a)) => check_welcome(a, &options, &path)?,
            (Ok(()), Err(e)) => return Err(read_error(e, handshake, &path)),
        };
        reader
            .get_mut()
            .set_step(options.reply_timeout)
            .map_err(|e| IpcError::io("set socket timeout", Some(&path), e))?;
        Ok(Client {
            reader,
            path,
            server_version,
            options,
            broken: false,
            _types: PhantomData,
        })
    }

    /// The corral version of the manager we are talking to.
    pub fn server_version(&self) -> &str {
        &self.server_version
    }

    /// The socket path we are connected to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Sends a request and waits for its single answer.
    pub fn request(&mut self, request: &Req) -> Result<Resp, IpcError> {
        self.send(request)?;
        self.read_reply()
    }

    /// Reads the single answer to the request just sent.
    fn read_reply(&mut self) -> Result<Resp, IpcError> {
        let r = self.read().and_then(|a| single_reply(a, &self.path));
        // After anything but a clean answer the next frame could be a late
        // answer to this request: never let it pass for the next one's.
        if matches!(r, Err(ref e) if !matches!(e, IpcError::Remote(_))) {
            self.broken = true;
        }
        r
    }

    /// Sends a request and returns its streamed answer: items until the
    /// server's end frame. Dropping it early hangs up (the server's follow
    /// stops) and leaves this client unusable.
    pub fn request_stream(
        &mut self,
        request: &Req,
    ) -> Result<ReplyStream<'_, Req, Resp>, IpcError> {
        self.send(request)?;
        Ok(ReplyStream {
            client: self,
            done: false,
        })
    }

    /// Writes one request frame.
    fn send(&mut self, request: &Req) -> Result<(), IpcError> {
        if self.broken {
            return Err(abandoned());
        }
        frame::write_frame_blocking(self.reader.get_mut(), request).map_err(|e| {
            // Encoding errors happen before anything is sent.
            self.broken |= matches!(e, IpcError::Io { .. });
            e.at_path(&self.path)
        })
    }

    /// Reads one answer frame.
    fn read(&mut self) -> Result<Option<Frame<Resp>>, IpcError> {
        frame::read_frame_blocking(&mut self.reader).map_err(|e| {
            read_error(
                e,
                bounded(self.options.reply_timeout, &self.options),
                &self.path,
            )
        })
    }
}

/// A streamed answer being read by a [`Client`].
pub struct ReplyStream<'c, Req, Resp> {
    /// The connection the stream arrives on.
    client: &'c mut Client<Req, Resp>,
    /// Set after the end frame, an error, or EOF.
    done: bool,
}

impl<Req: Serialize, Resp: DeserializeOwned> Iterator for ReplyStream<'_, Req, Resp> {
    type Item = Result<Resp, IpcError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let answer = match self.client.read() {
            Ok(a) => a,
            Err(e) => {
                self.done = true;
                self.client.broken = true;
                return Some(Err(e));
            }
        };
        let (item, done) = stream_step(answer, &self.client.path);
        self.done = done;
        item
    }
}

impl<Req, Resp> Drop for ReplyStream<'_, Req, Resp> {
    fn drop(&mut self) {
        if !self.done {
            self.client.broken = true;
            // Hanging up is how a client stops a follow; the socket may be gone already.
            let _ = self.client.reader.get_ref().stream.shutdown(Shutdown::Both);
        }
    }
}

/// A tokio connection to a corral manager, handshake done.
pub struct AsyncClient<Req, Resp> {
    /// Buffered read half.
    reader: AsyncBufReader<OwnedReadHalf>,
    /// Write half.
    writer: OwnedWriteHalf,
    /// The socket path, for error messages.
    path: PathBuf,
    /// The manager's corral version from [`Welcome`].
    server_version: String,
    /// Timeouts and identity.
    options: ClientOptions,
    /// Set when a stream was dropped half-read.
    broken: bool,
    /// The request and response enums of this protocol.
    _types: PhantomData<fn(&Req) -> Resp>,
}

impl<Req: Serialize, Resp: DeserializeOwned> AsyncClient<Req, Resp> {
    /// Connects to the manager at `path` and shakes hands, with default options.
    pub async fn connect(path: impl AsRef<Path>) -> Result<Self, IpcError> {
        Self::connect_with(path, ClientOptions::default()).await
    }

    /// Connects and shakes hands with explicit options.
    pub async fn connect_with(
        path: impl AsRef<Path>,
        options: ClientOptions,
    ) -> Result<Self, IpcError> {
        let path = path.as_ref().to_path_buf();
        let limit = options.handshake_timeout;
        match tokio::time::timeout(limit, Self::handshake(&path, options)).await {
            Ok(r) => r,
            Err(_) => Err(IpcError::ReadTimeout {
                timeout: limit,
                path: Some(path),
            }),
        }
    }

    /// Connect + Hello + Welcome, without the overall timeout.
    async fn handshake(path: &Path, options: ClientOptions) -> Result<Self, IpcError> {
        let stream = UnixStream::connect(path)
            .await
            .map_err(|e| unreachable(path, e, &options, options.handshake_timeout))?;
        let (reader, mut writer) = stream.into_split();
        let mut reader = AsyncBufReader::new(reader);
        let hello = Hello {
            protocol: options.protocol,
            client_version: options.client_version.clone(),
        };
        let sent = frame::write_frame(&mut writer, &hello).await;
        let answer = frame::read_frame::<Frame<Welcome>, _>(&mut reader).await;
        let server_version = match (sent, answer) {
            (_, Ok(Some(Frame::Error(e)))) => return Err(IpcError::Remote(e)),
            (Err(e), _) => return Err(e.at_path(path)),
            (Ok(()), Ok(a)) => check_welcome(a, &options, path)?,
            (Ok(()), Err(e)) => return Err(e.at_path(path)),
        };
        Ok(AsyncClient {
            reader,
            writer,
            path: path.to_path_buf(),
            server_version,
            options,
            broken: false,
            _types: PhantomData,
        })
    }

    /// The corral version of the manager we are talking to.
    pub fn server_version(&self) -> &str {
        &self.server_version
    }

    /// Sends a request and waits for its single answer.
    pub async fn request(&mut self, request: &Req) -> Result<Resp, IpcError> {
        self.send(request).await?;
        let r = match self.read().await {
            Ok(a) => single_reply(a, &self.path),
            Err(e) => Err(e),
        };
        // See Client::request.
        if matches!(r, Err(ref e) if !matches!(e, IpcError::Remote(_))) {
            self.broken = true;
        }
        r
    }

    /// Sends a request and returns its streamed answer; see [`Client::request_stream`].
    pub async fn request_stream(
        &mut self,
        request: &Req,
    ) -> Result<AsyncReplyStream<'_, Req, Resp>, IpcError> {
        self.send(request).await?;
        Ok(AsyncReplyStream {
            client: self,
            done: false,
        })
    }

    /// Writes one request frame.
    async fn send(&mut self, request: &Req) -> Result<(), IpcError> {
        if self.broken {
            return Err(abandoned());
        }
        let r = frame::write_frame(&mut self.writer, request).await;
        r.map_err(|e| {
            // Encoding errors happen before anything is sent.
            self.broken |= matches!(e, IpcError::Io { .. });
            e.at_path(&self.path)
        })
    }

    /// Reads one answer frame, within the reply timeout if there is one.
    async fn read(&mut self) -> Result<Option<Frame<Resp>>, IpcError> {
        let read = frame::read_frame(&mut self.reader);
        let r = match self.options.reply_timeout {
            None => read.await,
            Some(limit) => match tokio::time::timeout(limit, read).await {
                Ok(r) => r,
                Err(_) => {
                    self.broken = true;
                    return Err(IpcError::ReadTimeout {
                        timeout: limit,
                        path: Some(self.path.clone()),
                    });
                }
            },
        };
        r.map_err(|e| e.at_path(&self.path))
    }
}

/// A streamed answer being read by an [`AsyncClient`].
pub struct AsyncReplyStream<'c, Req, Resp> {
    /// The connection the stream arrives on.
    client: &'c mut AsyncClient<Req, Resp>,
    /// Set after the end frame, an error, or EOF.
    done: bool,
}

impl<Req: Serialize, Resp: DeserializeOwned> AsyncReplyStream<'_, Req, Resp> {
    /// The next item; `None` after the end frame.
    pub async fn next(&mut self) -> Option<Result<Resp, IpcError>> {
        if self.done {
            return None;
        }
        let answer = match self.client.read().await {
            Ok(a) => a,
            Err(e) => {
                self.done = true;
                self.client.broken = true;
                return Some(Err(e));
            }
        };
        let (item, done) = stream_step(answer, &self.client.path);
        self.done = done;
        item
    }
}

impl<Req, Resp> Drop for AsyncReplyStream<'_, Req, Resp> {
    fn drop(&mut self) {
        if !self.done {
            self.client.broken = true;
            // Hang up now so the server's follow stops, not when the client is dropped.
            let fd = std::os::fd::AsFd::as_fd(self.client.writer.as_ref());
            let _ = nix::sys::socket::shutdown(
                std::os::fd::AsRawFd::as_raw_fd(&fd),
                nix::sys::socket::Shutdown::Both,
            );
        }
    }
}

/// True if `e` is the server's refusal for this reason.
pub fn is_refusal(e: &IpcError, code: ErrorCode) -> bool {
    matches!(e, IpcError::Remote(p) if p.code == code)
}
