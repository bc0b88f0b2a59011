//! Starting a process straight inside a cgroup.
//!
//! The child is placed in its cgroup before it runs a single instruction
//! of the new program: clone3(2) with `CLONE_INTO_CGROUP` (+`CLONE_PIDFD`)
//! puts it there at birth; where clone3 is missing (kernels before 5.7,
//! seccomp profiles that refuse it) the child of a plain fork writes "0"
//! to a `cgroup.procs` fd opened before the fork. Spawning first and moving
//! afterwards would let a shell that forks at once leave its children
//! behind (measured: 40 of 40 escaped).
//!
//! After the fork the child runs only async-signal-safe system calls on
//! data prepared beforehand: no allocation, no locks, no panics. Credentials
//! are changed with raw syscalls, because glibc's setuid/setgroups
//! broadcast to the other threads of the parent, which do not exist in the
//! child and whose lock may have been held at fork time.
//!
//! On x86_64 the clone shares our memory and suspends the caller until the
//! child execs (CLONE_VM | CLONE_VFORK, as posix_spawn does): no page
//! tables are copied, which halved the start latency of a unit. Elsewhere
//! it is a fork-like clone3.
//!
//! Any failure in the child (cgroup, chdir, setuid, exec, ...) comes back
//! as (stage, errno) — through our shared memory on the vfork path, through
//! a CLOEXEC pipe on the others — so [`spawn`] returns it as a
//! [`SpawnError`] the way systemd reports 203/EXEC. On success [`spawn`]
//! returns without reaping: the supervisor's single SIGCHLD loop owns
//! every child.

use std::cell::Cell;
use std::ffi::{CStr, CString};
use std::fmt;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use nix::errno::Errno;
use nix::sys::resource::Resource;
use nix::sys::signal::SigSet;

/// Where one of the child's standard streams goes.
#[derive(Debug, Default)]
pub enum Stdio {
    /// /dev/null.
    #[default]
    Null,
    /// The parent's own stream, unchanged.
    Inherit,
    /// This fd (closed in the parent when the spec is dropped).
    Fd(OwnedFd),
    /// This fd, which the caller keeps open until [`spawn`] returns.
    Borrowed(RawFd),
}

/// The user the child runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// Real, effective and saved uid.
    pub uid: u32,
    /// Real, effective and saved gid.
    pub gid: u32,
    /// Supplementary groups (e.g. from getgrouplist); empty drops them all.
    pub groups: Vec<u32>,
}

/// One resource limit (`LimitNOFILE=` and friends).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rlimit {
    /// Which limit.
    pub resource: Resource,
    /// Soft limit (`libc::RLIM_INFINITY` for none).
    pub soft: u64,
    /// Hard limit (`libc::RLIM_INFINITY` for none).
    pub hard: u64,
}

/// Process settings of systemd.exec(5) applied in the child before exec,
/// each failing the start with systemd's status for it (206, 211, 212,
/// 214, 215) except where a user manager lacks the privilege and systemd
/// carries on (an `OOMScoreAdjust=` below the current one).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tuning {
    /// `IgnoreSIGPIPE=`: SIGPIPE ignored at exec instead of reset to default.
    pub ignore_sigpipe: bool,
    /// `OOMScoreAdjust=`, written to /proc/self/oom_score_adj; a refusal
    /// for lack of privilege is ignored, as systemd does.
    pub oom_score_adjust: Option<i32>,
    /// `CPUAffinity=`: the CPUs.
    pub cpu_affinity: Option<Vec<u32>>,
    /// `IOSchedulingClass=`/`IOSchedulingPriority=` as an ioprio value.
    pub io_priority: Option<i32>,
    /// `CPUSchedulingPolicy=` (with SCHED_RESET_ON_FORK or'ed in) and priority.
    pub cpu_scheduling: Option<(i32, i32)>,
    /// `TimerSlackNSec=`.
    pub timer_slack_nsec: Option<u64>,
    /// `NoNewPrivileges=`: neither the command nor anything it executes
    /// gains privileges (setuid bits, file capabilities) by executing.
    pub no_new_privileges: bool,
}

/// An fd of the parent passed to the child under a given number
/// (e.g. a `--ready-fd` pipe).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdMapping {
    /// The fd in the parent (kept open by the caller until spawn returns).
    pub parent_fd: RawFd,
    /// The number it gets in the child.
    pub child_fd: RawFd,
}

/// Everything needed to start one process.
#[derive(Debug)]
pub struct SpawnSpec {
    /// Absolute path of the executable.
    pub program: CString,
    /// Arguments including `argv[0]` (which may differ from `program`);
    /// empty means `[program]`.
    pub argv: Vec<CString>,
    /// The complete environment, `KEY=value` each.
    pub env: Vec<CString>,
    /// Working directory, entered after the credentials change so it is
    /// checked with the user's permissions.
    pub cwd: Option<CString>,
    /// The cgroup directory the child is born in.
    pub cgroup: Option<PathBuf>,
    /// Standard input.
    pub stdin: Stdio,
    /// Standard output.
    pub stdout: Stdio,
    /// Standard error.
    pub stderr: Stdio,
    /// The umask.
    pub umask: Option<u32>,
    /// The nice level (set before dropping privileges, so root can raise
    /// it); where that is not permitted, the closest level RLIMIT_NICE
    /// allows, as systemd's `setpriority_closest()`.
    pub nice: Option<i32>,
    /// Resource limits (set before dropping privileges); a limit above
    /// what may be set is clamped to the hard limit, as systemd's
    /// `setrlimit_closest()`.
    pub rlimits: Vec<Rlimit>,
    /// Scheduling, OOM score, SIGPIPE.
    pub tuning: Tuning,
    /// Run as another user (needs root).
    pub credentials: Option<Credentials>,
    /// Start a new session (setsid), detached from our terminal.
    pub new_session: bool,
    /// The child's signal mask at exec; every disposition is reset to default.
    pub signal_mask: SigSet,
    /// Extra fds to pass; every other fd from 3 up is closed at exec.
    pub extra_fds: Vec<FdMapping>,
    /// Add `LISTEN_PID=<the child's own pid>` to the environment, written
    /// in the child before exec: socket activation (sd_listen_fds(3))
    /// needs the pid, which the parent only learns after the exec.
    pub listen_pid: bool,
    /// Use fork + a write to cgroup.procs even where clone3 works (to test
    /// and measure the fallback used on older kernels).
    pub force_fork: bool,
}

