//! One entry of the unit table: the part every unit has, whatever its
//! kind (definition or load error, jobs waiting, since, start limit, the
//! last invocation id, why it failed) and the kind's own part, its
//! [`Body`]: the state of its machine and what the kind keeps beside it.
//!
//! A new kind is a [`Def`] variant (what loading makes of its files), a
//! [`Body`] variant (its machine's state and its runtime part), and the arms
//! of the `match`es below; the common part does not change.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::oneshot;
use tokio::task::AbortHandle;

use crate::cgroup::Cgroup;
use crate::ipc::proto::{Failure, SubState};
use crate::supervisor::service::ServiceDef;
use crate::supervisor::state::{self, ActiveState, Exit, Pid, ServiceResult, StartLimit, Timer};
use crate::supervisor::{target, wire};
use crate::unit::loader::UnitFileState;
use crate::unit::{ThinList, Unit, UnitKind};

use super::socket::{SocketBody, SocketDef};
use super::timer_unit::{TimerBody, TimerDef};
use super::{Invocation, LoadError};

/// A unit's definition, by kind: its files as its kind runs them.
#[derive(Debug, Clone)]
pub(super) enum Def {
    /// A service: commands, the machine's spec, limits.
    Service(Arc<ServiceDef>),
    /// A target: its files alone (dependencies, conditions, OnFailure=).
    Target(Arc<Unit>),
    /// A timer: its `[Timer]` and the unit it triggers.
    Timer(TimerDef),
    /// A socket: its files and its machine's spec.
    Socket(Arc<SocketDef>),
}

impl Def {
    /// The unit as loaded, whatever its kind.
    pub(super) fn unit(&self) -> &Arc<Unit> {
        match self {
            Def::Service(d) => &d.unit,
            Def::Target(u) => u,
            Def::Timer(t) => &t.unit,
            Def::Socket(d) => &d.unit,
        }
    }

    /// The service definition, for a service.
    pub(super) fn service(&self) -> Option<&Arc<ServiceDef>> {
        match self {
            Def::Service(d) => Some(d),
            Def::Target(_) | Def::Timer(_) | Def::Socket(_) => None,
        }
    }
}

/// What the job driver, `status` and the transition log read of any unit,
/// whatever its kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Phase {
    /// systemd's ActiveState.
    pub(super) active: ActiveState,
    /// The result of the last (or current) run.
    pub(super) result: ServiceResult,
    /// No start is under way: the unit may be started afresh (inactive,
    /// failed, or waiting to restart).
    pub(super) down: bool,
    /// A stop was asked for in the current run.
    pub(super) stop_requested: bool,
    /// It starts again once stopped (a restart under way).
    pub(super) start_after_stop: bool,
}

impl Phase {
    /// A service's phase.
    pub(super) fn of_service(s: &state::State) -> Phase {
        Phase {
            active: s.sub.active(),
            result: s.result,
            down: s.sub.is_down(),
            stop_requested: s.stop_requested,
            start_after_stop: s.start_after_stop,
        }
    }

    /// A target's phase: never on its way anywhere.
    fn of_target(s: target::State) -> Phase {
        Phase {
            active: s.sub.active(),
            result: s.result,
            down: s.sub != target::Sub::Active,
            stop_requested: false,
            start_after_stop: false,
        }
    }

    /// Inactive or failed.
    pub(super) fn is_stopped(self) -> bool {
        matches!(self.active, ActiveState::Inactive | ActiveState::Failed)
    }
}

