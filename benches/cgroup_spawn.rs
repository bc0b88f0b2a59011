//! Spawn into a cgroup, and kill + wait_empty of a cgroup of 100 processes.
//! Needs root and cgroup2 (prints a note and does nothing otherwise).
//!
//! Only the operation itself is timed (`iter_custom`): creating cgroups,
//! starting the 100 processes, reaping and removal happen outside.

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use corral::cgroup::spawn::{self, FdMapping, SpawnSpec};
use corral::cgroup::{Cgroup, TempCgroup};
use criterion::{Criterion, criterion_group, criterion_main};

fn reap(pid: i32) {
    nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None).unwrap();
}

fn pipe() -> (OwnedFd, OwnedFd) {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap()
}

fn sh_spec(cg: &Cgroup, script: &str) -> SpawnSpec {
    let mut s = SpawnSpec::new(CString::new("/bin/sh").unwrap());
    s.argv = vec![c"sh".into(), c"-c".into(), CString::new(script).unwrap()];
    s.env = vec![c"PATH=/usr/bin:/bin".into()];
    s.cgroup = Some(cg.path().into());
    s
}

fn bench_spawn(c: &mut Criterion, root: &Cgroup) {
    let cg = root.create_child("spawn").unwrap();
    let mut g = c.benchmark_group("spawn_into_cgroup");
    for (name, force_fork) in [("clone3", false), ("fork+procs", true)] {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let mut spec = SpawnSpec::new(c"/bin/true".into());
                    spec.cgroup = Some(cg.path().into());
                    spec.force_fork = force_fork;
                    // Timed: from the call until the child has exec'ed
                    // inside its cgroup (spawn returns after exec).
                    let t = Instant::now();
                    let child = spawn::spawn(&spec).unwrap();
                    total += t.elapsed();
                    reap(child.pid);
                }
                total
            })
        });
    }
    g.finish();
}

/// A fresh cgroup with a shell and 99 forked subshells (100 processes),
/// returned once every one of them is running and blocked: each writes a
/// byte to fd 3 and then blocks reading fd 4, a pipe nobody writes to
/// (the returned fd keeps it open).
fn hundred(root: &Cgroup, n: usize) -> (Cgroup, i32, OwnedFd) {
    let cg = root.create_child(&format!("hundred-{n}")).unwrap();
    let (ready_r, ready_w) = pipe();
    let (block_r, block_w) = pipe();
    let mut spec = sh_spec(
        &cg,
        "for i in $(seq 99); do (echo >&3; read x <&4) & done; echo >&3; read x <&4",
    );
    spec.extra_fds = vec![
        FdMapping {
            parent_fd: ready_w.as_raw_fd(),
            child_fd: 3,
        },
        FdMapping {
            parent_fd: block_r.as_raw_fd(),
            child_fd: 4,
        },
    ];
    let child = spawn::spawn(&spec).unwrap();
    drop((spec, ready_w, block_r));
    let mut ready = [0u8; 100];
    std::io::Read::read_exact(&mut std::fs::File::from(ready_r), &mut ready).unwrap();
    assert_eq!(cg.procs().unwrap().len(), 100);
    (cg, child.pid, block_w)
}

fn bench_kill(c: &mut Criterion, root: &Cgroup) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut n = 0;
    let mut g = c.benchmark_group("stop_cgroup_of_100");
    g.sample_size(10);
    g.warm_up_time(Duration::from_millis(500));
    g.measurement_time(Duration::from_secs(5));
    for (name, each) in [
        ("cgroup.kill+wait_empty", false),
        ("kill_each+wait_empty", true),
    ] {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    n += 1;
                    let (cg, shell, _block) = hundred(root, n);
                    let t = Instant::now();
                    if each {
                        cg.kill_each().unwrap();
                    } else {
                        cg.kill().unwrap();
                    }
                    rt.block_on(cg.wait_empty()).unwrap();
                    total += t.elapsed();
                    assert!(cg.procs_recursive().unwrap().is_empty());
                    reap(shell);
                    cg.remove().unwrap();
                }
                total
            })
        });
    }
    g.finish();
}

fn benches(c: &mut Criterion) {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("cgroup benches need root; skipped");
        return;
    }
    let root = match TempCgroup::new("corral-bench") {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cgroup benches need cgroup2 ({e}); skipped");
            return;
        }
    };
    bench_spawn(c, &root);
    bench_kill(c, &root);
}

criterion_group!(cgroup_benches, benches);
criterion_main!(cgroup_benches);
