//! The unit graph as a pure transaction builder: a request (start, stop or
//! restart of one unit) becomes a [`Transaction`] of jobs over the graph of
//! Requires=, Wants=, Requisite=, BindsTo=, PartOf=, Conflicts= and the
//! After=/Before= ordering, the way systemd builds its transactions.
//!
//! Nothing here touches the system. The manager describes its units through
//! the [`Units`] trait, asks for a transaction with [`build`], then drives it:
//! [`Transaction::next_ready`] hands out the jobs whose ordering predecessors
//! have finished (several at once may run in parallel) and
//! [`Transaction::job_done`] records each outcome; a failed start fails the
//! pending starts of the units that require it, with the reason
//! ("dependency failed: dbus.service").
//!
//! Ordering cycles are found before anything runs. As systemd does, a cycle is
//! broken by dropping the jobs of a unit that does not matter to the requested
//! one (pulled in only by Wants=), together with every job that needs them
//! (Requires=, BindsTo=, Requisite=, transitively: a unit never starts
//! without what it requires); when every job of the cycle matters, the
//! transaction is refused and the error names the cycle's members.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fmt;

use thiserror::Error;

use crate::unit::{Loader, Unit, UnitName};

/// The unit the manager starts when it starts, as systemd's user manager does.
pub const DEFAULT_TARGET: &str = "default.target";

/// The target that groups enabled timers, started with [`DEFAULT_TARGET`].
pub const TIMERS_TARGET: &str = crate::unit::timer::TIMERS_TARGET;

/// The target enabled sockets are wanted by; the manager starts it beside
/// [`DEFAULT_TARGET`] (systemd's user manager reaches it through basic.target).
pub const SOCKETS_TARGET: &str = "sockets.target";

/// The socket of the user bus: a Type=dbus service requires it and is
/// ordered after it, when it exists (systemd.service(5), "Implicit
/// Dependencies").
pub const DBUS_SOCKET: &str = "dbus.socket";

/// The targets the manager knows without a file: then they only group what
/// their `.wants/` and `.requires/` directories link to.
pub const BUILTIN_TARGETS: [&str; 3] = [DEFAULT_TARGET, SOCKETS_TARGET, TIMERS_TARGET];

/// Whether `name` is one of the [`BUILTIN_TARGETS`].
pub fn is_builtin_target(name: &str) -> bool {
    BUILTIN_TARGETS.contains(&name)
}

/// The dependency lists of one unit, as its file (plus drop-ins and the
/// `.wants/`/`.requires/` directories) declares them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deps {
    /// `Requires=`: started along, and its failure fails this unit.
    pub requires: Vec<String>,
    /// `Wants=`: started along; its failure does not matter.
    pub wants: Vec<String>,
    /// `Requisite=`: must already be active; never started for us.
    pub requisite: Vec<String>,
    /// `BindsTo=`: as Requires=, and when it stops, this unit stops too.
    pub binds_to: Vec<String>,
    /// `PartOf=`: stops and restarts of those units reach this one.
    pub part_of: Vec<String>,
    /// `Conflicts=`: starting this unit stops those, and the reverse.
    pub conflicts: Vec<String>,
    /// `After=`: this unit starts after those (and stops before them).
    pub after: Vec<String>,
    /// `Before=`: this unit starts before those (and stops after them).
    pub before: Vec<String>,
    /// `Triggers=`: what a timer starts when it elapses (implicit, never written).
    pub triggers: Vec<String>,
    /// `DefaultDependencies=`: for a target, it orders itself after what it pulls in.
    pub default_dependencies: bool,
}

impl Default for Deps {
    fn default() -> Self {
        Deps {
            requires: Vec::new(),
            wants: Vec::new(),
            requisite: Vec::new(),
            binds_to: Vec::new(),
            part_of: Vec::new(),
            conflicts: Vec::new(),
            after: Vec::new(),
            before: Vec::new(),
            triggers: Vec::new(),
            default_dependencies: true,
        }
    }
}

impl Deps {
    /// Every unit this one pulls in on start.
    pub fn pulls(&self) -> impl Iterator<Item = &String> {
        self.requires
            .iter()
            .chain(&self.wants)
            .chain(&self.requisite)
            .chain(&self.binds_to)
    }
}

impl Deps {
    /// The dependency lists of a loaded unit (its file, drop-ins and the
    /// `.wants/`/`.requires/` directories the loader already merged in),
    /// with those a timer or a socket has implicitly (see
    /// [`crate::unit::timer::implicit_dependencies`] and
    /// [`crate::unit::SocketSection::implicit_dependencies`]).
    pub fn from_unit(u: &Unit) -> Deps {
        // A template (`foo@.service`) is never a unit of its own: systemd
        // ignores a dependency on one ("missing the instance name").
        let names = |v: &[UnitName]| {
            v.iter()
                .filter(|n| !n.is_template())
                .map(|n| n.to_string())
                .collect::<Vec<_>>()
        };
        let implicit = crate::unit::timer::implicit_dependencies(u);
        let with = |written: &[UnitName], extra: &[UnitName]| {
            let mut v = names(written);
            for n in names(extra) {
                if !v.contains(&n) {
                    v.push(n);
                }
            }
            v
        };
        let mut before = with(&u.unit.before, &implicit.before);
        // A socket is ordered before the service it triggers and before
        // sockets.target without saying so (systemd.socket(5)).
        if let Some(s) = &u.socket {
            let implicit = s.implicit_dependencies(&u.name, u.unit.default_dependencies);
            for n in names(&implicit.before) {
                if !before.contains(&n) {
                    before.push(n);
                }
            }
        }
        Deps {
            requires: names(&u.unit.requires),
            wants: names(&u.unit.wants),
            requisite: names(&u.unit.requisite),
            binds_to: names(&u.unit.binds_to),
            part_of: names(&u.unit.part_of),
            conflicts: with(&u.unit.conflicts, &implicit.conflicts),
            after: names(&u.unit.after),
            before,
            triggers: names(&implicit.triggers),
            default_dependencies: u.unit.default_dependencies,
        }
    }
}