/// The part of a service beside its definition: its machine's state and
/// what running its processes leaves.
#[derive(Default)]
pub(super) struct ServiceBody {
    /// The machine's state (`state::next`).
    pub(super) state: state::State,
    /// The current invocation, from its start to the removal of its cgroup.
    pub(super) inv: Option<Invocation>,
    /// Armed timers: generation and task (none for a zero delay, already queued).
    pub(super) timers: HashMap<Timer, (u64, Option<AbortHandle>)>,
    /// The last main process and how it ended.
    pub(super) main_exit: Option<(Pid, Exit)>,
    /// "ExecStart=argv" of the last main process spawned, for `status`.
    pub(super) main_command: Option<String>,
    /// KillMode=process: PIDs left running by the last stop.
    pub(super) left_behind: Vec<Pid>,
    /// LogRateLimitIntervalSec=/LogRateLimitBurst=, shared by the unit's pipes.
    pub(super) rate_limit: Option<Arc<crate::journal::ingest::RateLimiter>>,
    /// The last STATUS= the service sent.
    pub(super) status_text: Option<String>,
    /// The fds it keeps in the manager (FDSTORE=1), across its restarts.
    pub(super) fd_store: super::fd_store::FdStore,
    /// Deadlines of the armed timers, CLOCK_MONOTONIC ns, for the state record.
    pub(super) deadlines: HashMap<Timer, u64>,
    /// Start times of the main and control processes (/proc/PID/stat), read once each.
    pub(super) start_times: Vec<(Pid, u64)>,
    /// The state record as last written (readopt.rs), none when there is none.
    pub(super) persisted: Option<Vec<u8>>,
    /// StartLimitIntervalSec=/StartLimitBurst= and the recent starts. Only
    /// a service has one (as systemd 252: a target has no start limit, a
    /// timer's is not applied, a socket's would count the starts of its
    /// own commands, which it does not run, see `SocketDef::new`); in the
    /// common part it made every entry 56 B bigger.
    pub(super) start_limit: StartLimit,
}

/// The part of a target beside its definition: its machine's state.
#[derive(Default)]
pub(super) struct TargetBody {
    /// The machine's state (`target::next`).
    pub(super) state: target::State,
}

/// A unit's kind and the part of it only that kind has.
pub(super) enum Body {
    /// A service (also a unit of a kind this manager cannot run yet: it
    /// has no definition, and only the manager's verdicts reach it).
    Service(Box<ServiceBody>),
    /// A target.
    Target(TargetBody),
    /// A timer (boxed as the others: inline, its 200 bytes made every
    /// unit's entry that big).
    Timer(Box<TimerBody>),
    /// A socket.
    Socket(Box<SocketBody>),
}

impl Body {
    /// The body a unit of `kind` starts with.
    fn new(kind: UnitKind) -> Body {
        match kind {
            UnitKind::Target => Body::Target(TargetBody::default()),
            UnitKind::Timer => Body::Timer(Box::default()),
            UnitKind::Socket => Body::Socket(Box::default()),
            _ => Body::Service(Box::default()),
        }
    }
}

/// A service's body takes the start limit of its definition, when it
/// loaded; `keep_starts`: the starts counted so far still count.
fn take_start_limit(body: &mut Body, def: &Result<Def, LoadError>, keep_starts: bool) {
    if let (Ok(Def::Service(d)), Body::Service(s)) = (def, body) {
        let (interval, burst) = d.start_limit;
        if keep_starts {
            s.start_limit.interval = interval;
            s.start_limit.burst = burst;
        } else {
            s.start_limit = StartLimit::new(interval, burst);
        }
    }
}

/// One loaded unit.
pub(super) struct UnitEntry {
    /// The definition, or why it could not be loaded.
    pub(super) def: Result<Def, LoadError>,
    /// A definition read by daemon-reload while the unit was in use;
    /// applied when it is not. Boxed: it is rare, and inline it was 32 B
    /// of every entry.
    pub(super) pending: Option<Box<Result<Def, LoadError>>>,
    /// The last invocation id, kept for status after the invocation ended.
    /// Boxed text here and in `failure_note` (never grown once set): 16 B
    /// less in every entry, one size class of the allocator below.
    pub(super) last_invocation: Box<str>,
    /// Reload jobs waiting for the reload to end (start and stop jobs live in transactions).
    /// A `ThinList`: most units never have one (16 B less in each entry).
    pub(super) reload_waiters: ThinList<oneshot::Sender<Result<Vec<String>, Failure>>>,
    /// When the ActiveState last changed (µs since the epoch).
    pub(super) since_usec: u64,
    /// Why the last start failed, in words, when the result is not enough.
    pub(super) failure_note: Option<Box<str>>,
    /// enabled/disabled/static/masked, from the loader's listing (not
    /// its words: a `String` was one more allocation per unit).
    pub(super) file_state: Option<UnitFileState>,
    /// Neither inactive nor failed when the job driver last looked (to
    /// notice it going down on its own, for BindsTo=); a flag here, where
    /// a set of names cost each active unit a string and a slot.
    pub(super) seen_up: bool,
    /// The kind's part.
    pub(super) body: Body,
}

