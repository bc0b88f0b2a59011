//! The fd holder: a tiny process (`corrald --fd-holder`, started by the
//! manager) that keeps a copy of the read end of every service's
//! stdout/stderr pipe, so that the pipes outlive a manager that dies. A
//! writer then blocks on the full pipe (back-pressure) instead of dying of
//! SIGPIPE, and the next manager takes every pipe back and goes on reading
//! where its predecessor stopped, into the same unit and invocation. It
//! keeps the socket units' listening fds and the services' stored fds
//! (`FDSTORE=1`) the same way, for the successor to take back.
//!
//! The manager binds a SOCK_SEQPACKET socket in its runtime directory
//! ([`SOCKET`], 0600) and hands the listening fd to the holder as its stdin;
//! it lives in its own cgroup beside the units' (docs/CGROUPS.md), so no
//! unit stop touches it. One message per packet, a byte of kind first:
//!
//! - `D` id meta, with one fd (SCM_RIGHTS): keep it. One sendmsg per fd.
//!   The metadata is JSON the holder does not read; its `kind` field
//!   ([`Kind`], absent for a pipe's read end) says whose the fd is, so that
//!   each kind goes back to its owner in the next manager.
//! - `X` id: the manager read EOF; close it.
//! - `M` id meta: replace the metadata of the fd kept as id (a reader
//!   stopped for `daemon-reexec` leaves its unfinished line there).
//! - `T`: send every fd kept, one `F` id meta packet each, then `E`.
//! - `S`: answered by `E` once every packet before it is handled.
//! - `Q`: the manager shuts down cleanly; exit.
//!
//! When the manager's connection closes without `Q` (a crash), the holder
//! waits for the next one; it exits once it holds nothing.
//!
//! A successor gives each kind back to its owner: the output pipes to the
//! journal readers, the ends of a runit log pipe to that unit's logger, the
//! listening fds to their socket units, the stored fds to their services'
//! stores. A kind is a new variant, not a new message.

use std::collections::BTreeMap;
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use nix::sys::socket::{
    self, AddressFamily, Backlog, ControlMessage, ControlMessageOwned, MsgFlags, SockFlag,
    SockType, UnixAddr,
};
use serde::{Deserialize, Serialize};

use super::output::Stream;
use super::state::Pid;
use crate::journal::ingest::Unfinished;

/// The holder's socket, in the manager's runtime directory.
pub const SOCKET: &str = "fd-holder.sock";

/// The holder's cgroup, below the manager's root beside the units'.
pub const CGROUP: &str = "corral-fd-holder";

/// The argument that starts `corrald` as the holder.
pub const FLAG: &str = "--fd-holder";

/// The largest packet: a kind, an id, a metadata record (with an unfinished
/// line of up to `ingest::MAX_UNFINISHED` bytes, hex-encoded).
const MAX_PACKET: usize = 16 * 1024;

/// Errors of the holder and of its clients.
#[derive(Debug, thiserror::Error)]
pub enum FdHolderError {
    /// A socket operation on the holder's socket failed.
    #[error("cannot {op} the fd holder's socket {}: {source}", path.display())]
    Socket {
        /// What was attempted.
        op: &'static str,
        /// The socket.
        path: PathBuf,
        /// The OS error.
        source: nix::errno::Errno,
    },
    /// The holder answered something this manager does not understand.
    #[error("the fd holder answered a malformed packet: {0}")]
    Protocol(String),
}

/// What a kept fd is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// The read end of a service's stdout/stderr pipe ([`Meta`] says whose).
    #[default]
    PipeRead,
    /// The read end of a runit service's log pipe: stdin of `log/run`.
    LogPipeRead,
    /// The write end of a runit service's log pipe: stdout of `run` and `finish`.
    LogPipeWrite,
    /// A socket unit's listening fd; the name is its `Listen*=` entry.
    Listening,
    /// An fd a service stored (`FDSTORE=1`); the name is its `FDNAME=`.
    Stored,
}

