//! One cgroup root, one owner: the record a manager leaves on the cgroup it
//! manages, and the check other managers make before they touch it.
//!
//! A manager holds an exclusive `flock` on a lock file in its own runtime
//! directory for as long as it runs, and names that file in a `user.*`
//! extended attribute of its cgroup root (`user.corral.owner.<pid>`). The
//! lock ends with the process, kill -9 included, so a record whose lock is
//! not held is stale. Only the cgroup's owner (and root) may write its
//! `user.*` attributes, and the lock file must belong to the cgroup's owner,
//! so no other user can claim, or fake a claim on, someone's subtree.
//! docs/CGROUPS.md ("Ownership") has the reasoning.

use std::ffi::CString;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::{CgroupError, Op, Result};

/// Prefix of the ownership records' attribute names.
const PREFIX: &str = "user.corral.owner.";

/// A live manager that owns a cgroup root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// The process holding the lock (from /proc/locks).
    pub pid: u32,
    /// What it said it is, e.g. `corrald --user`.
    pub role: String,
    /// Its lock file.
    pub lock: PathBuf,
}

/// This process's ownership of a cgroup root; the record is removed on drop
/// and the lock released with the file.
#[derive(Debug)]
pub struct Claim {
    dir: PathBuf,
    name: String,
    value: String,
    _lock: File,
}

impl Claim {
    /// Claims `dir` for this process as `role`, locking `lock` (created 0600
    /// if missing). Fails with [`CgroupError::LockHeld`] when another process
    /// holds `lock`, and with [`CgroupError::Owned`] when another live manager
    /// owns `dir`; stale records of dead managers are removed.
    pub fn take(dir: &Path, lock: &Path, role: &str) -> Result<Claim> {
        Claim::take_held(dir, lock, role, None)
    }

    /// As [`Claim::take`], with `held`: `lock` opened and locked by a
    /// previous image of this process (`daemon-reexec`), whose lock is kept
    /// (flock again on the same open file) so no other manager can claim in between.
    pub fn take_held(dir: &Path, lock: &Path, role: &str, held: Option<File>) -> Result<Claim> {
        let file = match held {
            Some(f) => f,
            None => std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(lock)
                .map_err(|e| CgroupError::io(Op::Open, lock, e))?,
        };
        // SAFETY: flock on an fd we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
                return Err(CgroupError::LockHeld {
                    lock: lock.to_path_buf(),
                    pid: lock_holder(lock).unwrap_or(0),
                });
            }
            return Err(CgroupError::io(Op::Lock, lock, err));
        }
        let pid = std::process::id();
        let claim = Claim {
            dir: dir.to_path_buf(),
            name: format!("{PREFIX}{pid}"),
            value: format!(
                "pid={pid} uid={} role={} lock={}",
                nix::unistd::geteuid(),
                role.replace(' ', "_"),
                lock.display()
            ),
            _lock: file,
        };
        // Our record first, then everyone else's: two managers claiming at
        // once each see the other's live record and both refuse; neither
        // can come to believe it is alone.
        if let Err(e) = claim.renew() {
            // Kernels before 5.7 keep no user.* attributes on cgroupfs: run,
            // but say that a second manager would go unnoticed.
            if e.errno() == Some(libc::EOPNOTSUPP) {
                eprintln!(
                    "corrald: cannot record the ownership of {} ({e}); a second manager on \
                     this cgroup root would not be noticed",
                    dir.display()
                );
                return Ok(claim);
            }
            return Err(e);
        }
        let dir_uid = std::fs::metadata(dir)
            .map_err(|e| CgroupError::io(Op::Stat, dir, e))?
            .uid();
        for (name, value) in records(dir)? {
            if name == claim.name {
                continue;
            }
            match live(&value, dir_uid) {
                Some(owner) if owner.pid != pid => {
                    drop(claim);
                    return Err(CgroupError::Owned {
                        path: dir.to_path_buf(),
                        owner,
                    });
                }
                _ => remove_xattr(dir, &name),
            }
        }
        Ok(claim)
    }

    /// (Re)writes this claim's record, e.g. on a root recreated after it
    /// was removed under the manager.
    pub fn renew(&self) -> Result<()> {
        set_xattr(&self.dir, &self.name, &self.value)
    }

    /// The locked file, for `daemon-reexec` to pass to the new image.
    pub fn lock_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        std::os::fd::AsFd::as_fd(&self._lock)
    }

    /// The cgroup this claim is on.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        remove_xattr(&self.dir, &self.name);
    }
}

/// The live manager that owns `dir`, if any.
pub fn owner_of(dir: &Path) -> Result<Option<Owner>> {
    let dir_uid = std::fs::metadata(dir)
        .map_err(|e| CgroupError::io(Op::Stat, dir, e))?
        .uid();
    Ok(records(dir)?
        .into_iter()
        .find_map(|(_, value)| live(&value, dir_uid)))
}

