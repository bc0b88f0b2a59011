//! Binding a socket unit's fds from its definition and passing them to a
//! real child: real sockets on loopback and in a temporary directory.

mod common;

use std::ffi::CString;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsFd;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixDatagram, UnixListener, UnixStream};
use std::path::Path;

use corral::cgroup::spawn::{self, SpawnSpec};
use corral::supervisor::socket::listen::{ListenError, Listening, pass_fds, remove_nodes};
use corral::unit::loader::from_text;
use corral::unit::{SocketSection, SpecifierContext, UnitName};
use nix::sys::socket::{getsockopt, sockopt};

use common::reap;

/// The `[Socket]` of `name` written as `body`, which must read clean.
fn def(name: &str, body: &str) -> SocketSection {
    let n = UnitName::parse_strict(name).unwrap();
    let u = from_text(
        &n,
        Path::new(name),
        &format!("[Socket]\n{body}"),
        &SpecifierContext::example(),
    );
    let errors: Vec<String> = u.errors().map(|d| d.to_string()).collect();
    assert!(errors.is_empty(), "{errors:?}");
    *u.socket.unwrap()
}

/// A loopback port nobody listens on at the time of the call.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

#[test]
fn every_kind_binds_and_answers() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let tcp = free_port();
    let udp = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let v6 = free_port();
    let abs = format!("corral-test-{}-abs", std::process::id());
    let s = def(
        "all.socket",
        &format!(
            "ListenStream={dir}/sub/deeper/stream.sock\nListenDatagram={dir}/dgram.sock\n\
             ListenSequentialPacket={dir}/seq.sock\nListenStream=@{abs}\n\
             ListenStream=127.0.0.1:{tcp}\nListenDatagram=127.0.0.1:{udp}\n\
             ListenStream=[::1]:{v6}\nListenFIFO={dir}/fifo\n\
             SocketMode=0600\nDirectoryMode=0700\nBacklog=8\nPassCredentials=yes\nReusePort=yes\n\
             Priority=5\nKeepAlive=yes\nKeepAliveTimeSec=120\nKeepAliveIntervalSec=30\n\
             KeepAliveProbes=4\nNoDelay=yes\n",
            dir = dir.display()
        ),
    );
    let l = Listening::open(&s).unwrap();
    assert_eq!(l.fds.len(), 8);
    for (f, want) in l.fds.iter().zip(&s.listen) {
        assert_eq!(&f.listen, want);
    }

    // Parents made with DirectoryMode=, nodes with SocketMode=.
    assert_eq!(mode(&dir.join("sub")), 0o700);
    assert_eq!(mode(&dir.join("sub/deeper")), 0o700);
    for n in ["sub/deeper/stream.sock", "dgram.sock", "seq.sock", "fifo"] {
        assert_eq!(mode(&dir.join(n)), 0o600, "{n}");
    }
    assert!(
        std::fs::metadata(dir.join("fifo"))
            .unwrap()
            .file_type()
            .is_fifo()
    );
    // SO_PASSCRED on the unix sockets, SO_REUSEPORT on the IP ones.
    for f in &l.fds[..4] {
        assert!(
            getsockopt(&f.fd, sockopt::PassCred).unwrap(),
            "{:?}",
            f.listen
        );
    }
    for f in &l.fds[4..7] {
        assert!(
            getsockopt(&f.fd, sockopt::ReusePort).unwrap(),
            "{:?}",
            f.listen
        );
    }
    // SO_PRIORITY on every socket (not the FIFO).
    for f in &l.fds[..7] {
        assert_eq!(
            getsockopt(&f.fd, sockopt::Priority).unwrap(),
            5,
            "{:?}",
            f.listen
        );
    }
    for f in &l.fds[..7] {
        assert!(
            getsockopt(&f.fd, sockopt::KeepAlive).unwrap(),
            "{:?}",
            f.listen
        );
    }
    // The TCP ones on the two TCP listeners only.
    for i in [4, 6] {
        let fd = &l.fds[i].fd;
        assert_eq!(getsockopt(fd, sockopt::TcpKeepIdle).unwrap(), 120);
        assert_eq!(getsockopt(fd, sockopt::TcpKeepInterval).unwrap(), 30);
        assert_eq!(getsockopt(fd, sockopt::TcpKeepCount).unwrap(), 4);
        assert!(getsockopt(fd, sockopt::TcpNoDelay).unwrap());
    }
    assert!(l.warnings.is_empty(), "{:?}", l.warnings);
    // Every fd is CLOEXEC in the manager.
    for f in &l.fds {
        let flags = nix::fcntl::fcntl(f.fd.as_fd(), nix::fcntl::FcntlArg::F_GETFD).unwrap();
        assert_ne!(flags & libc::FD_CLOEXEC, 0, "{:?}", f.listen);
    }

    // Each one takes what a client sends before anyone accepts.
    UnixStream::connect(dir.join("sub/deeper/stream.sock")).unwrap();
    UnixDatagram::unbound()
        .unwrap()
        .send_to(b"d", dir.join("dgram.sock"))
        .unwrap();
    let seq = nix::sys::socket::socket(
        nix::sys::socket::AddressFamily::Unix,
        nix::sys::socket::SockType::SeqPacket,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        None,
    )
    .unwrap();
    let seq_addr = nix::sys::socket::UnixAddr::new(&dir.join("seq.sock")).unwrap();
    nix::sys::socket::connect(std::os::fd::AsRawFd::as_raw_fd(&seq), &seq_addr).unwrap();
    {
        use std::os::linux::net::SocketAddrExt;
        let a = std::os::unix::net::SocketAddr::from_abstract_name(abs.as_bytes()).unwrap();
        UnixStream::connect_addr(&a).unwrap();
    }
    TcpStream::connect(("127.0.0.1", tcp)).unwrap();
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .send_to(b"u", ("127.0.0.1", udp))
        .unwrap();
    TcpStream::connect(("::1", v6)).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(dir.join("fifo"))
        .unwrap()
        .write_all(b"f")
        .unwrap();
    // The datagrams and the FIFO's byte are waiting on the fds.
    let mut buf = [0u8; 4];
    for (i, want) in [(1, b'd'), (5, b'u'), (7, b'f')] {
        let n = nix::unistd::read(&l.fds[i].fd, &mut buf).unwrap();
        assert_eq!(&buf[..n], &[want], "{:?}", l.fds[i].listen);
    }
}

