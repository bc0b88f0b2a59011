//! Creating the listening socket safely: the right modes whatever the umask,
//! and never stealing the socket of a manager that is still alive.

use std::fs::{self, DirBuilder, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::net::{UnixListener as StdUnixListener, UnixStream as StdUnixStream};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use tokio::net::UnixListener;

use super::IpcError;

/// Binds a socket only its owner can use: the parent directory is created
/// 0700 (an existing one must be ours and closed to others), the socket is
/// 0600. A socket left by a dead manager is replaced; a live one is not.
/// Must be called inside a tokio runtime.
pub fn bind_private(path: &Path) -> Result<UnixListener, IpcError> {
    bind(path, 0o700, 0o600)
}

/// Binds a socket every local user may connect to (the system manager's,
/// which authorises each request from SO_PEERCRED): directory 0755, socket
/// 0666. The directory, if it exists, must be ours and writable only by us.
pub fn bind_shared(path: &Path) -> Result<UnixListener, IpcError> {
    bind(path, 0o755, 0o666)
}

/// Shared body of [`bind_private`] and [`bind_shared`].
fn bind(path: &Path, dir_mode: u32, socket_mode: u32) -> Result<UnixListener, IpcError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => {
            return Err(IpcError::UnsafePath {
                path: path.to_path_buf(),
                reason: "the socket path needs a directory; give an absolute path".into(),
            });
        }
    };
    prepare_dir(dir, dir_mode)?;

    // Two managers starting at once must not both judge the socket stale and
    // remove each other's: the check-remove-bind sequence runs under a lock.
    let lock_path = lock_path(path);
    let lock_file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&lock_path)
        .map_err(|e| IpcError::io("open socket lock file", Some(&lock_path), e))?;
    let _lock = Flock::lock(lock_file, FlockArg::LockExclusive).map_err(|(_, e)| {
        IpcError::io(
            "lock socket lock file",
            Some(&lock_path),
            io::Error::from(e),
        )
    })?;

    remove_if_stale(path)?;
    let listener =
        StdUnixListener::bind(path).map_err(|e| IpcError::io("bind socket", Some(path), e))?;
    // bind() applies the umask; set the mode we mean. The directory's mode
    // already shuts others out during this window.
    fs::set_permissions(path, fs::Permissions::from_mode(socket_mode))
        .map_err(|e| IpcError::io("chmod socket", Some(path), e))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| IpcError::io("set socket non-blocking", Some(path), e))?;
    UnixListener::from_std(listener).map_err(|e| IpcError::io("register socket", Some(path), e))
}

/// The lock file guarding a socket path: `control.sock` → `control.sock.lock`.
fn lock_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

/// Creates `dir` with `mode` (whatever the umask), or checks that an existing
/// one is ours and no more open than `mode`.
fn prepare_dir(dir: &Path, mode: u32) -> Result<(), IpcError> {
    let me = nix::unistd::geteuid().as_raw();
    match fs::symlink_metadata(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            DirBuilder::new()
                .recursive(true)
                .mode(mode)
                .create(dir)
                .map_err(|e| IpcError::io("create socket directory", Some(dir), e))?;
            fs::set_permissions(dir, fs::Permissions::from_mode(mode))
                .map_err(|e| IpcError::io("chmod socket directory", Some(dir), e))
        }
        Err(e) => Err(IpcError::io("stat socket directory", Some(dir), e)),
        Ok(meta) => {
            if !meta.is_dir() {
                return Err(IpcError::UnsafePath {
                    path: dir.to_path_buf(),
                    reason: "it is not a directory (a symlink or a file); remove it".into(),
                });
            }
            if meta.uid() != me {
                return Err(IpcError::UnsafePath {
                    path: dir.to_path_buf(),
                    reason: format!(
                        "the directory is owned by uid {}, not by uid {me} (us); \
                         remove it or choose another socket path",
                        meta.uid()
                    ),
                });
            }
            let extra = meta.mode() & 0o777 & !mode;
            if extra != 0 {
                return Err(IpcError::UnsafePath {
                    path: dir.to_path_buf(),
                    reason: format!(
                        "the directory has mode {:04o}, more open than {mode:04o}; \
                         `chmod {mode:o} {}` or choose another socket path",
                        meta.mode() & 0o7777,
                        dir.display()
                    ),
                });
            }
            Ok(())
        }
    }
}

/// Removes a socket nobody answers on; refuses if someone does, or if the
/// path is not a socket at all.
fn remove_if_stale(path: &Path) -> Result<(), IpcError> {
    let meta = match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(IpcError::io("stat socket", Some(path), e)),
        Ok(m) => m,
    };
    if !std::os::unix::fs::FileTypeExt::is_socket(&meta.file_type()) {
        return Err(IpcError::UnsafePath {
            path: path.to_path_buf(),
            reason: "it exists and is not a socket; remove it if nothing needs it".into(),
        });
    }
    match StdUnixStream::connect(path) {
        Ok(_) => Err(IpcError::AlreadyRunning {
            path: path.to_path_buf(),
        }),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            fs::remove_file(path).map_err(|e| IpcError::io("remove stale socket", Some(path), e))
        }
        Err(e) => Err(IpcError::io("probe existing socket", Some(path), e)),
    }
}
