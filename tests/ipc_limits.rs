//! Connection limits against real other uids: one user holding many
//! connections (half frames, silent handshakes) cannot lock another user or
//! root out, on an in-process server with small limits and on a real
//! `corrald --system`. The other uids' connections are made by a forked
//! child that setuid's, connects and hands the sockets back (SO_PEERCRED is
//! fixed at connect time), so the test holds them itself.
//! Needs root; without it the tests return early, unless
//! CORRAL_REQUIRE_CGROUP=1, where they fail.

mod common;

use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::system::{Background, TestSystem, can_run, stand_in_manager, test_user};
use corral::ipc::frame::{encode, read_frame_blocking};
use corral::ipc::server::serve_with;
use corral::ipc::socket::bind_shared;
use corral::ipc::{
    Client, ErrorCode, Frame, Handler, Hello, IpcError, PROTOCOL_VERSION, PeerCred, ProtoError,
    Replies, ServerConfig, Welcome,
};
use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, fork};

/// Connects `n` sockets to `path` as `uid`/`gid` (a forked child that
/// setuid's, connects one after the other and sends each socket back over a
/// socketpair). The child makes only async-signal-safe calls on memory
/// prepared before the fork (the test process has threads).
fn connect_as(uid: u32, gid: u32, path: &Path, n: usize) -> Vec<UnixStream> {
    let addr = nix::sys::socket::UnixAddr::new(path).unwrap();
    let (ours, theirs) = UnixStream::pair().unwrap();
    let theirs_fd = theirs.as_raw_fd();
    // SAFETY: pure arithmetic on a constant size.
    let space = unsafe { libc::CMSG_SPACE(size_of::<RawFd>() as u32) } as usize;
    let mut control = vec![0u8; space];
    let control_ptr = control.as_mut_ptr();
    // SAFETY: the child calls only async-signal-safe libc functions and _exit.
    match unsafe { fork() }.unwrap() {
        ForkResult::Child => unsafe {
            use nix::sys::socket::SockaddrLike;
            if libc::setgroups(0, std::ptr::null()) != 0
                || libc::setgid(gid) != 0
                || libc::setuid(uid) != 0
            {
                libc::_exit(10);
            }
            for _ in 0..n {
                let s = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
                if s < 0 {
                    libc::_exit(11);
                }
                if libc::connect(s, addr.as_ptr().cast(), addr.len()) != 0 {
                    libc::_exit(12);
                }
                let mut byte = 0u8;
                let mut iov = libc::iovec {
                    iov_base: (&raw mut byte).cast(),
                    iov_len: 1,
                };
                let mut msg: libc::msghdr = std::mem::zeroed();
                msg.msg_iov = &raw mut iov;
                msg.msg_iovlen = 1;
                msg.msg_control = control_ptr.cast();
                msg.msg_controllen = space;
                let cmsg = libc::CMSG_FIRSTHDR(&msg);
                (*cmsg).cmsg_level = libc::SOL_SOCKET;
                (*cmsg).cmsg_type = libc::SCM_RIGHTS;
                (*cmsg).cmsg_len = libc::CMSG_LEN(size_of::<RawFd>() as u32) as usize;
                std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>(), s);
                if libc::sendmsg(theirs_fd, &msg, 0) != 1 {
                    libc::_exit(13);
                }
                libc::close(s);
            }
            libc::_exit(0);
        },
        ForkResult::Parent { child } => {
            drop(theirs);
            let mut streams = Vec::new();
            while streams.len() < n {
                let mut byte = [0u8; 1];
                let mut iov = [std::io::IoSliceMut::new(&mut byte)];
                let mut cmsg = nix::cmsg_space!(RawFd);
                let msg = recvmsg::<()>(
                    ours.as_raw_fd(),
                    &mut iov,
                    Some(&mut cmsg),
                    MsgFlags::MSG_CMSG_CLOEXEC,
                )
                .unwrap();
                if msg.bytes == 0 {
                    break;
                }
                for c in msg.cmsgs().unwrap() {
                    if let ControlMessageOwned::ScmRights(fds) = c {
                        for fd in fds {
                            // SAFETY: a descriptor just received, owned by nobody else.
                            streams.push(unsafe { UnixStream::from_raw_fd(fd) });
                        }
                    }
                }
            }
            let status = waitpid(child, None).unwrap();
            assert_eq!(
                status,
                WaitStatus::Exited(child, 0),
                "the child connecting as uid {uid} failed (10 setuid, 11 socket, 12 connect, 13 sendmsg)"
            );
            assert_eq!(streams.len(), n);
            for s in &streams {
                s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            }
            streams
        }
    }
}

/// A Hello and, with `partial`, the first byte of a 50-byte request: one write.
fn hello_then(partial: bool) -> Vec<u8> {
    let mut bytes = encode(&Hello {
        protocol: PROTOCOL_VERSION,
        client_version: "test".into(),
    })
    .unwrap();
    if partial {
        bytes.extend([50, 0, 0, 0, 1]);
    }
    bytes
}

