//! Table tests of the manager's shell: a real `Manager` (real unit files,
//! loader, job driver, machines, invocation cgroups) driven through
//! [`Input`]s, with a host of the test's own: its processes, signals and
//! timers exist only here, and its clock moves when a test says so. The
//! integration tests (tests/) run the same paths with real processes.
//!
//! The invocations' cgroups are real directories below a scratch cgroup,
//! so these tests need root and cgroup2 like the integration tests: without
//! them they say so and pass, unless `CORRAL_REQUIRE_CGROUP=1`.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::Signal;
use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;

use crate::cgroup::spawn::{SpawnError, SpawnSpec};
use crate::cgroup::{Cgroup, CgroupError, TempCgroup};
use crate::ipc::proto::Failure;
use crate::supervisor::graph::{self, Rel, Units};
use crate::supervisor::output::Output;
use crate::supervisor::state::{Exit, Pid};
use crate::unit::{Loader, SpecifierContext};

use super::host::Host;
use super::{Input, JobRequest, Manager, environment};

/// What the test host knows: its processes, what it was asked, its clock.
#[derive(Default)]
struct World {
    now: Duration,
    next_pid: Pid,
    /// Live processes and their cgroup.
    alive: Vec<(Pid, PathBuf)>,
    /// Ended processes the reaper has not reported yet.
    dead: VecDeque<(Pid, Exit)>,
    /// Every spawn: the PID and the command line.
    spawned: Vec<(Pid, String)>,
    /// Signals sent: to a PID or a cgroup, and which.
    signals: Vec<(String, Signal)>,
    /// Armed timers: when they fire and what they send.
    timers: Vec<(Duration, Input)>,
}

impl World {
    /// `sig` sent to `to` reaches `pids`, which keep the default actions.
    fn receive(&mut self, to: String, pids: Vec<Pid>, sig: Signal) {
        self.signals.push((to, sig));
        if deadly(sig) {
            for pid in pids {
                let exit = Exit::Signal {
                    sig: sig as i32,
                    core: false,
                };
                self.end(pid, exit);
            }
        }
    }

    fn end(&mut self, pid: Pid, exit: Exit) {
        if let Some(i) = self.alive.iter().position(|(p, _)| *p == pid) {
            self.alive.remove(i);
            self.dead.push_back((pid, exit));
        }
    }
}

/// The test's host, shared between the manager and the test.
#[derive(Clone, Default)]
struct TestHost(Arc<Mutex<World>>);

impl TestHost {
    fn world(&self) -> std::sync::MutexGuard<'_, World> {
        self.0.lock().expect("world lock")
    }
}

/// Whether a signal ends a process that keeps its default actions.
fn deadly(sig: Signal) -> bool {
    matches!(
        sig,
        Signal::SIGTERM | Signal::SIGKILL | Signal::SIGINT | Signal::SIGHUP
    )
}

impl Host for TestHost {
    fn now(&self) -> Duration {
        self.world().now
    }

    fn spawn(&self, spec: &SpawnSpec) -> Result<Pid, SpawnError> {
        let mut w = self.world();
        w.next_pid += 1;
        let pid = 10_000 + w.next_pid;
        let argv: Vec<String> = spec
            .argv
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let line = format!("{} {}", spec.program.to_string_lossy(), argv.join(" "));
        w.spawned.push((pid, line));
        let cgroup = spec.cgroup.clone().unwrap_or_default();
        w.alive.push((pid, cgroup));
        Ok(pid)
    }

    fn signal(&self, pid: Pid, sig: Signal) -> Result<(), Errno> {
        self.world().receive(pid.to_string(), vec![pid], sig);
        Ok(())
    }

    fn signal_cgroup(&self, cg: &Cgroup, sig: Signal) -> Result<(), CgroupError> {
        let mut w = self.world();
        let pids = procs_in(&w, cg.path());
        w.receive(cg.path().display().to_string(), pids, sig);
        Ok(())
    }

    fn kill_cgroup(&self, cg: &Cgroup) -> Result<(), CgroupError> {
        self.signal_cgroup(cg, Signal::SIGKILL)
    }

    fn populated(&self, cg: &Cgroup) -> Result<bool, CgroupError> {
        Ok(!procs_in(&self.world(), cg.path()).is_empty())
    }

    fn procs(&self, cg: &Cgroup) -> Result<Vec<Pid>, CgroupError> {
        Ok(procs_in(&self.world(), cg.path()))
    }

