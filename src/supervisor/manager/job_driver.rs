//! Start, stop and restart requests as transactions over the unit graph.
//!
//! The manager asks [`graph::build`] for the jobs of a request, then drives
//! them as a ready queue: every job whose ordering predecessors have finished
//! runs at once (several in parallel), and a job is over when its unit's state
//! machine reaches the state the job wants (active, or stopped with an empty
//! and removed cgroup). The control request is answered when the whole
//! transaction has finished.
//!
//! Before each start the unit's conditions and asserts are checked
//! ([`start_check`]): a false condition skips the start (inactive, result
//! "condition", not failed); a false assert fails it. A failed start fails the
//! pending starts of the units that require it ("dependency failed: X").
//! A unit that goes down on its own stops the units bound to it (BindsTo=).
//!
//! Everything runs on the manager thread; [`Manager::pump`] is re-entrancy
//! safe because feeding a unit's state machine calls back into
//! [`Manager::unit_changed`], which only records the change while a pump runs.

use std::collections::{HashMap, HashSet};

use tokio::sync::oneshot;

use crate::ipc::proto::{ErrorKind, Failure, Response};
use crate::supervisor::graph::{
    self, DEFAULT_TARGET, Deps, GraphError, JobKind, JobResult, Missing, Rel, Transaction, Units,
    Verb,
};
use crate::supervisor::readopt::QueuedJob;
use crate::supervisor::state::{ActiveState, ServiceResult};
use crate::unit::start_check::{self, StartCheck};
use crate::unit::{Loader, Unit, UnitError, UnitName};

use super::entry::Phase;
use super::{Event, JobRequest, LoadError, Manager};
use crate::supervisor::lines::priority;

/// Where a job's outcome goes.
/// Where a job's answer goes.
pub(super) type Reply = oneshot::Sender<Result<Vec<String>, Failure>>;

/// The manager's graph state: running transactions and what it remembers
/// about units between transactions.
pub(super) struct Graph {
    /// Transactions not finished yet, oldest first.
    runs: Vec<Run>,
    /// Units whose state changed since the last pump looked.
    changed: Vec<String>,
    /// Units whose state changed in this pump, for StopWhenUnneeded= once
    /// every job's outcome is known ([`Manager::stop_unneeded`]).
    unneeded: Vec<String>,
    /// Set while [`Manager::pump`] runs, so state changes it causes only queue up.
    pumping: bool,
    /// Why the last start of a unit was skipped (a false Condition*=).
    pub(super) skipped: HashMap<String, String>,
    /// During shutdown: the units still to stop, and whether each was told to.
    shutdown: Option<HashMap<String, bool>>,
    /// The queued jobs as last written for a successor (readopt.rs).
    queued: Vec<QueuedJob>,
}

impl Graph {
    /// No transactions yet.
    pub(super) fn new() -> Graph {
        Graph {
            runs: Vec::new(),
            changed: Vec::new(),
            unneeded: Vec::new(),
            pumping: false,
            skipped: HashMap::new(),
            shutdown: None,
            queued: Vec::new(),
        }
    }
}

/// One transaction being driven.
struct Run {
    tx: Transaction,
    /// The client waiting for it (none for BindsTo= stops and manager-made ones).
    reply: Option<Reply>,
    /// Jobs handed out whose unit has not reached the wanted state yet.
    running: Vec<graph::Job>,
    /// Start jobs of units that were stopping when handed out: they start
    /// once the stop (someone else's job) has finished.
    after_stop: HashSet<graph::JobId>,
    /// Jobs handed out that wait for a job of an older transaction they are
    /// ordered after (transactions are built one unit at a time, so
    /// `start a b` with `b After=a` is two of them).
    blocked: Vec<graph::Job>,
    /// Broken cycles and other notes for the client.
    notes: Vec<String>,
}

/// A [`Units`] view over the manager's loaded units. `stopping` selects what
/// "active" means: for a start, only a unit that is up (so a start of an
/// activating unit waits for it); for a stop or restart, anything not
/// inactive or failed (so a stop of an activating or deactivating unit waits
/// until its cgroup is gone).
pub(super) struct View<'a> {
    pub(super) m: &'a Manager,
    pub(super) stopping: bool,
}