impl Deps {
    /// With `Requires=` and `After=` on [`DBUS_SOCKET`] when `u` is a
    /// Type=dbus service and `bus_socket_exists()` says the socket unit
    /// can be loaded: its start then makes the bus listen first, and a
    /// socket-activated bus starts on the service's first connection.
    /// Without the socket unit nothing is added, so that a bus started some
    /// other way (DBUS_SESSION_BUS_ADDRESS) still serves.
    pub fn with_bus_socket(mut self, u: &Unit, bus_socket_exists: impl FnOnce() -> bool) -> Deps {
        if !is_dbus_service(u) || !bus_socket_exists() {
            return self;
        }
        for list in [&mut self.requires, &mut self.after] {
            if !list.iter().any(|n| n == DBUS_SOCKET) {
                list.push(DBUS_SOCKET.to_string());
            }
        }
        self
    }
}

/// Whether `u` is a Type=dbus service, which requires [`DBUS_SOCKET`] when
/// that exists (see [`Deps::with_bus_socket`]).
pub fn is_dbus_service(u: &Unit) -> bool {
    u.service
        .as_ref()
        .is_some_and(|s| s.service_type == crate::unit::model::ServiceType::Dbus)
}

/// Whether the loader finds an unmasked [`DBUS_SOCKET`].
pub fn bus_socket_exists(loader: &Loader) -> bool {
    UnitName::parse_strict(DBUS_SOCKET)
        .ok()
        .and_then(|n| loader.load(&n).ok())
        .is_some_and(|u| !u.masked)
}

/// Looks a unit's dependencies up through the unit loader, for a
/// [`Units::deps`] implementation. `default.target` exists even without a
/// file: it then only groups what `default.target.wants/` (and
/// `.requires/`) in the search path link to.
pub fn load_deps(loader: &Loader, name: &str) -> Result<Deps, Missing> {
    let unit_name = UnitName::parse(name).map_err(|_| Missing::NotFound)?;
    match loader.load(&unit_name) {
        Ok(u) if u.masked => Err(Missing::Masked),
        Ok(u) => Ok(Deps::from_unit(&u).with_bus_socket(&u, || bus_socket_exists(loader))),
        Err(_) if is_builtin_target(name) => {
            let mut d = Deps::default();
            for dir in loader.unit_paths() {
                for (suffix, list) in [("wants", &mut d.wants), ("requires", &mut d.requires)] {
                    let Ok(rd) = std::fs::read_dir(dir.join(format!("{name}.{suffix}"))) else {
                        continue;
                    };
                    let mut found: Vec<String> = rd
                        .flatten()
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .filter(|n| {
                            UnitName::parse_strict(n).is_ok_and(|u| !u.is_template())
                                && !list.contains(n)
                        })
                        .collect();
                    found.sort();
                    list.extend(found);
                }
            }
            Ok(d)
        }
        Err(_) => Err(Missing::NotFound),
    }
}

/// A [`Units`] view over the unit loader: dependencies are read from the
/// unit files (through [`load_deps`]), activity comes from the manager.
/// Each lookup reads the unit's files; a manager that keeps its loaded
/// units in memory can implement [`Units`] over them with [`Deps::from_unit`]
/// instead.
pub struct LoaderView<'a> {
    /// Where unit files are found.
    pub loader: &'a Loader,
    /// Whether a unit is active (or activating, reloading) now.
    pub active: &'a dyn Fn(&str) -> bool,
    /// The units the manager has loaded (for reverse dependencies).
    pub loaded: Vec<String>,
}

impl Units for LoaderView<'_> {
    fn deps(&self, name: &str) -> Result<Deps, Missing> {
        load_deps(self.loader, name)
    }
    fn is_active(&self, name: &str) -> bool {
        (self.active)(name)
    }
    fn loaded(&self) -> Vec<String> {
        self.loaded.clone()
    }
}

/// Whether unit `a` (with `da`) is ordered after unit `b` (with `db`): by
/// a's After=, by b's Before=, or because `a` is a target that pulls `b` in
/// and both keep their default dependencies (systemd then orders a target
/// after its members, unless that would make a loop).
pub fn ordered_after(a: &str, da: &Deps, b: &str, db: &Deps) -> bool {
    da.after.iter().any(|u| u == b)
        || db.before.iter().any(|u| u == a)
        || (is_target(a)
            && da.default_dependencies
            && db.default_dependencies
            && da.pulls().any(|u| u == b)
            && !da.before.iter().any(|u| u == b)
            && !db.after.iter().any(|u| u == a))
}

/// Whether `name` is a target: a unit that only groups others and has no
/// processes, so its jobs succeed as soon as they may run.
pub fn is_target(name: &str) -> bool {
    name.ends_with(".target")
}

/// Why a unit could not be looked up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    /// No unit file of that name.
    NotFound,
    /// The unit is masked (a symlink to /dev/null).
    Masked,
}

/// What the transaction builder needs to know about the manager's units.
pub trait Units {
    /// The dependencies of `name` (loading it, e.g. a template instance, if needed).
    fn deps(&self, name: &str) -> Result<Deps, Missing>;
    /// Whether `name` is active (or activating, or reloading) now.
    fn is_active(&self, name: &str) -> bool;
    /// The names of every loaded unit, to find the reverse dependencies
    /// (RequiredBy, BoundBy, ConsistsOf, ConflictedBy).
    fn loaded(&self) -> Vec<String>;
    /// The loaded units whose dependencies on `name` a transaction follows
    /// backwards, in any order. The default asks every loaded unit for its
    /// [`deps`](Units::deps) ([`reverse_from_deps`]); a manager that can
    /// answer for one name without that overrides it, since a transaction
    /// should cost what it touches, not what is loaded.
    fn reverse(&self, name: &str) -> Vec<(String, Rel)> {
        reverse_from_deps(self, name)
    }
}

/// How another unit depends on one: the reverse edges a transaction follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Rel {
    /// The other unit Requires=, BindsTo= or Requisite= this one, or is
    /// PartOf= it: stopping this one stops it.
    PropagatesStop,
    /// The other unit Conflicts= with this one.
    ConflictedBy,
}

