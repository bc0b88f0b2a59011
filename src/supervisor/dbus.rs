//! A minimal D-Bus client, just enough for Type=dbus: connect to a bus
//! (`unix:path=` or `unix:abstract=`), authenticate with SASL EXTERNAL, say
//! Hello, call methods of the bus driver (AddMatch, GetNameOwner,
//! RequestName, ...) and read its replies and `NameOwnerChanged` signals.
//!
//! Only the part of the wire format this needs is here: method calls to the
//! driver whose arguments are strings and u32s (written little-endian), and
//! reading headers and the basic-typed arguments of a body (in either byte
//! order). Watching bus names so costs a few kilobytes of code instead of a
//! D-Bus library and its dependencies, which matters for the manager's
//! memory target.
//!
//! [`watch_names`] is the manager's event source: one task and one
//! connection per manager, shared by every Type=dbus unit, made when the
//! first of them starts (supervisor::manager::bus).

use std::fmt;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::net::UnixStream as StdStream;
use std::path::PathBuf;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::sync::mpsc;

/// The bus driver's name (and interface).
pub const DRIVER: &str = "org.freedesktop.DBus";
const DRIVER_PATH: &str = "/org/freedesktop/DBus";
/// Larger messages are refused before they are read: what the driver sends us is small.
const MAX_MESSAGE: usize = 1 << 20;

/// Message types.
const METHOD_CALL: u8 = 1;
const METHOD_RETURN: u8 = 2;
const ERROR: u8 = 3;
const SIGNAL: u8 = 4;
/// Header flags.
const NO_REPLY_EXPECTED: u8 = 1;
const NO_AUTO_START: u8 = 2;

/// Errors of the D-Bus client; each names the bus address.
#[derive(Debug, thiserror::Error)]
pub enum DbusError {
    /// No address of the list is one corral can connect to.
    #[error(
        "no usable D-Bus address in {address:?} (corral connects to unix:path= and unix:abstract= addresses)"
    )]
    NoAddress {
        /// The address list as given.
        address: String,
    },
    /// The socket could not be connected (nothing listens there, no such file, ...).
    #[error("cannot connect to the D-Bus bus at {address}: {source}")]
    Connect {
        /// The bus address.
        address: String,
        /// The OS error.
        source: io::Error,
    },
    /// Reading or writing the connection failed.
    #[error("the connection to the D-Bus bus at {address} failed: {source}")]
    Io {
        /// The bus address.
        address: String,
        /// The OS error.
        source: io::Error,
    },
    /// The bus closed the connection.
    #[error("the D-Bus bus at {address} closed the connection")]
    Closed {
        /// The bus address.
        address: String,
    },
    /// The bus did not accept our SASL EXTERNAL authentication.
    #[error("the D-Bus bus at {address} refused authentication: {reply:?}")]
    Auth {
        /// The bus address.
        address: String,
        /// What it answered.
        reply: String,
    },
    /// The bus sent something that is not a D-Bus message.
    #[error("the D-Bus bus at {address} sent a malformed message: {reason}")]
    Protocol {
        /// The bus address.
        address: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A method call got an error reply.
    #[error("{method} on the D-Bus bus at {address} failed: {name}: {message}")]
    Call {
        /// The bus address.
        address: String,
        /// The method called.
        method: String,
        /// The D-Bus error name.
        name: String,
        /// Its message.
        message: String,
    },
}

/// Whether `name` is a valid well-known bus name (what `BusName=` takes):
/// at most 255 bytes, two or more dot-separated elements of letters, digits,
/// `_` and `-`, none starting with a digit.
pub fn valid_bus_name(name: &str) -> bool {
    name.len() <= 255
        && name.contains('.')
        && name.split('.').all(|e| {
            !e.is_empty()
                && !e.starts_with(|c: char| c.is_ascii_digit())
                && e.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        })
}

/// The session bus's address as libdbus finds it: `DBUS_SESSION_BUS_ADDRESS`,
/// else the dbus-user-session socket `unix:path=$XDG_RUNTIME_DIR/bus`.
pub fn session_address(lookup: impl Fn(&str) -> Option<String>) -> String {
    if let Some(a) = lookup("DBUS_SESSION_BUS_ADDRESS").filter(|a| !a.is_empty()) {
        return a;
    }
    let runtime = lookup("XDG_RUNTIME_DIR")
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| format!("/run/user/{}", nix::unistd::geteuid()));
    format!("unix:path={runtime}/bus")
}