impl SpawnSpec {
    /// A spec for `program` with argv `[program]`, no environment, stdio on
    /// /dev/null, no cgroup, and an empty signal mask.
    pub fn new(program: CString) -> SpawnSpec {
        SpawnSpec {
            argv: vec![program.clone()],
            program,
            env: Vec::new(),
            cwd: None,
            cgroup: None,
            stdin: Stdio::Null,
            stdout: Stdio::Null,
            stderr: Stdio::Null,
            umask: None,
            nice: None,
            rlimits: Vec::new(),
            tuning: Tuning::default(),
            credentials: None,
            new_session: false,
            signal_mask: SigSet::empty(),
            extra_fds: Vec::new(),
            listen_pid: false,
            force_fork: false,
        }
    }
}

/// A started child. It is not reaped here: whoever reaps children (the
/// supervisor's SIGCHLD loop) collects its exit.
#[derive(Debug)]
pub struct Spawned {
    /// Its pid.
    pub pid: i32,
    /// A pidfd for it, when clone3 made one.
    pub pidfd: Option<OwnedFd>,
}

/// The step of starting a process that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Stage {
    /// Preparing in the parent (pipe, /dev/null, cgroup fd, arguments).
    Prepare = 1,
    /// clone3/fork itself.
    Fork,
    /// Entering the cgroup.
    Cgroup,
    /// Starting a new session.
    Setsid,
    /// Setting up stdin.
    Stdin,
    /// Setting up stdout.
    Stdout,
    /// Setting up stderr.
    Stderr,
    /// Passing the extra fds.
    Fds,
    /// Setting the nice level.
    Nice,
    /// Writing oom_score_adj.
    OomAdjust,
    /// Setting the CPU scheduling policy.
    SetScheduler,
    /// Setting the CPU affinity.
    CpuAffinity,
    /// Setting the I/O priority.
    IoPrio,
    /// Setting the timer slack.
    TimerSlack,
    /// Setting no_new_privs.
    NoNewPrivileges,
    /// Setting a resource limit.
    Rlimit,
    /// setgroups.
    Groups,
    /// setresgid.
    Setgid,
    /// setresuid.
    Setuid,
    /// Entering the working directory.
    Chdir,
    /// Setting the signal mask.
    SignalMask,
    /// execve.
    Exec,
}

const STAGES: [Stage; 22] = [
    Stage::Prepare,
    Stage::Fork,
    Stage::Cgroup,
    Stage::Setsid,
    Stage::Stdin,
    Stage::Stdout,
    Stage::Stderr,
    Stage::Fds,
    Stage::Nice,
    Stage::OomAdjust,
    Stage::SetScheduler,
    Stage::CpuAffinity,
    Stage::IoPrio,
    Stage::TimerSlack,
    Stage::Rlimit,
    Stage::Groups,
    Stage::Setgid,
    Stage::Setuid,
    Stage::Chdir,
    Stage::NoNewPrivileges,
    Stage::SignalMask,
    Stage::Exec,
];

impl Stage {
    fn from_u32(v: u32) -> Option<Stage> {
        STAGES.iter().copied().find(|s| *s as u32 == v)
    }

    /// systemd's name for the failure, as in `status=203/EXEC`.
    pub fn name(self) -> &'static str {
        match self {
            // What fails before the fork is the caller's input (a relative
            // program, a NUL in a path) or fds: systemd would not get to
            // exec either.
            Stage::Prepare => "EXEC",
            Stage::Fork => "MEMORY",
            Stage::Cgroup => "CGROUP",
            Stage::Setsid => "SETSID",
            Stage::Stdin => "STDIN",
            Stage::Stdout => "STDOUT",
            Stage::Stderr => "STDERR",
            Stage::Fds => "FDS",
            Stage::Nice => "NICE",
            Stage::OomAdjust => "OOM_ADJUST",
            Stage::SetScheduler => "SETSCHEDULER",
            Stage::CpuAffinity => "CPUAFFINITY",
            Stage::IoPrio => "IOPRIO",
            Stage::TimerSlack => "TIMERSLACK",
            Stage::NoNewPrivileges => "NO_NEW_PRIVILEGES",
            Stage::Rlimit => "LIMITS",
            Stage::Groups | Stage::Setgid => "GROUP",
            Stage::Setuid => "USER",
            Stage::Chdir => "CHDIR",
            Stage::SignalMask => "SIGNAL_MASK",
            Stage::Exec => "EXEC",
        }
    }

    /// systemd's exit status for the failure (203 for EXEC, ...).
    pub fn exit_status(self) -> u8 {
        match self {
            Stage::Prepare => 203,
            Stage::Fork => 204,
            Stage::Cgroup => 219,
            Stage::Setsid => 220,
            Stage::Stdin => 208,
            Stage::Stdout => 209,
            Stage::Stderr => 222,
            Stage::Fds => 202,
            Stage::Nice => 201,
            Stage::OomAdjust => 206,
            Stage::SetScheduler => 214,
            Stage::CpuAffinity => 215,
            Stage::IoPrio => 211,
            Stage::TimerSlack => 212,
            Stage::NoNewPrivileges => 227,
            Stage::Rlimit => 205,
            Stage::Groups | Stage::Setgid => 216,
            Stage::Setuid => 217,
            Stage::Chdir => 200,
            Stage::SignalMask => 207,
            Stage::Exec => 203,
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stage::Prepare => "preparing to start",
            Stage::Fork => "creating the process",
            Stage::Cgroup => "entering cgroup",
            Stage::Setsid => "starting a new session",
            Stage::Stdin => "setting up stdin",
            Stage::Stdout => "setting up stdout",
            Stage::Stderr => "setting up stderr",
            Stage::Fds => "passing file descriptors",
            Stage::Nice => "setting the nice level",
            Stage::OomAdjust => "adjusting the OOM score",
            Stage::SetScheduler => "setting the CPU scheduling policy",
            Stage::CpuAffinity => "setting the CPU affinity",
            Stage::IoPrio => "setting the I/O priority",
            Stage::TimerSlack => "setting the timer slack",
            Stage::NoNewPrivileges => "setting no_new_privs",
            Stage::Rlimit => "setting resource limits",
            Stage::Groups => "setting supplementary groups",
            Stage::Setgid => "changing group",
            Stage::Setuid => "changing user",
            Stage::Chdir => "changing to working directory",
            Stage::SignalMask => "setting the signal mask",
            Stage::Exec => "executing",
        })
    }
}

