//! One user manager: its delegated cgroup subtree, its spawn as the user, its
//! ready pipe and its captured output; and the teardown of a user's subtree.

use std::ffi::CString;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::sync::oneshot;

use super::users::UserInfo;
use super::{SystemError, SystemOptions, rundir};
use crate::cgroup::spawn::{self, Credentials, FdMapping, SpawnSpec, Stdio};
use crate::cgroup::{self, Cgroup};
use crate::ipc::system_proto::CgroupNode;

/// File descriptor number the user manager gets its ready pipe on.
pub const MANAGER_READY_FD: RawFd = 3;

/// PATH given to user managers (and so, by default, to their units).
const USER_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// Where everything of the system manager lives; cheap to clone.
#[derive(Debug, Clone)]
pub struct Layout {
    /// Parent of every `user-UID/` cgroup.
    cgroup_root: PathBuf,
    /// Parent of the users' runtime directories.
    user_runtime_base: PathBuf,
    /// Directory of the user managers' output logs.
    log_dir: PathBuf,
    /// The `corrald` binary started with `--user`.
    exe: PathBuf,
}

/// A user manager just spawned.
#[derive(Debug)]
pub struct Started {
    /// Its PID (our child: the SIGCHLD loop reaps it).
    pub pid: u32,
    /// Resolves when it writes its ready line; dropped if it closes the pipe first.
    pub ready: oneshot::Receiver<()>,
}

impl Layout {
    /// Resolves the defaults of `options` (cgroup2 mount, own executable).
    pub fn new(options: &SystemOptions) -> Result<Self, SystemError> {
        let cgroup_root = match &options.cgroup_root {
            Some(root) => root.clone(),
            None => cgroup::find_mount()?.join("corral"),
        };
        let exe = match &options.user_manager_exe {
            Some(exe) => exe.clone(),
            None => std::env::current_exe().map_err(|source| SystemError::Io {
                op: "find own executable",
                path: PathBuf::from("/proc/self/exe"),
                source,
            })?,
        };
        Ok(Layout {
            cgroup_root,
            user_runtime_base: options.user_runtime_base.clone(),
            log_dir: options.state_dir.join("log"),
            exe,
        })
    }

    /// Creates the cgroup root and the log directory.
    pub fn prepare(&self) -> Result<(), SystemError> {
        for dir in [&self.cgroup_root, &self.log_dir] {
            std::fs::create_dir_all(dir).map_err(|source| SystemError::Io {
                op: "create directory",
                path: dir.clone(),
                source,
            })?;
        }
        Ok(())
    }

    /// Parent of the users' runtime directories.
    pub fn user_runtime_base(&self) -> &Path {
        &self.user_runtime_base
    }

    /// `uid`'s XDG_RUNTIME_DIR.
    pub fn user_runtime_dir(&self, uid: u32) -> PathBuf {
        rundir::path(&self.user_runtime_base, uid)
    }

    /// `uid`'s delegated cgroup.
    pub fn user_cgroup(&self, uid: u32) -> PathBuf {
        self.cgroup_root.join(format!("user-{uid}"))
    }

    /// Where `uid`'s manager output is appended.
    pub fn log_path(&self, uid: u32) -> PathBuf {
        self.log_dir.join(format!("user-{uid}.log"))
    }