/// Where a bus listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusAddress {
    /// `unix:path=`: a socket file.
    Path(PathBuf),
    /// `unix:abstract=`: a Linux abstract socket name (without its leading NUL).
    Abstract(Vec<u8>),
}

impl fmt::Display for BusAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BusAddress::Path(p) => write!(f, "unix:path={}", p.display()),
            BusAddress::Abstract(n) => write!(f, "unix:abstract={}", String::from_utf8_lossy(n)),
        }
    }
}

/// Undoes the `%XX` escapes of a D-Bus address value.
fn unescape(v: &str) -> Option<Vec<u8>> {
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(out)
}

impl BusAddress {
    /// The first address of a `;`-separated list that corral can connect to
    /// (`unix:path=` or `unix:abstract=`); others (`tcp:`, `unix:tmpdir=`,
    /// which only servers use, ...) are skipped.
    pub fn parse(list: &str) -> Result<BusAddress, DbusError> {
        for entry in list.split(';') {
            let Some(rest) = entry.trim().strip_prefix("unix:") else {
                continue;
            };
            for kv in rest.split(',') {
                let addr = match kv.split_once('=') {
                    Some(("path", v)) => unescape(v)
                        .filter(|v| !v.is_empty())
                        .map(|v| BusAddress::Path(PathBuf::from(std::ffi::OsString::from_vec(v)))),
                    Some(("abstract", v)) => unescape(v)
                        .filter(|v| !v.is_empty())
                        .map(BusAddress::Abstract),
                    _ => None,
                };
                if let Some(a) = addr {
                    return Ok(a);
                }
            }
        }
        Err(DbusError::NoAddress {
            address: list.to_string(),
        })
    }

    /// Connects a non-blocking socket to the bus. A Unix stream connect
    /// completes or fails at once (a full listen queue fails too, rather
    /// than wait), so this may run on the manager thread.
    pub fn connect(&self) -> Result<StdStream, DbusError> {
        use nix::sys::socket::{AddressFamily, SockFlag, SockType, UnixAddr, connect, socket};
        let err = |e: nix::errno::Errno| DbusError::Connect {
            address: self.to_string(),
            source: e.into(),
        };
        let addr = match self {
            BusAddress::Path(p) => UnixAddr::new(p.as_path()),
            BusAddress::Abstract(n) => UnixAddr::new_abstract(n),
        }
        .map_err(err)?;
        let fd = socket(
            AddressFamily::Unix,
            SockType::Stream,
            SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
            None,
        )
        .map_err(err)?;
        connect(fd.as_raw_fd(), &addr).map_err(err)?;
        Ok(StdStream::from(fd))
    }
}

/// An argument of a method call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arg<'a> {
    /// A string (`s`).
    Str(&'a str),
    /// A u32 (`u`).
    U32(u32),
}

/// A basic-typed argument of a message read from the bus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// `s`, `o` or `g`.
    Str(String),
    /// `u`, `i`, `b` or `y`.
    U32(u32),
    /// `as`: an array of strings.
    StrList(Vec<String>),
}

/// A message read from the bus: its header fields and the arguments of its
/// body up to the first one that is not of a basic type.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Message {
    /// 1 method call, 2 method return, 3 error, 4 signal.
    pub kind: u8,
    /// Header flags (1: no reply expected).
    pub flags: u8,
    /// Its serial.
    pub serial: u32,
    /// The serial of the call it answers.
    pub reply_serial: Option<u32>,
    /// The sender's bus name.
    pub sender: Option<String>,
    /// The object path.
    pub path: Option<String>,
    /// The interface.
    pub interface: Option<String>,
    /// The method or signal name.
    pub member: Option<String>,
    /// The error name of an error reply.
    pub error_name: Option<String>,
    /// The arguments.
    pub args: Vec<Value>,
}

impl Message {
    /// The string argument at `i`.
    pub fn str_arg(&self, i: usize) -> Option<&str> {
        match self.args.get(i) {
            Some(Value::Str(s)) => Some(s),
            _ => None,
        }
    }