impl Units for View<'_> {
    fn deps(&self, name: &str) -> Result<Deps, Missing> {
        let mut d = match self.m.units.get(name).map(|e| &e.def) {
            Some(Ok(def)) => Deps::from_unit(def.unit())
                .with_bus_socket(def.unit(), || graph::bus_socket_exists(&self.m.loader)),
            Some(Err(LoadError::Masked(_))) => return Err(Missing::Masked),
            // Not loaded yet (a template instance), or not runnable: its
            // dependencies still come from its files.
            _ => graph::load_deps(&self.m.loader, name)?,
        };
        if name == DEFAULT_TARGET {
            // runit: a service directory without `down` is started with the manager.
            for (n, e) in &self.m.units {
                let autostart = e
                    .service_def()
                    .is_some_and(|d| d.runit.as_ref().is_some_and(|r| !r.down));
                if autostart && !d.wants.iter().any(|w| w == n.as_str()) {
                    d.wants.push(n.to_string());
                }
            }
        }
        Ok(d)
    }

    fn is_active(&self, name: &str) -> bool {
        let Some(e) = self.m.units.get(name) else {
            return false;
        };
        let p = e.phase();
        if self.stopping {
            !p.is_stopped()
        } else {
            matches!(p.active, ActiveState::Active | ActiveState::Reloading)
        }
    }

    fn loaded(&self) -> Vec<String> {
        self.m.units.keys().map(UnitName::to_string).collect()
    }

    /// As the default, but from the loaded definitions' own lists: no
    /// [`Deps`] is built for a unit that does not name `name`.
    fn reverse(&self, name: &str) -> Vec<(String, Rel)> {
        let mut out = Vec::new();
        // Whether dbus.socket can be loaded: a file parse, so asked once and
        // only when a Type=dbus service could name it.
        let mut bus_socket = None;
        let bus_name = name == graph::DBUS_SOCKET;
        for (other, e) in &self.m.units {
            let (stop, conflict) = match &e.def {
                Ok(def) => {
                    let u = def.unit();
                    // Deps::from_unit drops templates from the lists.
                    let has = |list: &[UnitName]| {
                        list.iter().any(|n| n.as_str() == name && !n.is_template())
                    };
                    let stop = has(&u.unit.requires)
                        || has(&u.unit.binds_to)
                        || has(&u.unit.requisite)
                        || has(&u.unit.part_of)
                        || (bus_name
                            && graph::is_dbus_service(u)
                            && *bus_socket
                                .get_or_insert_with(|| graph::bus_socket_exists(&self.m.loader)));
                    let conflict =
                        has(&u.unit.conflicts) || crate::unit::timer::conflicts_implicitly(u, name);
                    (stop, conflict)
                }
                Err(LoadError::Masked(_)) => continue,
                // Its dependencies come from its files (see `deps`): rare
                // enough to pay for.
                Err(_) => {
                    let Ok(d) = self.deps(other.as_str()) else {
                        continue;
                    };
                    d.names_backwards(name)
                }
            };
            if stop || conflict {
                out.extend(Rel::pick(stop, conflict).map(|r| (other.to_string(), r)));
            }
        }
        out
    }
}

/// Loads a unit's files; `default.target` and `sockets.target` exist
/// without a file, grouping what their `.wants/` and `.requires/` link to.
pub(super) fn load_unit(loader: &Loader, name: &UnitName) -> Result<Unit, UnitError> {
    match loader.load(name) {
        Err(UnitError::NotFound { .. }) if graph::is_builtin_target(name.as_str()) => {
            let mut u = Unit::new(name.clone());
            u.unit.description = Some(
                if name.as_str() == DEFAULT_TARGET {
                    "Main User Target"
                } else {
                    if name.as_str() == graph::TIMERS_TARGET {
                        "Timers"
                    } else {
                        "Sockets"
                    }
                }
                .into(),
            );
            if let Ok(d) = graph::load_deps(loader, name.as_str()) {
                u.unit.wants = d
                    .wants
                    .iter()
                    .filter_map(|n| UnitName::parse(n).ok())
                    .collect();
                u.unit.requires = d
                    .requires
                    .iter()
                    .filter_map(|n| UnitName::parse(n).ok())
                    .collect();
            }
            Ok(u)
        }
        other => other,
    }
}