/// Every deposit's metadata starts with this: the kind of the fd, its unit,
/// and its name within the unit (the meaning depends on the kind).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tag {
    /// What the fd is (a pipe's [`Meta`] carries none: [`Kind::PipeRead`]).
    #[serde(default)]
    pub kind: Kind,
    /// The unit.
    pub unit: String,
    /// Its name within the unit.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
}

/// One fd the holder keeps, as [`Client::take_all`] returns it.
#[derive(Debug)]
pub struct Kept {
    /// Its id, to drop it by.
    pub id: u64,
    /// Its kind, unit and name.
    pub tag: Tag,
    /// For a pipe's read end: the whole metadata.
    pub meta: Option<Meta>,
    /// The fd (a copy: the holder keeps its own).
    pub fd: OwnedFd,
}

/// Who wrote into a kept pipe: enough to go on reading it as before.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    /// The unit.
    pub unit: String,
    /// INVOCATION_ID.
    pub invocation: String,
    /// SYSLOG_IDENTIFIER.
    pub identifier: String,
    /// `_COMM` (absent in what a manager from before it deposited).
    #[serde(default)]
    pub comm: String,
    /// The process writing.
    pub pid: Pid,
    /// Which of its streams.
    pub stream: Stream,
    /// SyslogLevel=.
    pub priority: u8,
    /// SyslogLevelPrefix=.
    pub level_prefix: bool,
    /// The unfinished line of a reader stopped by `daemon-reexec`, hex-encoded.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub partial: String,
    /// That line continues an entry cut at MAX_LINE.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub continuing: bool,
}

impl Meta {
    /// The unfinished line a stopped reader left (empty when none).
    pub fn unfinished(&self) -> Unfinished {
        let hex = self.partial.as_bytes();
        let digit = |c: u8| (c as char).to_digit(16).unwrap_or(0) as u8;
        Unfinished {
            bytes: hex
                .chunks_exact(2)
                .map(|p| digit(p[0]) << 4 | digit(p[1]))
                .collect(),
            continuing: self.continuing,
        }
    }

    /// Keeps `left` as the unfinished line, for the next reader.
    pub fn set_unfinished(&mut self, left: &Unfinished) {
        use std::fmt::Write;
        self.partial.clear();
        for b in &left.bytes {
            let _ = write!(self.partial, "{b:02x}");
        }
        self.continuing = left.continuing;
    }
}

/// Runs the holder on the listening socket `listener` until the manager
/// says `Q`, or leaves holding nothing.
pub fn serve(listener: OwnedFd) -> Result<(), FdHolderError> {
    let err = |op| {
        move |source| FdHolderError::Socket {
            op,
            path: PathBuf::from(SOCKET),
            source,
        }
    };
    let mut kept: BTreeMap<u64, (OwnedFd, Vec<u8>)> = BTreeMap::new();
    loop {
        let raw = socket::accept(listener.as_raw_fd()).map_err(err("accept on"))?;
        // SAFETY: accept returned a new fd that nothing else owns.
        let conn = unsafe { OwnedFd::from_raw_fd(raw) };
        loop {
            let Some((packet, fd)) = recv(conn.as_raw_fd()).map_err(err("receive on"))? else {
                break;
            };
            match (packet.first(), packet.get(1..9)) {
                (Some(b'D'), Some(id)) => {
                    if let Some(fd) = fd {
                        kept.insert(id_of(id), (fd, packet[9..].to_vec()));
                    }
                }
                (Some(b'X'), Some(id)) => {
                    kept.remove(&id_of(id));
                }
                (Some(b'M'), Some(id)) => {
                    if let Some((_, meta)) = kept.get_mut(&id_of(id)) {
                        *meta = packet[9..].to_vec();
                    }
                }
                (Some(b'T'), _) => {
                    for (id, (fd, meta)) in &kept {
                        let mut p = Vec::with_capacity(9 + meta.len());
                        p.push(b'F');
                        p.extend_from_slice(&id.to_le_bytes());
                        p.extend_from_slice(meta);
                        send(conn.as_raw_fd(), &p, Some(fd.as_raw_fd())).map_err(err("send on"))?;
                    }
                    send(conn.as_raw_fd(), b"E", None).map_err(err("send on"))?;
                }
                (Some(b'S'), _) => {
                    send(conn.as_raw_fd(), b"E", None).map_err(err("send on"))?;
                }
                (Some(b'Q'), _) => return Ok(()),
                _ => {}
            }
        }
        if kept.is_empty() {
            return Ok(());
        }
    }
}