/// Starting a process failed at `stage` with `errno`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot start {program}: {stage}{} failed: {errno} (status {}/{})",
        if context.is_empty() { String::new() } else { format!(" {context}") },
        stage.exit_status(), stage.name())]
pub struct SpawnError {
    /// Which step failed.
    pub stage: Stage,
    /// The error of that step.
    pub errno: Errno,
    /// The program that was to run.
    pub program: String,
    /// What the step acted on (the cgroup, directory, user...), if anything.
    pub context: String,
    /// The child that failed (already reaped), when the failure came after
    /// the fork: systemd shows its PID with the 2xx status.
    pub pid: Option<i32>,
}

const CLONE_PIDFD: u64 = 0x1000;
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// `struct clone_args` up to `cgroup` (CLONE_ARGS_SIZE_VER2, 88 bytes).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// The kernel's `struct sigaction` for rt_sigaction(2). Only ever passed
/// with no flags and an empty mask (SIG_DFL, or SIG_IGN for SIGPIPE),
/// which reads the same whether or not an architecture has the
/// `sa_restorer` slot.
#[repr(C)]
#[derive(Default)]
struct KernelSigaction {
    handler: usize,
    flags: u64,
    restorer: usize,
    mask: u64,
}

/// The head of the variable [`SpawnSpec::listen_pid`] asks for.
const LISTEN_PID_PREFIX: &[u8] = b"LISTEN_PID=";

/// Set once clone3 with CLONE_INTO_CGROUP turned out to be unavailable.
static NO_CLONE3: AtomicBool = AtomicBool::new(false);

/// Everything the child touches, laid out before the fork.
struct Prepared {
    program: *const libc::c_char,
    argv: Vec<*const libc::c_char>,
    envp: Vec<*const libc::c_char>,
    /// `LISTEN_PID=` and room for the child's pid and a NUL, filled in by
    /// the child; empty unless asked for. `envp` points at it.
    listen_pid: Vec<Cell<u8>>,
    cwd: *const libc::c_char,
    /// cgroup.procs of the target, for the fork path; -1 otherwise.
    procs_fd: RawFd,
    /// (fd in the parent, number in the child, stage on failure).
    fds: Vec<(RawFd, RawFd, Stage)>,
    /// Lowest fd number above every target, for the temporary copies.
    fd_floor: RawFd,
    /// Room for the temporary copies, one per entry of `fds`.
    tmp: Vec<Cell<RawFd>>,
    rlimits: Vec<(Resource, libc::rlimit)>,
    creds: Option<(libc::uid_t, libc::gid_t)>,
    groups: Vec<libc::gid_t>,
    umask: Option<libc::mode_t>,
    nice: Option<i32>,
    ignore_sigpipe: bool,
    /// oom_score_adj as decimal text, and its length.
    oom: Option<([u8; 12], usize)>,
    affinity: Option<libc::cpu_set_t>,
    ioprio: Option<i32>,
    sched: Option<(i32, libc::sched_param)>,
    slack: Option<u64>,
    no_new_privs: bool,
    setsid: bool,
    mask: libc::sigset_t,
    /// The report pipe of the fork paths (-1 on the shared-memory path);
    /// moved above the targets in the child so a target number cannot
    /// overwrite it.
    err_fd: Cell<RawFd>,
    /// (stage << 32 | errno) of a failure, written by a child that shares
    /// our memory (CLONE_VM); 0 while nothing failed.
    report: Cell<u64>,
}

fn err(spec: &SpawnSpec, stage: Stage, errno: Errno) -> SpawnError {
    let context = match stage {
        Stage::Cgroup => spec
            .cgroup
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        Stage::Chdir => spec
            .cwd
            .as_ref()
            .map(|c| c.to_string_lossy().into_owned())
            .unwrap_or_default(),
        Stage::Setuid | Stage::Setgid | Stage::Groups => spec
            .credentials
            .as_ref()
            .map(|c| format!("to uid {} gid {}", c.uid, c.gid))
            .unwrap_or_default(),
        _ => String::new(),
    };
    SpawnError {
        stage,
        errno,
        program: spec.program.to_string_lossy().into_owned(),
        context,
        pid: None,
    }
}