    /// The integer argument at `i`.
    pub fn u32_arg(&self, i: usize) -> Option<u32> {
        match self.args.get(i) {
            Some(Value::U32(v)) => Some(*v),
            _ => None,
        }
    }
}

/// Writes the little-endian marshalling.
#[derive(Default)]
struct Enc {
    b: Vec<u8>,
}

impl Enc {
    fn pad(&mut self, n: usize) {
        self.b.resize(self.b.len().next_multiple_of(n), 0);
    }

    fn u32(&mut self, v: u32) {
        self.pad(4);
        self.b.extend_from_slice(&v.to_le_bytes());
    }

    fn str(&mut self, s: &str) {
        self.u32(s.len() as u32);
        self.b.extend_from_slice(s.as_bytes());
        self.b.push(0);
    }

    fn sig(&mut self, s: &str) {
        self.b.push(s.len() as u8);
        self.b.extend_from_slice(s.as_bytes());
        self.b.push(0);
    }

    /// A header field: (code, variant of type `ty`).
    fn field(&mut self, code: u8, ty: &str, value: &str) {
        self.pad(8);
        self.b.push(code);
        self.sig(ty);
        if ty == "g" {
            self.sig(value);
        } else {
            self.str(value);
        }
    }
}

/// A method call to the bus driver.
fn method_call(serial: u32, flags: u8, member: &str, args: &[Arg<'_>]) -> Vec<u8> {
    let mut body = Enc::default();
    let mut signature = String::new();
    for a in args {
        match a {
            Arg::Str(s) => {
                signature.push('s');
                body.str(s);
            }
            Arg::U32(v) => {
                signature.push('u');
                body.u32(*v);
            }
        }
    }
    let mut m = Enc::default();
    m.b.extend_from_slice(&[b'l', METHOD_CALL, flags, 1]);
    m.u32(body.b.len() as u32);
    m.u32(serial);
    m.u32(0);
    let start = m.b.len();
    m.field(1, "o", DRIVER_PATH);
    m.field(2, "s", DRIVER);
    m.field(3, "s", member);
    m.field(6, "s", DRIVER);
    if !signature.is_empty() {
        m.field(8, "g", &signature);
    }
    let fields = (m.b.len() - start) as u32;
    m.b[12..16].copy_from_slice(&fields.to_le_bytes());
    // The body starts 8-aligned, so its alignment within the message is its own.
    m.pad(8);
    m.b.extend_from_slice(&body.b);
    m.b
}

/// Reads the marshalling, in the byte order the message says.
struct Dec<'a> {
    b: &'a [u8],
    pos: usize,
    big: bool,
}

type Parse<T> = Result<T, &'static str>;

impl<'a> Dec<'a> {
    fn take(&mut self, n: usize) -> Parse<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.b.len());
        let end = end.ok_or("truncated")?;
        let s = &self.b[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn align(&mut self, n: usize) -> Parse<()> {
        let to = self.pos.next_multiple_of(n);
        self.take(to - self.pos).map(|_| ())
    }

    fn u8(&mut self) -> Parse<u8> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Parse<u32> {
        self.align(4)?;
        let b: [u8; 4] = self.take(4)?.try_into().expect("four bytes");
        Ok(if self.big {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        })
    }

    fn text(&mut self, n: usize) -> Parse<String> {
        let s = self.take(n + 1)?;
        if s[n] != 0 {
            return Err("string without its terminating NUL");
        }
        String::from_utf8(s[..n].to_vec()).map_err(|_| "string is not UTF-8")
    }

    fn str(&mut self) -> Parse<String> {
        let n = self.u32()? as usize;
        self.text(n)
    }

    fn sig(&mut self) -> Parse<String> {
        let n = usize::from(self.u8()?);
        self.text(n)
    }
}

/// The length of the message at the start of `buf`, once its fixed header has arrived.
fn message_len(buf: &[u8]) -> Parse<Option<usize>> {
    if buf.len() < 16 {
        return Ok(None);
    }
    let big = match buf[0] {
        b'l' => false,
        b'B' => true,
        _ => return Err("bad byte-order mark"),
    };
    if buf[3] != 1 {
        return Err("unsupported protocol version");
    }
    let word = |i: usize| {
        let b: [u8; 4] = buf[i..i + 4].try_into().expect("four bytes");
        (if big {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        }) as usize
    };
    let total = (16 + word(12)).next_multiple_of(8) + word(4);
    if total > MAX_MESSAGE {
        return Err("message larger than 1 MiB");
    }
    Ok(Some(total))
}

