//! Creating the listening fds of a socket unit from its definition, removing
//! its file system nodes on stop, and handing the fds to a service the way
//! sd_listen_fds(3) expects them.
//!
//! The fds are created CLOEXEC and blocking, as systemd passes them: the
//! manager watches them for readiness (epoll works on blocking fds) and a
//! service gets them as it would from systemd. FIFOs are non-blocking and
//! opened read-write, as systemd opens them, so the manager never sees EOF.
//!
//! Everything here is a handful of quick system calls on local files and
//! sockets; only [`holder_of`], on the error path, walks /proc.

use std::ffi::CString;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::sys::socket::{
    AddressFamily, SockFlag, SockType, SockaddrIn, SockaddrIn6, SockaddrLike, UnixAddr, bind,
    setsockopt, socket, sockopt,
};

use crate::cgroup::spawn::{FdMapping, SpawnSpec};
use crate::unit::socket::{Listen, SocketAddress, SocketSection, SocketType};

/// The first fd number of socket activation (`SD_LISTEN_FDS_START`).
pub const LISTEN_FDS_START: RawFd = 3;

/// Why a socket unit's fds could not be created or its nodes removed.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// The address is taken; `holder` says by whom when /proc tells.
    #[error("address already in use: {address}{}", holder.as_ref().map(|h| format!(" (claimed by {h})")).unwrap_or_default())]
    InUse {
        /// The address (`127.0.0.1:7777`, `/run/x.sock`, `@name`).
        address: String,
        /// `pid 1234 (name)`, when found.
        holder: Option<String>,
    },
    /// A socket call on an address failed.
    #[error("cannot {op} {address}: {source}")]
    Socket {
        /// What was being done (`bind`, `listen`, `set SO_REUSEPORT on`, ...).
        op: &'static str,
        /// The `Listen*=` entry.
        address: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A file system operation failed.
    #[error("cannot {op} {path}: {source}")]
    Io {
        /// What was being done (`create directory`, `chmod`, `remove`, ...).
        op: &'static str,
        /// On what.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Something other than a socket (or FIFO) is in the way at a path.
    #[error("{path} exists and is not a {wanted}; remove it or choose another path")]
    NotASocket {
        /// The path.
        path: PathBuf,
        /// `socket` or `FIFO`.
        wanted: &'static str,
    },
}

/// One listening fd and the entry it was made for.
#[derive(Debug)]
pub struct ListeningFd {
    /// The `Listen*=` entry.
    pub listen: Listen,
    /// The fd, CLOEXEC.
    pub fd: OwnedFd,
}

/// The fds of one socket unit, in `Listen*=` order.
#[derive(Debug, Default)]
pub struct Listening {
    /// One per `Listen*=` entry, in order.
    pub fds: Vec<ListeningFd>,
    /// What did not work but does not stop the socket (systemd warns and
    /// listens): `Priority=` refused for lack of privilege.
    pub warnings: Vec<String>,
}

impl Listening {
    /// Binds every entry of `def`: parent directories (`DirectoryMode=`), a
    /// stale socket file replaced, `SocketMode=`, `Backlog=`, `ReusePort=`,
    /// `PassCredentials=`, then `Symlinks=`. On an error the fds made so far
    /// are closed.
    pub fn open(def: &SocketSection) -> Result<Listening, ListenError> {
        let mut out = Listening::default();
        for l in &def.listen {
            let fd = match l {
                Listen::Socket { kind, address } => {
                    let fd = open_socket(def, l, *kind, address)?;
                    let tcp = *kind == SocketType::Stream
                        && matches!(address, SocketAddress::Inet(_) | SocketAddress::Port(_));
                    for w in apply_options(fd.as_fd(), def, tcp) {
                        out.warnings.push(format!("{}: {w}", l.describe()));
                    }
                    fd
                }
                Listen::Fifo(p) => open_fifo(def, p)?,
            };
            out.fds.push(ListeningFd {
                listen: l.clone(),
                fd,
            });
        }
        if let Some(target) = symlink_target(def) {
            for link in &def.symlinks {
                make_symlink(def, target, link)?;
            }
        }
        Ok(out)
    }

    /// The fds with the name each gets in `LISTEN_FDNAMES`, for
    /// [`pass_fds`].
    pub fn named<'a>(&'a self, name: &'a str) -> Vec<(RawFd, &'a str)> {
        self.fds.iter().map(|f| (f.fd.as_raw_fd(), name)).collect()
    }
}