/// A cpu_set_t of `cpus`; EINVAL for a CPU beyond its 1024 bits.
fn cpu_set(cpus: &[u32]) -> Result<libc::cpu_set_t, Errno> {
    // SAFETY: cpu_set_t is a plain bit array; all zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &c in cpus {
        let c = c as usize;
        if c >= 8 * std::mem::size_of::<libc::cpu_set_t>() {
            return Err(Errno::EINVAL);
        }
        // SAFETY: c was checked to be within the set.
        unsafe { libc::CPU_SET(c, &mut set) };
    }
    Ok(set)
}

/// Sets errno, for a step that fails with an error of its choosing.
fn set_errno(e: i32) {
    // SAFETY: errno is this thread's own.
    unsafe { *libc::__errno_location() = e };
}

/// setpriority(2), or where that is not permitted the closest level that
/// RLIMIT_NICE allows, as systemd 252's `setpriority_closest()` (a lower
/// nice level than permitted is not an error). Async-signal-safe.
fn nice_closest(n: i32) -> bool {
    // SAFETY: plain system calls on valid arguments.
    unsafe {
        if libc::setpriority(libc::PRIO_PROCESS, 0, n) == 0 {
            return true;
        }
        let e = Errno::last_raw();
        if e != libc::EACCES && e != libc::EPERM {
            return false;
        }
        // The raw system call answers 20 - nice, never negative.
        let raw = libc::syscall(libc::SYS_getpriority, libc::PRIO_PROCESS, 0);
        if raw < 0 {
            return false;
        }
        let current = 20 - raw as i32;
        if n == current {
            return true;
        }
        if n > current {
            // Being nicer is always allowed; setpriority itself is refused.
            set_errno(e);
            return false;
        }
        let mut lim: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NICE, &mut lim) < 0 {
            return false;
        }
        let limit = if lim.rlim_cur == libc::RLIM_INFINITY {
            -20
        } else {
            20 - lim.rlim_cur.min(40) as i32
        };
        if current <= limit {
            return true;
        }
        libc::setpriority(libc::PRIO_PROCESS, 0, limit) == 0
    }
}

/// setrlimit(2), or where raising the hard limit is not permitted both
/// limits clamped to the current hard one, as systemd 252's
/// `setrlimit_closest()`. Async-signal-safe.
fn rlimit_closest(res: Resource, lim: &libc::rlimit) -> bool {
    // SAFETY: plain system calls on valid arguments.
    unsafe {
        if libc::setrlimit(res as _, lim) == 0 {
            return true;
        }
        if Errno::last_raw() != libc::EPERM {
            return false;
        }
        let mut highest: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(res as _, &mut highest) < 0 {
            return false;
        }
        // An unbounded hard limit: the EPERM had another reason.
        if highest.rlim_max == libc::RLIM_INFINITY {
            set_errno(libc::EPERM);
            return false;
        }
        let fixed = libc::rlimit {
            rlim_cur: lim.rlim_cur.min(highest.rlim_max),
            rlim_max: lim.rlim_max.min(highest.rlim_max),
        };
        if fixed.rlim_cur == highest.rlim_cur && fixed.rlim_max == highest.rlim_max {
            return true;
        }
        libc::setrlimit(res as _, &fixed) == 0
    }
}