fn id_of(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

/// One packet and the fd it carried, None at the end of the connection.
fn recv(sock: RawFd) -> nix::Result<Option<(Vec<u8>, Option<OwnedFd>)>> {
    let mut buf = vec![0u8; MAX_PACKET];
    let mut cmsg = nix::cmsg_space!([RawFd; 1]);
    let (n, fd) = {
        let mut iov = [IoSliceMut::new(&mut buf)];
        let msg =
            socket::recvmsg::<()>(sock, &mut iov, Some(&mut cmsg), MsgFlags::MSG_CMSG_CLOEXEC)?;
        let mut fd = None;
        for c in msg.cmsgs()? {
            if let ControlMessageOwned::ScmRights(fds) = c {
                for raw in fds {
                    // SAFETY: SCM_RIGHTS installed a new fd that nothing else owns.
                    let owned = unsafe { OwnedFd::from_raw_fd(raw) };
                    fd.get_or_insert(owned);
                }
            }
        }
        (msg.bytes, fd)
    };
    if n == 0 {
        return Ok(None);
    }
    buf.truncate(n);
    Ok(Some((buf, fd)))
}

fn send(sock: RawFd, packet: &[u8], fd: Option<RawFd>) -> nix::Result<()> {
    let iov = [IoSlice::new(packet)];
    let fds;
    let cmsgs: &[ControlMessage] = match fd {
        Some(f) => {
            fds = [f];
            &[ControlMessage::ScmRights(&fds)]
        }
        None => &[],
    };
    socket::sendmsg::<()>(sock, &iov, cmsgs, MsgFlags::MSG_NOSIGNAL, None).map(drop)
}

/// The manager's connection to its holder.
#[derive(Debug)]
pub struct Client {
    conn: OwnedFd,
    path: PathBuf,
    /// The next id to give a deposited fd: above every id a predecessor
    /// gave (it starts at CLOCK_MONOTONIC ns and counts one per pipe).
    next: std::sync::atomic::AtomicU64,
}

impl Client {
    /// Connects to the holder of a previous manager in `runtime_dir`, if one
    /// is still there.
    pub fn reconnect(runtime_dir: &Path) -> Option<Client> {
        let path = runtime_dir.join(SOCKET);
        let conn = seqpacket().ok()?;
        let addr = UnixAddr::new(&path).ok()?;
        socket::connect(conn.as_raw_fd(), &addr).ok()?;
        Some(Client::new(conn, path))
    }

    fn new(conn: OwnedFd, path: PathBuf) -> Client {
        Client {
            conn,
            path,
            next: std::sync::atomic::AtomicU64::new(super::readopt::monotonic_ns()),
        }
    }

    /// Binds the holder's socket in `runtime_dir` (replacing a stale one)
    /// and connects to it: the listening fd, for the holder to serve, and
    /// the client, whose connection waits in the backlog until it does.
    pub fn bind(runtime_dir: &Path) -> Result<(OwnedFd, Client), FdHolderError> {
        let path = runtime_dir.join(SOCKET);
        let err = |op| {
            let path = path.clone();
            move |source| FdHolderError::Socket { op, path, source }
        };
        let listener = seqpacket().map_err(err("create"))?;
        let addr = UnixAddr::new(&path).map_err(err("name"))?;
        let _ = std::fs::remove_file(&path);
        // The runtime directory is 0700; the socket is 0600 as well.
        let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o177));
        let bound = socket::bind(listener.as_raw_fd(), &addr);
        nix::sys::stat::umask(old);
        bound.map_err(err("bind"))?;
        socket::listen(&listener, Backlog::new(4).unwrap_or(Backlog::MAXCONN))
            .map_err(err("listen on"))?;
        let conn = seqpacket().map_err(err("create"))?;
        socket::connect(conn.as_raw_fd(), &addr).map_err(err("connect to"))?;
        Ok((listener, Client::new(conn, path)))
    }

    /// Hands a copy of `fd` to the holder with `meta`; the id to drop it by.
    pub fn deposit(&self, fd: BorrowedFd<'_>, meta: &Meta) -> Result<u64, FdHolderError> {
        self.deposit_json(fd, serde_json::to_vec(meta).unwrap_or_default())
    }

    /// Hands a copy of `fd` to the holder, tagged (any kind but a pipe's
    /// read end, which [`Client::deposit`] keeps); the id to drop it by.
    pub fn deposit_tagged(&self, fd: BorrowedFd<'_>, tag: &Tag) -> Result<u64, FdHolderError> {
        self.deposit_json(fd, serde_json::to_vec(tag).unwrap_or_default())
    }

    fn deposit_json(&self, fd: BorrowedFd<'_>, meta: Vec<u8>) -> Result<u64, FdHolderError> {
        let id = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut p = vec![b'D'];
        p.extend_from_slice(&id.to_le_bytes());
        p.extend(meta);
        send(self.conn.as_raw_fd(), &p, Some(fd.as_raw_fd())).map_err(self.err("send to"))?;
        Ok(id)
    }

    /// Tells the holder to close the fd deposited as `id` (its pipe is at EOF).
    pub fn drop_fd(&self, id: u64) {
        let mut p = vec![b'X'];
        p.extend_from_slice(&id.to_le_bytes());
        // The holder is gone or stuck: the copy it keeps is only a pipe at EOF.
        let _ = socket::send(
            self.conn.as_raw_fd(),
            &p,
            MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL,
        );
    }

    /// Waits (at most `timeout`) until the holder has handled every packet
    /// sent before: after [`Client::drop_fd`] of a listening socket, its
    /// copy is closed, so the address can be bound again at once. Whether
    /// it answered in time (a holder from before `S` never does).
    pub fn sync(&self, timeout: std::time::Duration) -> bool {
        use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
        use std::os::fd::AsFd;
        if send(self.conn.as_raw_fd(), b"S", None).is_err() {
            return false;
        }
        let ms = PollTimeout::try_from(timeout).unwrap_or(PollTimeout::MAX);
        let mut fds = [PollFd::new(self.conn.as_fd(), PollFlags::POLLIN)];
        if !matches!(poll(&mut fds, ms), Ok(n) if n > 0) {
            return false;
        }
        matches!(recv(self.conn.as_raw_fd()), Ok(Some((p, _))) if p.first() == Some(&b'E'))
    }

    /// Replaces the metadata of the fd deposited as `id`; answered by the
    /// next [`Client::take_all`] (one connection, packets in order).
    pub fn update(&self, id: u64, meta: &Meta) -> Result<(), FdHolderError> {
        let mut p = vec![b'M'];
        p.extend_from_slice(&id.to_le_bytes());
        p.extend(serde_json::to_vec(meta).unwrap_or_default());
        send(self.conn.as_raw_fd(), &p, None).map_err(self.err("send to"))
    }

    /// Every fd the holder keeps, with its id and metadata (copies: it
    /// keeps them too, for the next manager if this one dies).
    pub fn take_all(&self) -> Result<Vec<Kept>, FdHolderError> {
        send(self.conn.as_raw_fd(), b"T", None).map_err(self.err("send to"))?;
        let mut out = Vec::new();
        loop {
            let Some((p, fd)) = recv(self.conn.as_raw_fd()).map_err(self.err("receive from"))?
            else {
                return Err(FdHolderError::Protocol("it hung up".into()));
            };
            match (p.first(), fd) {
                (Some(b'E'), _) => return Ok(out),
                (Some(b'F'), Some(fd)) if p.len() > 9 => {
                    let id = id_of(&p[1..9]);
                    let bad = |e: serde_json::Error| FdHolderError::Protocol(e.to_string());
                    let tag: Tag = serde_json::from_slice(&p[9..]).map_err(bad)?;
                    let meta = match tag.kind {
                        Kind::PipeRead => Some(serde_json::from_slice(&p[9..]).map_err(bad)?),
                        _ => None,
                    };
                    out.push(Kept { id, tag, meta, fd });
                }
                _ => return Err(FdHolderError::Protocol(format!("{:?}", p.first()))),
            }
        }
    }

    /// The manager shuts down cleanly: the holder exits, closing its copies.
    pub fn quit(&self) {
        let _ = send(self.conn.as_raw_fd(), b"Q", None);
        let _ = std::fs::remove_file(&self.path);
    }

    fn err(&self, op: &'static str) -> impl Fn(nix::errno::Errno) -> FdHolderError + '_ {
        move |source| FdHolderError::Socket {
            op,
            path: self.path.clone(),
            source,
        }
    }
}