/// Sends `bytes` and reads the server's first answer: `Ok` for a welcome,
/// the error frame otherwise. A refused socket may already be closed, so a
/// failed write is not an error: the refusal is still there to read.
fn first_answer(s: &mut UnixStream, bytes: &[u8]) -> Result<(), ProtoError> {
    let _ = s.write_all(bytes);
    match read_frame_blocking::<Frame<Welcome>, _>(s) {
        Ok(Some(Frame::Reply(_))) => Ok(()),
        Ok(Some(Frame::Error(e))) => Err(e),
        other => panic!("expected a welcome or an error frame, got {other:?}"),
    }
}

/// Answers every request with the peer's uid.
struct Uid;

impl Handler for Uid {
    type Request = ();
    type Response = u32;

    async fn handle(
        &self,
        peer: &PeerCred,
        _request: (),
        replies: &mut Replies<'_, u32>,
    ) -> Result<(), IpcError> {
        replies.reply(&peer.uid).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_uid_is_capped_and_root_keeps_its_reserve() {
    if !can_run("a_uid_is_capped") {
        return;
    }
    let dir = tempfile::Builder::new()
        .prefix("corral-limits")
        .tempdir()
        .unwrap();
    // The temp dir itself is 0700; open it so that other uids reach the socket.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = dir.path().join("run/limits.sock");
    let listener = bind_shared(&path).unwrap();
    let config = ServerConfig {
        max_connections: 4,
        max_per_uid: 2,
        root_reserve: 1,
        // Silent connections must keep their slots for the whole test.
        handshake_timeout: Duration::from_secs(600),
        ..ServerConfig::anyone()
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve_with(listener, Arc::new(Uid), config, stopped));

    let p = path.clone();
    let (a, b) = tokio::task::spawn_blocking(move || {
        // uid 65534 takes its 2, and is refused a third.
        let mut a = connect_as(65534, 65534, &p, 3);
        let refusal = first_answer(&mut a[2], &[]).unwrap_err();
        assert_eq!(refusal.code, ErrorCode::BUSY);
        assert!(
            refusal
                .message
                .starts_with("uid 65534 already holds its maximum of 2 connections"),
            "{}",
            refusal.message
        );
        // uid 65533 takes the last slot open to users; its second is refused.
        let mut b = connect_as(65533, 65533, &p, 2);
        let refusal = first_answer(&mut b[1], &[]).unwrap_err();
        assert_eq!(refusal.code, ErrorCode::BUSY);
        assert!(
            refusal.message.contains("maximum of 4 connections"),
            "{}",
            refusal.message
        );
        (a, b)
    })
    .await
    .unwrap();

    // Root still gets in, and the users' connections were admitted.
    let p = path.clone();
    let (a, b) = tokio::task::spawn_blocking(move || {
        let mut root = Client::<(), u32>::connect(&p).unwrap();
        assert_eq!(root.request(&()).unwrap(), 0);
        let (mut a, mut b) = (a, b);
        for s in a.iter_mut().take(2).chain(b.iter_mut().take(1)) {
            first_answer(s, &hello_then(false)).expect("an admitted connection is welcomed");
        }
        (a, b)
    })
    .await
    .unwrap();
    drop((a, b));
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}

#[test]
fn half_frames_of_one_user_do_not_lock_another_out_of_login() {
    if !can_run("half_frames_of_one_user") {
        return;
    }
    let hostile = test_user("corral-t1", true);
    let other = test_user("corral-t2", false);
    let tmp = tempfile::tempdir().unwrap();
    let sys = TestSystem::start(Some(stand_in_manager(tmp.path(), false)));

    // More connections than the system socket's slots for users (96): before
    // the per-uid cap, these alone kept everyone else out.
    let mut conns = connect_as(hostile.uid, hostile.gid, &sys.socket(), 100);
    let mut held = Vec::new();
    let mut refused = 0;
    for mut s in conns.drain(..) {
        match first_answer(&mut s, &hello_then(true)) {
            Ok(()) => held.push(s),
            Err(e) => {
                assert_eq!(e.code, ErrorCode::BUSY, "{}", e.message);
                assert!(
                    e.message.starts_with(&format!(
                        "uid {} already holds its maximum of 8 connections",
                        hostile.uid
                    )),
                    "{}",
                    e.message
                );
                refused += 1;
            }
        }
    }
    assert_eq!((held.len(), refused), (8, 92));

    // Another user logs in meanwhile, and root is answered too. Output()
    // bounds the wait only as a hang guard.
    let login = Background::spawn(
        sys.corral_command(Some(&other), &["login", "--wait"]),
        "corral login --wait as corral-t2",
    );
    let out = login.output(60);
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        sys.stderr()
    );
    assert!(
        sys.status(&other).contains("sessions: 1"),
        "{}",
        sys.status(&other)
    );

    // The held half frames are dropped at the frame deadline, with a reason.
    for mut s in held {
        match read_frame_blocking::<Frame<()>, _>(&mut s) {
            Ok(Some(Frame::Error(e))) => {
                assert_eq!(e.code, ErrorCode::TIMEOUT, "{}", e.message);
                assert!(
                    e.message.contains("incomplete request frame"),
                    "{}",
                    e.message
                );
            }
            other => panic!("a half frame was not dropped with TIMEOUT: {other:?}"),
        }
    }
    assert!(
        sys.corral(&["logout", &other.name]).status.success(),
        "{}",
        sys.stderr()
    );
}