/// The socket options of `def` on a listening socket or a connection, as
/// systemd's `socket_apply_socket_options`: `Priority=`, `KeepAlive=`, and
/// on TCP (`tcp`) `KeepAliveTimeSec=`, `KeepAliveIntervalSec=`,
/// `KeepAliveProbes=`, `NoDelay=`. What the kernel refuses is answered in
/// systemd's words ("SO_PRIORITY failed: ..."), a warning: the socket
/// listens anyway.
pub fn apply_options(fd: BorrowedFd<'_>, def: &SocketSection, tcp: bool) -> Vec<String> {
    let mut warnings = Vec::new();
    let mut check = |what: &str, r: nix::Result<()>| {
        if let Err(e) = r {
            warnings.push(format!("{what} failed: {}", io::Error::from(e)));
        }
    };
    if let Some(p) = def.priority {
        check("SO_PRIORITY", setsockopt(&fd, sockopt::Priority, &p));
    }
    if def.keep_alive {
        check("SO_KEEPALIVE", setsockopt(&fd, sockopt::KeepAlive, &true));
    }
    if tcp {
        if let Some(t) = def.keep_alive_time {
            check("TCP_KEEPIDLE", setsockopt(&fd, sockopt::TcpKeepIdle, &t));
        }
        if let Some(t) = def.keep_alive_interval {
            check(
                "TCP_KEEPINTVL",
                setsockopt(&fd, sockopt::TcpKeepInterval, &t),
            );
        }
        if let Some(n) = def.keep_alive_probes {
            check("TCP_KEEPCNT", setsockopt(&fd, sockopt::TcpKeepCount, &n));
        }
        if def.no_delay {
            check("TCP_NODELAY", setsockopt(&fd, sockopt::TcpNoDelay, &true));
        }
    }
    warnings
}

/// The one socket file or FIFO `Symlinks=` point to (the parser dropped
/// them unless there is exactly one).
fn symlink_target(def: &SocketSection) -> Option<&Path> {
    let mut paths = def.listen.iter().filter_map(Listen::path);
    let first = paths.next()?;
    paths.next().is_none().then_some(first)
}