    /// uids whose `user-UID/` exists below the root.
    pub fn leftover_users(&self) -> Result<Vec<u32>, SystemError> {
        let rd = std::fs::read_dir(&self.cgroup_root).map_err(|source| SystemError::Io {
            op: "read directory",
            path: self.cgroup_root.clone(),
            source,
        })?;
        Ok(rd
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| e.file_name().to_str()?.strip_prefix("user-")?.parse().ok())
            .collect())
    }

    /// `uid`'s subtree with the PIDs of each cgroup, parents first; empty if
    /// it has none.
    pub fn tree(&self, uid: u32) -> Vec<CgroupNode> {
        let mut nodes = Vec::new();
        let mut stack = vec![self.user_cgroup(uid)];
        while let Some(dir) = stack.pop() {
            let Ok(procs) = std::fs::read_to_string(dir.join("cgroup.procs")) else {
                continue;
            };
            let path = dir
                .strip_prefix(&self.cgroup_root)
                .unwrap_or(&dir)
                .display()
                .to_string();
            nodes.push(CgroupNode {
                path,
                pids: procs
                    .lines()
                    .filter_map(|l| l.trim().parse().ok())
                    .collect(),
            });
            if let Ok(rd) = std::fs::read_dir(&dir) {
                let mut children: Vec<PathBuf> = rd
                    .filter_map(Result::ok)
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.path())
                    .collect();
                children.sort();
                stack.extend(children.into_iter().rev());
            }
        }
        nodes
    }
}

/// Creates `user-UID/` (delegated) and a fresh `user-UID/manager/`, and spawns
/// `corrald --user` into it as the user.
pub async fn start(layout: &Layout, user: &UserInfo) -> Result<Started, SystemError> {
    let user_dir = layout.user_cgroup(user.uid);
    let manager_cg = prepare_cgroups(&layout.cgroup_root, &user_dir, user).await?;

    let (ready_r, ready_w) = pipe()?;
    let (out_r, out_w) = pipe()?;
    let runtime_dir = layout.user_runtime_dir(user.uid);
    let cstr = |s: String| CString::new(s).map_err(|_| SystemError::BadUserName(user.name.clone()));
    let exe = cstr(layout.exe.display().to_string())?;
    let mut spec = SpawnSpec::new(exe.clone());
    spec.argv = vec![
        exe,
        cstr("--user".into())?,
        cstr("--cgroup-root".into())?,
        cstr(user_dir.display().to_string())?,
        cstr("--ready-fd".into())?,
        cstr(MANAGER_READY_FD.to_string())?,
    ];
    spec.env = [
        ("HOME", user.home.display().to_string()),
        ("USER", user.name.clone()),
        ("LOGNAME", user.name.clone()),
        ("SHELL", user.shell.display().to_string()),
        ("PATH", USER_PATH.to_string()),
        ("XDG_RUNTIME_DIR", runtime_dir.display().to_string()),
    ]
    .into_iter()
    .map(|(k, v)| cstr(format!("{k}={v}")))
    .collect::<Result<_, _>>()?;
    spec.cgroup = Some(manager_cg.path().to_path_buf());
    spec.stdin = Stdio::Null;
    spec.stdout = Stdio::Borrowed(out_w.as_raw_fd());
    spec.stderr = Stdio::Borrowed(out_w.as_raw_fd());
    spec.extra_fds = vec![FdMapping {
        parent_fd: ready_w.as_raw_fd(),
        child_fd: MANAGER_READY_FD,
    }];
    spec.credentials = Some(Credentials {
        uid: user.uid,
        gid: user.gid,
        groups: user.groups.clone(),
    });
    // Its own session: a terminal's hang-up or Ctrl-C never reaches it.
    spec.new_session = true;
    let uid = user.uid;
    // spawn() waits for the child's exec: keep that off the runtime. The
    // write ends live until it returns, then close, so EOF can come.
    let home = user.home.clone();
    let spawned = tokio::task::spawn_blocking(move || {
        // As login(1) does: a missing home is no reason to refuse the user a
        // manager; it starts in / instead. (A stat may block on NFS homes:
        // it is done here, off the runtime.)
        let cwd = if home.is_dir() {
            home.as_os_str()
        } else {
            eprintln!(
                "corrald --system: home {} of uid {uid} does not exist; starting its manager in /",
                home.display()
            );
            std::ffi::OsStr::new("/")
        };
        spec.cwd = CString::new(cwd.as_encoded_bytes()).ok();
        let result = spawn::spawn(&spec);
        drop((ready_w, out_w));
        result
    })
    .await
    .map_err(|e| SystemError::Io {
        op: "join spawn task",
        path: layout.exe.clone(),
        source: std::io::Error::other(e.to_string()),
    })?
    .map_err(|source| SystemError::Spawn { uid, source })?;
    let pid = spawned.pid as u32;

    let (ready_tx, ready) = oneshot::channel();
    tokio::spawn(wait_ready(ready_r, ready_tx));
    tokio::spawn(capture_output(out_r, layout.log_path(uid), uid, pid));
    Ok(Started { pid, ready })
}