/// The manager's holder: the one a dead predecessor left in `runtime_dir`
/// (its fds are taken back by [`super::output::Output::resume`]), else a new
/// one, `program --fd-holder`, started in the cgroup [`CGROUP`] below `root`.
pub fn start(
    program: &Path,
    root: &crate::cgroup::Cgroup,
    runtime_dir: &Path,
) -> Result<Client, String> {
    use crate::cgroup::spawn::{SpawnSpec, Stdio, spawn};
    use std::os::unix::ffi::OsStrExt;
    if let Some(c) = Client::reconnect(runtime_dir) {
        return Ok(c);
    }
    let (listener, client) = Client::bind(runtime_dir).map_err(|e| e.to_string())?;
    let cg = root.path().join(CGROUP);
    if !cg.is_dir() {
        root.create_child(CGROUP).map_err(|e| e.to_string())?;
    }
    let cstr = |b: &[u8]| std::ffi::CString::new(b).map_err(|e| e.to_string());
    let mut spec = SpawnSpec::new(cstr(program.as_os_str().as_bytes())?);
    spec.argv = vec![cstr(b"corrald")?, cstr(FLAG.as_bytes())?];
    spec.cgroup = Some(cg);
    spec.stdin = Stdio::Fd(listener);
    spec.stdout = Stdio::Inherit;
    spec.stderr = Stdio::Inherit;
    spec.new_session = true;
    spawn(&spec).map_err(|e| format!("cannot start the fd holder {}: {e}", program.display()))?;
    Ok(client)
}