fn graph_failure(e: &GraphError) -> Failure {
    let kind = match e {
        GraphError::NotFound(_) => ErrorKind::NotFound,
        GraphError::Masked(_) | GraphError::OrderingCycle { .. } => ErrorKind::Refused,
        GraphError::ConflictingJobs { .. } => ErrorKind::Refused,
    };
    Failure {
        kind,
        message: e.to_string(),
    }
}

/// What became of a job just handed out.
enum Step {
    /// Over at once: ok or not.
    Done(bool),
    /// The unit's state machine has to get there.
    Wait,
    /// A start of a unit that is stopping: it begins once the unit is down.
    AfterStop,
}

/// Whether a start job of a unit in this phase is over, and how. A unit
/// that is down because a stop was asked while it started did not start.
fn start_outcome(p: Phase) -> Option<bool> {
    match p.active {
        ActiveState::Active | ActiveState::Reloading => Some(true),
        // A restart on its way: its stop first.
        _ if p.start_after_stop => None,
        ActiveState::Inactive if p.stop_requested => Some(false),
        ActiveState::Inactive => Some(matches!(
            p.result,
            ServiceResult::Success | ServiceResult::Condition | ServiceResult::ExecCondition
        )),
        // Failed, or waiting to restart: this start is over.
        ActiveState::Failed => Some(false),
        ActiveState::Activating if p.down => Some(false),
        _ => None,
    }
}

impl Manager {
    /// Whether a transaction has a start job of `name` not handed out yet:
    /// a restart whose stop is ending (the start waits for it), for
    /// RuntimeDirectoryPreserve= and SuccessAction=. A start job already
    /// running is the run that is ending, not a next one.
    pub(super) fn start_job_waits(&self, name: &str) -> bool {
        self.graph.runs.iter().any(|r| {
            matches!(
                r.tx.result_of(name, JobKind::Start),
                Some(JobResult::Pending)
            )
        })
    }

    /// Whether a transaction not finished yet has a job of `name`.
    pub(super) fn in_a_transaction(&self, name: &str) -> bool {
        self.graph.runs.iter().any(|r| {
            [JobKind::Start, JobKind::Stop]
                .into_iter()
                .any(|k| r.tx.result_of(name, k).is_some())
        })
    }

    /// A start, stop, restart or try-restart request from the control socket.
    pub(super) fn transaction_job(&mut self, name: &str, job: &JobRequest, reply: Reply) {
        let verb = match job {
            JobRequest::Start => Verb::Start,
            JobRequest::Stop => Verb::Stop,
            JobRequest::TryRestart if self.units[name].phase().down => {
                let _ = reply.send(Ok(Vec::new()));
                return;
            }
            _ => Verb::Restart,
        };
        self.begin_transaction(name, verb, Some(reply));
    }

    /// Builds the transaction for `verb name` and starts driving it.
    fn begin_transaction(&mut self, name: &str, verb: Verb, reply: Option<Reply>) {
        let built = graph::build(
            &View {
                m: self,
                stopping: verb != Verb::Start,
            },
            verb,
            name,
        );
        let tx = match built {
            Ok(tx) => tx,
            Err(e) => {
                self.log_at(name, priority::ERR, &format!("transaction refused: {e}"));
                if let Some(r) = reply {
                    let _ = r.send(Err(graph_failure(&e)));
                }
                return;
            }
        };
        let mut notes = Vec::new();
        for c in tx.broken_cycles() {
            self.log_at(name, priority::WARNING, &c.to_string());
            notes.push(format!("{name}: {c}"));
        }
        for j in tx.jobs() {
            if !self.units.contains_key(j.unit.as_str())
                && let Err(f) = self.resolve(&j.unit)
            {
                self.log_at(&j.unit, priority::ERR, &f.message);
            }
        }
        for f in tx.initial_failures() {
            self.dependency_failed(&f.unit, &f.dep);
        }
        self.graph.runs.push(Run {
            tx,
            reply,
            running: Vec::new(),
            after_stop: HashSet::new(),
            blocked: Vec::new(),
            notes,
        });
        self.pump();
    }