/// Makes `user-UID/` exist and be delegated, and `manager/` freshly created.
async fn prepare_cgroups(
    root: &Path,
    user_dir: &Path,
    user: &UserInfo,
) -> Result<Cgroup, SystemError> {
    let user_cg = match Cgroup::open(user_dir) {
        Ok(cg) => cg,
        Err(e) if e.is_not_found() => {
            let name = format!("user-{}", user.uid);
            Cgroup::open(root)?.create_child(&name)?
        }
        Err(e) => return Err(e.into()),
    };
    user_cg.chown_delegate(user.uid, user.gid)?;
    let manager_dir = user_dir.join("manager");
    if manager_dir.exists() {
        // Left by a manager that died: anything still inside goes, and the
        // cgroup is recreated so the new one starts in a fresh cgroup.
        let old = Cgroup::open(&manager_dir)?;
        if old.populated()? {
            old.kill()?;
            old.wait_empty().await?;
        }
        old.remove()?;
    }
    Ok(user_cg.create_child("manager")?)
}

/// `cgroup.kill` on the whole of `uid`'s subtree.
pub fn kill_user(layout: &Layout, uid: u32) -> Result<(), SystemError> {
    match Cgroup::open(layout.user_cgroup(uid)) {
        Ok(cg) => Ok(cg.kill()?),
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Kills everything left in `uid`'s subtree, waits until it is empty and
/// removes every cgroup in it, deepest first.
pub async fn teardown(layout: &Layout, uid: u32) -> Result<(), SystemError> {
    let cg = match Cgroup::open(layout.user_cgroup(uid)) {
        Ok(cg) => cg,
        Err(e) if e.is_not_found() => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    if cg.populated()? {
        cg.kill()?;
        cg.wait_empty().await?;
    }
    // A user may have created cgroups of their own below theirs: remove()
    // takes every descendant, deepest first.
    Ok(cg.remove()?)
}

/// Writes the system manager's ready line to `fd` and closes it.
pub fn write_ready(fd: RawFd, socket: &Path) {
    // SAFETY: the fd was handed to us on the command line for this purpose
    // and nothing else in the process uses it.
    let mut file = unsafe { std::fs::File::from_raw_fd(fd) };
    let _ = writeln!(file, "ready {}", socket.display());
}

fn pipe() -> Result<(OwnedFd, OwnedFd), SystemError> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| SystemError::Io {
        op: "create pipe",
        path: PathBuf::from("pipe2"),
        source: e.into(),
    })
}

async fn wait_ready(fd: OwnedFd, ready: oneshot::Sender<()>) {
    let Ok(file) = tokio::net::unix::pipe::Receiver::from_owned_fd(fd) else {
        return;
    };
    let mut byte = [0u8; 1];
    let mut reader = BufReader::new(file);
    // One byte of the line is enough: the manager writes it only when ready.
    if let Ok(1) = reader.read(&mut byte).await {
        let _ = ready.send(());
    }
}

async fn capture_output(fd: OwnedFd, log: PathBuf, uid: u32, pid: u32) {
    let Ok(mut pipe) = tokio::net::unix::pipe::Receiver::from_owned_fd(fd) else {
        return;
    };
    let mut sink = LogSink::new(log);
    let mut buf = vec![0u8; 8192];
    let mut line = Vec::new();
    loop {
        // The pipe is always drained, whatever happens to the file: a
        // manager blocked on a full stderr pipe would stop serving its user.
        let n = match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        for &byte in &buf[..n] {
            if byte != b'\n' {
                line.push(byte);
                if line.len() < MAX_LINE {
                    continue;
                }
            }
            sink.write(uid, pid, &line).await;
            line.clear();
        }
    }
    if !line.is_empty() {
        sink.write(uid, pid, &line).await;
    }
}

/// Longest log line; longer output is split. Bounds memory per manager.
const MAX_LINE: usize = 4096;
/// Size at which a manager's log is moved to `.old` and started afresh, so a
/// user cannot fill the system's disk through their manager's stderr.
const MAX_LOG: u64 = 4 << 20;

/// The append-only, size-capped log file of one user's manager.
struct LogSink {
    path: PathBuf,
    file: Option<tokio::fs::File>,
    size: u64,
    /// Set once an error was reported, so a broken disk is said once.
    reported: bool,
}

impl LogSink {
    fn new(path: PathBuf) -> Self {
        LogSink {
            path,
            file: None,
            size: 0,
            reported: false,
        }
    }

    async fn write(&mut self, uid: u32, pid: u32, line: &[u8]) {
        let stamp = chrono::Local::now().format("%Y-%m-%dT%H:%M:%S%.3f%:z");
        let mut entry = format!("{stamp} user-{uid}[{pid}]: ").into_bytes();
        entry.extend_from_slice(line);
        entry.push(b'\n');
        if let Err(e) = self.append(&entry).await {
            if !self.reported {
                eprintln!(
                    "corrald --system: writing {}: {e}; uid {uid}'s manager output is dropped",
                    self.path.display()
                );
                self.reported = true;
            }
            self.file = None;
        }
    }

    async fn append(&mut self, entry: &[u8]) -> std::io::Result<()> {
        if self.file.is_some() && self.size + entry.len() as u64 > MAX_LOG {
            self.file = None;
            let mut old = self.path.clone().into_os_string();
            old.push(".old");
            tokio::fs::rename(&self.path, &old).await?;
        }
        let file = match &mut self.file {
            Some(f) => f,
            None => {
                let f = tokio::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .mode(0o600)
                    .open(&self.path)
                    .await?;
                self.size = f.metadata().await?.len();
                self.file.insert(f)
            }
        };
        file.write_all(entry).await?;
        // tokio's File hands writes to a blocking thread: flush so the line
        // is on disk (and errors are seen) before the next one.
        file.flush().await?;
        self.size += entry.len() as u64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    #[tokio::test]
    async fn output_is_stamped_split_at_the_line_cap_and_rotated_at_the_size_cap() {
        let tmp = tempfile::tempdir().unwrap();
        let log = tmp.path().join("user-7.log");
        let (r, w) = pipe().unwrap();
        let task = tokio::spawn(capture_output(r, log.clone(), 7, 99));
        let mut w = std::fs::File::from(w);
        w.write_all(b"hello\n").unwrap();
        // One line of 10000 bytes without a newline: split, never buffered whole.
        w.write_all(&[b'x'; 10_000]).unwrap();
        drop(w);
        task.await.unwrap();
        let text = std::fs::read_to_string(&log).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{lines:?}");
        assert!(lines[0].ends_with(" user-7[99]: hello"), "{}", lines[0]);
        let payload = |l: &str| l.split_once("]: ").unwrap().1.len();
        assert_eq!(
            lines[1..].iter().map(|l| payload(l)).collect::<Vec<_>>(),
            [MAX_LINE, MAX_LINE, 10_000 - 2 * MAX_LINE]
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&log).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);

        let mut sink = LogSink::new(log.clone());
        let line = vec![b'y'; 4000];
        for _ in 0..(MAX_LOG / 4000 + 10) {
            sink.write(7, 99, &line).await;
        }
        let old = tmp.path().join("user-7.log.old");
        assert!(old.exists());
        assert!(std::fs::metadata(&old).unwrap().len() <= MAX_LOG);
        assert!(std::fs::metadata(&log).unwrap().len() < MAX_LOG / 2);
    }
}