/// The reverse edges of `name` from every loaded unit's [`Units::deps`]
/// (those that cannot be looked up have none), sorted by unit, a unit's
/// [`Rel::PropagatesStop`] before its [`Rel::ConflictedBy`].
pub fn reverse_from_deps<U: Units + ?Sized>(units: &U, name: &str) -> Vec<(String, Rel)> {
    let mut names = units.loaded();
    names.sort();
    names.dedup();
    let mut out = Vec::new();
    for other in names {
        let Ok(d) = units.deps(&other) else {
            continue;
        };
        let (stop, conflict) = d.names_backwards(name);
        out.extend(Rel::pick(stop, conflict).map(|r| (other.clone(), r)));
    }
    out
}

impl Rel {
    /// The relations a unit has to another: [`Rel::PropagatesStop`] if
    /// `stop`, then [`Rel::ConflictedBy`] if `conflict`.
    pub fn pick(stop: bool, conflict: bool) -> impl Iterator<Item = Rel> {
        [(stop, Rel::PropagatesStop), (conflict, Rel::ConflictedBy)]
            .into_iter()
            .filter_map(|(yes, r)| yes.then_some(r))
    }
}

impl Deps {
    /// Whether these lists name `name` in a way a transaction follows
    /// backwards: (a stop of `name` propagates here, `name` is conflicted by this).
    pub fn names_backwards(&self, name: &str) -> (bool, bool) {
        let has = |list: &[String]| list.iter().any(|n| n == name);
        let stop = has(&self.requires)
            || has(&self.binds_to)
            || has(&self.requisite)
            || has(&self.part_of);
        (stop, has(&self.conflicts))
    }
}

/// What the user asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    /// Start the unit and what it pulls in.
    Start,
    /// Stop the unit and what is bound to it.
    Stop,
    /// Stop then start the unit; active units bound to it are restarted too.
    Restart,
}

/// What a job does to its unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum JobKind {
    /// Make the unit active (for a target: mark it active at once).
    Start,
    /// Make the unit inactive.
    Stop,
}

impl fmt::Display for JobKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            JobKind::Start => "start",
            JobKind::Stop => "stop",
        })
    }
}

/// The index of a job inside its [`Transaction`].
pub type JobId = usize;

/// One job of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// Its index, to report it back with [`Transaction::job_done`].
    pub id: JobId,
    /// The unit it acts on.
    pub unit: String,
    /// What it does.
    pub kind: JobKind,
}

impl Job {
    /// Whether the job has nothing to run: a target only groups, so its job
    /// is done (ok) as soon as it is ready.
    pub fn is_grouping(&self) -> bool {
        is_target(&self.unit)
    }
}

/// How a job ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobResult {
    /// Not finished yet.
    Pending,
    /// Handed out by [`Transaction::next_ready`], not reported back yet.
    Running,
    /// Done (a start whose condition was false counts as done: skipped is not failed).
    Done,
    /// The job itself failed.
    Failed,
    /// Never run because a unit it requires failed to start.
    DependencyFailed {
        /// The unit whose failure this is.
        dep: String,
    },
}

impl JobResult {
    /// Whether the job is over, one way or another.
    pub fn is_finished(&self) -> bool {
        !matches!(self, JobResult::Pending | JobResult::Running)
    }
}

impl fmt::Display for JobResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JobResult::Pending => f.write_str("pending"),
            JobResult::Running => f.write_str("running"),
            JobResult::Done => f.write_str("done"),
            JobResult::Failed => f.write_str("failed"),
            JobResult::DependencyFailed { dep } => write!(f, "dependency failed: {dep}"),
        }
    }
}

/// A job that [`Transaction::job_done`] failed because a unit it requires failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DependencyFailure {
    /// The unit whose start will not happen.
    pub unit: String,
    /// The required unit that failed.
    pub dep: String,
}

impl fmt::Display for DependencyFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: dependency failed: {}", self.unit, self.dep)
    }
}

/// A cycle that was broken by dropping one of its jobs, for the manager's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokenCycle {
    /// The units of the cycle, in ordering order, the first repeated at the end.
    pub cycle: Vec<String>,
    /// The unit whose job was deleted to break it.
    pub dropped: String,
    /// The kind of its job in the cycle.
    pub kind: JobKind,
    /// The jobs deleted along with it because they need it (Requires=,
    /// BindsTo=, Requisite=, transitively), as `unit/kind`.
    pub also: Vec<String>,
}

impl fmt::Display for BrokenCycle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ordering cycle {}: job {}/{} deleted to break it",
            self.cycle.join(" → "),
            self.dropped,
            self.kind
        )?;
        if !self.also.is_empty() {
            write!(
                f,
                "; deleted with it, as they need it: {}",
                self.also.join(", ")
            )?;
        }
        Ok(())
    }
}

/// Why a transaction was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum GraphError {
    /// The requested unit, or one it requires, does not exist.
    #[error("Unit {0} not found.")]
    NotFound(String),
    /// The requested unit, or one it requires, is masked.
    #[error("Unit {0} is masked.")]
    Masked(String),
    /// An ordering cycle in which every job matters to the request.
    #[error(
        "ordering cycle between {}: refusing the transaction; remove one of the After=/Before= between them",
        .cycle.join(" → ")
    )]
    OrderingCycle {
        /// The units of the cycle, the first repeated at the end.
        cycle: Vec<String>,
    },
    /// The same unit would have to be started and stopped.
    #[error(
        "transaction for {anchor} is destructive: {unit} would be both started and stopped (Conflicts=); fix the Conflicts= between them"
    )]
    ConflictingJobs {
        /// The requested unit.
        anchor: String,
        /// The unit that would be both started and stopped.
        unit: String,
    },
}

/// Why a job is in the transaction: the edge that pulled it in. Only edges
/// that are not `Wanted` make a job matter to the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pull {
    Required,
    Wanted,
}

