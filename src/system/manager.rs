//! One user manager: its delegated cgroup subtree, its spawn as the user, its
//! ready pipe and its captured output; and the teardown of a user's subtree.

use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::sync::oneshot;

use super::users::UserInfo;
use super::{SystemError, SystemOptions, rundir};
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
    let mut spec = cgroup::spawn::SpawnSpec::new(&layout.exe);
    spec.args([
        "--user".to_string(),
        "--cgroup-root".to_string(),
        user_dir.display().to_string(),
        "--runtime-dir".to_string(),
        runtime_dir.join("corral").display().to_string(),
        "--ready-fd".to_string(),
        MANAGER_READY_FD.to_string(),
    ]);
    spec.env_clear();
    for (key, value) in [
        ("HOME", user.home.display().to_string()),
        ("USER", user.name.clone()),
        ("LOGNAME", user.name.clone()),
        ("SHELL", user.shell.display().to_string()),
        ("PATH", USER_PATH.to_string()),
        ("XDG_RUNTIME_DIR", runtime_dir.display().to_string()),
    ] {
        spec.env(key, value);
    }
    spec.cwd(&user.home);
    spec.stdin(cgroup::spawn::Stdio::Null);
    spec.stdout(cgroup::spawn::Stdio::Fd(out_w.as_raw_fd()));
    spec.stderr(cgroup::spawn::Stdio::Fd(out_w.as_raw_fd()));
    spec.extra_fd(MANAGER_READY_FD, ready_w.as_raw_fd());
    spec.credentials(cgroup::spawn::Credentials {
        uid: user.uid,
        gid: user.gid,
        groups: user.groups.clone(),
    });
    let spawned =
        cgroup::spawn::spawn(&spec, &manager_cg).map_err(|source| SystemError::Spawn {
            uid: user.uid,
            source,
        })?;
    // Our copies of the write ends must go, or EOF never comes.
    drop(ready_w);
    drop(out_w);
    let pid = spawned.pid;

    let (ready_tx, ready) = oneshot::channel();
    tokio::spawn(wait_ready(ready_r, ready_tx));
    tokio::spawn(capture_output(
        out_r,
        layout.log_path(user.uid),
        user.uid,
        pid,
    ));
    Ok(Started { pid, ready })
}

/// Makes `user-UID/` exist and be delegated, and `manager/` freshly created.
async fn prepare_cgroups(
    root: &Path,
    user_dir: &Path,
    user: &UserInfo,
) -> Result<Cgroup, SystemError> {
    let root = Cgroup::open(root)?;
    let name = user_dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_owned();
    let user_cg = root.create_child(&name)?;
    user_cg.chown_delegate(user.uid, user.gid)?;
    let manager_dir = user_dir.join("manager");
    if manager_dir.exists() {
        // Left by a manager that died: anything still inside goes, and the
        // cgroup is recreated so the new one starts in a fresh cgroup.
        let old = Cgroup::open(&manager_dir)?;
        if !old.procs_recursive()?.is_empty() {
            old.kill()?;
            old.wait_empty().await?;
        }
        old.remove()?;
    }
    Ok(user_cg.create_child("manager")?)
}

/// `cgroup.kill` on the whole of `uid`'s subtree.
pub fn kill_user(layout: &Layout, uid: u32) -> Result<(), SystemError> {
    let dir = layout.user_cgroup(uid);
    if !dir.exists() {
        return Ok(());
    }
    Ok(Cgroup::open(&dir)?.kill()?)
}

/// Kills everything left in `uid`'s subtree, waits until it is empty and
/// removes every cgroup in it, deepest first.
pub async fn teardown(layout: &Layout, uid: u32) -> Result<(), SystemError> {
    let dir = layout.user_cgroup(uid);
    if !dir.exists() {
        return Ok(());
    }
    let cg = Cgroup::open(&dir)?;
    cg.kill()?;
    cg.wait_empty().await?;
    let mut all = Vec::new();
    let mut stack = vec![dir.clone()];
    while let Some(d) = stack.pop() {
        if let Ok(rd) = std::fs::read_dir(&d) {
            stack.extend(
                rd.filter_map(Result::ok)
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.path()),
            );
        }
        all.push(d);
    }
    // Children before parents: rmdir only works on leaves.
    all.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for d in all {
        std::fs::remove_dir(&d).map_err(|source| SystemError::Io {
            op: "remove cgroup",
            path: d.clone(),
            source,
        })?;
    }
    Ok(())
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
    let Ok(pipe) = tokio::net::unix::pipe::Receiver::from_owned_fd(fd) else {
        return;
    };
    let file = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .await;
    let mut file = match file {
        Ok(f) => f,
        Err(e) => {
            eprintln!(
                "corrald --system: cannot open {}: {e}; uid {uid}'s manager output is lost",
                log.display()
            );
            return;
        }
    };
    let mut lines = BufReader::new(pipe).split(b'\n');
    while let Ok(Some(line)) = lines.next_segment().await {
        let stamp = chrono::Local::now().format("%Y-%m-%dT%H:%M:%S%.3f%:z");
        let mut entry = format!("{stamp} user-{uid}[{pid}]: ").into_bytes();
        entry.extend_from_slice(&line);
        entry.push(b'\n');
        if let Err(e) = file.write_all(&entry).await {
            eprintln!("corrald --system: writing {}: {e}", log.display());
            return;
        }
    }
}