    /// Called after every change of a unit's state machine.
    pub(super) fn unit_changed(&mut self, name: &str) {
        self.graph.changed.push(name.to_string());
        self.pump();
    }

    /// Drives every transaction as far as it can go now.
    fn pump(&mut self) {
        if self.graph.pumping {
            return;
        }
        self.graph.pumping = true;
        loop {
            let mut progress = false;
            let mut changed = std::mem::take(&mut self.graph.changed);
            changed.sort();
            changed.dedup();
            for u in changed {
                if self.went_down(&u) {
                    self.stop_bound(&u);
                    progress = true;
                }
                self.graph.unneeded.push(u);
            }
            let mut runs = std::mem::take(&mut self.graph.runs);
            for r in 0..runs.len() {
                let (older, rest) = runs.split_at_mut(r);
                let run = &mut rest[0];
                let mut i = 0;
                while i < run.blocked.len() {
                    if self.waits_for_older(older, &run.blocked[i]) {
                        i += 1;
                        continue;
                    }
                    let job = run.blocked.remove(i);
                    progress = true;
                    self.dispatch(run, job);
                }
                let mut i = 0;
                while i < run.running.len() {
                    let id = run.running[i].id;
                    if run.after_stop.contains(&id) {
                        if !self.is_down(&run.running[i].unit) {
                            i += 1;
                            continue;
                        }
                        run.after_stop.remove(&id);
                        progress = true;
                        let unit = run.running[i].unit.clone();
                        if let Step::Done(ok) = self.start_job(&unit) {
                            run.running.remove(i);
                            self.job_finished(run, id, ok);
                        }
                        continue;
                    }
                    match self.job_state(&run.running[i]) {
                        Some(ok) => {
                            let job = run.running.remove(i);
                            self.job_finished(run, job.id, ok);
                            progress = true;
                        }
                        None => i += 1,
                    }
                }
                while let Some(job) = run.tx.next_ready() {
                    progress = true;
                    if self.waits_for_older(older, &job) {
                        run.blocked.push(job);
                    } else {
                        self.dispatch(run, job);
                    }
                }
            }
            let (done, mut rest): (Vec<Run>, Vec<Run>) =
                runs.into_iter().partition(|r| r.tx.is_finished());
            // Transactions begun meanwhile (BindsTo= stops) run after the older ones.
            rest.append(&mut self.graph.runs);
            self.graph.runs = rest;
            for run in done {
                self.finish_run(run);
                progress = true;
            }
            if self.shutdown_step() {
                progress = true;
            }
            if !progress && self.graph.changed.is_empty() && !self.stop_unneeded() {
                break;
            }
        }
        self.graph.pumping = false;
        self.persist_queued_jobs();
    }

    /// Keeps the list of jobs not begun yet in the runtime directory, so
    /// that a successor after a crash can say which ones were dropped.
    fn persist_queued_jobs(&mut self) {
        let mut queued = Vec::new();
        for run in &self.graph.runs {
            let waiting = run
                .tx
                .jobs()
                .into_iter()
                .filter(|j| matches!(run.tx.result(j.id), Some(JobResult::Pending)));
            for j in waiting.chain(run.blocked.iter().cloned()) {
                queued.push(QueuedJob {
                    unit: j.unit,
                    kind: j.kind.to_string(),
                });
            }
        }
        if queued == self.graph.queued {
            return;
        }
        if let Err(err) = self.records.write_jobs(&queued) {
            eprintln!("corrald: {err}");
        }
        self.graph.queued = queued;
    }

    /// Runs a job and files it by what became of it.
    fn dispatch(&mut self, run: &mut Run, job: graph::Job) {
        match self.run_job(&job) {
            Step::Done(ok) => self.job_finished(run, job.id, ok),
            Step::Wait => run.running.push(job),
            Step::AfterStop => {
                run.after_stop.insert(job.id);
                run.running.push(job);
            }
        }
    }