fn open_raw(path: &CStr, flags: libc::c_int) -> Result<OwnedFd, Errno> {
    // SAFETY: path is NUL-terminated.
    let fd = unsafe { libc::open(path.as_ptr(), flags | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(Errno::last());
    }
    // SAFETY: fd is fresh and ours.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Starts `spec.program` as described; returns once it has exec'ed (or
/// failed to). Blocks the calling thread only until the child's exec.
pub fn spawn(spec: &SpawnSpec) -> Result<Spawned, SpawnError> {
    if spec.program.as_bytes().first() != Some(&b'/') {
        return Err(SpawnError {
            context: "(the program must be an absolute path)".into(),
            ..err(spec, Stage::Prepare, Errno::EINVAL)
        });
    }
    let prep_err = |e| err(spec, Stage::Prepare, e);

    let cg_dir = match &spec.cgroup {
        Some(p) => {
            let c = CString::new(p.as_os_str().as_bytes()).map_err(|_| prep_err(Errno::EINVAL))?;
            Some(c)
        }
        None => None,
    };

    let need_null = [&spec.stdin, &spec.stdout, &spec.stderr]
        .iter()
        .any(|s| matches!(s, Stdio::Null));
    let null = if need_null {
        Some(open_raw(c"/dev/null", libc::O_RDWR).map_err(prep_err)?)
    } else {
        None
    };

    let mut fds = Vec::with_capacity(3 + spec.extra_fds.len());
    for (i, (s, stage)) in [
        (&spec.stdin, Stage::Stdin),
        (&spec.stdout, Stage::Stdout),
        (&spec.stderr, Stage::Stderr),
    ]
    .into_iter()
    .enumerate()
    {
        let src = match s {
            Stdio::Null => null.as_ref().map(|n| n.as_raw_fd()),
            Stdio::Inherit => None,
            Stdio::Fd(fd) => Some(fd.as_raw_fd()),
            Stdio::Borrowed(fd) => Some(*fd),
        };
        if let Some(src) = src {
            fds.push((src, i as RawFd, stage));
        }
    }
    for m in &spec.extra_fds {
        if m.child_fd < 0 || m.parent_fd < 0 {
            return Err(prep_err(Errno::EBADF));
        }
        fds.push((m.parent_fd, m.child_fd, Stage::Fds));
    }
    let fd_floor = fds.iter().map(|f| f.1).max().unwrap_or(2).max(2) + 1;

    let mut argv: Vec<*const libc::c_char> = if spec.argv.is_empty() {
        vec![spec.program.as_ptr()]
    } else {
        spec.argv.iter().map(|a| a.as_ptr()).collect()
    };
    argv.push(std::ptr::null());
    let mut envp: Vec<*const libc::c_char> = spec.env.iter().map(|e| e.as_ptr()).collect();
    let listen_pid: Vec<Cell<u8>> = if spec.listen_pid {
        let mut buf: Vec<Cell<u8>> = LISTEN_PID_PREFIX.iter().map(|&b| Cell::new(b)).collect();
        // Up to 10 digits of a pid (at most 2^22 on Linux) and the NUL.
        buf.resize_with(LISTEN_PID_PREFIX.len() + 11, || Cell::new(0));
        envp.push(buf[0].as_ptr().cast_const().cast());
        buf
    } else {
        Vec::new()
    };
    envp.push(std::ptr::null());

    let mut p = Prepared {
        program: spec.program.as_ptr(),
        argv,
        envp,
        listen_pid,
        cwd: spec.cwd.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()),
        procs_fd: -1,
        tmp: fds.iter().map(|_| Cell::new(-1)).collect(),
        fds,
        fd_floor,
        rlimits: spec
            .rlimits
            .iter()
            .map(|r| {
                (
                    r.resource,
                    libc::rlimit {
                        rlim_cur: r.soft,
                        rlim_max: r.hard,
                    },
                )
            })
            .collect(),
        creds: spec.credentials.as_ref().map(|c| (c.uid, c.gid)),
        groups: spec
            .credentials
            .as_ref()
            .map(|c| c.groups.clone())
            .unwrap_or_default(),
        umask: spec.umask,
        nice: spec.nice,
        ignore_sigpipe: spec.tuning.ignore_sigpipe,
        oom: spec.tuning.oom_score_adjust.map(|n| {
            let text = n.to_string();
            let mut buf = [0u8; 12];
            buf[..text.len()].copy_from_slice(text.as_bytes());
            (buf, text.len())
        }),
        affinity: match &spec.tuning.cpu_affinity {
            Some(cpus) => Some(cpu_set(cpus).map_err(prep_err)?),
            None => None,
        },
        ioprio: spec.tuning.io_priority,
        sched: spec.tuning.cpu_scheduling.map(|(policy, prio)| {
            (
                policy,
                libc::sched_param {
                    sched_priority: prio,
                },
            )
        }),
        slack: spec.tuning.timer_slack_nsec,
        no_new_privs: spec.tuning.no_new_privileges,
        setsid: spec.new_session,
        mask: *spec.signal_mask.as_ref(),
        err_fd: Cell::new(-1),
        report: Cell::new(0),
    };

    let mut pidfd: Option<OwnedFd> = None;
    let mut pid: Option<i32> = None;
    // The fork paths report a failure through a CLOEXEC pipe; the vfork
    // path through `p.report`.
    let mut err_pipe: Option<(OwnedFd, OwnedFd)> = None;

    let killed = spec.cgroup.as_deref().is_some_and(super::killed::affects);
    if !spec.force_fork && !killed && !NO_CLONE3.load(Ordering::Relaxed) {
        let cg_fd = match &cg_dir {
            Some(d) => Some(
                open_raw(d, libc::O_RDONLY | libc::O_DIRECTORY)
                    .map_err(|e| err(spec, Stage::Cgroup, e))?,
            ),
            None => None,
        };
        let cg = cg_fd.as_ref().map(|f| f.as_raw_fd());
        // A child that changes its uid does not share our memory: between
        // its setuid and its exec that user could SIGSTOP it, which would
        // hold the vfork'ed caller (a root manager) for as long as they like.
        let r = if VFORK && spec.credentials.is_none() {
            clone3_vfork(&p, cg)
        } else {
            let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(prep_err)?;
            p.err_fd.set(w.as_raw_fd());
            err_pipe = Some((r, w));
            clone3(&p, cg)
        };
        match r {
            Ok((child, fd)) => {
                pid = Some(child);
                pidfd = Some(fd);
            }
            Err(Errno::ENOSYS | Errno::E2BIG) => NO_CLONE3.store(true, Ordering::Relaxed),
            // A seccomp filter may refuse clone3 with EPERM; the fork path
            // reports a genuine permission problem on its own.
            Err(Errno::EPERM) => {}
            Err(e @ (Errno::EAGAIN | Errno::ENOMEM)) => return Err(err(spec, Stage::Fork, e)),
            Err(e) if cg_fd.is_some() => return Err(err(spec, Stage::Cgroup, e)),
            Err(e) => return Err(err(spec, Stage::Fork, e)),
        }
    }

    let _procs_guard;
    let pid = match pid {
        Some(pid) => pid,
        None => {
            if err_pipe.is_none() {
                let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(prep_err)?;
                p.err_fd.set(w.as_raw_fd());
                err_pipe = Some((r, w));
            }
            if let Some(d) = &cg_dir {
                let mut procs = d.as_bytes().to_vec();
                procs.extend_from_slice(b"/cgroup.procs");
                let procs = CString::new(procs).map_err(|_| prep_err(Errno::EINVAL))?;
                let fd =
                    open_raw(&procs, libc::O_WRONLY).map_err(|e| err(spec, Stage::Cgroup, e))?;
                p.procs_fd = fd.as_raw_fd();
                _procs_guard = fd;
            }
            let child = fork(&p).map_err(|e| err(spec, Stage::Fork, e))?;
            // A pidfd lets the caller wait without racing pid reuse; a child
            // already reaped by the supervisor's loop just has none.
            // SAFETY: plain syscall.
            let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, child, 0) };
            if fd >= 0 {
                // SAFETY: fresh fd, ours.
                pidfd = Some(unsafe { OwnedFd::from_raw_fd(fd as RawFd) });
            }
            child
        }
    };
    let (stage, errno) = match err_pipe {
        None => {
            // The child has exec'ed or exited by now (CLONE_VFORK), and
            // wrote its report into our memory before exiting.
            // SAFETY: plain read of our own Cell, no other writer is left.
            let r = unsafe { std::ptr::read_volatile(p.report.as_ptr()) };
            if r == 0 {
                return Ok(Spawned { pid, pidfd });
            }
            ((r >> 32) as u32, r as u32 as i32)
        }
        Some((err_r, err_w)) => {
            drop(err_w);
            let mut report = [0u8; 8];
            let mut got = 0;
            while got < report.len() {
                match nix::unistd::read(&err_r, &mut report[got..]) {
                    Ok(0) => break,
                    Ok(n) => got += n,
                    Err(Errno::EINTR) => continue,
                    Err(_) => break,
                }
            }
            if got == 0 {
                return Ok(Spawned { pid, pidfd });
            }
            (
                u32::from_ne_bytes([report[0], report[1], report[2], report[3]]),
                i32::from_ne_bytes([report[4], report[5], report[6], report[7]]),
            )
        }
    };
    // The child _exit()s right after reporting; collect it here (it never
    // became a service). If the supervisor's waitpid(-1) loop got it first,
    // that is ECHILD here and an unknown pid there, both harmless.
    reap(pid, pidfd.as_ref());
    let stage = Stage::from_u32(stage).unwrap_or(Stage::Exec);
    Err(SpawnError {
        pid: Some(pid),
        ..err(spec, stage, Errno::from_raw(errno))
    })
}

