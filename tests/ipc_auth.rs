//! Who may talk to a manager: SO_PEERCRED checks against a real other uid
//! (a forked child that setuid's to nobody), and the socket's file modes.
//! Needs root; without it the tests print a note and return, unless
//! CORRAL_REQUIRE_CGROUP=1 (CI), where they fail.

mod common;

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;

use corral::ipc::frame::{encode, read_frame_blocking};
use corral::ipc::server::serve_with;
use corral::ipc::socket::bind_shared;
use corral::ipc::{
    Access, Client, ErrorCode, Frame, Handler, IpcError, PeerCred, Replies, ServerConfig, Welcome,
    bind_private,
};
use nix::sys::socket::{SockaddrLike, UnixAddr};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, fork};
use serde::{Deserialize, Serialize};

/// The uid the forked child becomes: `nobody` on Debian.
const NOBODY: u32 = 65534;

#[derive(Debug, Serialize, Deserialize)]
enum Req {
    WhoAmI,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
enum Resp {
    You { uid: u32, gid: u32, pid: i32 },
}

struct WhoAmI;

impl Handler for WhoAmI {
    type Request = Req;
    type Response = Resp;

    async fn handle(
        &self,
        peer: &PeerCred,
        _request: Req,
        replies: &mut Replies<'_, Resp>,
    ) -> Result<(), IpcError> {
        let r = Resp::You {
            uid: peer.uid,
            gid: peer.gid,
            pid: peer.pid,
        };
        replies.reply(&r).await
    }
}

/// Whether the other-uid tests can run: they setuid a forked child.
fn have_root() -> bool {
    common::require("the other-uid tests", &common::missing_root())
}

/// Held (shared) while a forked child of [`exchange_as`] lives: the child
/// inherits every fd of the test process, so a socket another test closes
/// meanwhile stays open in it and still answers connects.
static FORKS: std::sync::RwLock<()> = std::sync::RwLock::new(());

/// Forks a child that becomes `uid`, connects to `path`, writes `send`, half-
/// closes, and relays everything it reads back until EOF. The child only makes
/// async-signal-safe calls on memory prepared before the fork (the test
/// process has threads). Returns the bytes the server sent, or the child's
/// failure code (10 setuid, 11 socket, 12 connect, 13 write).
fn exchange_as(uid: u32, path: &Path, send: &[u8]) -> Result<Vec<u8>, i32> {
    let _forking = FORKS.read().unwrap_or_else(|e| e.into_inner());
    let addr = UnixAddr::new(path).unwrap();
    let (rd, wr) = nix::unistd::pipe().unwrap();
    use std::os::fd::AsRawFd;
    let (rd_raw, wr_raw) = (rd.as_raw_fd(), wr.as_raw_fd());
    // SAFETY: the child calls only async-signal-safe libc functions and _exit.
    match unsafe { fork() }.unwrap() {
        ForkResult::Child => unsafe {
            libc::close(rd_raw);
            let gid = uid as libc::gid_t;
            if libc::setgroups(0, std::ptr::null()) != 0
                || libc::setgid(gid) != 0
                || libc::setuid(uid) != 0
            {
                libc::_exit(10);
            }
            let s = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
            if s < 0 {
                libc::_exit(11);
            }
            if libc::connect(s, addr.as_ptr().cast(), addr.len()) != 0 {
                libc::_exit(12);
            }
            let mut off = 0;
            while off < send.len() {
                let n = libc::write(s, send[off..].as_ptr().cast(), send.len() - off);
                if n <= 0 {
                    libc::_exit(13);
                }
                off += n as usize;
            }
            libc::shutdown(s, libc::SHUT_WR);
            let mut buf = [0u8; 4096];
            loop {
                let n = libc::read(s, buf.as_mut_ptr().cast(), buf.len());
                if n <= 0 {
                    break;
                }
                libc::write(wr_raw, buf.as_ptr().cast(), n as usize);
            }
            libc::_exit(0);
        },
        ForkResult::Parent { child } => {
            drop(wr);
            let mut out = Vec::new();
            std::io::Read::read_to_end(&mut fs::File::from(rd), &mut out).unwrap();
            match waitpid(child, None).unwrap() {
                WaitStatus::Exited(_, 0) => Ok(out),
                WaitStatus::Exited(_, code) => Err(code),
                other => panic!("child ended oddly: {other:?}"),
            }
        }
    }
}

/// A Hello (and optionally one request), encoded before any fork.
fn hello_then(request: Option<&Req>) -> Vec<u8> {
    let mut bytes = encode(&common::ipc::hello()).unwrap();
    if let Some(r) = request {
        bytes.extend(encode(r).unwrap());
    }
    bytes
}

/// Serves WhoAmI on a socket every uid can reach, with the given access rule.
async fn open_server(
    access: Access,
) -> (
    tempfile::TempDir,
    std::path::PathBuf,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<(), IpcError>>,
) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run/system.sock");
    // The temp dir itself is 0700; open it so that nobody can reach the socket.
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let listener = bind_shared(&path).unwrap();
    let config = ServerConfig {
        access,
        ..ServerConfig::anyone()
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let join = tokio::spawn(serve_with(listener, Arc::new(WhoAmI), config, stopped));
    (dir, path, stop, join)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_uid_is_refused_with_a_clear_message_and_the_owner_is_still_served() {
    if !have_root() {
        return;
    }
    let (_dir, path, stop, join) = open_server(Access::Owner(1000)).await;
    let p = path.clone();
    let bytes = tokio::task::spawn_blocking(move || {
        exchange_as(NOBODY, &p, &hello_then(Some(&Req::WhoAmI)))
    })
    .await
    .unwrap()
    .expect("the child could not reach the socket");
    let mut r = &bytes[..];
    let answer: Frame<Welcome> = read_frame_blocking(&mut r).unwrap().unwrap();
    let Frame::Error(e) = answer else {
        panic!("uid {NOBODY} was let in: {answer:?}")
    };
    assert_eq!(e.code, ErrorCode::PERMISSION_DENIED);
    assert_eq!(
        e.message,
        "permission denied: uid 65534 may not control the manager of uid 1000"
    );
    // Nothing after the refusal: the request was never handled.
    assert!(r.is_empty(), "{} more bytes after the refusal", r.len());

    // Root is always let in, and the server kept running.
    let p = path.clone();
    let me = tokio::task::spawn_blocking(move || {
        Client::<Req, Resp>::connect(&p)
            .unwrap()
            .request(&Req::WhoAmI)
            .unwrap()
    })
    .await
    .unwrap();
    assert!(matches!(me, Resp::You { uid: 0, .. }));
    stop.send(()).unwrap();
    join.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_access_hands_the_peer_credentials_to_the_handler() {
    if !have_root() {
        return;
    }
    let (_dir, path, stop, join) = open_server(Access::Anyone).await;
    let bytes = tokio::task::spawn_blocking(move || {
        exchange_as(NOBODY, &path, &hello_then(Some(&Req::WhoAmI)))
    })
    .await
    .unwrap()
    .expect("the child could not reach the socket");
    let mut r = &bytes[..];
    let welcome: Frame<Welcome> = read_frame_blocking(&mut r).unwrap().unwrap();
    assert!(matches!(welcome, Frame::Reply(_)), "{welcome:?}");
    let answer: Frame<Resp> = read_frame_blocking(&mut r).unwrap().unwrap();
    let Frame::Reply(Resp::You { uid, gid, pid }) = answer else {
        panic!("{answer:?}")
    };
    assert_eq!((uid, gid), (NOBODY, NOBODY));
    assert!(pid > 0 && pid as u32 != std::process::id());
    stop.send(()).unwrap();
    join.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_socket_is_0600_in_a_0700_dir_whatever_the_umask_and_others_cannot_connect() {
    if !have_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let path = dir.path().join("user/corral/control.sock");
    // umask 0 would make a plain bind() 0777 and mkdir 0777.
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::empty());
    let listener = bind_private(&path);
    nix::sys::stat::umask(old);
    let _listener = listener.unwrap();
    let sock = fs::symlink_metadata(&path).unwrap();
    assert!(sock.file_type().is_socket());
    assert_eq!(sock.mode() & 0o7777, 0o600);
    let parent = fs::metadata(path.parent().unwrap()).unwrap();
    assert_eq!(parent.mode() & 0o7777, 0o700);
    assert_eq!(parent.uid(), 0);
    // The kernel keeps another uid out before SO_PEERCRED is even consulted.
    let p = path.clone();
    let r = tokio::task::spawn_blocking(move || exchange_as(NOBODY, &p, &hello_then(None)))
        .await
        .unwrap();
    assert_eq!(r, Err(12), "uid {NOBODY} could connect to a private socket");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_socket_is_replaced_but_a_live_manager_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("corral/control.sock");
    // No forked child of another test may hold the closed socket open.
    let _no_forks = FORKS.write().unwrap_or_else(|e| e.into_inner());
    // A socket left by a manager that died: bound, then closed.
    let first = bind_private(&path).unwrap();
    drop(first);
    assert!(path.exists());
    let live = bind_private(&path).expect("a stale socket must be replaced");
    // Now someone answers on it: a second manager must refuse to start.
    let err = bind_private(&path).err().unwrap();
    assert!(matches!(err, IpcError::AlreadyRunning { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "another corral manager is already listening on {} (it accepted a connection); \
             stop it first, or give this one another socket path",
            path.display()
        )
    );
    // The live listener's socket file is untouched.
    assert!(fs::symlink_metadata(&path).unwrap().file_type().is_socket());
    drop(live);
}

#[tokio::test]
async fn unsafe_socket_paths_are_refused_with_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700)).unwrap();
    let open_dir = dir.path().join("open");
    fs::create_dir(&open_dir).unwrap();
    fs::set_permissions(&open_dir, fs::Permissions::from_mode(0o755)).unwrap();
    let err = bind_private(&open_dir.join("control.sock")).err().unwrap();
    assert_eq!(
        err.to_string(),
        format!(
            "cannot use {0} for the control socket: the directory has mode 0755, more open \
             than 0700; `chmod 700 {0}` or choose another socket path",
            open_dir.display()
        )
    );
    let file = dir.path().join("not-a-socket");
    // Its directory is acceptable; the file itself is not a socket.
    fs::write(&file, "x").unwrap();
    let err = bind_private(&file).err().unwrap();
    assert!(
        err.to_string()
            .ends_with("it exists and is not a socket; remove it if nothing needs it"),
        "{err}"
    );
    assert_eq!(fs::read(&file).unwrap(), b"x");
}

#[tokio::test]
async fn foreign_socket_directory_is_refused() {
    if !have_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let theirs = dir.path().join("theirs");
    fs::create_dir(&theirs).unwrap();
    fs::set_permissions(&theirs, fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::chown(&theirs, Some(NOBODY), Some(NOBODY)).unwrap();
    let err = bind_private(&theirs.join("control.sock")).err().unwrap();
    assert!(
        err.to_string()
            .contains("the directory is owned by uid 65534, not by uid 0 (us)"),
        "{err}"
    );
}