fn sock_err<'a>(op: &'static str, l: &'a Listen) -> impl FnOnce(nix::Error) -> ListenError + 'a {
    move |e| ListenError::Socket {
        op,
        address: l.describe(),
        source: io::Error::from(e),
    }
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> ListenError + 'a {
    move |source| ListenError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

fn open_socket(
    def: &SocketSection,
    l: &Listen,
    kind: SocketType,
    address: &SocketAddress,
) -> Result<OwnedFd, ListenError> {
    let ty = match kind {
        SocketType::Stream => SockType::Stream,
        SocketType::Datagram => SockType::Datagram,
        SocketType::SequentialPacket => SockType::SeqPacket,
    };
    let family = match address {
        SocketAddress::Path(_) | SocketAddress::Abstract(_) => AddressFamily::Unix,
        SocketAddress::Inet(SocketAddr::V4(_)) => AddressFamily::Inet,
        SocketAddress::Inet(SocketAddr::V6(_)) | SocketAddress::Port(_) => AddressFamily::Inet6,
    };
    let fd = socket(family, ty, SockFlag::SOCK_CLOEXEC, None).map_err(sock_err("create", l))?;
    let inet = family != AddressFamily::Unix;
    if inet && kind == SocketType::Stream {
        // A restarted manager rebinds a port whose old connections are
        // still in TIME_WAIT. Not on UDP, where it would let a second
        // unit bind the same address (systemd sets it there too).
        setsockopt(&fd, sockopt::ReuseAddr, &true).map_err(sock_err("set SO_REUSEADDR on", l))?;
    }
    if def.reuse_port && inet {
        // Unix sockets refuse it (EOPNOTSUPP); systemd only warns there.
        setsockopt(&fd, sockopt::ReusePort, &true).map_err(sock_err("set SO_REUSEPORT on", l))?;
    }
    if def.pass_credentials && family == AddressFamily::Unix {
        setsockopt(&fd, sockopt::PassCred, &true).map_err(sock_err("set SO_PASSCRED on", l))?;
    }
    match address {
        SocketAddress::Path(p) => bind_path(def, l, &fd, p)?,
        SocketAddress::Abstract(n) => {
            let a = UnixAddr::new_abstract(n.as_bytes()).map_err(sock_err("bind", l))?;
            bind_checked(l, &fd, &a)?;
        }
        SocketAddress::Inet(SocketAddr::V4(a)) => bind_checked(l, &fd, &SockaddrIn::from(*a))?,
        SocketAddress::Inet(SocketAddr::V6(a)) => bind_checked(l, &fd, &SockaddrIn6::from(*a))?,
        SocketAddress::Port(port) => {
            let a = std::net::SocketAddrV6::new(std::net::Ipv6Addr::UNSPECIFIED, *port, 0, 0);
            bind_checked(l, &fd, &SockaddrIn6::from(a))?;
        }
    }
    if kind.accepts() {
        let backlog = def.backlog.map_or(libc::c_int::MAX, |b| {
            b.min(libc::c_int::MAX as u32) as libc::c_int
        });
        // SAFETY: a valid socket fd; the kernel caps the backlog at somaxconn.
        if unsafe { libc::listen(fd.as_raw_fd(), backlog) } < 0 {
            return Err(ListenError::Socket {
                op: "listen on",
                address: l.describe(),
                source: io::Error::last_os_error(),
            });
        }
    }
    Ok(fd)
}

/// bind(2), with EADDRINUSE told as [`ListenError::InUse`] and its holder.
fn bind_checked(l: &Listen, fd: &OwnedFd, addr: &dyn SockaddrLike) -> Result<(), ListenError> {
    match bind(fd.as_raw_fd(), addr) {
        Ok(()) => Ok(()),
        Err(nix::Error::EADDRINUSE) => Err(in_use(l)),
        Err(e) => Err(sock_err("bind", l)(e)),
    }
}

fn in_use(l: &Listen) -> ListenError {
    let address = match l {
        Listen::Socket { address, .. } => address.to_string(),
        Listen::Fifo(p) => p.display().to_string(),
    };
    ListenError::InUse {
        address,
        holder: holder_of(l),
    }
}

/// Binds a socket file: parents created with `DirectoryMode=`, a stale
/// socket file (nobody accepts on it) replaced, then `SocketMode=` set
/// before `listen`, so nobody can connect while the mode is still the
/// umask's. Unlike systemd, a socket someone still listens on is not
/// unlinked from under them: that is an [`ListenError::InUse`].
fn bind_path(def: &SocketSection, l: &Listen, fd: &OwnedFd, p: &Path) -> Result<(), ListenError> {
    make_parents(def, p)?;
    let addr = UnixAddr::new(p).map_err(sock_err("bind", l))?;
    match bind(fd.as_raw_fd(), &addr) {
        Ok(()) => {}
        Err(nix::Error::EADDRINUSE) => {
            let meta = std::fs::symlink_metadata(p).map_err(io_err("inspect", p))?;
            if !meta.file_type().is_socket() {
                return Err(ListenError::NotASocket {
                    path: p.to_path_buf(),
                    wanted: "socket",
                });
            }
            if is_live(p) {
                return Err(in_use(l));
            }
            std::fs::remove_file(p).map_err(io_err("remove the stale socket", p))?;
            bind(fd.as_raw_fd(), &addr).map_err(sock_err("bind", l))?;
        }
        Err(e) => return Err(sock_err("bind", l)(e)),
    }
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(def.socket_mode))
        .map_err(io_err("chmod", p))
}

/// Whether a process accepts connections on the socket file `p`.
fn is_live(p: &Path) -> bool {
    // Each type is tried: the file does not say which one it is.
    [SockType::Stream, SockType::SeqPacket, SockType::Datagram]
        .into_iter()
        .any(|ty| {
            let Ok(s) = socket(AddressFamily::Unix, ty, SockFlag::SOCK_CLOEXEC, None) else {
                return false;
            };
            let Ok(a) = UnixAddr::new(p) else {
                return false;
            };
            nix::sys::socket::connect(s.as_raw_fd(), &a).is_ok()
        })
}

/// Creates the missing parent directories of `p` with `DirectoryMode=`
/// (set explicitly: the umask would narrow it).
fn make_parents(def: &SocketSection, p: &Path) -> Result<(), ListenError> {
    let Some(parent) = p.parent() else {
        return Ok(());
    };
    let mut missing = Vec::new();
    let mut cur = parent;
    while !cur.exists() {
        missing.push(cur);
        match cur.parent() {
            Some(up) => cur = up,
            None => break,
        }
    }
    for dir in missing.into_iter().rev() {
        match std::fs::DirBuilder::new()
            .mode(def.directory_mode)
            .create(dir)
        {
            Ok(()) => {
                std::fs::set_permissions(dir, std::fs::Permissions::from_mode(def.directory_mode))
                    .map_err(io_err("chmod", dir))?
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_err("create directory", dir)(e)),
        }
    }
    Ok(())
}