fn reap(pid: i32, pidfd: Option<&OwnedFd>) {
    // SAFETY: plain syscalls on our own child; info is a valid out-pointer.
    unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        loop {
            let r = match pidfd {
                Some(fd) => libc::waitid(
                    libc::P_PIDFD,
                    fd.as_raw_fd() as libc::id_t,
                    &mut info,
                    libc::WEXITED,
                ),
                None => libc::waitid(libc::P_PID, pid as libc::id_t, &mut info, libc::WEXITED),
            };
            if r == 0 || Errno::last() != Errno::EINTR {
                return;
            }
        }
    }
}

/// Blocks every signal for the duration of the clone, so no handler of
/// ours runs in the child before it has reset the dispositions.
struct BlockSignals(libc::sigset_t);

impl BlockSignals {
    fn new() -> BlockSignals {
        // SAFETY: both sets are valid; pthread_sigmask only affects this thread.
        unsafe {
            let mut all: libc::sigset_t = std::mem::zeroed();
            let mut old: libc::sigset_t = std::mem::zeroed();
            libc::sigfillset(&mut all);
            libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
            BlockSignals(old)
        }
    }
}

impl Drop for BlockSignals {
    fn drop(&mut self) {
        // SAFETY: restores the mask saved in new().
        unsafe {
            libc::pthread_sigmask(libc::SIG_SETMASK, &self.0, std::ptr::null_mut());
        }
    }
}

fn clone3(p: &Prepared, cg_fd: Option<RawFd>) -> Result<(i32, OwnedFd), Errno> {
    let mut pidfd: libc::c_int = -1;
    let mut args = CloneArgs {
        flags: CLONE_PIDFD,
        pidfd: &mut pidfd as *mut libc::c_int as u64,
        exit_signal: libc::SIGCHLD as u64,
        ..CloneArgs::default()
    };
    if let Some(fd) = cg_fd {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = fd as u64;
    }
    let blocked = BlockSignals::new();
    // SAFETY: args is a valid clone_args of the size passed. Without
    // CLONE_VM the child gets a copy of our memory, like fork, and runs
    // only child_main, which never returns.
    let r = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    if r == 0 {
        child_main(p);
    }
    let e = Errno::last();
    drop(blocked);
    if r < 0 {
        return Err(e);
    }
    // SAFETY: the kernel stored a fresh pidfd for us.
    Ok((r as i32, unsafe { OwnedFd::from_raw_fd(pidfd) }))
}

/// Whether spawn uses [`clone3_vfork`]: where we have its entry code.
const VFORK: bool = cfg!(target_arch = "x86_64");

/// Room for the vfork child's frames (child_main and the libc calls it
/// makes), with a guard page below.
const CHILD_STACK: usize = 64 * 1024;

thread_local! {
    /// The stack of this thread's last vfork child, kept for the next: a
    /// map, a guard page and an unmap per spawn cost three system calls,
    /// and the unmap of a multi-threaded process interrupts every CPU that
    /// ran one of its threads to flush its TLB.
    static SPARE_STACK: Cell<Option<ChildStack>> = const { Cell::new(None) };
}