    /// Whether `job` must wait for an unfinished job of an `older`
    /// transaction, by the same rules as inside one transaction: starts in
    /// ordering order, stops in reverse, a stop before a start of units
    /// ordered either way. Only newer transactions wait for older ones, so
    /// transactions can never wait for each other in a circle.
    fn waits_for_older(&self, older: &[Run], job: &graph::Job) -> bool {
        older.iter().any(|r| {
            r.tx.jobs().iter().any(|k| {
                !r.tx.result(k.id).is_some_and(JobResult::is_finished) && self.orders(k, job)
            })
        })
    }

    /// Whether job `k` must finish before job `j` may run.
    fn orders(&self, k: &graph::Job, j: &graph::Job) -> bool {
        if k.unit == j.unit {
            return k.kind == JobKind::Stop && j.kind == JobKind::Start;
        }
        let view = View {
            m: self,
            stopping: false,
        };
        let (Ok(dk), Ok(dj)) = (view.deps(&k.unit), view.deps(&j.unit)) else {
            return false;
        };
        let j_after_k = graph::ordered_after(&j.unit, &dj, &k.unit, &dk);
        let k_after_j = graph::ordered_after(&k.unit, &dk, &j.unit, &dj);
        match (k.kind, j.kind) {
            (JobKind::Start, JobKind::Start) => j_after_k,
            (JobKind::Stop, JobKind::Stop) => k_after_j,
            (JobKind::Stop, JobKind::Start) => j_after_k || k_after_j,
            (JobKind::Start, JobKind::Stop) => false,
        }
    }

    /// Stops every unit for the manager's shutdown, in the reverse of the
    /// start order: a unit is told to stop once no unit ordered after it is
    /// still running (a client `After=dbus` stops before the bus). Units
    /// without processes (targets, exited oneshots) stop at once.
    pub(super) fn shutdown_in_order(&mut self) {
        let pending: HashMap<String, bool> = self
            .units
            .iter()
            .filter(|(_, e)| e.inv().is_some() || !e.phase().down)
            .map(|(k, _)| (k.to_string(), false))
            .collect();
        self.graph.shutdown = Some(pending);
        self.pump();
    }

    /// One round of the ordered shutdown; whether it told a unit to stop.
    fn shutdown_step(&mut self) -> bool {
        let Some(pending) = self.graph.shutdown.take() else {
            return false;
        };
        let mut pending: HashMap<String, bool> = pending
            .into_iter()
            .filter(|(u, _)| {
                self.units
                    .get(u.as_str())
                    .is_some_and(|e| e.inv().is_some() || !e.phase().down)
            })
            .collect();
        let view = View {
            m: self,
            stopping: true,
        };
        let deps: HashMap<String, Deps> = pending
            .keys()
            .filter_map(|u| view.deps(u).ok().map(|d| (u.clone(), d)))
            .collect();
        let must_wait = |u: &String| {
            if self
                .units
                .get(u.as_str())
                .is_some_and(|e| e.inv().is_none())
            {
                return false;
            }
            pending.keys().any(|v| {
                v != u
                    && match (deps.get(v), deps.get(u)) {
                        (Some(dv), Some(du)) => graph::ordered_after(v, dv, u, du),
                        _ => false,
                    }
            })
        };
        let mut ready: Vec<String> = pending
            .iter()
            .filter(|(u, told)| !**told && !must_wait(u))
            .map(|(u, _)| u.clone())
            .collect();
        if ready.is_empty() && !pending.values().any(|told| *told) {
            // Only an ordering cycle can hold every remaining unit: stop them all.
            ready = pending.keys().cloned().collect();
        }
        ready.sort();
        for u in &ready {
            pending.insert(u.clone(), true);
        }
        self.graph.shutdown = Some(pending);
        for u in &ready {
            self.feed(u, Event::Stop);
        }
        !ready.is_empty()
    }

    /// Whether `name` is inactive or failed (or unknown).
    fn is_down(&self, name: &str) -> bool {
        self.units.get(name).is_none_or(|e| e.phase().is_stopped())
    }

    /// Whether `name` was up when last seen and is now inactive or failed.
    fn went_down(&mut self, name: &str) -> bool {
        let down = self.is_down(name);
        self.units
            .get_mut(name)
            .is_some_and(|e| std::mem::replace(&mut e.seen_up, !down) && down)
    }