    fn contains(&self, cg: &Cgroup, pid: Pid) -> Result<bool, CgroupError> {
        Ok(procs_in(&self.world(), cg.path()).contains(&pid))
    }

    // The processes of this world have no parents of their own: all are
    // the manager's.
    fn adopted(&self, _pid: Pid) -> bool {
        true
    }

    fn arm(&self, after: Duration, input: Input) -> Option<AbortHandle> {
        let mut w = self.world();
        let at = w.now + after;
        w.timers.push((at, input));
        None
    }

    // Its processes never outlive a manager.
    fn watch_exit(&self, _pid: Pid, _start: Option<u64>) -> bool {
        false
    }
}

fn procs_in(w: &World, cg: &Path) -> Vec<Pid> {
    w.alive
        .iter()
        .filter(|(_, c)| c.starts_with(cg))
        .map(|(p, _)| *p)
        .collect()
}

type Reply = oneshot::Receiver<Result<Vec<String>, Failure>>;

/// A manager over unit files of the test, with the test's host.
struct Rig {
    m: Manager,
    rx: mpsc::UnboundedReceiver<Input>,
    host: TestHost,
    // Dropped after the manager: it kills and removes every cgroup below it.
    root: TempCgroup,
    _dir: tempfile::TempDir,
}

impl Rig {
    /// Must run inside a tokio runtime (the manager spawns its inotify
    /// task there). None when there is no cgroup to run invocations in.
    fn new(units: &[(&str, &str)]) -> Option<Rig> {
        let root = match TempCgroup::new("corral-manager-test") {
            Ok(r) => r,
            Err(e) if std::env::var("CORRAL_REQUIRE_CGROUP").as_deref() == Ok("1") => {
                panic!("CORRAL_REQUIRE_CGROUP=1 but no scratch cgroup: {e}")
            }
            Err(e) => {
                eprintln!("skipped: needs root and cgroup2 for the invocations' cgroups: {e}");
                return None;
            }
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let unit_dir = dir.path().join("units");
        std::fs::create_dir(&unit_dir).expect("units dir");
        for (name, text) in units {
            std::fs::write(unit_dir.join(name), text).expect("write unit");
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let host = TestHost::default();
        let loader = Loader::new(vec![unit_dir], Vec::new(), SpecifierContext::current());
        let timers = super::timer_unit::Timers::new(
            tx.clone(),
            &tokio::runtime::Handle::current(),
            dir.path().to_path_buf(),
        )
        .expect("timerfds");
        let mut m = Manager::new(
            tx,
            root.cgroup().clone(),
            crate::cgroup::find_mount().expect("cgroup2 mount"),
            loader,
            dir.path().join("notify"),
            environment::EnvBlock::load(dir.path()),
            Output::new(None),
            Box::new(host.clone()),
            timers,
        )
        .expect("manager");
        m.load_all();
        Some(Rig {
            m,
            rx,
            host,
            root,
            _dir: dir,
        })
    }

    /// Runs what is due: exits the reaper would report, timers whose time
    /// has come, the inputs the manager queued for itself.
    fn settle(&mut self) {
        loop {
            let reaped = self.host.world().dead.pop_front();
            if let Some((pid, exit)) = reaped {
                self.m.input(Input::Reaped(pid, exit));
                continue;
            }
            let due = {
                let mut w = self.host.world();
                let now = w.now;
                w.timers
                    .iter()
                    .position(|(at, _)| *at <= now)
                    .map(|i| w.timers.remove(i).1)
            };
            if let Some(input) = due {
                self.m.input(input);
                continue;
            }
            match self.rx.try_recv() {
                Ok(input) => self.m.input(input),
                Err(_) => break,
            }
        }
    }

    /// Sends a job request and runs what follows; the answer, once there.
    fn job(&mut self, unit: &str, job: JobRequest) -> Reply {
        let (reply, rx) = oneshot::channel();
        self.m.input(Input::Job {
            unit: unit.to_string(),
            job,
            manual: true,
            reply,
        });
        self.settle();
        rx
    }

    /// Moves the clock on by `d`.
    fn advance(&mut self, d: Duration) {
        self.host.world().now += d;
        self.settle();
    }

    /// The unit's main process ends with `exit`.
    fn main_exits(&mut self, unit: &str, exit: Exit) {
        let main = self.m.units[unit].main_and_control().0;
        let pid = main.unwrap_or_else(|| panic!("{unit} has no main process"));
        self.host.world().end(pid, exit);
        self.settle();
    }

    /// The process spawned last ends with `exit`.
    fn last_spawn_exits(&mut self, exit: Exit) {
        let pid = self.host.world().spawned.last().expect("a spawn").0;
        self.host.world().end(pid, exit);
        self.settle();
    }

    /// `active (sub)` of a unit, and its result.
    fn state(&self, unit: &str) -> (String, &'static str) {
        let e = &self.m.units[unit];
        let p = e.phase();
        (
            format!("{} ({})", p.active.as_str(), e.sub_word()),
            p.result.as_str(),
        )
    }

    /// Whether a command line starting with `prefix` was spawned.
    fn ran(&self, prefix: &str) -> bool {
        self.spawns().iter().any(|l| l.starts_with(prefix))
    }

    fn spawns(&self) -> Vec<String> {
        self.host
            .world()
            .spawned
            .iter()
            .map(|(_, l)| l.clone())
            .collect()
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn answered(rx: &mut Reply) -> Option<Result<Vec<String>, Failure>> {
    rx.try_recv().ok()
}

/// Runs `test` on a manager over `units` (inside a runtime, as in
/// `corrald`), and starts `first`: the answer to that start, if any yet.
fn with_rig(units: &[(&str, &str)], first: &str, test: impl FnOnce(&mut Rig, Reply)) {
    let rt = runtime();
    let _g = rt.enter();
    let Some(mut r) = Rig::new(units) else {
        return;
    };
    let reply = r.job(first, JobRequest::Start);
    test(&mut r, reply);
}

#[test]
fn restart_waits_restart_sec_on_the_hosts_clock() {
    with_rig(
        &[(
            "a.service",
            "[Service]\nExecStart=/bin/sleep 1000\nRestart=always\nRestartSec=5\n",
        )],
        "a.service",
        |r, mut reply| {
            assert_eq!(answered(&mut reply), Some(Ok(Vec::new())));
            r.main_exits("a.service", Exit::Code(1));
            assert_eq!(
                r.state("a.service"),
                ("activating (auto-restart)".into(), "exit-code")
            );
            assert_eq!(r.spawns().len(), 1);
            r.advance(Duration::from_millis(4_999));
            assert_eq!(r.state("a.service").0, "activating (auto-restart)");
            assert_eq!(r.spawns().len(), 1);
            r.advance(Duration::from_millis(1));
            assert_eq!(r.state("a.service"), ("active (running)".into(), "success"));
            assert_eq!(r.spawns().len(), 2);
            assert_eq!(r.m.service("a.service").map(|s| s.state.restarts), Some(1));
            // The old invocation's cgroup is gone, the new one is there.
            let cg = r.m.units["a.service"]
                .cgroup()
                .expect("cgroup")
                .path()
                .to_owned();
            assert!(cg.starts_with(r.root.path()) && cg.is_dir(), "{cg:?}");
        },
    );
}

#[test]
fn start_limit_hit_fails_the_unit_and_starts_on_failure() {
    with_rig(
        &[
            (
                "b.service",
                "[Unit]\nStartLimitBurst=2\nStartLimitIntervalSec=60\nOnFailure=h.service\n\
             [Service]\nExecStart=/bin/sleep 1000\nRestart=always\nRestartSec=1\n",
            ),
            (
                "h.service",
                "[Service]\nType=oneshot\nExecStart=/bin/true\n",
            ),
        ],
        "b.service",
        |r, mut reply| {
            assert_eq!(answered(&mut reply), Some(Ok(Vec::new())));
            // (after the main process ends and RestartSec passes: state, result, spawns)
            let rows = [
                ("active (running)", "success", 2),
                ("failed (failed)", "start-limit-hit", 2),
            ];
            for (state, result, spawns) in rows {
                r.main_exits("b.service", Exit::Code(1));
                r.advance(Duration::from_secs(1));
                assert_eq!(r.state("b.service"), (state.to_string(), result));
                let sleeps = r.spawns().iter().filter(|l| l.contains("sleep")).count();
                assert_eq!(sleeps, spawns, "{state}");
            }
            let note = r.m.units["b.service"]
                .failure_note
                .as_deref()
                .unwrap_or_default()
                .to_string();
            assert!(note.contains("StartLimitBurst=2"), "{note}");
            // OnFailure= ran its unit.
            assert!(r.ran("/bin/true"), "{:?}", r.spawns());
            assert_eq!(r.state("h.service").0, "activating (start)");
        },
    );
}

#[test]
fn a_target_fails_with_the_unit_it_requires_and_starts_on_failure() {
    with_rig(
        &[
            (
                "t.target",
                "[Unit]\nRequires=bad.service\nAfter=bad.service\nOnFailure=h.service\n",
            ),
            (
                "bad.service",
                "[Service]\nType=oneshot\nExecStart=/bin/false\n",
            ),
            (
                "h.service",
                "[Service]\nType=oneshot\nExecStart=/bin/true\n",
            ),
        ],
        "t.target",
        |r, mut reply| {
            assert_eq!(answered(&mut reply), None, "waits for bad.service");
            assert_eq!(r.state("bad.service").0, "activating (start)");
            assert_eq!(r.state("t.target").0, "inactive (dead)");
            r.last_spawn_exits(Exit::Code(1));
            assert_eq!(
                r.state("bad.service"),
                ("failed (failed)".into(), "exit-code")
            );
            assert_eq!(r.state("t.target"), ("failed (dead)".into(), "dependency"));
            let answer = answered(&mut reply).expect("answered");
            let msg = answer.expect_err("the start fails").message;
            assert!(msg.contains("dependency failed: bad.service"), "{msg}");
            assert!(r.ran("/bin/true"), "{:?}", r.spawns());
        },
    );
}

#[test]
fn stopping_a_forking_unit_signals_its_cgroup_and_ends_the_invocation() {
    with_rig(
        &[(
            "f.service",
            "[Service]\nType=forking\nExecStart=/bin/sh -c 'sleep 1000 &'\n",
        )],
        "f.service",
        |r, mut reply| {
            assert_eq!(answered(&mut reply), None, "waits for the parent to exit");
            assert_eq!(r.state("f.service").0, "activating (start)");
            // The parent leaves a daemon in the cgroup and exits.
            let cg = r.m.units["f.service"]
                .cgroup()
                .expect("cgroup")
                .path()
                .to_owned();
            let daemon = 4242;
            r.host.world().alive.push((daemon, cg.clone()));
            r.last_spawn_exits(Exit::Code(0));
            assert_eq!(answered(&mut reply), Some(Ok(Vec::new())));
            assert_eq!(r.state("f.service").0, "active (running)");
            assert_eq!(r.m.units["f.service"].main_and_control().0, Some(daemon));

            let mut reply = r.job("f.service", JobRequest::Stop);
            assert_eq!(answered(&mut reply), Some(Ok(Vec::new())));
            assert_eq!(r.state("f.service"), ("inactive (dead)".into(), "success"));
            let signals = r.host.world().signals.clone();
            assert_eq!(
                signals.first(),
                Some(&(cg.display().to_string(), Signal::SIGTERM)),
                "{signals:?}"
            );
            assert!(!cg.exists(), "the invocation's cgroup is removed");
            assert!(r.m.units["f.service"].inv().is_none());
        },
    );
}

/// The manager's [`Units`] with the graph's generic reverse edges: every
/// loaded unit's deps.
struct Generic<'a>(super::job_driver::View<'a>);

impl Units for Generic<'_> {
    fn deps(&self, name: &str) -> Result<graph::Deps, graph::Missing> {
        self.0.deps(name)
    }
    fn is_active(&self, name: &str) -> bool {
        self.0.is_active(name)
    }
    fn loaded(&self) -> Vec<String> {
        self.0.loaded()
    }
}

/// The reverse edges and the transactions the manager's own reverse scan
/// gives are those of the generic one, on units with every relation.
#[test]
fn reverse_edges_from_definitions_are_the_generic_ones() {
    let units: &[(&str, &str)] = &[
        (
            "app.service",
            "[Unit]\nRequires=db.service mc@.service\nBindsTo=bus.service\n\
             Requisite=net.service\nPartOf=grp.target\nConflicts=other.service\n\
             Wants=net.service\n[Service]\nExecStart=/bin/sleep 1000\n",
        ),
        // Both relations to one unit: its stop edge comes first.
        (
            "both.service",
            "[Unit]\nRequires=db.service\nConflicts=db.service\n[Service]\nExecStart=/bin/true\n",
        ),
        (
            "bus.service",
            "[Service]\nType=dbus\nBusName=org.example.Bus\nExecStart=/bin/true\n",
        ),
        ("db.service", "[Service]\nExecStart=/bin/true\n"),
        (
            "bound.service",
            "[Unit]\nBindsTo=db.service\n[Service]\nExecStart=/bin/sleep 1000\n",
        ),
        ("net.service", "[Service]\nExecStart=/bin/true\n"),
        ("other.service", "[Service]\nExecStart=/bin/true\n"),
        (
            "grp.target",
            "[Unit]\nRequires=db.service\nConflicts=net.service\n",
        ),
        // Implicit Conflicts=shutdown.target, and without it.
        ("tick.timer", "[Timer]\nOnCalendar=daily\nUnit=db.service\n"),
        (
            "quiet.timer",
            "[Unit]\nDefaultDependencies=no\n[Timer]\nOnCalendar=daily\nUnit=db.service\n",
        ),
        (
            "mc@.service",
            "[Unit]\nPartOf=db.service\n[Service]\nExecStart=/bin/true %i\n",
        ),
        // A load error (nothing to run): its deps come from its files.
        (
            "broken.service",
            "[Unit]\nRequires=net.service\nConflicts=db.service\n[Service]\n",
        ),
        // Masked: no edges at all.
        ("gone.service", ""),
    ];
    let socket = (
        "dbus.socket",
        "[Socket]\nListenStream=%t/txcost-bus\nService=bus.service\n",
    );
    let with_socket: Vec<(&str, &str)> = units.iter().copied().chain([socket]).collect();
    let rt = runtime();
    let _g = rt.enter();
    for (set, bus) in [(units, false), (&with_socket[..], true)] {
        let Some(mut r) = Rig::new(set) else {
            return;
        };
        r.m.resolve("mc@7.service")
            .expect("template instance loads");
        assert!(
            r.m.load_failure("broken.service").is_some()
                && r.m.load_failure("gone.service").is_some(),
            "the unit with a load error and the masked one are loaded as such"
        );
        let mut names = view(&r.m, false).loaded();
        names.extend(
            [
                "shutdown.target",
                "dbus.socket",
                "mc@.service",
                "absent.service",
            ]
            .map(String::from),
        );
        for name in &names {
            let mut fast = view(&r.m, false).reverse(name);
            fast.sort();
            fast.dedup();
            assert_eq!(
                fast,
                graph::reverse_from_deps(&view(&r.m, false), name),
                "{name}"
            );
            for (verb, stopping) in [
                (graph::Verb::Start, false),
                (graph::Verb::Stop, true),
                (graph::Verb::Restart, true),
            ] {
                let tx = |u: &dyn Units| {
                    graph::build(u, verb, name).map(|t| (t.layers(), t.initial_failures().to_vec()))
                };
                assert_eq!(
                    tx(&view(&r.m, stopping)),
                    tx(&Generic(view(&r.m, stopping))),
                    "{verb:?} {name}"
                );
            }
        }
        // Not vacuous: each relation, the timer's implicit one, the
        // instance's and the bus socket's (only when it exists) are there.
        let rev = |name: &str| view(&r.m, false).reverse(name);
        let stop = |u: &str| (u.to_string(), Rel::PropagatesStop);
        let conflict = |u: &str| (u.to_string(), Rel::ConflictedBy);
        assert_eq!(
            graph::reverse_from_deps(&view(&r.m, false), "db.service"),
            [
                stop("app.service"),
                stop("both.service"),
                conflict("both.service"),
                stop("bound.service"),
                conflict("broken.service"),
                stop("grp.target"),
                stop("mc@7.service"),
            ]
        );
        for (name, edge) in [
            ("bus.service", stop("app.service")),
            ("net.service", stop("app.service")),
            ("net.service", stop("broken.service")),
            ("net.service", conflict("grp.target")),
            ("grp.target", stop("app.service")),
            ("other.service", conflict("app.service")),
            ("shutdown.target", conflict("tick.timer")),
        ] {
            assert!(rev(name).contains(&edge), "{name}: {edge:?}");
        }
        assert!(!rev("shutdown.target").contains(&conflict("quiet.timer")));
        assert!(rev("mc@.service").is_empty());
        assert_eq!(
            rev("dbus.socket"),
            if bus {
                vec![stop("bus.service")]
            } else {
                vec![]
            }
        );
        // A unit going down stops the active units bound to it: found
        // among its reverse edges, as among every loaded unit.
        let mut reply = r.job("bound.service", JobRequest::Start);
        assert_eq!(answered(&mut reply), Some(Ok(Vec::new())));
        for name in &names {
            assert_eq!(
                graph::bound_by(&view(&r.m, true), name),
                graph::bound_by(&Generic(view(&r.m, true)), name),
                "{name}"
            );
        }
        assert_eq!(
            graph::bound_by(&view(&r.m, true), "db.service"),
            ["bound.service"]
        );
    }
}

fn view(m: &Manager, stopping: bool) -> super::job_driver::View<'_> {
    super::job_driver::View { m, stopping }
}