/// clone3 with CLONE_VM | CLONE_VFORK, as posix_spawn does: the child runs
/// on a stack of its own in our address space until it execs, so the
/// kernel copies no page tables, the exec tears none down, and our pages do
/// not turn copy-on-write under the other threads. Measured here: a fork of
/// the manager (clone3 without CLONE_VM) kept the calling thread ~2 ms off
/// the CPU per start on a 2-core machine; this returns once the child has
/// exec'ed. Every signal is blocked across it, so no handler of ours runs
/// on the child's stack before child_main has reset the dispositions.
fn clone3_vfork(p: &Prepared, cg_fd: Option<RawFd>) -> Result<(i32, OwnedFd), Errno> {
    let stack = match SPARE_STACK.with(Cell::take) {
        Some(s) => s,
        None => ChildStack::new()?,
    };
    let mut pidfd: libc::c_int = -1;
    let mut args = CloneArgs {
        flags: CLONE_PIDFD | libc::CLONE_VM as u64 | libc::CLONE_VFORK as u64,
        pidfd: &mut pidfd as *mut libc::c_int as u64,
        exit_signal: libc::SIGCHLD as u64,
        stack: stack.base as u64,
        stack_size: stack.len as u64,
        ..CloneArgs::default()
    };
    if let Some(fd) = cg_fd {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = fd as u64;
    }
    let blocked = BlockSignals::new();
    // SAFETY: args is a valid clone_args with a stack of our own that
    // outlives the child's use of it (we are suspended until it execs or
    // exits); the child runs only child_entry on prepared data.
    let r = unsafe { clone3_raw(&args, child_entry, p) };
    drop(blocked);
    // The child is done with it: it has exec'ed or exited.
    SPARE_STACK.with(|spare| spare.set(Some(stack)));
    if r < 0 {
        return Err(Errno::from_raw(-r as i32));
    }
    // SAFETY: the kernel stored a fresh pidfd for us.
    Ok((r as i32, unsafe { OwnedFd::from_raw_fd(pidfd) }))
}

/// An mmap'ed stack for the vfork child, unmapped on drop.
struct ChildStack {
    base: *mut libc::c_void,
    len: usize,
}

impl ChildStack {
    fn new() -> Result<ChildStack, Errno> {
        let page = 4096;
        let len = CHILD_STACK + page;
        // SAFETY: a fresh anonymous mapping; its lowest page becomes the guard.
        unsafe {
            let base = libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
                -1,
                0,
            );
            if base == libc::MAP_FAILED {
                return Err(Errno::last());
            }
            libc::mprotect(base, page, libc::PROT_NONE);
            Ok(ChildStack { base, len })
        }
    }
}

impl Drop for ChildStack {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly what new() mapped.
        unsafe {
            libc::munmap(self.base, self.len);
        }
    }
}

/// The vfork child's first Rust frame.
extern "C" fn child_entry(p: *const Prepared) -> ! {
    // SAFETY: p points at the parent's Prepared, alive while it is suspended.
    child_main(unsafe { &*p })
}