fn open_fifo(def: &SocketSection, p: &Path) -> Result<OwnedFd, ListenError> {
    make_parents(def, p)?;
    let c = CString::new(p.as_os_str().as_bytes()).map_err(|_| ListenError::Io {
        op: "create FIFO",
        path: p.to_path_buf(),
        source: io::ErrorKind::InvalidInput.into(),
    })?;
    // SAFETY: c is NUL-terminated.
    if unsafe { libc::mkfifo(c.as_ptr(), def.socket_mode) } < 0 {
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::AlreadyExists {
            return Err(io_err("create FIFO", p)(e));
        }
    }
    // SAFETY: c is NUL-terminated; the flags make open return at once.
    let raw = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_RDWR | libc::O_CLOEXEC | libc::O_NOCTTY | libc::O_NONBLOCK | libc::O_NOFOLLOW,
        )
    };
    if raw < 0 {
        return Err(io_err("open FIFO", p)(io::Error::last_os_error()));
    }
    // SAFETY: raw is a fresh fd of ours.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let meta = std::fs::File::from(fd.try_clone().map_err(io_err("open FIFO", p))?)
        .metadata()
        .map_err(io_err("inspect", p))?;
    if !meta.file_type().is_fifo() {
        return Err(ListenError::NotASocket {
            path: p.to_path_buf(),
            wanted: "FIFO",
        });
    }
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(def.socket_mode))
        .map_err(io_err("chmod", p))?;
    Ok(fd)
}

fn make_symlink(def: &SocketSection, target: &Path, link: &Path) -> Result<(), ListenError> {
    make_parents(def, link)?;
    match std::fs::symlink_metadata(link) {
        Ok(m) if m.file_type().is_symlink() => {
            std::fs::remove_file(link).map_err(io_err("replace the symlink", link))?
        }
        Ok(_) => {
            return Err(ListenError::NotASocket {
                path: link.to_path_buf(),
                wanted: "symlink",
            });
        }
        Err(_) => {}
    }
    std::os::unix::fs::symlink(target, link).map_err(io_err("create symlink", link))
}

/// Removes what `RemoveOnStop=` removes: socket files, FIFOs and the
/// `Symlinks=` (only nodes of those types; anything else is left). Every
/// failure is returned; a node already gone is not one.
pub fn remove_nodes(def: &SocketSection) -> Vec<ListenError> {
    let mut errors = Vec::new();
    let nodes = def
        .listen
        .iter()
        .filter_map(Listen::path)
        .chain(def.symlinks.iter().map(PathBuf::as_path));
    for p in nodes {
        let Ok(m) = std::fs::symlink_metadata(p) else {
            continue;
        };
        let t = m.file_type();
        if !(t.is_socket() || t.is_fifo() || t.is_symlink()) {
            continue;
        }
        if let Err(e) = std::fs::remove_file(p)
            && e.kind() != io::ErrorKind::NotFound
        {
            errors.push(io_err("remove", p)(e));
        }
    }
    errors
}

/// The environment and fd numbers of socket activation for a child:
/// `fds` (with their `LISTEN_FDNAMES` names) become 3, 4, ... in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivationFds {
    /// fd `i` of the list becomes `3 + i` in the child.
    pub mappings: Vec<FdMapping>,
    /// `LISTEN_FDS=n` and `LISTEN_FDNAMES=a:b`.
    pub env: Vec<CString>,
}

impl ActivationFds {
    /// The mappings and variables for `fds` in order.
    pub fn new(fds: &[(RawFd, &str)]) -> ActivationFds {
        let mappings = fds
            .iter()
            .zip(LISTEN_FDS_START..)
            .map(|(&(parent_fd, _), child_fd)| FdMapping {
                parent_fd,
                child_fd,
            })
            .collect();
        let names: Vec<&str> = fds.iter().map(|(_, n)| *n).collect();
        let env = [
            format!("LISTEN_FDS={}", fds.len()),
            format!("LISTEN_FDNAMES={}", names.join(":")),
        ]
        .into_iter()
        .map(|v| CString::new(v).expect("fd names are checked for NUL by the parser"))
        .collect();
        ActivationFds { mappings, env }
    }
}

