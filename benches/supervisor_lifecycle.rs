//! Supervisor latencies against a real `corrald --user` in its own cgroup
//! root (root only; without root it prints a note and measures only the
//! state machine). The daemon and its units are set up once, outside the
//! timed loops; each timed section is one control request or one kill.
//!
//! Targets (issue 3 §7): start -> running ≤ 2 ms; stop of a unit with 100
//! forked children ≤ 10 ms with 0 survivors; restart after kill -9 with
//! RestartSec=0 ≤ 3 ms. scripts/bench-supervisor.sh measures the same beside
//! runit and s6 end to end (CLI included) and the RSS with 50 idle units.

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use corral::cgroup::TempCgroup;
use corral::ipc::Client;
use corral::ipc::proto::{Request, Response};
use corral::supervisor::state::{Cmd, Event, Exit, Readiness, Spec, State, next};
use criterion::{Criterion, criterion_group, criterion_main};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};

struct Daemon {
    child: Child,
    _dir: tempfile::TempDir,
    root: TempCgroup,
    socket: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn daemon() -> Option<Daemon> {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("note: daemon benches need root and cgroup2; measuring the state machine only");
        return None;
    }
    let root = TempCgroup::new("corral-bench").ok()?;
    let dir = tempfile::tempdir().ok()?;
    let units = dir.path().join("units");
    std::fs::create_dir_all(&units).ok()?;
    std::fs::write(
        units.join("sleeper.service"),
        "[Unit]\nStartLimitIntervalSec=0\n[Service]\nExecStart=/bin/sleep infinity\n",
    )
    .ok()?;
    std::fs::write(
        units.join("phoenix.service"),
        "[Unit]\nStartLimitBurst=0\n[Service]\nRestart=always\nRestartSec=0\nExecStart=/bin/sleep infinity\n",
    )
    .ok()?;
    std::fs::write(
        units.join("hundred.service"),
        "[Unit]\nStartLimitIntervalSec=0\n[Service]\nExecStart=/bin/bash -c 'for i in $(seq 100); do sleep infinity & done; exec sleep infinity'\n",
    )
    .ok()?;
    let (r, w) = nix::unistd::pipe().ok()?;
    let child = Command::new(env!("CARGO_BIN_EXE_corrald"))
        .arg("--user")
        .arg("--units-dir")
        .arg(&units)
        .arg("--runit-dir")
        .arg(dir.path().join("none"))
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .arg("--runtime-dir")
        .arg(dir.path().join("run/corral"))
        .arg("--cgroup-root")
        .arg(root.path())
        .arg("--ready-fd")
        .arg(w.as_raw_fd().to_string())
        .env("XDG_RUNTIME_DIR", dir.path().join("run"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    drop(w);
    let mut buf = [0u8; 128];
    // One line on the ready fd: the socket listens.
    let _ = nix::unistd::read(&r, &mut buf);
    let socket = dir.path().join("run/corral/control.sock");
    Some(Daemon {
        child,
        _dir: dir,
        root,
        socket,
    })
}

fn request(c: &mut Client<Request, Response>, r: Request) {
    match c.request(&r).unwrap_or_else(|e| panic!("{r:?}: {e}")) {
        Response::Jobs(j) => assert!(j.iter().all(|o| o.result.is_ok()), "{j:?}"),
        other => panic!("unexpected {other:?}"),
    }
}

/// Pause between /proc scans, as svlat does: busy polling would steal the
/// CPU from the daemon being measured on a small machine.
const POLL: Duration = Duration::from_micros(50);

fn procs(cg: &Path) -> Vec<i32> {
    std::fs::read_to_string(cg.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.parse().ok())
        .collect()
}

fn comm(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default()
}

fn units(n: &str) -> Vec<String> {
    vec![n.to_string()]
}

fn bench(c: &mut Criterion) {
    let spec = Spec {
        cmds: [vec![], vec![false], vec![], vec![], vec![], vec![], vec![]],
        readiness: Readiness::Simple,
        ..Spec::default()
    };
    c.bench_function("state_machine/start_run_stop_cycle", |b| {
        b.iter(|| {
            let mut s = State::default();
            for e in [
                Event::Start,
                Event::Spawned {
                    cmd: Cmd::Start,
                    pid: 100,
                },
                Event::Stop,
                Event::MainExited(Exit::Signal {
                    sig: 15,
                    core: false,
                }),
                Event::CgroupEmpty,
            ] {
                s = next(&spec, &s, e).expect("valid transition").0;
            }
            s
        })
    });

    let Some(d) = daemon() else { return };
    let mut client: Client<Request, Response> = Client::connect(&d.socket).expect("connect");
    let mut g = c.benchmark_group("daemon");
    g.sample_size(20).measurement_time(Duration::from_secs(10));

    g.bench_function("start_to_running", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let t = Instant::now();
                // Type=simple answers once the process was spawned into its cgroup and exec'd.
                request(
                    &mut client,
                    Request::Start {
                        units: units("sleeper"),
                    },
                );
                total += t.elapsed();
                request(
                    &mut client,
                    Request::Stop {
                        units: units("sleeper"),
                    },
                );
            }
            total
        })
    });

    let hundred = d.root.path().join("hundred.service");
    g.bench_function("stop_100_children", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                request(
                    &mut client,
                    Request::Start {
                        units: units("hundred"),
                    },
                );
                let end = Instant::now() + Duration::from_secs(10);
                while procs(&hundred).len() < 101 && Instant::now() < end {
                    std::thread::sleep(Duration::from_millis(1));
                }
                let kids = procs(&hundred);
                let t = Instant::now();
                request(
                    &mut client,
                    Request::Stop {
                        units: units("hundred"),
                    },
                );
                total += t.elapsed();
                // PIDs are reused quickly on a busy machine: a survivor is one of
                // those PIDs still running the unit's command.
                let alive = kids
                    .iter()
                    .filter(|p| {
                        std::fs::read(format!("/proc/{p}/cmdline"))
                            .is_ok_and(|c| c.starts_with(b"sleep\0infinity"))
                    })
                    .count();
                assert!(!hundred.exists(), "cgroup left after stop");
                assert_eq!(alive, 0, "survivors after stop");
            }
            total
        })
    });

    let phoenix = d.root.path().join("phoenix.service");
    request(
        &mut client,
        Request::Start {
            units: units("phoenix"),
        },
    );
    let running = |not: i32| {
        procs(&phoenix)
            .first()
            .copied()
            .filter(|&p| p != not && comm(p) == "sleep\n")
    };
    g.bench_function("restart_after_kill9", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let old = loop {
                    if let Some(p) = running(0) {
                        break p;
                    }
                    std::thread::sleep(POLL);
                };
                // Sleep in the kernel until the new invocation's cgroup is made
                // (no polling while the daemon reaps and restarts), then poll
                // briefly for the exec.
                let ino = Inotify::init(InitFlags::IN_CLOEXEC).expect("inotify");
                ino.add_watch(d.root.path(), AddWatchFlags::IN_CREATE)
                    .expect("watch the cgroup root");
                let t = Instant::now();
                nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(old),
                    nix::sys::signal::Signal::SIGKILL,
                )
                .expect("kill");
                loop {
                    let created = ino.read_events().expect("inotify read");
                    if created
                        .iter()
                        .any(|e| e.name.as_deref() == Some(std::ffi::OsStr::new("phoenix.service")))
                    {
                        break;
                    }
                }
                // Running again: a new process in the new cgroup that has exec'd sleep.
                while running(old).is_none() {
                    std::thread::sleep(POLL);
                }
                total += t.elapsed();
            }
            total
        })
    });
    g.finish();
    request(
        &mut client,
        Request::Stop {
            units: units("phoenix"),
        },
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