/// clone3(2) whose child calls `entry(p)` on the new stack. Returns the
/// raw result in the parent: the child's pid, or -errno.
#[cfg(target_arch = "x86_64")]
unsafe fn clone3_raw(
    args: *const CloneArgs,
    entry: extern "C" fn(*const Prepared) -> !,
    p: *const Prepared,
) -> i64 {
    let ret: i64;
    // The child resumes after `syscall` on the new stack with our registers:
    // it must not return into Rust code of this frame, so it calls entry
    // (r12) with p (r13), both callee-saved and thus preserved.
    // SAFETY: the caller passes a valid clone_args; see clone3_vfork.
    unsafe {
        std::arch::asm!(
            "syscall",
            "test rax, rax",
            "jnz 2f",
            "xor ebp, ebp",
            "mov rdi, r13",
            "call r12",
            "ud2",
            "2:",
            inlateout("rax") libc::SYS_clone3 => ret,
            in("rdi") args,
            in("rsi") std::mem::size_of::<CloneArgs>(),
            in("r12") entry,
            in("r13") p,
            lateout("rcx") _,
            lateout("r11") _,
        );
    }
    ret
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn clone3_raw(
    _args: *const CloneArgs,
    _entry: extern "C" fn(*const Prepared) -> !,
    _p: *const Prepared,
) -> i64 {
    -(libc::ENOSYS as i64)
}

fn fork(p: &Prepared) -> Result<i32, Errno> {
    let blocked = BlockSignals::new();
    // SAFETY: the child runs only child_main (async-signal-safe calls on
    // prepared data) and never returns.
    let r = unsafe { libc::fork() };
    if r == 0 {
        child_main(p);
    }
    let e = Errno::last();
    drop(blocked);
    if r < 0 { Err(e) } else { Ok(r) }
}

/// Reports (stage, errno) to the parent and exits. Async-signal-safe.
fn fail(p: &Prepared, stage: Stage) -> ! {
    let errno = Errno::last_raw();
    let mut buf = [0u8; 8];
    buf[..4].copy_from_slice(&(stage as u32).to_ne_bytes());
    buf[4..].copy_from_slice(&errno.to_ne_bytes());
    // SAFETY: write and _exit are async-signal-safe; buf is valid. The
    // volatile store reaches a parent that shares our memory (vfork path).
    unsafe {
        std::ptr::write_volatile(
            p.report.as_ptr(),
            (u64::from(stage as u32) << 32) | u64::from(errno as u32),
        );
        if p.err_fd.get() >= 0 {
            libc::write(p.err_fd.get(), buf.as_ptr().cast(), buf.len());
        }
        libc::_exit(127);
    }
}

/// Writes the calling process's pid in decimal and a NUL into `out`
/// (at least 11 bytes). Async-signal-safe: a raw getpid, no allocation.
fn write_own_pid(out: &[Cell<u8>]) {
    // SAFETY: getpid has no arguments and cannot fail.
    let mut pid = unsafe { libc::syscall(libc::SYS_getpid) } as u64;
    let mut digits = [0u8; 20];
    let mut n = 0;
    loop {
        digits[n] = b'0' + (pid % 10) as u8;
        n += 1;
        pid /= 10;
        if pid == 0 {
            break;
        }
    }
    for (i, slot) in out.iter().take(n).enumerate() {
        slot.set(digits[n - 1 - i]);
    }
    if let Some(end) = out.get(n) {
        end.set(0);
    }
}

/// The child between fork and exec. Only async-signal-safe system calls
/// on `p`, which was fully built before the fork; nothing here allocates
/// or can panic.
fn child_main(p: &Prepared) -> ! {
    // SAFETY: every call is a plain system call on prepared, valid data.
    unsafe {
        if p.procs_fd >= 0 && libc::write(p.procs_fd, b"0".as_ptr().cast(), 1) != 1 {
            fail(p, Stage::Cgroup);
        }

        // Handlers do not survive exec, but ignored signals would (Rust
        // ignores SIGPIPE, and whoever started us may have ignored more):
        // reset everything while all are still blocked. The raw syscall
        // also reaches the two signals glibc's sigaction refuses (32, 33).
        // IgnoreSIGPIPE= (systemd's default) keeps SIGPIPE ignored: a daemon
        // writing to a closed socket gets EPIPE instead of dying.
        let dfl = KernelSigaction::default();
        let ign = KernelSigaction {
            handler: libc::SIG_IGN,
            ..KernelSigaction::default()
        };
        for sig in 1..=64 {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                let act = if sig == libc::SIGPIPE && p.ignore_sigpipe {
                    &ign
                } else {
                    &dfl
                };
                libc::syscall(
                    libc::SYS_rt_sigaction,
                    sig,
                    act as *const KernelSigaction,
                    std::ptr::null_mut::<KernelSigaction>(),
                    8usize,
                );
            }
        }

        if p.setsid && libc::setsid() < 0 {
            fail(p, Stage::Setsid);
        }

        if p.err_fd.get() >= 0 {
            let e = libc::fcntl(p.err_fd.get(), libc::F_DUPFD_CLOEXEC, p.fd_floor);
            if e < 0 {
                fail(p, Stage::Fds);
            }
            p.err_fd.set(e);
        }
        // Copy every source above all targets first, so a target number
        // that is also another entry's source is not clobbered.
        for (slot, (src, _, stage)) in p.tmp.iter().zip(p.fds.iter()) {
            let t = libc::fcntl(*src, libc::F_DUPFD_CLOEXEC, p.fd_floor);
            if t < 0 {
                fail(p, *stage);
            }
            slot.set(t);
        }
        // Everything from 3 up closes at exec unless dup2'ed below; a
        // kernel without CLOSE_RANGE_CLOEXEC (< 5.11) relies on O_CLOEXEC.
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        );
        for (t, (_, dst, stage)) in p.tmp.iter().zip(p.fds.iter()) {
            if libc::dup2(t.get(), *dst) < 0 {
                fail(p, *stage);
            }
        }

        if let Some(m) = p.umask {
            libc::umask(m);
        }
        if let Some((buf, len)) = &p.oom {
            let fd = libc::open(
                c"/proc/self/oom_score_adj".as_ptr(),
                libc::O_WRONLY | libc::O_CLOEXEC,
            );
            let ok = fd >= 0 && libc::write(fd, buf.as_ptr().cast(), *len) == *len as isize;
            let e = Errno::last_raw();
            if fd >= 0 {
                libc::close(fd);
            }
            // systemd 252: a refusal for lack of privilege (lowering the
            // score) is ignored, "assuming containerized execution".
            if !ok && e != libc::EACCES && e != libc::EPERM {
                set_errno(e);
                fail(p, Stage::OomAdjust);
            }
        }
        if let Some(n) = p.nice
            && !nice_closest(n)
        {
            fail(p, Stage::Nice);
        }
        if let Some((policy, param)) = &p.sched
            && libc::sched_setscheduler(0, *policy, param) < 0
        {
            fail(p, Stage::SetScheduler);
        }
        if let Some(set) = &p.affinity
            && libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), set) < 0
        {
            fail(p, Stage::CpuAffinity);
        }
        // IOPRIO_WHO_PROCESS is 1.
        if let Some(v) = p.ioprio
            && libc::syscall(libc::SYS_ioprio_set, 1, 0, v) < 0
        {
            fail(p, Stage::IoPrio);
        }
        if let Some(ns) = p.slack
            && libc::prctl(libc::PR_SET_TIMERSLACK, ns as libc::c_ulong) < 0
        {
            fail(p, Stage::TimerSlack);
        }
        for (res, lim) in &p.rlimits {
            if !rlimit_closest(*res, lim) {
                fail(p, Stage::Rlimit);
            }
        }
        if let Some((uid, gid)) = p.creds {
            if libc::syscall(libc::SYS_setgroups, p.groups.len(), p.groups.as_ptr()) < 0 {
                fail(p, Stage::Groups);
            }
            if libc::syscall(libc::SYS_setresgid, gid, gid, gid) < 0 {
                fail(p, Stage::Setgid);
            }
            if libc::syscall(libc::SYS_setresuid, uid, uid, uid) < 0 {
                fail(p, Stage::Setuid);
            }
        }
        if !p.listen_pid.is_empty() {
            write_own_pid(&p.listen_pid[LISTEN_PID_PREFIX.len()..]);
        }
        if !p.cwd.is_null() && libc::chdir(p.cwd) < 0 {
            fail(p, Stage::Chdir);
        }
        // After the credentials change, as systemd orders it: the flag
        // would not stop setresuid, but it belongs to what gets executed.
        if p.no_new_privs && libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 {
            fail(p, Stage::NoNewPrivileges);
        }
        if libc::pthread_sigmask(libc::SIG_SETMASK, &p.mask, std::ptr::null_mut()) != 0 {
            fail(p, Stage::SignalMask);
        }
        libc::execve(p.program, p.argv.as_ptr(), p.envp.as_ptr());
        fail(p, Stage::Exec)
    }
}