    /// A unit went down: stop the active units bound to it, unless a
    /// transaction stopped it (that one has their stops already).
    fn stop_bound(&mut self, name: &str) {
        if self.shutting_down {
            return;
        }
        let by_job = self.graph.runs.iter().any(|r| {
            matches!(
                r.tx.result_of(name, JobKind::Stop),
                Some(JobResult::Running | JobResult::Done)
            )
        });
        if by_job {
            return;
        }
        let bound = graph::bound_by(
            &View {
                m: self,
                stopping: true,
            },
            name,
        );
        for other in bound {
            self.log(
                &other,
                &format!("stopping: it is bound to {name} (BindsTo=), which went down"),
            );
            self.begin_transaction(&other, Verb::Stop, None);
        }
    }

    /// StopWhenUnneeded=: of the units whose state changed in this pump and
    /// those they pull in, stops each one that has the setting, is active,
    /// has no job and is pulled in by no unit that is active or about to
    /// start (systemd's "unneeded" check, made when the pump has settled so
    /// that a failed start counts as over). Whether it began a stop.
    fn stop_unneeded(&mut self) -> bool {
        let mut changed = std::mem::take(&mut self.graph.unneeded);
        if self.shutting_down {
            return false;
        }
        // A start changes its unit's state several times in one pump: its
        // dependencies are looked up once.
        changed.sort();
        changed.dedup();
        let view = View {
            m: self,
            stopping: false,
        };
        let mut candidates = Vec::new();
        for u in changed {
            if let Ok(d) = view.deps(&u) {
                candidates.extend(d.pulls().cloned());
            }
            candidates.push(u);
        }
        candidates.sort();
        candidates.dedup();
        candidates.retain(|c| self.is_unneeded(c));
        for u in &candidates {
            self.log(
                u,
                "stopping: no active unit pulls it in any more (StopWhenUnneeded=yes)",
            );
            self.begin_transaction(u, Verb::Stop, None);
        }
        !candidates.is_empty()
    }

    /// Whether `name` has StopWhenUnneeded=yes and nothing needs it now.
    fn is_unneeded(&self, name: &str) -> bool {
        let Some(e) = self.units.get(name) else {
            return false;
        };
        let has_setting = e
            .def
            .as_ref()
            .is_ok_and(|d| d.unit().unit.stop_when_unneeded);
        if !has_setting
            || e.phase().active != ActiveState::Active
            || self.has_job(name, JobKind::Start)
            || self.has_job(name, JobKind::Stop)
        {
            return false;
        }
        let view = View {
            m: self,
            stopping: false,
        };
        // The pullers are looked for among all loaded units, but only for
        // a unit with the setting, which few have.
        !self.units.keys().any(|other| {
            let other = other.as_str();
            other != name
                && (view.is_active(other) || self.has_job(other, JobKind::Start))
                && view.deps(other).is_ok_and(|d| d.pulls().any(|p| p == name))
        })
    }

    /// Whether a transaction has a job of `kind` for `name` not over yet.
    fn has_job(&self, name: &str, kind: JobKind) -> bool {
        self.graph
            .runs
            .iter()
            .any(|r| r.tx.result_of(name, kind).is_some_and(|j| !j.is_finished()))
    }

    /// Whether a handed-out job is over: `Some(ok)`, or `None` while its unit is on its way.
    fn job_state(&self, job: &graph::Job) -> Option<bool> {
        let Some(e) = self.units.get(job.unit.as_str()) else {
            return Some(job.kind == JobKind::Stop);
        };
        match job.kind {
            JobKind::Start => start_outcome(e.phase()),
            JobKind::Stop => e.phase().is_stopped().then_some(true),
        }
    }

    /// Runs a job handed out by the transaction.
    fn run_job(&mut self, job: &graph::Job) -> Step {
        let name = job.unit.as_str();
        let Some(e) = self.units.get_mut(name) else {
            return Step::Done(job.kind == JobKind::Stop);
        };
        match job.kind {
            JobKind::Stop if e.phase().is_stopped() => Step::Done(true),
            JobKind::Stop => {
                // The answer lists what this stop leaves behind (KillMode=process), not older ones.
                if let Some(s) = e.service_mut() {
                    s.left_behind.clear();
                }
                self.feed(name, Event::Stop);
                Step::Wait
            }
            JobKind::Start => self.start_job(name),
        }
    }