/// Parses one whole message (`message_len` bytes).
fn parse_message(b: &[u8]) -> Parse<Message> {
    let mut d = Dec {
        b,
        pos: 8,
        big: b[0] == b'B',
    };
    let mut m = Message {
        kind: b[1],
        flags: b[2],
        serial: d.u32()?,
        ..Message::default()
    };
    let end = 16 + d.u32()? as usize;
    let mut signature = String::new();
    while d.pos < end {
        d.align(8)?;
        let code = d.u8()?;
        match d.sig()?.as_str() {
            "s" | "o" => {
                let v = Some(d.str()?);
                match code {
                    1 => m.path = v,
                    2 => m.interface = v,
                    3 => m.member = v,
                    4 => m.error_name = v,
                    7 => m.sender = v,
                    _ => {}
                }
            }
            "g" => {
                let v = d.sig()?;
                if code == 8 {
                    signature = v;
                }
            }
            "u" => {
                let v = d.u32()?;
                if code == 5 {
                    m.reply_serial = Some(v);
                }
            }
            // A field of a type this reader cannot skip: the rest of the header is ignored.
            _ => break,
        }
    }
    d.pos = end;
    d.align(8)?;
    let mut types = signature.chars().peekable();
    while let Some(c) = types.next() {
        let v = match c {
            's' | 'o' => Value::Str(d.str()?),
            'g' => Value::Str(d.sig()?),
            'u' | 'i' | 'b' => Value::U32(d.u32()?),
            'y' => Value::U32(u32::from(d.u8()?)),
            'a' if types.peek() == Some(&'s') => {
                types.next();
                let len = d.u32()? as usize;
                let end = d.pos.checked_add(len).ok_or("truncated")?;
                let mut items = Vec::new();
                while d.pos < end {
                    items.push(d.str()?);
                }
                if d.pos != end {
                    return Err("array length does not end at an element");
                }
                Value::StrList(items)
            }
            _ => break,
        };
        m.args.push(v);
    }
    Ok(m)
}

/// The header of a reply to the call `reply_serial`: no flags, our serial,
/// the body's length, and the fields (REPLY_SERIAL first).
fn reply_head(kind: u8, serial: u32, reply_serial: u32, body_len: usize) -> Enc {
    let mut m = Enc::default();
    m.b.extend_from_slice(&[b'l', kind, NO_REPLY_EXPECTED, 1]);
    m.u32(body_len as u32);
    m.u32(serial);
    m.u32(0);
    m.pad(8);
    m.b.push(5);
    m.sig("u");
    m.u32(reply_serial);
    m
}

/// A method return without a body, answering the call `reply_serial`.
pub fn method_return(serial: u32, reply_serial: u32) -> Vec<u8> {
    let mut m = reply_head(METHOD_RETURN, serial, reply_serial, 0);
    let fields = (m.b.len() - 16) as u32;
    m.b[12..16].copy_from_slice(&fields.to_le_bytes());
    m.pad(8);
    m.b
}

/// An error reply `name` with the text `message`, answering the call `reply_serial`.
pub fn error_reply(serial: u32, reply_serial: u32, name: &str, message: &str) -> Vec<u8> {
    let mut body = Enc::default();
    body.str(message);
    let mut m = reply_head(ERROR, serial, reply_serial, body.b.len());
    m.field(4, "s", name);
    m.field(8, "g", "s");
    let fields = (m.b.len() - 16) as u32;
    m.b[12..16].copy_from_slice(&fields.to_le_bytes());
    m.pad(8);
    m.b.extend_from_slice(&body.b);
    m.b
}

/// The length of the message at the start of `buf` once its fixed header
/// has arrived (`None` before), and the message once all of it has.
pub fn next_message(buf: &[u8]) -> Result<Option<(usize, Message)>, &'static str> {
    match message_len(buf)? {
        Some(n) if buf.len() >= n => Ok(Some((n, parse_message(&buf[..n])?))),
        _ => Ok(None),
    }
}

