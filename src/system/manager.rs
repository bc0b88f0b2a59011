//! One user manager: its delegated cgroup subtree, its spawn as the user, its
//! ready pipe and its captured output; and the teardown of a user's subtree.

use std::ffi::CString;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, BufReader};
use tokio::sync::oneshot;

use super::users::UserInfo;
use super::{SystemError, SystemOptions, rundir};
use crate::cgroup::spawn::{self, Credentials, FdMapping, SpawnSpec, Stdio};
use crate::cgroup::{self, Cgroup, owner};
use crate::ipc::system_proto::CgroupNode;
use crate::journal::ingest::{self, RateLimiter, SourceMeta};
use crate::journal::{Stream, WriterHandle};

/// File descriptor number the user manager gets its ready pipe on.
pub const MANAGER_READY_FD: RawFd = 3;

/// File descriptor number on which the user manager holds a read end of its
/// own output pipe, never read: while no system manager runs (restarting,
/// or killed) its writes then fill the pipe instead of failing with EPIPE,
/// and the next system manager reads on from `/proc/PID/fd/1`.
pub const MANAGER_OUTPUT_KEEP_FD: RawFd = 4;

/// PATH given to user managers (and so, by default, to their units).
const USER_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// Where everything of the system manager lives; cheap to clone.
#[derive(Debug, Clone)]
pub struct Layout {
    /// Parent of every `user-UID/` cgroup.
    cgroup_root: PathBuf,
    /// Parent of the users' runtime directories.
    user_runtime_base: PathBuf,
    /// The system manager's journal directory (the user managers' output).
    journal_dir: PathBuf,
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
    /// The journal invocation its output is filed under.
    pub invocation: u128,
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
            journal_dir: options.state_dir.join("journal"),
            exe,
        })
    }

    /// Creates the cgroup root and the log directory.
    pub fn prepare(&self) -> Result<(), SystemError> {
        let io = |op: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |source| SystemError::Io { op, path, source }
        };
        for dir in [&self.cgroup_root, &self.journal_dir] {
            std::fs::create_dir_all(dir).map_err(io("create directory", dir))?;
        }
        // The journal holds every user's manager output: root's alone.
        std::fs::set_permissions(&self.journal_dir, std::fs::Permissions::from_mode(0o700))
            .map_err(io("chmod 0700", &self.journal_dir))?;
        Ok(())
    }

    /// Parent of every `user-UID/` cgroup.
    pub fn cgroup_root(&self) -> &Path {
        &self.cgroup_root
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

    /// The system manager's journal: user managers' output and its events.
    pub fn journal_dir(&self) -> &Path {
        &self.journal_dir
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
pub async fn start(
    layout: &Layout,
    user: &UserInfo,
    journal: &WriterHandle,
) -> Result<Started, SystemError> {
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
    spec.extra_fds = vec![
        FdMapping {
            parent_fd: ready_w.as_raw_fd(),
            child_fd: MANAGER_READY_FD,
        },
        FdMapping {
            parent_fd: out_r.as_raw_fd(),
            child_fd: MANAGER_OUTPUT_KEEP_FD,
        },
    ];
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
    let invocation = invocation_id(pid);
    read_output(out_r, uid, pid, invocation, journal);
    Ok(Started {
        pid,
        ready,
        invocation,
    })
}

/// Files a manager's output (stdout and stderr share one pipe) in the system
/// journal as unit `user-UID`, rate-limited: a user must not flood root's
/// journal.
fn read_output(out_r: OwnedFd, uid: u32, pid: u32, invocation: u128, journal: &WriterHandle) {
    let meta = SourceMeta {
        unit: Arc::from(unit_name(uid)),
        invocation,
        pid: Some(pid),
        stream: Stream::Stderr,
        default_priority: 6,
        level_prefix: true,
        identifier: Arc::from("corrald"),
        comm: Arc::from("corrald"),
        rate_limit: Some(RateLimiter::new(RATE_INTERVAL, RATE_BURST)),
    };
    drop(ingest::spawn_pipe_reader(out_r, meta, journal.clone()));
}

/// Takes over a manager a previous system manager started: its output pipe
/// is opened again through /proc (a pipe opened there for reading is a new
/// read end of the same pipe) and read on, under the same invocation; lines
/// it wrote meanwhile waited in the pipe.
pub fn adopt_output(
    uid: u32,
    pid: u32,
    invocation: u128,
    journal: &WriterHandle,
) -> Result<(), SystemError> {
    let path = PathBuf::from(format!("/proc/{pid}/fd/1"));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(&path)
        .map_err(|source| SystemError::Io {
            op: "open the output pipe of",
            path: path.clone(),
            source,
        })?;
    let is_pipe = file
        .metadata()
        .is_ok_and(|m| std::os::unix::fs::FileTypeExt::is_fifo(&m.file_type()));
    if !is_pipe {
        // Not the pipe we gave it: reading it would steal from something else.
        return Err(SystemError::Io {
            op: "adopt the output of",
            path,
            source: std::io::Error::other("its stdout is no longer the pipe it was started with"),
        });
    }
    read_output(file.into(), uid, pid, invocation, journal);
    Ok(())
}

/// Makes `user-UID/` exist and be delegated, and `manager/` freshly created.
async fn prepare_cgroups(
    root: &Path,
    user_dir: &Path,
    user: &UserInfo,
) -> Result<Cgroup, SystemError> {
    let user_cg = match Cgroup::open(user_dir) {
        Ok(cg) => {
            // A manager we did not start (root's own `corrald --user`, or
            // one left by a dead system manager whose state was lost) owns
            // it: starting a second one there would fight it.
            if let Some(owner) = owner::owner_of(user_dir)? {
                return Err(SystemError::Owned {
                    uid: user.uid,
                    owner,
                });
            }
            cg
        }
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

/// Whether `proc` still runs and in `uid`'s `manager/` cgroup, where a
/// system manager started it: then it is that user's manager, to adopt.
pub fn runs_in_its_cgroup(layout: &Layout, uid: u32, proc: super::persist::Proc) -> bool {
    let manager = layout.user_cgroup(uid).join("manager");
    proc.alive() && crate::cgroup::cgroup_of_pid(proc.pid as i32).is_ok_and(|cg| cg == manager)
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
/// removes every cgroup in it, deepest first; unless a live manager owns it
/// (one this system manager did not start: ours has exited by now), which
/// is left alone and reported as [`SystemError::Owned`].
pub async fn teardown(layout: &Layout, uid: u32) -> Result<(), SystemError> {
    let cg = match Cgroup::open(layout.user_cgroup(uid)) {
        Ok(cg) => cg,
        Err(e) if e.is_not_found() => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    if let Some(owner) = owner::owner_of(cg.path())? {
        return Err(SystemError::Owned { uid, owner });
    }
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

/// The journal unit name of `uid`'s manager and of the system manager's
/// events about it.
pub fn unit_name(uid: u32) -> String {
    format!("user-{uid}")
}

/// A fresh invocation id for one start of a manager: random where the
/// kernel gives randomness, else made of the PID and the time.
fn invocation_id(pid: u32) -> u128 {
    let mut bytes = [0u8; 16];
    // SAFETY: getrandom fills the buffer we own, at most its length.
    let n = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
    if n == bytes.len() as isize {
        return u128::from_ne_bytes(bytes);
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    (u128::from(pid) << 96) ^ now
}

/// At most [`RATE_BURST`] lines of one manager per [`RATE_INTERVAL`].
const RATE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(30);
/// See [`RATE_INTERVAL`].
const RATE_BURST: u64 = 10_000;