    /// The start job of a unit: done if it is up, waits if it is on its
    /// way up or still stopping, else checks its conditions and starts it.
    fn start_job(&mut self, name: &str) -> Step {
        // A unit whose file went away (or was masked) since it started: the
        // old definition is kept only to stop it.
        if let Some(f) = self.load_failure(name).cloned() {
            self.log_at(name, priority::ERR, &f.to_string());
            return Step::Done(false);
        }
        let Some(e) = self.units.get(name) else {
            return Step::Done(false);
        };
        let Ok(def) = e.def.clone() else {
            return Step::Done(false);
        };
        if self.shutting_down {
            return Step::Done(false);
        }
        let p = e.phase();
        match p.active {
            ActiveState::Active | ActiveState::Reloading => Step::Done(true),
            _ if p.down => match self.checked_start(name, def.unit()) {
                Some(ok) => Step::Done(ok),
                None => Step::Wait,
            },
            ActiveState::Activating => Step::Wait,
            // Deactivating: whoever stops it gets to see it stopped first.
            _ => Step::AfterStop,
        }
    }

    /// Checks conditions and asserts, then starts the unit (through the start limit).
    fn checked_start(&mut self, name: &str, unit: &Unit) -> Option<bool> {
        if let Some(verdict) = self.start_check(name, unit) {
            // A skipped start is a start job done; a false assert fails it.
            let ok = matches!(verdict, Event::ConditionFalse { .. });
            self.feed(name, verdict);
            return Some(ok);
        }
        self.start_event(name);
        None
    }

    /// Evaluates `Condition*=` and `Assert*=` before a start (a start job, or
    /// an automatic restart, which systemd runs as a new start job): the
    /// verdict to feed when one is false (the machine leaves the unit where
    /// systemd does — skipped: inactive with result "condition"; assert:
    /// failed); None when the start may go ahead.
    pub(super) fn start_check(&mut self, name: &str, unit: &Unit) -> Option<Event> {
        let lookup = |k: &str| self.env.lookup(k, &self.base_env);
        match start_check::check(&unit.unit, self.loader.specifiers(), &lookup) {
            StartCheck::Skip(reason) => Some(Event::ConditionFalse { reason }),
            StartCheck::Fail(reason) => Some(Event::AssertFalse { reason }),
            StartCheck::Start => {
                self.graph.skipped.remove(name);
                None
            }
        }
    }

    /// Records a job's outcome and fails the pending starts that required it.
    fn job_finished(&mut self, run: &mut Run, id: graph::JobId, ok: bool) {
        for f in run.tx.job_done(id, ok) {
            self.dependency_failed(&f.unit, &f.dep);
        }
    }

    /// A start that will not happen because `dep` failed: the unit is failed
    /// with result "dependency" and the reason in `status`.
    fn dependency_failed(&mut self, name: &str, dep: &str) {
        let dep = dep.to_string();
        self.feed(name, Event::DependencyFailed { dep });
    }

    /// Answers the client of a finished transaction.
    fn finish_run(&mut self, run: Run) {
        let anchor = run.tx.anchor().to_string();
        let mut notes = run.notes;
        for j in run.tx.jobs() {
            if j.kind == JobKind::Stop
                && let Some(s) = self.service(&j.unit)
                && !s.left_behind.is_empty()
            {
                let list: Vec<String> = crate::supervisor::procs::describe(s.left_behind.clone())
                    .into_iter()
                    .map(|p| format!("{} ({})", p.pid, p.cmdline))
                    .collect();
                if !list.is_empty() {
                    notes.push(format!(
                        "{}: KillMode=process left these processes running: {}",
                        j.unit,
                        list.join(", ")
                    ));
                }
            }
        }
        let result = match run.tx.result_of(&anchor, JobKind::Start) {
            Some(JobResult::Failed) => Err(match self.units.get(anchor.as_str()) {
                Some(e) => match &e.def {
                    Err(f) => f.failure(),
                    Ok(_)
                        if e.phase().active == ActiveState::Inactive
                            && e.phase().stop_requested =>
                    {
                        Failure {
                            kind: ErrorKind::Refused,
                            message: format!("the start of {anchor} was canceled by a stop"),
                        }
                    }
                    Ok(_) => self.failure_of(&anchor),
                },
                None => Failure {
                    kind: ErrorKind::NotFound,
                    message: format!("Unit {anchor} not found."),
                },
            }),
            Some(JobResult::DependencyFailed { dep }) => Err(Failure {
                kind: ErrorKind::Failed,
                message: format!(
                    "dependency failed: {dep}. See `corral status {dep}` and `corral status {anchor}` for details."
                ),
            }),
            _ => Ok(notes),
        };
        if let Some(r) = run.reply {
            // Once answered, the client may kill the manager: its successor
            // must find the units this job started.
            self.flush_started();
            let _ = r.send(result);
        }
    }