/// One authenticated connection to a bus.
pub struct Connection {
    stream: UnixStream,
    address: String,
    /// Bytes read but not yet parsed: a partly read message survives a cancelled read.
    buf: Vec<u8>,
    /// Calls queued by [`Connection::queue`], written by [`Connection::flush`].
    out: Vec<u8>,
    serial: u32,
    unique_name: String,
}

impl Connection {
    /// Connects to `address`, authenticates and says Hello.
    pub async fn open(address: &BusAddress) -> Result<Connection, DbusError> {
        Self::handshake(address.connect()?, address).await
    }

    /// Authenticates on a connected socket (SASL EXTERNAL: the bus checks
    /// our uid against the socket's peer credentials) and says Hello.
    pub async fn handshake(
        stream: StdStream,
        address: &BusAddress,
    ) -> Result<Connection, DbusError> {
        let addr = address.to_string();
        let io = |source| DbusError::Io {
            address: addr.clone(),
            source,
        };
        let mut stream = UnixStream::from_std(stream).map_err(io)?;
        let uid = nix::unistd::geteuid().as_raw().to_string();
        let hex: String = uid.bytes().map(|b| format!("{b:02x}")).collect();
        stream
            .write_all(format!("\0AUTH EXTERNAL {hex}\r\n").as_bytes())
            .await
            .map_err(io)?;
        // The bus answers one line and sends nothing more until BEGIN.
        let mut line = Vec::new();
        while !line.ends_with(b"\r\n") {
            let mut chunk = [0u8; 128];
            let n = stream.read(&mut chunk).await.map_err(io)?;
            if n == 0 {
                return Err(DbusError::Closed { address: addr });
            }
            line.extend_from_slice(&chunk[..n]);
            if line.len() > 1024 {
                break;
            }
        }
        let reply = String::from_utf8_lossy(&line).trim_end().to_string();
        if !reply.starts_with("OK ") {
            return Err(DbusError::Auth {
                address: addr,
                reply,
            });
        }
        stream.write_all(b"BEGIN\r\n").await.map_err(io)?;
        let mut conn = Connection {
            stream,
            address: addr,
            buf: Vec::new(),
            out: Vec::new(),
            serial: 0,
            unique_name: String::new(),
        };
        let hello = conn.call("Hello", &[]).await?;
        conn.unique_name = hello
            .str_arg(0)
            .ok_or_else(|| conn.protocol("Hello returned no name"))?
            .to_string();
        Ok(conn)
    }

    /// Our unique name on the bus (`:1.42`).
    pub fn unique_name(&self) -> &str {
        &self.unique_name
    }

    /// The bus address, as messages name it.
    pub fn address(&self) -> &str {
        &self.address
    }

    fn protocol(&self, reason: &'static str) -> DbusError {
        DbusError::Protocol {
            address: self.address.clone(),
            reason,
        }
    }

    fn io(&self, source: io::Error) -> DbusError {
        DbusError::Io {
            address: self.address.clone(),
            source,
        }
    }

    fn call_error(&self, method: &str, m: &Message) -> DbusError {
        DbusError::Call {
            address: self.address.clone(),
            method: method.to_string(),
            name: m.error_name.clone().unwrap_or_default(),
            message: m.str_arg(0).unwrap_or_default().to_string(),
        }
    }