fn seqpacket() -> nix::Result<OwnedFd> {
    socket::socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn a_pipe_kept_by_the_holder_outlives_its_first_reader() {
        let dir = tempfile::tempdir().unwrap();
        let (listener, client) = Client::bind(dir.path()).unwrap();
        let holder = std::thread::spawn(move || serve(listener));
        let (r, w) = nix::unistd::pipe().unwrap();
        let meta = Meta {
            unit: "a.service".into(),
            invocation: "00ff".into(),
            identifier: "a".into(),
            comm: "a".into(),
            pid: 42,
            stream: Stream::Stdout,
            priority: 6,
            level_prefix: true,
            partial: String::new(),
            continuing: false,
        };
        let id = client.deposit(r.as_fd(), &meta).unwrap();
        // A listening socket kept beside it comes back tagged as one.
        let sock = socket::socket(
            AddressFamily::Unix,
            SockType::Stream,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .unwrap();
        let tag = Tag {
            kind: Kind::Listening,
            unit: "a.socket".into(),
            name: "ListenStream=/x".into(),
        };
        let sock_id = client.deposit_tagged(sock.as_fd(), &tag).unwrap();
        drop(sock);
        // The first reader (the manager) dies.
        drop(r);
        drop(client);
        let mut w = std::fs::File::from(w);
        w.write_all(b"written while no manager ran\n").unwrap();
        let next = Client::reconnect(dir.path()).expect("the holder is still there");
        let mut all = next.take_all().unwrap();
        assert_eq!(all.len(), 2);
        let kept_sock = all.pop().unwrap();
        assert_eq!(
            (kept_sock.id, &kept_sock.tag, &kept_sock.meta),
            (sock_id, &tag, &None)
        );
        let Kept {
            id: got_id,
            tag: got_tag,
            meta: got_meta,
            fd,
        } = all.pop().unwrap();
        assert_eq!(got_tag.kind, Kind::PipeRead, "a pipe's Meta has no kind");
        assert_eq!((got_id, got_meta.as_ref()), (id, Some(&meta)));
        let mut line = [0u8; 29];
        std::fs::File::from(fd).read_exact(&mut line).unwrap();
        assert_eq!(&line, b"written while no manager ran\n");
        assert!(
            next.next.load(std::sync::atomic::Ordering::Relaxed) > id,
            "ids of a successor never repeat its predecessor's"
        );
        // A reader stopped for daemon-reexec leaves its unfinished line
        // (up to MAX_UNFINISHED bytes) with the pipe, for the next one.
        let left = Unfinished {
            bytes: (0..crate::journal::ingest::MAX_UNFINISHED)
                .map(|i| i as u8)
                .collect(),
            continuing: true,
        };
        let mut with_line = meta.clone();
        with_line.set_unfinished(&left);
        next.update(id, &with_line).unwrap();
        next.drop_fd(sock_id);
        let got = next.take_all().unwrap().pop().unwrap().meta.unwrap();
        assert_eq!(got.unfinished(), left);
        next.drop_fd(id);
        next.quit();
        holder.join().unwrap().unwrap();
    }

    #[test]
    fn each_fd_comes_back_with_its_kind_and_unit() {
        let dir = tempfile::tempdir().unwrap();
        let (listener, client) = Client::bind(dir.path()).unwrap();
        let holder = std::thread::spawn(move || serve(listener));
        let (r, w) = nix::unistd::pipe().unwrap();
        let tag = |kind| Tag {
            kind,
            unit: "b.service".into(),
            name: String::new(),
        };
        let rid = client
            .deposit_tagged(r.as_fd(), &tag(Kind::LogPipeRead))
            .unwrap();
        let wid = client
            .deposit_tagged(w.as_fd(), &tag(Kind::LogPipeWrite))
            .unwrap();
        // The holder answers a sync once it handled both deposits.
        assert!(client.sync(std::time::Duration::from_secs(10)));
        let got: Vec<(u64, Kind, String)> = client
            .take_all()
            .unwrap()
            .into_iter()
            .map(|k| (k.id, k.tag.kind, k.tag.unit))
            .collect();
        assert_eq!(
            got,
            vec![
                (rid, Kind::LogPipeRead, "b.service".to_string()),
                (wid, Kind::LogPipeWrite, "b.service".to_string())
            ]
        );
        // What a manager from before kinds deposited is an output pipe.
        let old: Tag = serde_json::from_str(
            r#"{"unit":"a.service","invocation":"","identifier":"a","pid":1,"stream":"Stdout","priority":6,"level_prefix":true}"#,
        )
        .unwrap();
        assert_eq!(old.kind, Kind::PipeRead);
        client.quit();
        holder.join().unwrap().unwrap();
    }

    use std::os::fd::AsFd;
}