impl UnitEntry {
    /// A unit of `kind` that has never run.
    pub(super) fn new(kind: UnitKind, def: Result<Def, LoadError>) -> UnitEntry {
        let mut body = Body::new(kind);
        take_start_limit(&mut body, &def, false);
        UnitEntry {
            def,
            pending: None,
            last_invocation: Box::default(),
            reload_waiters: ThinList::default(),
            since_usec: 0,
            failure_note: None,
            file_state: None,
            seen_up: false,
            body,
        }
    }

    /// Takes `def` as the definition, with its start limit; `keep_starts`:
    /// the starts counted so far still count.
    pub(super) fn set_def(&mut self, def: Result<Def, LoadError>, keep_starts: bool) {
        take_start_limit(&mut self.body, &def, keep_starts);
        self.def = def;
    }

    /// The service definition, when the unit is a loaded service.
    pub(super) fn service_def(&self) -> Option<&Arc<ServiceDef>> {
        self.def.as_ref().ok().and_then(Def::service)
    }

    /// The service part, when the unit is a service.
    pub(super) fn service(&self) -> Option<&ServiceBody> {
        match &self.body {
            Body::Service(s) => Some(s),
            Body::Target(_) | Body::Timer(_) | Body::Socket(_) => None,
        }
    }

    /// The service part, to change it.
    pub(super) fn service_mut(&mut self) -> Option<&mut ServiceBody> {
        match &mut self.body {
            Body::Service(s) => Some(s),
            Body::Target(_) | Body::Timer(_) | Body::Socket(_) => None,
        }
    }

    /// Where the unit is, in words every kind shares.
    pub(super) fn phase(&self) -> Phase {
        match &self.body {
            Body::Service(s) => Phase::of_service(&s.state),
            Body::Target(t) => Phase::of_target(t.state),
            Body::Timer(t) => t.phase(),
            Body::Socket(s) => s.phase(),
        }
    }

    /// The sub-state in the protocol's words for the kind.
    pub(super) fn wire_sub(&self) -> SubState {
        match &self.body {
            Body::Service(s) => wire::service_sub(s.state.sub),
            Body::Target(t) => wire::target_sub(t.state.sub),
            Body::Timer(t) => wire::timer_sub(t.timer.state),
            Body::Socket(s) => wire::socket_sub(s.state.sub),
        }
    }

    /// The sub-state's word, for messages.
    pub(super) fn sub_word(&self) -> &'static str {
        self.wire_sub().as_str()
    }

    /// The invocation under way, for the kinds that run processes.
    pub(super) fn inv(&self) -> Option<&Invocation> {
        self.service().and_then(|s| s.inv.as_ref())
    }

    /// The invocation under way, to change it.
    pub(super) fn inv_mut(&mut self) -> Option<&mut Invocation> {
        self.service_mut().and_then(|s| s.inv.as_mut())
    }

    /// The current invocation's cgroup (a socket's: its commands').
    pub(super) fn cgroup(&self) -> Option<&Cgroup> {
        match &self.body {
            Body::Socket(s) => s.cgroup.as_ref(),
            _ => self.inv().and_then(|i| i.cgroup.as_ref()),
        }
    }

    /// The id of the current invocation, else of the last one.
    pub(super) fn invocation_id(&self) -> String {
        self.inv()
            .map_or(self.last_invocation.to_string(), |i| i.id.clone())
    }

    /// The main and control processes, for the kinds that have them.
    pub(super) fn main_and_control(&self) -> (Option<Pid>, Option<Pid>) {
        if let Body::Socket(s) = &self.body {
            return (None, s.control);
        }
        self.service().map_or((None, None), |s| {
            (s.state.main, s.state.control.and_then(|c| c.pid))
        })
    }
}