    /// Queues a method call to the bus driver (never auto-starting a
    /// service) until the next [`Connection::flush`]; returns its serial.
    pub fn queue(&mut self, member: &str, args: &[Arg<'_>], no_reply: bool) -> u32 {
        self.serial = self.serial.wrapping_add(1).max(1);
        let flags = NO_AUTO_START | if no_reply { NO_REPLY_EXPECTED } else { 0 };
        self.out
            .extend_from_slice(&method_call(self.serial, flags, member, args));
        self.serial
    }

    /// Writes the queued calls.
    pub async fn flush(&mut self) -> Result<(), DbusError> {
        let out = std::mem::take(&mut self.out);
        self.stream.write_all(&out).await.map_err(|e| self.io(e))
    }

    /// Reads the next message. Cancel-safe: what was read stays buffered.
    pub async fn read(&mut self) -> Result<Message, DbusError> {
        loop {
            let len = message_len(&self.buf).map_err(|r| self.protocol(r))?;
            if let Some(len) = len
                && self.buf.len() >= len
            {
                let m = parse_message(&self.buf[..len]).map_err(|r| self.protocol(r))?;
                self.buf.drain(..len);
                return Ok(m);
            }
            self.buf.reserve(4096);
            let n = self
                .stream
                .read_buf(&mut self.buf)
                .await
                .map_err(|e| self.io(e))?;
            if n == 0 {
                return Err(DbusError::Closed {
                    address: self.address.clone(),
                });
            }
        }
    }

    /// Calls a method of the bus driver and waits for its reply, dropping
    /// what else arrives meanwhile; an error reply is an error.
    pub async fn call(&mut self, member: &str, args: &[Arg<'_>]) -> Result<Message, DbusError> {
        let serial = self.queue(member, args, false);
        self.flush().await?;
        loop {
            let m = self.read().await?;
            if m.reply_serial != Some(serial) || !matches!(m.kind, METHOD_RETURN | ERROR) {
                continue;
            }
            if m.kind == ERROR {
                return Err(self.call_error(member, &m));
            }
            return Ok(m);
        }
    }

    /// RequestName without queueing (DBUS_NAME_FLAG_DO_NOT_QUEUE): 1 when
    /// we own it now, 3 when someone else does, 4 when we already did.
    pub async fn request_name(&mut self, name: &str) -> Result<u32, DbusError> {
        let m = self
            .call("RequestName", &[Arg::Str(name), Arg::U32(4)])
            .await?;
        m.u32_arg(0)
            .ok_or_else(|| self.protocol("RequestName returned no result"))
    }

    /// ReleaseName: 1 when released, 2 when it did not exist, 3 when not ours.
    pub async fn release_name(&mut self, name: &str) -> Result<u32, DbusError> {
        let m = self.call("ReleaseName", &[Arg::Str(name)]).await?;
        m.u32_arg(0)
            .ok_or_else(|| self.protocol("ReleaseName returned no result"))
    }
}

/// What the manager asks of its bus connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchCmd {
    /// Report the owner of this name now and whenever it changes.
    Add(String),
    /// Stop watching this name (once per `Add`).
    Remove(String),
}

/// What the bus connection tells the manager.
#[derive(Debug)]
pub enum Report {
    /// A watched name's owner: at the `Add`, and at every change.
    Owner {
        /// The name.
        name: String,
        /// Its owner's unique name; None when it has none.
        owner: Option<String>,
    },
    /// The connection failed (or never came up); it is gone.
    Down(DbusError),
}

/// The match rule for the driver's NameOwnerChanged signals about `name`.
fn owner_rule(name: &str) -> String {
    format!(
        "type='signal',sender='{DRIVER}',path='{DRIVER_PATH}',interface='{DRIVER}',\
         member='NameOwnerChanged',arg0='{name}'"
    )
}

/// A call whose reply the watcher waits for.
enum Pending {
    Match,
    Owner(String),
}

/// Runs the manager's bus connection: authenticates on `stream`, then for
/// each `Add` installs a NameOwnerChanged match and asks GetNameOwner (in
/// that order, so no change can fall between them), and reports every owner
/// it learns. Ends when `cmds` closes or `report` returns false; reports
/// `Down` when the connection fails.
pub async fn watch_names(
    stream: StdStream,
    address: BusAddress,
    mut cmds: mpsc::UnboundedReceiver<WatchCmd>,
    mut report: impl FnMut(Report) -> bool,
) {
    let mut conn = match Connection::handshake(stream, &address).await {
        Ok(c) => c,
        Err(e) => {
            report(Report::Down(e));
            return;
        }
    };
    // A handful at most: the calls of the last few Adds not answered yet.
    let mut pending: Vec<(u32, Pending)> = Vec::new();
    let ended: Result<(), DbusError> = async {
        loop {
            tokio::select! {
                cmd = cmds.recv() => match cmd {
                    None => return Ok(()),
                    Some(cmd) => {
                        match cmd {
                            WatchCmd::Add(name) => {
                                let s = conn.queue("AddMatch", &[Arg::Str(&owner_rule(&name))], false);
                                pending.push((s, Pending::Match));
                                let s = conn.queue("GetNameOwner", &[Arg::Str(&name)], false);
                                pending.push((s, Pending::Owner(name)));
                            }
                            WatchCmd::Remove(name) => {
                                conn.queue("RemoveMatch", &[Arg::Str(&owner_rule(&name))], true);
                            }
                        }
                        conn.flush().await?;
                    }
                },
                msg = conn.read() => {
                    if let Some(r) = owner_report(&conn, msg?, &mut pending)?
                        && !report(r)
                    {
                        return Ok(());
                    }
                }
            }
        }
    }
    .await;
    if let Err(e) = ended {
        report(Report::Down(e));
    }
}

/// What a message read by the watcher reports, if anything.
fn owner_report(
    conn: &Connection,
    m: Message,
    pending: &mut Vec<(u32, Pending)>,
) -> Result<Option<Report>, DbusError> {
    match m.kind {
        METHOD_RETURN | ERROR => {
            let Some(i) = pending.iter().position(|(s, _)| Some(*s) == m.reply_serial) else {
                return Ok(None);
            };
            let (_, p) = pending.swap_remove(i);
            match p {
                // Without the match no change would be seen: the connection is useless.
                Pending::Match if m.kind == ERROR => Err(conn.call_error("AddMatch", &m)),
                Pending::Match => Ok(None),
                // NameHasNoOwner is the usual error; any error means no owner known.
                Pending::Owner(name) => Ok(Some(Report::Owner {
                    owner: (m.kind == METHOD_RETURN)
                        .then(|| m.str_arg(0).map(str::to_string))
                        .flatten(),
                    name,
                })),
            }
        }
        // Only the driver's own signals count (the bus sets the sender field).
        SIGNAL
            if m.sender.as_deref() == Some(DRIVER)
                && m.interface.as_deref() == Some(DRIVER)
                && m.member.as_deref() == Some("NameOwnerChanged") =>
        {
            let (Some(name), Some(new)) = (m.str_arg(0), m.str_arg(2)) else {
                return Ok(None);
            };
            Ok(Some(Report::Owner {
                name: name.to_string(),
                owner: (!new.is_empty()).then(|| new.to_string()),
            }))
        }
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_take_the_first_usable_unix_entry() {
        assert_eq!(
            BusAddress::parse("unix:path=/run/user/1000/bus").unwrap(),
            BusAddress::Path("/run/user/1000/bus".into())
        );
        assert_eq!(
            BusAddress::parse("tcp:host=localhost,port=1;unix:abstract=/tmp/dbus-x,guid=01ab")
                .unwrap(),
            BusAddress::Abstract(b"/tmp/dbus-x".to_vec())
        );
        assert_eq!(
            BusAddress::parse("unix:tmpdir=/tmp;unix:path=/tmp/a%20b%2cc").unwrap(),
            BusAddress::Path("/tmp/a b,c".into())
        );
        let e = BusAddress::parse("tcp:host=localhost,port=1;unix:path=%zz").unwrap_err();
        assert!(e.to_string().contains("no usable D-Bus address"), "{e}");
        assert_eq!(
            BusAddress::Abstract(b"/tmp/x".to_vec()).to_string(),
            "unix:abstract=/tmp/x"
        );
    }

    #[test]
    fn the_session_address_defaults_to_the_runtime_dir() {
        let env = |k: &str| (k == "XDG_RUNTIME_DIR").then(|| "/run/user/7".to_string());
        assert_eq!(session_address(env), "unix:path=/run/user/7/bus");
        let env = |k: &str| match k {
            "DBUS_SESSION_BUS_ADDRESS" => Some("unix:abstract=/x".to_string()),
            _ => Some("/run/user/7".to_string()),
        };
        assert_eq!(session_address(env), "unix:abstract=/x");
    }

    #[test]
    fn bus_names() {
        for ok in [
            "ca.desrt.dconf",
            "org.gnome.SettingsDaemon.Power",
            "a-b._c.d9",
        ] {
            assert!(valid_bus_name(ok), "{ok}");
        }
        for bad in [
            "", "single", "a..b", ":1.42", "org.9x", "org.a'b", "a.b,c", ".a.b",
        ] {
            assert!(!valid_bus_name(bad), "{bad}");
        }
    }

    #[test]
    fn a_method_call_reads_back() {
        let b = method_call(
            7,
            NO_AUTO_START,
            "RequestName",
            &[Arg::Str("a.b"), Arg::U32(4)],
        );
        assert_eq!(&b[..4], &[b'l', METHOD_CALL, NO_AUTO_START, 1]);
        assert_eq!(message_len(&b), Ok(Some(b.len())));
        assert_eq!(message_len(&b[..15]), Ok(None));
        let m = parse_message(&b).unwrap();
        assert_eq!(m.kind, METHOD_CALL);
        assert_eq!(m.serial, 7);
        assert_eq!(m.path.as_deref(), Some(DRIVER_PATH));
        assert_eq!(m.interface.as_deref(), Some(DRIVER));
        assert_eq!(m.member.as_deref(), Some("RequestName"));
        assert_eq!(m.args, vec![Value::Str("a.b".into()), Value::U32(4)]);
        // No body: no signature field, header still padded to 8.
        let h = method_call(1, 0, "Hello", &[]);
        assert_eq!(h.len() % 8, 0);
        assert!(parse_message(&h).unwrap().args.is_empty());
    }

    /// A NameOwnerChanged signal as a big-endian peer would marshal it.
    fn big_endian_signal() -> Vec<u8> {
        let mut m = vec![b'B', SIGNAL, 0, 1];
        let mut body = Vec::new();
        for s in ["a.b", ":1.5", ""] {
            while body.len() % 4 != 0 {
                body.push(0);
            }
            body.extend_from_slice(&(s.len() as u32).to_be_bytes());
            body.extend_from_slice(s.as_bytes());
            body.push(0);
        }
        m.extend_from_slice(&(body.len() as u32).to_be_bytes());
        m.extend_from_slice(&9u32.to_be_bytes());
        let mut f = Vec::new();
        let mut field = |code: u8, ty: &str, v: &str| {
            while (16 + f.len()) % 8 != 0 {
                f.push(0);
            }
            f.extend_from_slice(&[code, 1, ty.as_bytes()[0], 0]);
            if ty == "g" {
                f.push(v.len() as u8);
            } else {
                f.extend_from_slice(&(v.len() as u32).to_be_bytes());
            }
            f.extend_from_slice(v.as_bytes());
            f.push(0);
        };
        field(7, "s", DRIVER);
        field(2, "s", DRIVER);
        field(3, "s", "NameOwnerChanged");
        field(8, "g", "sss");
        m.extend_from_slice(&(f.len() as u32).to_be_bytes());
        m.extend_from_slice(&f);
        while m.len() % 8 != 0 {
            m.push(0);
        }
        m.extend_from_slice(&body);
        m
    }

    #[test]
    fn big_endian_signals_parse() {
        let b = big_endian_signal();
        assert_eq!(message_len(&b), Ok(Some(b.len())));
        let m = parse_message(&b).unwrap();
        assert_eq!(m.kind, SIGNAL);
        assert_eq!(m.serial, 9);
        assert_eq!(m.sender.as_deref(), Some(DRIVER));
        assert_eq!(m.member.as_deref(), Some("NameOwnerChanged"));
        assert_eq!(
            (m.str_arg(0), m.str_arg(1), m.str_arg(2)),
            (Some("a.b"), Some(":1.5"), Some(""))
        );
    }

    #[test]
    fn malformed_messages_are_refused() {
        let mut b = method_call(1, 0, "Hello", &[]);
        b[0] = b'x';
        assert_eq!(message_len(&b), Err("bad byte-order mark"));
        let mut b = method_call(1, 0, "Hello", &[]);
        b[4..8].copy_from_slice(&(64u32 << 20).to_le_bytes());
        assert_eq!(message_len(&b), Err("message larger than 1 MiB"));
        // A string length that runs past the end.
        let mut b = method_call(1, 0, "GetNameOwner", &[Arg::Str("a.b")]);
        let n = b.len();
        b[n - 8..n - 4].copy_from_slice(&1000u32.to_le_bytes());
        assert_eq!(parse_message(&b), Err("truncated"));
    }
}