    /// What `status` adds for the graph: why the last start was skipped.
    pub(super) fn graph_notes(&self, name: &str, notes: &mut Vec<String>) {
        if let Some(e) = self.units.get(name)
            && e.phase().result == ServiceResult::Condition
            && let Some(r) = self.graph.skipped.get(name)
        {
            notes.push(format!("start condition not met, unit skipped: {r}"));
        }
    }

    /// `list-dependencies`: the tree of `unit` as text.
    pub(super) fn list_dependencies(&mut self, unit: &str, reverse: bool, all: bool) -> Response {
        let name = match self.resolve(unit) {
            Ok(name) => name,
            // systemctl draws a unit that does not exist too: its
            // name alone, or what pulls it in (and exits 0).
            Err(f) if f.kind == ErrorKind::NotFound => super::normalize(unit),
            Err(f) => return Response::Error(f),
        };
        Response::Text(graph::render_tree(
            &name,
            &View {
                m: self,
                stopping: false,
            },
            reverse,
            all,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::supervisor::state::{State, Sub};

    /// The job driver's view of a service in `sub`.
    fn phase(sub: Sub, result: ServiceResult, restarting: bool, stop: bool) -> Phase {
        Phase::of_service(&State {
            sub,
            result,
            start_after_stop: restarting,
            stop_requested: stop,
            ..State::default()
        })
    }

    #[test]
    fn start_jobs_end_when_the_unit_is_up_skipped_or_down() {
        use ServiceResult as R;
        let cases = [
            (Sub::Running, R::Success, false, Some(true)),
            (Sub::Exited, R::Success, false, Some(true)),
            (Sub::Reload, R::Success, false, Some(true)),
            // A oneshot without RemainAfterExit= that ran cleanly.
            (Sub::Dead, R::Success, false, Some(true)),
            (Sub::Dead, R::Condition, false, Some(true)),
            (Sub::Dead, R::ExitCode, false, Some(false)),
            (Sub::Failed, R::ExitCode, false, Some(false)),
            (Sub::AutoRestart, R::Signal, false, Some(false)),
            // On its way: a restart's stop, or a start still running.
            (Sub::Dead, R::Success, true, None),
            (Sub::StopSigterm, R::Success, true, None),
            (Sub::Start, R::Success, false, None),
            (Sub::StartPre, R::Success, false, None),
        ];
        for (sub, result, restarting, want) in cases {
            assert_eq!(
                start_outcome(phase(sub, result, restarting, false)),
                want,
                "{sub:?} {result:?} restarting={restarting}"
            );
        }
    }

    #[test]
    fn a_stop_during_the_start_fails_the_start_job() {
        assert_eq!(
            start_outcome(phase(Sub::Dead, ServiceResult::Success, false, true)),
            Some(false)
        );
        assert_eq!(
            start_outcome(phase(Sub::Running, ServiceResult::Success, false, true)),
            Some(true)
        );
    }

    #[test]
    fn graph_errors_map_to_failure_kinds() {
        let cycle = GraphError::OrderingCycle {
            cycle: vec!["a.service".into(), "b.service".into(), "a.service".into()],
        };
        let f = graph_failure(&cycle);
        assert_eq!(f.kind, ErrorKind::Refused);
        assert!(f.message.contains("a.service → b.service → a.service"));
        assert_eq!(
            graph_failure(&GraphError::NotFound("x.service".into())).kind,
            ErrorKind::NotFound
        );
    }
}