/// The owner a record names, if its lock is held: the lock file must be a
/// regular file of the cgroup's owner (no one may point at another user's
/// lock to fake a claim), and /proc/locks must list an exclusive flock on it.
/// Nothing is opened, so a probe never disturbs the owner's lock.
fn live(value: &str, dir_uid: u32) -> Option<Owner> {
    let field = |key: &str| {
        value
            .split(' ')
            .find_map(|f| f.strip_prefix(key)?.strip_prefix('='))
    };
    let role = field("role")?.to_string();
    // The lock path is the last field and may contain spaces.
    let lock = PathBuf::from(value.split_once(" lock=")?.1);
    let role = role.replace('_', " ");
    let meta = std::fs::symlink_metadata(&lock).ok()?;
    if !meta.file_type().is_file() || meta.uid() != dir_uid {
        return None;
    }
    let pid = holder(meta.dev(), meta.ino())?;
    Some(Owner { pid, role, lock })
}

/// The process holding an exclusive flock on `lock`, if any.
pub fn lock_holder(lock: &Path) -> Option<u32> {
    let meta = std::fs::metadata(lock).ok()?;
    holder(meta.dev(), meta.ino())
}

/// The pid of an exclusive flock on device `dev`, inode `ino` in /proc/locks
/// (`1: FLOCK  ADVISORY  WRITE 26919 fe:00:5693863 0 EOF`).
fn holder(dev: u64, ino: u64) -> Option<u32> {
    let want = format!("{:02x}:{:02x}:{ino}", libc::major(dev), libc::minor(dev));
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    locks.lines().find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        // A blocked waiter's line starts with "->" and shifts the fields.
        (f.len() >= 6 && f[1] == "FLOCK" && f[3] == "WRITE" && f[5] == want)
            .then(|| f[4].parse().ok())
            .flatten()
    })
}

/// Every ownership record on `dir`: attribute name and value.
fn records(dir: &Path) -> Result<Vec<(String, String)>> {
    let c = cpath(dir)?;
    let io = |e| CgroupError::io(Op::Xattr, dir, e);
    let mut buf = vec![0u8; 4096];
    let len = loop {
        // SAFETY: c is NUL-terminated and buf is valid for its length.
        let n = unsafe { libc::listxattr(c.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if n >= 0 {
            break n as usize;
        }
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::ERANGE) {
            return Err(io(err));
        }
        buf.resize(buf.len() * 2, 0);
    };
    let mut out = Vec::new();
    for name in buf[..len].split(|b| *b == 0) {
        let Ok(name) = std::str::from_utf8(name) else {
            continue;
        };
        if !name.starts_with(PREFIX) {
            continue;
        }
        if let Some(value) = get_xattr(&c, name) {
            out.push((name.to_string(), value));
        }
    }
    Ok(out)
}

pub(super) fn get_xattr(dir: &CString, name: &str) -> Option<String> {
    let n = CString::new(name).ok()?;
    let mut buf = vec![0u8; 4096];
    // SAFETY: both strings are NUL-terminated and buf is valid for its length.
    let len =
        unsafe { libc::getxattr(dir.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if len < 0 {
        return None;
    }
    buf.truncate(len as usize);
    String::from_utf8(buf).ok()
}

pub(super) fn set_xattr(dir: &Path, name: &str, value: &str) -> Result<()> {
    let c = cpath(dir)?;
    let n = CString::new(name).map_err(|_| CgroupError::InvalidName { name: name.into() })?;
    // SAFETY: both strings are NUL-terminated; value is valid for its length.
    let r = unsafe {
        libc::setxattr(
            c.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if r != 0 {
        return Err(CgroupError::io(
            Op::Xattr,
            dir,
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// Removes a record; one already gone (or a cgroup already removed) is fine.
fn remove_xattr(dir: &Path, name: &str) {
    let (Ok(c), Ok(n)) = (cpath(dir), CString::new(name)) else {
        return;
    };
    // SAFETY: both strings are NUL-terminated.
    unsafe { libc::removexattr(c.as_ptr(), n.as_ptr()) };
}

pub(super) fn cpath(dir: &Path) -> Result<CString> {
    CString::new(dir.as_os_str().as_bytes()).map_err(|_| CgroupError::NotCgroup2 {
        path: dir.to_path_buf(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_without_a_held_lock_is_stale() {
        let tmp = tempfile::tempdir().unwrap();
        let lock = tmp.path().join("cgroup.lock");
        std::fs::write(&lock, "").unwrap();
        let uid = nix::unistd::geteuid().as_raw();
        let value = format!(
            "pid=1 uid={uid} role=corrald_--user lock={}",
            lock.display()
        );
        assert_eq!(live(&value, uid), None);
        let file = File::open(&lock).unwrap();
        // SAFETY: flock on an fd we own.
        assert_eq!(unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) }, 0);
        let owner = live(&value, uid).expect("held lock is live");
        assert_eq!(owner.pid, std::process::id());
        assert_eq!(owner.role, "corrald --user");
        // A lock file of another user never counts for this cgroup.
        assert_eq!(live(&value, uid + 1), None);
        assert_eq!(lock_holder(&lock), Some(std::process::id()));
    }
}