#[derive(Debug, Clone)]
struct Node {
    unit: String,
    kind: JobKind,
    /// Jobs that pulled this one in, and how.
    pulled_by: Vec<(JobId, Pull)>,
    /// A job that changes nothing (start of an active unit, stop of an
    /// inactive one): kept only so that what it pulled in keeps its reason.
    redundant: bool,
}

/// A job of a built transaction, with its progress.
#[derive(Debug, Clone)]
struct Slot {
    unit: String,
    kind: JobKind,
    result: JobResult,
    /// Jobs that must finish before this one may run.
    waits_for: BTreeSet<JobId>,
}

/// The jobs of one request, in dependency order, with their progress.
#[derive(Debug, Clone)]
pub struct Transaction {
    anchor: String,
    verb: Verb,
    jobs: Vec<Slot>,
    /// The `Requires=`, `BindsTo=` and `Requisite=` of its jobs' units
    /// that have any (see [`needs`]).
    deps: HashMap<String, Deps>,
    broken: Vec<BrokenCycle>,
    initial: Vec<DependencyFailure>,
}

/// Builds the transaction for `verb unit`: which units start and stop, in
/// what order. Jobs that change nothing (starting an active unit, stopping
/// an inactive one) are left out. A start whose Requisite= unit is not
/// active fails at once: see [`Transaction::initial_failures`].
pub fn build(units: &dyn Units, verb: Verb, unit: &str) -> Result<Transaction, GraphError> {
    let mut b = Builder {
        units,
        deps: HashMap::new(),
        nodes: Vec::new(),
        index: BTreeMap::new(),
    };
    b.add_anchor(verb, unit)?;
    b.finish(verb, unit)
}

struct Builder<'a> {
    units: &'a dyn Units,
    deps: HashMap<String, Deps>,
    /// The jobs; `None` once deleted.
    nodes: Vec<Option<Node>>,
    index: BTreeMap<(String, JobKind), JobId>,
}