#[test]
fn a_stale_socket_file_is_replaced_and_a_live_one_is_in_use() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("s.sock");
    // Stale: bound once, its listener gone.
    drop(UnixListener::bind(&p).unwrap());
    assert!(p.exists());
    let s = def("s.socket", &format!("ListenStream={}\n", p.display()));
    let l = Listening::open(&s).unwrap();
    UnixStream::connect(&p).unwrap();
    // Live: ours, still listening; the second one does not unlink it.
    let e = Listening::open(&s).unwrap_err();
    let me = std::process::id();
    assert!(matches!(e, ListenError::InUse { .. }), "{e}");
    assert_eq!(
        e.to_string(),
        format!(
            "address already in use: {} (claimed by pid {me} ({}))",
            p.display(),
            std::fs::read_to_string("/proc/self/comm")
                .unwrap()
                .trim_end()
        )
    );
    UnixStream::connect(&p).unwrap();
    drop(l);
    // A regular file in the way is not removed.
    let f = d.path().join("file");
    std::fs::write(&f, "keep").unwrap();
    let e =
        Listening::open(&def("f.socket", &format!("ListenStream={}\n", f.display()))).unwrap_err();
    assert!(e.to_string().contains("is not a socket"), "{e}");
    assert_eq!(std::fs::read_to_string(&f).unwrap(), "keep");
}

#[test]
fn an_address_in_use_names_the_address_and_its_holder() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let e = Listening::open(&def(
        "t.socket",
        &format!("ListenStream=127.0.0.1:{port}\n"),
    ))
    .unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.starts_with(&format!(
            "address already in use: 127.0.0.1:{port} (claimed by pid {} (",
            std::process::id()
        )),
        "{msg}"
    );
    // The same for two units on one address: the second fails.
    let udp = free_port();
    let first = Listening::open(&def(
        "a.socket",
        &format!("ListenDatagram=127.0.0.1:{udp}\n"),
    ))
    .unwrap();
    let e = Listening::open(&def(
        "b.socket",
        &format!("ListenDatagram=127.0.0.1:{udp}\n"),
    ))
    .unwrap_err();
    assert!(
        e.to_string().starts_with(&format!(
            "address already in use: 127.0.0.1:{udp} (claimed by pid"
        )),
        "{e}"
    );
    drop(first);
}