/// Prepares `spec` to start a socket-activated process: the fds at 3, 4,
/// ... in order, `LISTEN_FDS`, `LISTEN_FDNAMES`, and `LISTEN_PID` set to
/// the child's own pid in the child. Existing `LISTEN_*` variables of the
/// spec are replaced; its other extra fds must be numbered above the
/// activation fds.
pub fn pass_fds(spec: &mut SpawnSpec, fds: &[(RawFd, &str)]) {
    let a = ActivationFds::new(fds);
    spec.env.retain(|v| {
        let b = v.as_bytes();
        !(b.starts_with(b"LISTEN_FDS=")
            || b.starts_with(b"LISTEN_FDNAMES=")
            || b.starts_with(b"LISTEN_PID="))
    });
    spec.env.extend(a.env);
    spec.extra_fds.extend(a.mappings);
    spec.listen_pid = true;
}

/// Who holds the address of `l`, as `pid 1234 (name)`, looked up in
/// /proc/net and the fds of /proc/PID; `None` when not found (another
/// user's process without root, another network namespace).
pub fn holder_of(l: &Listen) -> Option<String> {
    let inodes = socket_inodes(l);
    if inodes.is_empty() {
        return None;
    }
    let needles: Vec<String> = inodes.iter().map(|i| format!("socket:[{i}]")).collect();
    for proc_entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let name = proc_entry.file_name();
        let Some(pid) = name.to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(proc_entry.path().join("fd")) else {
            continue;
        };
        let found = fds.flatten().any(|fd| {
            std::fs::read_link(fd.path()).is_ok_and(|t| {
                needles
                    .iter()
                    .any(|n| t.as_os_str().as_bytes() == n.as_bytes())
            })
        });
        if found {
            let comm = std::fs::read_to_string(proc_entry.path().join("comm")).unwrap_or_default();
            return Some(format!("pid {pid} ({})", comm.trim_end()));
        }
    }
    None
}

/// The inodes of the sockets at `l`'s address, from /proc/net: every
/// match, since a connection waiting in a unix listener's backlog shows
/// the listener's path too and belongs to no process yet.
fn socket_inodes(l: &Listen) -> Vec<u64> {
    let Listen::Socket { kind, address } = l else {
        return Vec::new();
    };
    match address {
        SocketAddress::Path(_) | SocketAddress::Abstract(_) => {
            let want = address.to_string();
            let Ok(text) = std::fs::read_to_string("/proc/net/unix") else {
                return Vec::new();
            };
            // Num RefCount Protocol Flags Type St Inode Path
            text.lines()
                .skip(1)
                .filter_map(|line| {
                    let cols: Vec<&str> = line.split_whitespace().collect();
                    (cols.len() >= 8 && cols[7] == want).then(|| cols[6].parse().ok())?
                })
                .collect()
        }
        SocketAddress::Inet(a) => inet_inodes(*kind, a.ip(), a.port()),
        SocketAddress::Port(p) => {
            inet_inodes(*kind, IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED), *p)
        }
    }
}

/// The inodes of TCP listeners or UDP sockets on `ip:port` (or on the
/// wildcard address of either family, which also takes the port).
fn inet_inodes(kind: SocketType, ip: IpAddr, port: u16) -> Vec<u64> {
    let mut out = Vec::new();
    let proto = if kind == SocketType::Datagram {
        "udp"
    } else {
        "tcp"
    };
    let hex = |ip: IpAddr| match ip {
        IpAddr::V4(v4) => format!("{:08X}", u32::from_ne_bytes(v4.octets())),
        IpAddr::V6(v6) => v6
            .octets()
            .chunks(4)
            .map(|c| format!("{:08X}", u32::from_ne_bytes([c[0], c[1], c[2], c[3]])))
            .collect(),
    };
    let wanted = hex(ip);
    let port_hex = format!("{port:04X}");
    for file in [format!("/proc/net/{proto}"), format!("/proc/net/{proto}6")] {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            if cols.len() < 10 {
                continue;
            }
            let Some((addr, p)) = cols[1].split_once(':') else {
                continue;
            };
            let listening = proto == "udp" || cols[3] == "0A";
            let wildcard = addr.bytes().all(|b| b == b'0') || ip.is_unspecified();
            if p == port_hex
                && listening
                && (addr == wanted || wildcard)
                && let Ok(inode) = cols[9].parse()
            {
                out.push(inode);
            }
        }
    }
    out
}