impl Builder<'_> {
    fn lookup(&mut self, name: &str) -> Result<&Deps, Missing> {
        if !self.deps.contains_key(name) {
            let d = self.units.deps(name)?;
            self.deps.insert(name.to_string(), d);
        }
        Ok(&self.deps[name])
    }

    /// The reverse edges of `name` in one order whatever [`Units::reverse`]
    /// gives: by unit, [`Rel::PropagatesStop`] first, each once. Each unit
    /// is looked up, as its job needs its deps (ordering, failures); one
    /// that cannot be has no edges.
    fn reverse(&mut self, name: &str) -> Vec<(String, Rel)> {
        let mut out = self.units.reverse(name);
        out.sort();
        out.dedup();
        out.retain(|(other, _)| self.lookup(other).is_ok());
        out
    }

    /// Adds a job, or records one more reason for an existing one. Returns
    /// the id and whether it is new (so its own dependencies still need adding).
    fn add_job(&mut self, unit: &str, kind: JobKind, by: Option<(JobId, Pull)>) -> (JobId, bool) {
        if let Some(&id) = self.index.get(&(unit.to_string(), kind)) {
            if let (Some(node), Some(by)) = (self.nodes[id].as_mut(), by) {
                node.pulled_by.push(by);
            }
            return (id, false);
        }
        let id = self.nodes.len();
        self.nodes.push(Some(Node {
            unit: unit.to_string(),
            kind,
            pulled_by: by.into_iter().collect(),
            redundant: false,
        }));
        self.index.insert((unit.to_string(), kind), id);
        (id, true)
    }

    fn add_anchor(&mut self, verb: Verb, unit: &str) -> Result<(), GraphError> {
        match self.lookup(unit) {
            Ok(_) => {}
            // Stopping a masked unit is allowed (`mask --now` does it).
            Err(Missing::Masked) if verb == Verb::Stop => {
                self.deps.insert(unit.to_string(), Deps::default());
            }
            Err(m) => return Err(missing(unit, m)),
        }
        match verb {
            Verb::Start => self.add_start(unit, None),
            Verb::Stop => self.add_stop(unit, None, false),
            Verb::Restart => {
                self.add_stop(unit, None, true)?;
                self.add_start(unit, None)
            }
        }
    }

    /// Adds a start job for `unit` and, recursively, what it pulls in and
    /// the stops of what it conflicts with.
    fn add_start(&mut self, unit: &str, by: Option<(JobId, Pull)>) -> Result<(), GraphError> {
        let (id, new) = self.add_job(unit, JobKind::Start, by);
        if !new {
            return Ok(());
        }
        let deps = match self.lookup(unit) {
            Ok(d) => d.clone(),
            Err(m) => return Err(missing(unit, m)),
        };
        for dep in deps.requires.iter().chain(&deps.binds_to) {
            match self.lookup(dep) {
                Ok(_) => self.add_start(dep, Some((id, Pull::Required)))?,
                Err(m) => return Err(missing(dep, m)),
            }
        }
        for dep in &deps.wants {
            // A wanted unit that is missing or masked is simply not started.
            if self.lookup(dep).is_ok() {
                self.add_start(dep, Some((id, Pull::Wanted)))?;
            }
        }
        for dep in &deps.requisite {
            if let Err(m) = self.lookup(dep) {
                return Err(missing(dep, m));
            }
        }
        let mut conflicting: Vec<String> = deps.conflicts.clone();
        for (other, rel) in self.reverse(unit) {
            if rel == Rel::ConflictedBy {
                conflicting.push(other);
            }
        }
        conflicting.sort();
        conflicting.dedup();
        for other in conflicting {
            if self.lookup(&other).is_ok() {
                self.add_stop(&other, Some((id, Pull::Required)), false)?;
            }
        }
        Ok(())
    }

    /// Adds a stop job for `unit` and for everything its stop propagates to
    /// (units that require, are bound to, or are part of it). With
    /// `restart`, it propagates as systemd's try-restart: active units are
    /// stopped and started again, inactive ones left alone.
    fn add_stop(
        &mut self,
        unit: &str,
        by: Option<(JobId, Pull)>,
        restart: bool,
    ) -> Result<(), GraphError> {
        let (id, new) = self.add_job(unit, JobKind::Stop, by);
        if !new {
            return Ok(());
        }
        // Its After=/Before= order the stop among the others' (a unit
        // reached only through the reverse relations is not in `deps` yet;
        // one that cannot be loaded has none, and stops unordered).
        let _ = self.lookup(unit);
        for (other, rel) in self.reverse(unit) {
            if rel != Rel::PropagatesStop {
                continue;
            }
            if !restart {
                self.add_stop(&other, Some((id, Pull::Required)), false)?;
            } else if self.units.is_active(&other) {
                self.add_stop(&other, Some((id, Pull::Required)), true)?;
                // Starting it again is wanted, not required: if it fails,
                // the requested restart still did what was asked. Its own
                // stop pulls it, which marks the pair as a restart.
                let stop = self.index[&(other.clone(), JobKind::Stop)];
                self.add_start(&other, Some((stop, Pull::Wanted)))?;
            }
        }
        Ok(())
    }

    fn live(&self) -> impl Iterator<Item = (JobId, &Node)> {
        self.nodes
            .iter()
            .enumerate()
            .filter_map(|(i, n)| n.as_ref().map(|n| (i, n)))
    }

    /// The jobs that will run: live and not redundant.
    fn effective(&self) -> impl Iterator<Item = (JobId, &Node)> {
        self.live().filter(|(_, n)| !n.redundant)
    }

    fn delete(&mut self, id: JobId) {
        if let Some(n) = self.nodes[id].take() {
            self.index.remove(&(n.unit, n.kind));
        }
    }

    /// Deletes a job and, as systemd's `transaction_delete_job(…, true)`
    /// does, every job that needs it: those that pulled it in by an edge
    /// that matters (Requires=, BindsTo=, a stop propagation, Conflicts=)
    /// and the starts that have Requisite= on its unit, transitively.
    /// Returns what was deleted, the job itself first.
    fn delete_with_dependents(&mut self, id: JobId) -> Vec<(String, JobKind)> {
        let mut gone = Vec::new();
        let mut stack = vec![id];
        while let Some(j) = stack.pop() {
            let Some(n) = self.nodes[j].take() else {
                continue;
            };
            self.index.remove(&(n.unit.clone(), n.kind));
            for &(by, pull) in &n.pulled_by {
                if pull == Pull::Required && self.nodes[by].is_some() {
                    stack.push(by);
                }
            }
            if n.kind == JobKind::Start {
                for (other, node) in self.live() {
                    let requisite = node.kind == JobKind::Start
                        && self
                            .deps
                            .get(&node.unit)
                            .is_some_and(|d| d.requisite.contains(&n.unit));
                    if requisite {
                        stack.push(other);
                    }
                }
            }
            gone.push((n.unit, n.kind));
        }
        gone
    }

    /// Whether any job of `unit` matters to the request (systemd's
    /// `unit_matters_to_anchor`): only a unit none of whose jobs matter may
    /// be dropped to break a cycle.
    fn unit_matters(&self, unit: &str, anchors: &BTreeSet<JobId>) -> bool {
        self.live()
            .filter(|(_, n)| n.unit == unit)
            .any(|(id, _)| self.matters(id, anchors))
    }

    /// Whether `id` is an anchor or pulled in by a chain of non-Wants edges
    /// from one: such a job may not be dropped.
    fn matters(&self, id: JobId, anchors: &BTreeSet<JobId>) -> bool {
        let mut seen = BTreeSet::new();
        let mut queue = VecDeque::from([id]);
        while let Some(j) = queue.pop_front() {
            if anchors.contains(&j) {
                return true;
            }
            if !seen.insert(j) {
                continue;
            }
            if let Some(n) = &self.nodes[j] {
                for &(by, pull) in &n.pulled_by {
                    if pull == Pull::Required && self.nodes[by].is_some() {
                        queue.push_back(by);
                    }
                }
            }
        }
        false
    }

    /// Deletes the jobs that nothing pulls in any more (their puller was deleted).
    fn collect_garbage(&mut self, anchors: &BTreeSet<JobId>) {
        let mut children: HashMap<JobId, Vec<JobId>> = HashMap::new();
        for (id, n) in self.live() {
            for &(by, _) in &n.pulled_by {
                children.entry(by).or_default().push(id);
            }
        }
        let mut reachable: BTreeSet<JobId> = BTreeSet::new();
        let mut queue: VecDeque<JobId> = anchors.iter().copied().collect();
        while let Some(j) = queue.pop_front() {
            if self.nodes[j].is_none() || !reachable.insert(j) {
                continue;
            }
            queue.extend(children.get(&j).into_iter().flatten().copied());
        }
        let dead: Vec<JobId> = self
            .live()
            .map(|(id, _)| id)
            .filter(|id| !reachable.contains(id))
            .collect();
        for id in dead {
            self.delete(id);
        }
    }

    fn ordered_after(&self, a: &str, b: &str) -> bool {
        match (self.deps.get(a), self.deps.get(b)) {
            (Some(da), Some(db)) => ordered_after(a, da, b, db),
            _ => false,
        }
    }

    /// The ordering edges between the jobs that will run: `(first, then)`.
    fn edges(&self) -> Vec<(JobId, JobId)> {
        let jobs: Vec<(JobId, &str, JobKind)> = self
            .effective()
            .map(|(i, n)| (i, n.unit.as_str(), n.kind))
            .collect();
        let mut out = Vec::new();
        for &(i, ua, ka) in &jobs {
            for &(j, ub, kb) in &jobs {
                if i == j {
                    continue;
                }
                if ua == ub {
                    // A restart: the stop comes first.
                    if ka == JobKind::Stop && kb == JobKind::Start {
                        out.push((i, j));
                    }
                    continue;
                }
                let a_after_b = self.ordered_after(ua, ub);
                match (ka, kb) {
                    (JobKind::Start, JobKind::Start) if a_after_b => out.push((j, i)),
                    // Stops run in the reverse order of starts.
                    (JobKind::Stop, JobKind::Stop) if a_after_b => out.push((i, j)),
                    // A stop runs before a start whichever way the two are ordered.
                    (JobKind::Stop, JobKind::Start) if a_after_b || self.ordered_after(ub, ua) => {
                        out.push((i, j))
                    }
                    _ => {}
                }
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Finds one ordering cycle among the jobs that will run, as its jobs in
    /// order (each waits for the one before it).
    fn find_cycle(&self) -> Option<Vec<JobId>> {
        let mut succ: BTreeMap<JobId, Vec<JobId>> = BTreeMap::new();
        for (a, b) in self.edges() {
            succ.entry(a).or_default().push(b);
        }
        // 1 = on the current path, 2 = fully explored.
        let mut color: HashMap<JobId, u8> = HashMap::new();
        let ids: Vec<JobId> = self.effective().map(|(i, _)| i).collect();
        for &root in &ids {
            if color.contains_key(&root) {
                continue;
            }
            let mut stack: Vec<(JobId, usize)> = vec![(root, 0)];
            color.insert(root, 1);
            while let Some(top) = stack.last_mut() {
                let node = top.0;
                let list = succ.get(&node).map(Vec::as_slice).unwrap_or(&[]);
                if top.1 < list.len() {
                    let child = list[top.1];
                    top.1 += 1;
                    match color.get(&child) {
                        None => {
                            color.insert(child, 1);
                            stack.push((child, 0));
                        }
                        Some(1) => {
                            let start = stack.iter().position(|&(p, _)| p == child).unwrap_or(0);
                            return Some(stack[start..].iter().map(|&(p, _)| p).collect());
                        }
                        Some(_) => {}
                    }
                } else {
                    color.insert(node, 2);
                    stack.pop();
                }
            }
        }
        None
    }

    fn finish(mut self, verb: Verb, anchor: &str) -> Result<Transaction, GraphError> {
        let kinds: &[JobKind] = match verb {
            Verb::Start => &[JobKind::Start],
            Verb::Stop => &[JobKind::Stop],
            Verb::Restart => &[JobKind::Stop, JobKind::Start],
        };
        let anchors: BTreeSet<JobId> = kinds
            .iter()
            .filter_map(|&k| self.index.get(&(anchor.to_string(), k)).copied())
            .collect();

        // The same unit both started and stopped, other than a restart: drop
        // whichever side does not matter, or refuse (systemd's "conflicting jobs").
        let both: Vec<String> = self
            .live()
            .filter(|(_, n)| n.kind == JobKind::Start)
            .map(|(_, n)| n.unit.clone())
            .filter(|u| self.index.contains_key(&(u.clone(), JobKind::Stop)))
            .collect();
        for unit in both {
            let (Some(&start), Some(&stop)) = (
                self.index.get(&(unit.clone(), JobKind::Start)),
                self.index.get(&(unit.clone(), JobKind::Stop)),
            ) else {
                continue;
            };
            let restart = verb == Verb::Restart
                && (unit == anchor
                    || self.nodes[start]
                        .as_ref()
                        .is_some_and(|n| n.pulled_by.iter().any(|&(b, _)| b == stop)));
            if restart {
                continue;
            }
            if !self.matters(start, &anchors) {
                self.delete_with_dependents(start);
            } else if !self.matters(stop, &anchors) {
                self.delete_with_dependents(stop);
            } else {
                return Err(GraphError::ConflictingJobs {
                    anchor: anchor.to_string(),
                    unit,
                });
            }
            self.collect_garbage(&anchors);
        }

        // Jobs that change nothing. The start of an active unit that is also
        // stopped here (a restart) is real; the stop of an inactive one is not.
        let redundant: Vec<JobId> = self
            .live()
            .filter(|(_, n)| match n.kind {
                JobKind::Start => {
                    self.units.is_active(&n.unit)
                        && !self.index.contains_key(&(n.unit.clone(), JobKind::Stop))
                }
                JobKind::Stop => !self.units.is_active(&n.unit),
            })
            .map(|(i, _)| i)
            .collect();
        for id in redundant {
            if let Some(n) = self.nodes[id].as_mut() {
                n.redundant = true;
            }
        }

        let mut broken = Vec::new();
        while let Some(cycle) = self.find_cycle() {
            let names: Vec<String> = cycle
                .iter()
                .chain(cycle.first())
                .filter_map(|&j| self.nodes[j].as_ref().map(|n| n.unit.clone()))
                .collect();
            let victim = cycle.iter().copied().find(|&j| {
                self.nodes[j]
                    .as_ref()
                    .is_some_and(|n| !self.unit_matters(&n.unit, &anchors))
            });
            match victim {
                Some(victim) => {
                    let (dropped, kind) = self.nodes[victim]
                        .as_ref()
                        .map(|n| (n.unit.clone(), n.kind))
                        .expect("the victim is live");
                    // As systemd's transaction_delete_unit: every job of the
                    // unit goes, with the jobs that need them.
                    let jobs: Vec<JobId> = self
                        .live()
                        .filter(|(_, n)| n.unit == dropped)
                        .map(|(id, _)| id)
                        .collect();
                    let mut also = Vec::new();
                    for id in jobs {
                        for (unit, k) in self.delete_with_dependents(id) {
                            if unit != dropped {
                                also.push(format!("{unit}/{k}"));
                            }
                        }
                    }
                    self.collect_garbage(&anchors);
                    broken.push(BrokenCycle {
                        cycle: names,
                        dropped,
                        kind,
                        also,
                    });
                }
                None => return Err(GraphError::OrderingCycle { cycle: names }),
            }
        }

        // Number the jobs that will run densely and attach the ordering edges.
        let edges = self.edges();
        let mut map: HashMap<JobId, JobId> = HashMap::new();
        let mut jobs: Vec<Slot> = Vec::new();
        for (old, n) in self.effective() {
            map.insert(old, jobs.len());
            jobs.push(Slot {
                unit: n.unit.clone(),
                kind: n.kind,
                result: JobResult::Pending,
                waits_for: BTreeSet::new(),
            });
        }
        for (a, b) in edges {
            jobs[map[&b]].waits_for.insert(map[&a]);
        }
        let mut tx = Transaction {
            anchor: anchor.to_string(),
            deps: needs(self.deps, &jobs),
            verb,
            jobs,
            broken,
            initial: Vec::new(),
        };
        tx.initial = tx.check_requisites(self.units);
        Ok(tx)
    }
}

/// What a running transaction reads of `deps`: the `Requires=`,
/// `BindsTo=` and `Requisite=` of its jobs' units, for a failure's
/// propagation and the requisites' check. The rest, kept for as long as
/// the jobs run, cost the start of a thousand timers 1 MB, among which
/// what those jobs allocated meanwhile stayed scattered once it was freed.
fn needs(mut deps: HashMap<String, Deps>, jobs: &[Slot]) -> HashMap<String, Deps> {
    let units: std::collections::HashSet<&str> = jobs.iter().map(|j| j.unit.as_str()).collect();
    deps.retain(|unit, d| {
        let needed = !(d.requires.is_empty() && d.binds_to.is_empty() && d.requisite.is_empty());
        needed && units.contains(unit.as_str())
    });
    deps.shrink_to_fit();
    for d in deps.values_mut() {
        *d = Deps {
            requires: std::mem::take(&mut d.requires),
            binds_to: std::mem::take(&mut d.binds_to),
            requisite: std::mem::take(&mut d.requisite),
            ..Deps::default()
        };
    }
    deps
}

fn missing(unit: &str, m: Missing) -> GraphError {
    match m {
        Missing::NotFound => GraphError::NotFound(unit.to_string()),
        Missing::Masked => GraphError::Masked(unit.to_string()),
    }
}

impl Transaction {
    /// The unit that was asked for.
    pub fn anchor(&self) -> &str {
        &self.anchor
    }

    /// What was asked for.
    pub fn verb(&self) -> Verb {
        self.verb
    }

    /// Every job.
    pub fn jobs(&self) -> Vec<Job> {
        self.jobs
            .iter()
            .enumerate()
            .map(|(id, n)| Job {
                id,
                unit: n.unit.clone(),
                kind: n.kind,
            })
            .collect()
    }

    /// The job of `unit` of that kind, if the transaction has one.
    pub fn job(&self, unit: &str, kind: JobKind) -> Option<Job> {
        self.jobs()
            .into_iter()
            .find(|j| j.unit == unit && j.kind == kind)
    }

    /// The result of a job so far.
    pub fn result(&self, id: JobId) -> Option<&JobResult> {
        self.jobs.get(id).map(|n| &n.result)
    }

    /// The result of the job of `unit` of that kind, if any.
    pub fn result_of(&self, unit: &str, kind: JobKind) -> Option<&JobResult> {
        self.job(unit, kind).map(|j| &self.jobs[j.id].result)
    }

    /// The cycles that were broken by dropping a job, for the manager's log.
    pub fn broken_cycles(&self) -> &[BrokenCycle] {
        &self.broken
    }

    /// The starts that failed as soon as the transaction was built, because
    /// a Requisite= unit is not active (and what they failed in turn).
    pub fn initial_failures(&self) -> &[DependencyFailure] {
        &self.initial
    }

    /// The jobs that may run at the same time, layer after layer: every job
    /// of a layer waits only for jobs of the layers before it.
    pub fn layers(&self) -> Vec<Vec<Job>> {
        let jobs = self.jobs();
        let mut depth: Vec<Option<usize>> = vec![None; self.jobs.len()];
        // The job graph is acyclic (cycles were broken or refused), so every
        // round settles at least one job.
        let mut remaining: Vec<JobId> = (0..self.jobs.len()).collect();
        while !remaining.is_empty() {
            let before = remaining.len();
            remaining.retain(|&id| {
                let d = self.jobs[id]
                    .waits_for
                    .iter()
                    .try_fold(0, |acc, &w| depth[w].map(|d| acc.max(d + 1)));
                match d {
                    Some(d) => {
                        depth[id] = Some(d);
                        false
                    }
                    None => true,
                }
            });
            if remaining.len() == before {
                break;
            }
        }
        let mut layers: Vec<Vec<Job>> = Vec::new();
        for (id, d) in depth.into_iter().enumerate() {
            let d = d.unwrap_or(0);
            if layers.len() <= d {
                layers.resize(d + 1, Vec::new());
            }
            layers[d].push(jobs[id].clone());
        }
        for layer in &mut layers {
            layer.sort_by(|a, b| a.unit.cmp(&b.unit).then(a.kind.cmp(&b.kind)));
        }
        layers
    }

    /// The next job whose ordering predecessors have all finished, marked
    /// running; `None` when nothing can run until a running job is reported.
    /// Call it repeatedly to get every job that may run in parallel now.
    pub fn next_ready(&mut self) -> Option<Job> {
        let id = (0..self.jobs.len()).find(|&id| {
            let n = &self.jobs[id];
            n.result == JobResult::Pending
                && n.waits_for
                    .iter()
                    .all(|&w| self.jobs[w].result.is_finished())
        })?;
        self.jobs[id].result = JobResult::Running;
        Some(Job {
            id,
            unit: self.jobs[id].unit.clone(),
            kind: self.jobs[id].kind,
        })
    }

    /// Records the outcome of a job handed out by [`next_ready`](Self::next_ready)
    /// (`ok` also for a start skipped by a false condition: skipped is not
    /// failed). A failed start fails the pending starts of every unit that
    /// Requires=, BindsTo= or Requisite= it, transitively; those are returned
    /// so the manager can report them ("dependency failed: dbus.service").
    pub fn job_done(&mut self, id: JobId, ok: bool) -> Vec<DependencyFailure> {
        let Some(slot) = self.jobs.get_mut(id) else {
            return Vec::new();
        };
        if slot.result.is_finished() {
            return Vec::new();
        }
        slot.result = if ok {
            JobResult::Done
        } else {
            JobResult::Failed
        };
        if ok || slot.kind != JobKind::Start {
            return Vec::new();
        }
        let unit = slot.unit.clone();
        self.propagate_failure(&unit)
    }

    /// Fails the pending starts that require `failed`, and theirs in turn.
    fn propagate_failure(&mut self, failed: &str) -> Vec<DependencyFailure> {
        let mut out = Vec::new();
        let mut queue = VecDeque::from([failed.to_string()]);
        while let Some(dep) = queue.pop_front() {
            for slot in &mut self.jobs {
                if slot.kind != JobKind::Start || slot.result != JobResult::Pending {
                    continue;
                }
                let requires = self.deps.get(&slot.unit).is_some_and(|d| {
                    d.requires
                        .iter()
                        .chain(&d.binds_to)
                        .chain(&d.requisite)
                        .any(|u| *u == dep)
                });
                if requires {
                    slot.result = JobResult::DependencyFailed { dep: dep.clone() };
                    out.push(DependencyFailure {
                        unit: slot.unit.clone(),
                        dep: dep.clone(),
                    });
                    queue.push_back(slot.unit.clone());
                }
            }
        }
        out
    }

    /// Fails the start jobs whose Requisite= units are neither active nor
    /// started by this transaction.
    fn check_requisites(&mut self, units: &dyn Units) -> Vec<DependencyFailure> {
        let mut out = Vec::new();
        for id in 0..self.jobs.len() {
            if self.jobs[id].kind != JobKind::Start || self.jobs[id].result != JobResult::Pending {
                continue;
            }
            let unit = self.jobs[id].unit.clone();
            let requisites = self
                .deps
                .get(&unit)
                .map(|d| d.requisite.clone())
                .unwrap_or_default();
            let absent = requisites.into_iter().find(|r| {
                !units.is_active(r)
                    && !self
                        .jobs
                        .iter()
                        .any(|n| n.unit == *r && n.kind == JobKind::Start)
            });
            if let Some(r) = absent {
                self.jobs[id].result = JobResult::DependencyFailed { dep: r.clone() };
                out.push(DependencyFailure {
                    unit: unit.clone(),
                    dep: r,
                });
                out.extend(self.propagate_failure(&unit));
            }
        }
        out
    }

    /// Whether every job has finished.
    pub fn is_finished(&self) -> bool {
        self.jobs.iter().all(|n| n.result.is_finished())
    }

    /// Whether the jobs of the requested unit all finished successfully (for
    /// a restart: its stop and its start).
    pub fn succeeded(&self) -> bool {
        self.jobs
            .iter()
            .filter(|n| n.unit == self.anchor)
            .all(|n| n.result == JobResult::Done)
    }
}

/// The active units that must stop because `unit` became inactive on its
/// own (its process exited, it failed): those with BindsTo= on it. The
/// manager issues a stop transaction for each. Requires= dependents stay up,
/// as in systemd: only an explicit stop propagates to them.
pub fn bound_by(units: &dyn Units, unit: &str) -> Vec<String> {
    // BindsTo= is one of the lists a stop propagates along: only those
    // units need their deps looked at.
    let mut out: Vec<String> = units
        .reverse(unit)
        .into_iter()
        .filter(|(_, rel)| *rel == Rel::PropagatesStop)
        .map(|(other, _)| other)
        .filter(|other| units.is_active(other))
        .filter(|other| {
            units
                .deps(other)
                .is_ok_and(|d| d.binds_to.iter().any(|b| b == unit))
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Renders `systemctl list-dependencies`' tree of `root`: forward along
/// Requires=, Requisite=, Wants=, BindsTo= and ConsistsOf (the units that are
/// PartOf= it), or with `reverse` along RequiredBy, RequisiteOf, WantedBy,
/// BoundBy (the units that pull it in) and its own PartOf=. As systemctl does without
/// `--all`, only targets are expanded further; a unit already on the path
/// is shown but not expanded again. Each line has a dot, `●` when the unit
/// is active and `○` otherwise.
pub fn render_tree(root: &str, units: &dyn Units, reverse: bool, all: bool) -> String {
    let mut out = String::new();
    out.push_str(root);
    out.push('\n');
    let children = |name: &str| -> Vec<String> {
        let mut list: Vec<String> = Vec::new();
        if reverse {
            for other in units.loaded() {
                if let Ok(d) = units.deps(&other)
                    && d.pulls().any(|u| u == name)
                {
                    list.push(other);
                }
            }
            if let Ok(d) = units.deps(name) {
                list.extend(d.part_of.iter().cloned());
            }
        } else {
            if let Ok(d) = units.deps(name) {
                list.extend(d.pulls().cloned());
            }
            for other in units.loaded() {
                if let Ok(d) = units.deps(&other)
                    && d.part_of.iter().any(|u| u == name)
                {
                    list.push(other);
                }
            }
        }
        list.sort_by(|a, b| {
            is_target(a)
                .cmp(&is_target(b))
                .then_with(|| a.to_lowercase().cmp(&b.to_lowercase()))
        });
        list.dedup();
        list
    };
    let mut path = vec![root.to_string()];
    render_children(root, &children, units, all, "", &mut path, &mut out);
    out
}

fn render_children(
    name: &str,
    children: &dyn Fn(&str) -> Vec<String>,
    units: &dyn Units,
    all: bool,
    prefix: &str,
    path: &mut Vec<String>,
    out: &mut String,
) {
    let list = children(name);
    for (i, child) in list.iter().enumerate() {
        let last = i + 1 == list.len();
        let dot = if units.is_active(child) { '●' } else { '○' };
        out.push_str(&format!(
            "{dot} {prefix}{}{child}\n",
            if last { "└─" } else { "├─" }
        ));
        if path.iter().any(|p| p == child) || !(all || is_target(child)) {
            continue;
        }
        path.push(child.clone());
        let deeper = format!("{prefix}{}", if last { "  " } else { "│ " });
        render_children(child, children, units, all, &deeper, path, out);
        path.pop();
    }
}

#[cfg(test)]
mod tests;