#[test]
fn remove_on_stop_removes_socket_files_fifos_and_symlinks() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let s = def(
        "r.socket",
        &format!(
            "ListenStream={dir}/r.sock\nListenStream=127.0.0.1:{}\nSymlinks={dir}/links/one {dir}/two\nRemoveOnStop=yes\n",
            free_port(),
            dir = dir.display()
        ),
    );
    let l = Listening::open(&s).unwrap();
    for link in ["links/one", "two"] {
        assert_eq!(
            std::fs::read_link(dir.join(link)).unwrap(),
            dir.join("r.sock")
        );
        UnixStream::connect(dir.join(link)).unwrap();
    }
    drop(l);
    assert!(remove_nodes(&s).is_empty());
    for n in ["r.sock", "links/one", "two"] {
        assert!(
            !dir.join(n).exists() && std::fs::symlink_metadata(dir.join(n)).is_err(),
            "{n}"
        );
    }
    // Nothing left to remove is not an error; other files are not touched.
    std::fs::write(dir.join("r.sock"), "a file now").unwrap();
    assert!(remove_nodes(&s).is_empty());
    assert!(dir.join("r.sock").exists());

    let fifo = def("f.socket", &format!("ListenFIFO={}/f\n", dir.display()));
    drop(Listening::open(&fifo).unwrap());
    assert!(dir.join("f").exists());
    assert!(remove_nodes(&fifo).is_empty());
    assert!(!dir.join("f").exists());
}

/// Kills and reaps a child left behind by a failing test.
struct Child(i32);

impl Drop for Child {
    fn drop(&mut self) {
        if self.0 > 0 {
            let pid = nix::unistd::Pid::from_raw(self.0);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(pid, None);
        }
    }
}

#[test]
fn a_spawned_child_gets_the_fds_from_3_with_listen_env() {
    if !common::require("this test", &common::missing_tools(&["python3"])) {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let port = free_port();
    let s = def(
        "web.socket",
        &format!(
            "ListenStream={}/web.sock\nListenStream=127.0.0.1:{port}\nFileDescriptorName=web\n",
            d.path().display()
        ),
    );
    let l = Listening::open(&s).unwrap();
    // Connections made before the service runs wait in the backlog.
    let mut unix = UnixStream::connect(d.path().join("web.sock")).unwrap();
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();

    let script = "import os, socket\n\
        e = os.environ\n\
        try:\n    os.fstat(5); extra = 'fd5-open'\nexcept OSError:\n    extra = 'fd5-closed'\n\
        line = '%s %s %s %d %s' % (e['LISTEN_FDS'], e['LISTEN_PID'], e['LISTEN_FDNAMES'], os.getpid(), extra)\n\
        for fd in (3, 4):\n\
        \x20   c, _ = socket.socket(fileno=fd).accept()\n\
        \x20   c.sendall(('%d %s\\n' % (fd, line)).encode())\n\
        \x20   c.close()\n";
    let python = which("python3");
    let mut spec = SpawnSpec::new(CString::new(python.as_os_str().as_encoded_bytes()).unwrap());
    spec.argv = vec![
        c"python3".into(),
        c"-c".into(),
        CString::new(script).unwrap(),
    ];
    spec.env = vec![c"PATH=/usr/bin:/bin".into(), c"LISTEN_FDS=99".into()];
    spec.stderr = corral::cgroup::spawn::Stdio::Inherit;
    let name = s
        .fd_name(&UnitName::parse_strict("web.socket").unwrap())
        .to_string();
    pass_fds(&mut spec, &l.named(&name));
    let child = Child(spawn::spawn(&spec).unwrap().pid);
    let pid = child.0;
    let mut got = String::new();
    unix.read_to_string(&mut got).unwrap();
    tcp.read_to_string(&mut got).unwrap();
    assert_eq!(
        got,
        format!("3 2 {pid} web:web {pid} fd5-closed\n4 2 {pid} web:web {pid} fd5-closed\n")
    );
    std::mem::forget(child);
    assert!(matches!(
        reap(pid),
        nix::sys::wait::WaitStatus::Exited(_, 0)
    ));
}

/// The absolute path of `tool` on PATH.
fn which(tool: &str) -> std::path::PathBuf {
    std::env::split_paths(&std::env::var_os("PATH").unwrap())
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
        .unwrap()
}
