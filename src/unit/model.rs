//! The typed unit model and how each directive is applied to it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::condition::{Condition, ConditionKind};
use super::exec::{ExecCommand, is_env_name, parse_exec};
use super::execution::ExecSettings;
use super::name::{UnitKind, UnitName};
use super::runit::RunitService;
use super::socket::SocketSection;
use super::specifier::SpecifierContext;
use super::syntax::Directive;
use super::timer::TimerSection;
use super::values::{
    parse_bool, parse_exit_status, parse_percent_permyriad, parse_signal, parse_size,
    parse_timeout, parse_timespan, parse_timespan_with, parse_umask,
};
use super::words::{SplitOptions, split};
use super::{Diagnostic, DiagnosticKind, Severity, UnitError};

/// Where a unit's definition comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnitSource {
    /// A systemd-style unit file (plus drop-ins).
    File,
    /// A runit service directory (boxed: inline, its three paths made every
    /// unit 72 B bigger).
    Runit(Box<RunitService>),
}

/// A loaded unit: its name, files and typed sections.
#[derive(Debug, Clone)]
pub struct Unit {
    /// The unit's canonical name (an alias resolves to the real name).
    pub name: UnitName,
    /// The main unit file (or the runit `run` script); `None` when masked by
    /// an empty drop-in-less name. Read with [`Unit::fragment`].
    fragment: Option<Fragment>,
    /// Drop-in files applied after the fragment, in order.
    pub dropins: ThinList<PathBuf>,
    /// systemd file or runit directory.
    pub source: UnitSource,
    /// Masked: the unit file is a symlink to /dev/null (or empty); it must not start.
    pub masked: bool,
    /// `[Unit]`: shared by every unit that leaves it at its defaults (see
    /// [`Shared`]).
    pub unit: Shared<UnitSection>,
    /// `[Service]`; `Some` exactly for `.service` units. Boxed, as the
    /// other kinds' sections: a unit carries one of them, and inline they
    /// made every unit (a timer too) 2.3 KB.
    pub service: Option<Box<ServiceSection>>,
    /// `[Timer]`; `Some` exactly for `.timer` units.
    pub timer: Option<Shared<TimerSection>>,
    /// `[Socket]`; `Some` exactly for `.socket` units.
    pub socket: Option<Box<SocketSection>>,
    /// `[Install]`: shared by every unit with an equal one (see
    /// [`Shared::intern`]).
    pub install: Shared<InstallSection>,
    /// Other names of this unit: alias symlinks found and `Alias=`.
    pub aliases: ThinList<UnitName>,
    /// Directives kept but not interpreted (unsupported ones, sections of
    /// unit types corral does not run yet).
    pub unsupported: ThinList<Directive>,
    /// Errors and warnings, with file and line.
    pub diagnostics: ThinList<Diagnostic>,
}

impl Unit {
    /// An empty unit of that name with every default applied.
    pub fn new(name: UnitName) -> Unit {
        let service = (name.kind() == UnitKind::Service).then(Box::default);
        let timer = (name.kind() == UnitKind::Timer).then(|| TimerSection::default().into());
        let socket = (name.kind() == UnitKind::Socket).then(Box::default);
        Unit {
            name,
            fragment: None,
            dropins: ThinList::default(),
            source: UnitSource::File,
            masked: false,
            unit: Shared::default(),
            service,
            timer,
            socket,
            install: Shared::default(),
            aliases: ThinList::default(),
            unsupported: ThinList::default(),
            diagnostics: ThinList::default(),
        }
    }

    /// The unit's type.
    pub fn kind(&self) -> UnitKind {
        self.name.kind()
    }

    /// Whether any diagnostic is an error.
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }

    /// The error diagnostics.
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics.iter().filter(|d| d.is_error())
    }

    /// The errors that only dropped an assignment: systemd 252 logs them
    /// ("..., ignoring") and loads the unit without it; the manager does the same.
    pub fn ignored_errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.errors().filter(|d| !d.fatal)
    }

    /// `Err` when the unit has an error systemd 252 refuses to load a unit
    /// over (see [`Diagnostic::fatal`]), with the first one: what the
    /// supervisor checks before starting it. Errors that only dropped an
    /// assignment do not count; `corral verify` reports every error.
    pub fn ensure_valid(&self) -> Result<(), UnitError> {
        let mut errs = self.errors().filter(|d| d.fatal);
        match errs.next() {
            None => Ok(()),
            Some(first) => Err(UnitError::Invalid {
                unit: self.name.to_string(),
                count: 1 + errs.count(),
                first: Box::new(first.clone()),
            }),
        }
    }

    /// The last value of a directive that is kept but not interpreted, if
    /// any (`Unit.last_unsupported("Service", "User")`).
    pub fn last_unsupported(&self, section: &str, key: &str) -> Option<&Directive> {
        self.unsupported
            .iter()
            .rev()
            .find(|d| d.section == section && d.key == key)
    }

    /// Every file the unit was read from: the fragment, then the drop-ins.
    pub fn files(&self) -> impl Iterator<Item = PathBuf> + '_ {
        self.fragment()
            .into_iter()
            .chain(self.dropins.iter().cloned())
    }

    /// The main unit file (or the runit `run` script); `None` when masked
    /// by an empty drop-in-less name.
    pub fn fragment(&self) -> Option<PathBuf> {
        self.fragment.as_ref().map(|f| match f {
            Fragment::Named(dir) => dir.join(self.name.as_str()),
            Fragment::Other(path) => PathBuf::clone(path),
        })
    }

    /// Sets the main unit file.
    pub fn set_fragment(&mut self, path: PathBuf) {
        self.fragment = Some(Fragment::new(path, &self.name));
    }
}

/// Where a unit's main file is. Most units' file bears the unit's name in
/// one of the few directories the loader searches: those keep the
/// directory alone, shared by all of them. The whole path was an
/// allocation of its own in every unit (a 64 B chunk of the allocator for
/// `bench-timers.sh`'s 55-byte paths).
#[derive(Debug, Clone)]
enum Fragment {
    /// The unit's own name in this directory.
    Named(std::sync::Arc<PathBuf>),
    /// Any other file: an alias's, a runit `run` script, one whose
    /// directory is not among the shared ones.
    Other(Box<PathBuf>),
}

/// The most directories [`Fragment::Named`] shares: the loader searches
/// about ten; a process reading units from anywhere else (`corral verify`
/// of many paths) keeps their paths whole past these.
const SHARED_DIRS_MAX: usize = 64;

impl Fragment {
    fn new(path: PathBuf, name: &UnitName) -> Fragment {
        use std::sync::{Arc, Mutex};
        static DIRS: Mutex<Vec<Arc<PathBuf>>> = Mutex::new(Vec::new());
        let dir = match (path.parent(), path.file_name()) {
            (Some(dir), Some(file)) if file == name.as_str() => dir,
            _ => return Fragment::Other(Box::new(path)),
        };
        let mut dirs = DIRS.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(d) = dirs.iter().find(|d| d.as_path() == dir) {
            return Fragment::Named(d.clone());
        }
        if dirs.len() >= SHARED_DIRS_MAX {
            return Fragment::Other(Box::new(path));
        }
        let d = Arc::new(dir.to_path_buf());
        dirs.push(d.clone());
        Fragment::Named(d)
    }
}

/// A section most units leave at its defaults, or have the same as many
/// others: every unit that does shares one copy (a thousand timers kept a
/// thousand `[Unit]`s of twelve empty lists, 370 B each). It reads as the section (`Deref`); a change
/// (`DerefMut`) first makes the unit's own copy when it is shared
/// (`Arc::make_mut`), so it behaves as a value of its own.
#[derive(Clone, PartialEq, Eq)]
pub struct Shared<T>(std::sync::Arc<T>);

impl<T> std::ops::Deref for Shared<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: Clone> std::ops::DerefMut for Shared<T> {
    fn deref_mut(&mut self) -> &mut T {
        std::sync::Arc::make_mut(&mut self.0)
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for Shared<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl<T> From<T> for Shared<T> {
    fn from(v: T) -> Self {
        Shared(std::sync::Arc::new(v))
    }
}

impl<T: Clone> Shared<T> {
    /// The section itself, copied only when it is shared.
    pub fn into_inner(self) -> T {
        std::sync::Arc::unwrap_or_clone(self.0)
    }
}

/// A list most units leave empty: one pointer, where a `Vec` takes 24 B
/// (a thousand timers kept four empty ones each, 64 KB more), allocated
/// once something is put in. It reads and changes as the `Vec` (`Deref`,
/// `DerefMut`).
#[derive(Clone)]
// The extra allocation is the point: only a list with items pays for it.
#[allow(clippy::box_collection)]
pub struct ThinList<T>(Option<Box<Vec<T>>>);

impl<T> Default for ThinList<T> {
    fn default() -> Self {
        ThinList(None)
    }
}

impl<T: 'static> std::ops::Deref for ThinList<T> {
    type Target = Vec<T>;
    fn deref(&self) -> &Vec<T> {
        match &self.0 {
            Some(v) => v,
            None => const { &Vec::new() },
        }
    }
}

impl<T: 'static> std::ops::DerefMut for ThinList<T> {
    fn deref_mut(&mut self) -> &mut Vec<T> {
        self.0.get_or_insert_with(Box::default)
    }
}

impl<T> From<Vec<T>> for ThinList<T> {
    fn from(v: Vec<T>) -> Self {
        ThinList((!v.is_empty()).then(|| Box::new(v)))
    }
}

impl<T> From<ThinList<T>> for Vec<T> {
    fn from(l: ThinList<T>) -> Self {
        l.0.map(|v| *v).unwrap_or_default()
    }
}

impl<T> IntoIterator for ThinList<T> {
    type Item = T;
    type IntoIter = std::vec::IntoIter<T>;
    fn into_iter(self) -> Self::IntoIter {
        Vec::from(self).into_iter()
    }
}

impl<'a, T: 'static> IntoIterator for &'a ThinList<T> {
    type Item = &'a T;
    type IntoIter = std::slice::Iter<'a, T>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl<T: PartialEq + 'static> PartialEq for ThinList<T> {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl<T: Eq + 'static> Eq for ThinList<T> {}

impl<T: std::hash::Hash + 'static> std::hash::Hash for ThinList<T> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        (**self).hash(state);
    }
}

impl<T: std::fmt::Debug + 'static> std::fmt::Debug for ThinList<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        (**self).fmt(f)
    }
}

/// A section with one shared default in the process: a unit that never
/// changes it points to that one.
pub trait SharedDefault: Default + 'static {
    /// The process's one default of the section.
    fn shared_default() -> &'static std::sync::Arc<Self>;
}

impl SharedDefault for UnitSection {
    fn shared_default() -> &'static std::sync::Arc<Self> {
        static DEFAULT: std::sync::OnceLock<std::sync::Arc<UnitSection>> =
            std::sync::OnceLock::new();
        DEFAULT.get_or_init(Default::default)
    }
}

impl SharedDefault for InstallSection {
    fn shared_default() -> &'static std::sync::Arc<Self> {
        static DEFAULT: std::sync::OnceLock<std::sync::Arc<InstallSection>> =
            std::sync::OnceLock::new();
        DEFAULT.get_or_init(Default::default)
    }
}

impl<T: SharedDefault> Default for Shared<T> {
    fn default() -> Self {
        Shared(T::shared_default().clone())
    }
}

impl<T: SharedDefault> Shared<T> {
    /// Still the shared default (nothing in it was changed).
    pub fn is_default(&self) -> bool {
        std::sync::Arc::ptr_eq(&self.0, T::shared_default())
    }
}

/// The sections of a kind in use ([`Shared::intern`]), and the table's
/// size after its last pruning.
type InternTable<T> = std::sync::Mutex<(
    std::collections::HashSet<
        std::sync::Arc<T>,
        std::hash::BuildHasherDefault<std::hash::DefaultHasher>,
    >,
    usize,
)>;

/// A table of no section yet.
const fn intern_table<T>() -> InternTable<T> {
    std::sync::Mutex::new((
        std::collections::HashSet::with_hasher(std::hash::BuildHasherDefault::new()),
        0,
    ))
}

impl<T: Eq + std::hash::Hash> Shared<T> {
    /// The same section as an equal one in `table`, else this one, now in it.
    fn intern_in(&mut self, table: &InternTable<T>) {
        use std::sync::Arc;
        let mut table = table.lock().unwrap_or_else(|e| e.into_inner());
        let (set, pruned_len) = &mut *table;
        if let Some(same) = set.get(&*self.0) {
            self.0 = same.clone();
            return;
        }
        // The sections no unit holds any more (reloads, units gone) go
        // once the table has doubled: amortized O(1) per unit.
        if set.len() >= 2 * *pruned_len + 16 {
            set.retain(|s| Arc::strong_count(s) > 1);
            *pruned_len = set.len();
        }
        set.insert(self.0.clone());
    }
}

impl Shared<InstallSection> {
    /// The same section, shared with every unit loaded with an equal one:
    /// timers are mostly `WantedBy=timers.target`, services
    /// `WantedBy=default.target`, and a thousand timers kept a thousand
    /// copies (180 B each with the list and the name). A later change
    /// still makes the unit's own copy (`DerefMut`).
    pub fn intern(&mut self) {
        static TABLE: InternTable<InstallSection> = intern_table();
        self.intern_in(&TABLE);
    }
}

impl Shared<TimerSection> {
    /// The same `[Timer]`, shared with every timer loaded with an equal one
    /// (the same values, written alike): users' timers are mostly
    /// `OnCalendar=daily` or `weekly`, with `Persistent=yes`, and each copy
    /// of `OnCalendar=daily` costs 300 B with its expression. A later change
    /// still makes the timer's own copy (`DerefMut`).
    pub fn intern(&mut self) {
        static TABLE: InternTable<TimerSection> = intern_table();
        self.intern_in(&TABLE);
    }
}

/// `[Unit]`: description, dependencies, conditions, start rate limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitSection {
    /// `Description=`.
    pub description: Option<String>,
    /// `Documentation=` URIs.
    pub documentation: Vec<String>,
    /// `Requires=`.
    pub requires: Vec<UnitName>,
    /// `Wants=`.
    pub wants: Vec<UnitName>,
    /// `Requisite=`.
    pub requisite: Vec<UnitName>,
    /// `BindsTo=`.
    pub binds_to: Vec<UnitName>,
    /// `PartOf=`.
    pub part_of: Vec<UnitName>,
    /// `Conflicts=`.
    pub conflicts: Vec<UnitName>,
    /// `After=`.
    pub after: Vec<UnitName>,
    /// `Before=`.
    pub before: Vec<UnitName>,
    /// `OnFailure=`: started when this unit enters the failed state.
    pub on_failure: Vec<UnitName>,
    /// `Condition*=`: unmet means "skip the start, not a failure".
    pub conditions: Vec<Condition>,
    /// `Assert*=`: unmet means "the start fails".
    pub asserts: Vec<Condition>,
    /// `StartLimitIntervalSec=` (also `StartLimitInterval=` in either
    /// section); zero disables rate limiting. Default 10 s.
    pub start_limit_interval: Duration,
    /// `StartLimitBurst=`; default 5.
    pub start_limit_burst: u32,
    /// `DefaultDependencies=`; default yes.
    pub default_dependencies: bool,
    /// `RefuseManualStart=`: only a dependency may start the unit; default no.
    pub refuse_manual_start: bool,
    /// `RefuseManualStop=`: only a dependency may stop the unit; default no.
    pub refuse_manual_stop: bool,
    /// `SuccessAction=`: what the manager does when the unit stops cleanly.
    pub success_action: EmergencyAction,
    /// `FailureAction=`: what the manager does when the unit fails.
    pub failure_action: EmergencyAction,
    /// `CollectMode=inactive-or-failed`: a unit that fails is reset as
    /// `reset-failed` would, where systemd unloads it; default
    /// `inactive` (the failure is kept until reset-failed or a start).
    pub collect_failed: bool,
    /// `StopWhenUnneeded=`: stopped once no unit that is active (or about
    /// to be) pulls it in by Requires=, Requisite=, Wants= or BindsTo=;
    /// default no.
    pub stop_when_unneeded: bool,
}

/// `SuccessAction=`/`FailureAction=` as a user manager takes them: the
/// system actions (reboot, poweroff, ...) are ignored with a warning, as
/// systemd 252's user manager does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum EmergencyAction {
    /// Nothing.
    #[default]
    None,
    /// Stop the manager as `SIGTERM` would: every unit stops, then it exits.
    Exit,
    /// Exit the manager at once (corral stops the units on the way out too).
    ExitForce,
}

impl Default for UnitSection {
    fn default() -> Self {
        UnitSection {
            description: None,
            documentation: Vec::new(),
            requires: Vec::new(),
            wants: Vec::new(),
            requisite: Vec::new(),
            binds_to: Vec::new(),
            part_of: Vec::new(),
            conflicts: Vec::new(),
            after: Vec::new(),
            before: Vec::new(),
            on_failure: Vec::new(),
            conditions: Vec::new(),
            asserts: Vec::new(),
            start_limit_interval: Duration::from_secs(10),
            start_limit_burst: 5,
            default_dependencies: true,
            refuse_manual_start: false,
            refuse_manual_stop: false,
            success_action: EmergencyAction::None,
            failure_action: EmergencyAction::None,
            collect_failed: false,
            stop_when_unneeded: false,
        }
    }
}

/// `[Install]`: how `enable` links the unit.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct InstallSection {
    /// `WantedBy=`.
    pub wanted_by: Vec<UnitName>,
    /// `RequiredBy=`.
    pub required_by: Vec<UnitName>,
    /// `Alias=`.
    pub alias: Vec<UnitName>,
    /// `Also=`.
    pub also: Vec<UnitName>,
    /// `DefaultInstance=` (templates only).
    pub default_instance: Option<String>,
}

/// `Type=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ServiceType {
    /// Started as soon as the main process is forked.
    #[default]
    Simple,
    /// Started once the main program has been executed.
    Exec,
    /// The start command forks; started when it exits; main PID from PIDFile=.
    Forking,
    /// Started when the start commands have run to completion.
    Oneshot,
    /// Started when the service sends READY=1 on $NOTIFY_SOCKET.
    Notify,
    /// Started when `BusName=` appears on the bus.
    Dbus,
    /// Like simple, but the start is delayed until other jobs are dispatched.
    Idle,
}

/// `Restart=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum RestartPolicy {
    /// Never restart.
    #[default]
    No,
    /// Only after a clean exit.
    OnSuccess,
    /// After an unclean exit code, a signal, a timeout or a watchdog.
    OnFailure,
    /// After a signal, a timeout or a watchdog.
    OnAbnormal,
    /// After a watchdog timeout.
    OnWatchdog,
    /// After an uncaught signal.
    OnAbort,
    /// Always.
    Always,
}

/// `KillMode=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum KillMode {
    /// Signal every process in the unit's cgroup.
    #[default]
    ControlGroup,
    /// KillSignal to the main process, SIGKILL to the rest of the cgroup.
    Mixed,
    /// Only the main process.
    Process,
}

/// `NotifyAccess=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum NotifyAccess {
    /// Notifications are ignored.
    #[default]
    None,
    /// Only from the main process.
    Main,
    /// From the main process and control (Exec*) processes.
    Exec,
    /// From every process of the unit's cgroup.
    All,
}

/// `StandardOutput=` / `StandardError=`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum StdOutput {
    /// Same as stdin (for stdout) or stdout (for stderr).
    Inherit,
    /// /dev/null.
    Null,
    /// The controlling terminal.
    Tty,
    /// corral's journal (also for `syslog`, `kmsg`, `journal+console`...).
    Journal,
    /// The journal and the console.
    JournalAndConsole,
    /// `file:PATH`: opened for writing, not truncated.
    File(PathBuf),
    /// `append:PATH`.
    Append(PathBuf),
    /// `truncate:PATH`.
    Truncate(PathBuf),
    /// `socket`: the connection of an `Accept=yes` socket.
    Socket,
    /// `fd:NAME`: a named socket fd (not supported: a warning, then the default).
    Fd(String),
}

/// An exit-status set: `SuccessExitStatus=3 4 SIGKILL DATAERR`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct ExitStatusSet {
    /// Exit codes 0..=255.
    pub codes: Vec<u8>,
    /// Signal numbers.
    pub signals: Vec<i32>,
}

impl ExitStatusSet {
    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.codes.is_empty() && self.signals.is_empty()
    }

    /// Whether an exit code is in the set.
    pub fn has_code(&self, code: i32) -> bool {
        u8::try_from(code).is_ok_and(|c| self.codes.contains(&c))
    }

    /// Whether a terminating signal is in the set.
    pub fn has_signal(&self, sig: i32) -> bool {
        self.signals.contains(&sig)
    }
}

/// `WorkingDirectory=`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WorkingDirectory {
    /// The directory; `~` is already replaced by the user's home.
    pub path: PathBuf,
    /// `-` prefix: a missing directory is not an error.
    pub missing_ok: bool,
}

/// One `EnvironmentFile=`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EnvironmentFile {
    /// The file.
    pub path: PathBuf,
    /// `-` prefix: the file may be missing.
    pub optional: bool,
}

/// The resources of `Limit*=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResourceLimit {
    /// LimitCPU= (seconds).
    Cpu,
    /// LimitFSIZE= (bytes).
    Fsize,
    /// LimitDATA= (bytes).
    Data,
    /// LimitSTACK= (bytes).
    Stack,
    /// LimitCORE= (bytes).
    Core,
    /// LimitRSS= (bytes).
    Rss,
    /// LimitNOFILE= (count).
    Nofile,
    /// LimitAS= (bytes).
    As,
    /// LimitNPROC= (count).
    Nproc,
    /// LimitMEMLOCK= (bytes).
    Memlock,
    /// LimitLOCKS= (count).
    Locks,
    /// LimitSIGPENDING= (count).
    Sigpending,
    /// LimitMSGQUEUE= (bytes).
    Msgqueue,
    /// LimitNICE= (raw 0..40 or a nice value -20..19).
    Nice,
    /// LimitRTPRIO= (count).
    Rtprio,
    /// LimitRTTIME= (microseconds).
    Rttime,
}

impl ResourceLimit {
    /// Every resource with its directive name.
    pub const ALL: [(ResourceLimit, &'static str); 16] = [
        (ResourceLimit::Cpu, "LimitCPU"),
        (ResourceLimit::Fsize, "LimitFSIZE"),
        (ResourceLimit::Data, "LimitDATA"),
        (ResourceLimit::Stack, "LimitSTACK"),
        (ResourceLimit::Core, "LimitCORE"),
        (ResourceLimit::Rss, "LimitRSS"),
        (ResourceLimit::Nofile, "LimitNOFILE"),
        (ResourceLimit::As, "LimitAS"),
        (ResourceLimit::Nproc, "LimitNPROC"),
        (ResourceLimit::Memlock, "LimitMEMLOCK"),
        (ResourceLimit::Locks, "LimitLOCKS"),
        (ResourceLimit::Sigpending, "LimitSIGPENDING"),
        (ResourceLimit::Msgqueue, "LimitMSGQUEUE"),
        (ResourceLimit::Nice, "LimitNICE"),
        (ResourceLimit::Rtprio, "LimitRTPRIO"),
        (ResourceLimit::Rttime, "LimitRTTIME"),
    ];

    /// The resource of a `Limit*` directive name.
    pub fn from_directive(key: &str) -> Option<ResourceLimit> {
        Self::ALL.iter().find(|(_, k)| *k == key).map(|&(r, _)| r)
    }

    /// The `RLIMIT_*` constant for setrlimit(2).
    pub fn resource(self) -> libc::__rlimit_resource_t {
        match self {
            ResourceLimit::Cpu => libc::RLIMIT_CPU,
            ResourceLimit::Fsize => libc::RLIMIT_FSIZE,
            ResourceLimit::Data => libc::RLIMIT_DATA,
            ResourceLimit::Stack => libc::RLIMIT_STACK,
            ResourceLimit::Core => libc::RLIMIT_CORE,
            ResourceLimit::Rss => libc::RLIMIT_RSS,
            ResourceLimit::Nofile => libc::RLIMIT_NOFILE,
            ResourceLimit::As => libc::RLIMIT_AS,
            ResourceLimit::Nproc => libc::RLIMIT_NPROC,
            ResourceLimit::Memlock => libc::RLIMIT_MEMLOCK,
            ResourceLimit::Locks => libc::RLIMIT_LOCKS,
            ResourceLimit::Sigpending => libc::RLIMIT_SIGPENDING,
            ResourceLimit::Msgqueue => libc::RLIMIT_MSGQUEUE,
            ResourceLimit::Nice => libc::RLIMIT_NICE,
            ResourceLimit::Rtprio => libc::RLIMIT_RTPRIO,
            ResourceLimit::Rttime => libc::RLIMIT_RTTIME,
        }
    }
}

/// One side of a resource limit: a number or infinity.
pub type LimitValue = Option<u64>;

/// A `Limit*=` value: `soft:hard` or one value for both; `None` is infinity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RLimit {
    /// The soft limit (None: RLIM_INFINITY).
    pub soft: LimitValue,
    /// The hard limit (None: RLIM_INFINITY).
    pub hard: LimitValue,
}

/// `MemoryMax=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MemoryLimit {
    /// A byte count.
    Bytes(u64),
    /// A share of physical memory, in permyriad (1/100 of a percent).
    Permyriad(u32),
    /// No limit.
    Infinity,
}

/// `TasksMax=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TasksMax {
    /// An absolute count.
    Count(u64),
    /// A share of the system's pid limit, in permyriad.
    Permyriad(u32),
    /// No limit.
    Infinity,
}

/// `[Service]`: how the service's processes are started, stopped and restarted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSection {
    /// `Type=`; simple, or oneshot when no ExecStart= is given, or dbus
    /// when BusName= is given.
    pub service_type: ServiceType,
    /// `ExecStart=`: one command, several only for Type=oneshot.
    pub exec_start: Vec<ExecCommand>,
    /// `ExecCondition=`: run before ExecStartPre=; exit 1–254 skips the start.
    pub exec_condition: Vec<ExecCommand>,
    /// `ExecStartPre=`.
    pub exec_start_pre: Vec<ExecCommand>,
    /// `ExecStartPost=`.
    pub exec_start_post: Vec<ExecCommand>,
    /// `ExecReload=`.
    pub exec_reload: Vec<ExecCommand>,
    /// `ExecStop=`.
    pub exec_stop: Vec<ExecCommand>,
    /// `ExecStopPost=`.
    pub exec_stop_post: Vec<ExecCommand>,
    /// Line of the last `ExecStart=` (for error messages such as PATH lookups).
    pub exec_start_line: usize,
    /// `PIDFile=`.
    pub pid_file: Option<PathBuf>,
    /// `GuessMainPID=`: a Type=forking service without PIDFile= takes the one
    /// process the manager adopted as its main PID; default yes.
    pub guess_main_pid: bool,
    /// `Restart=`.
    pub restart: RestartPolicy,
    /// `RestartSec=`; default 100 ms.
    pub restart_sec: Duration,
    /// `RemainAfterExit=`.
    pub remain_after_exit: bool,
    /// `TimeoutStartSec=` (or `TimeoutSec=`); `None` is no timeout. Default
    /// 90 s, none for Type=oneshot.
    pub timeout_start: Option<Duration>,
    /// `TimeoutStopSec=` (or `TimeoutSec=`); default 90 s.
    pub timeout_stop: Option<Duration>,
    /// `RuntimeMaxSec=`; default none.
    pub runtime_max: Option<Duration>,
    /// `KillMode=`.
    pub kill_mode: KillMode,
    /// `KillSignal=` as a signal number; default SIGTERM.
    pub kill_signal: i32,
    /// `SendSIGKILL=`; default yes.
    pub send_sigkill: bool,
    /// `SendSIGHUP=`; default no.
    pub send_sighup: bool,
    /// `SuccessExitStatus=` (in addition to 0 and the clean signals).
    pub success_exit_status: ExitStatusSet,
    /// `RestartPreventExitStatus=`.
    pub restart_prevent_exit_status: ExitStatusSet,
    /// `RestartForceExitStatus=`.
    pub restart_force_exit_status: ExitStatusSet,
    /// `WorkingDirectory=`; `None` means the user's home for a user manager.
    pub working_directory: Option<WorkingDirectory>,
    /// `Environment=`, in order; a later assignment of a name replaces the
    /// earlier one in place.
    pub environment: Vec<(String, String)>,
    /// `EnvironmentFile=`, in order (read at start time).
    pub environment_files: Vec<EnvironmentFile>,
    /// `UnsetEnvironment=`: `NAME` or `NAME=value` entries.
    pub unset_environment: Vec<String>,
    /// `PassEnvironment=`: names taken from the manager's environment.
    pub pass_environment: Vec<String>,
    /// `NotifyAccess=`; none, or main for Type=notify.
    pub notify_access: NotifyAccess,
    /// `BusName=`.
    pub bus_name: Option<String>,
    /// `FileDescriptorStoreMax=`: how many fds the service may keep in the
    /// manager with `FDSTORE=1`; 0 (the default) refuses them.
    pub fd_store_max: u32,
    /// `UMask=`; `None` (the default for user units, as in systemd) keeps
    /// the manager's own umask.
    pub umask: Option<u32>,
    /// `Nice=`.
    pub nice: Option<i32>,
    /// `Limit*=`.
    pub limits: BTreeMap<ResourceLimit, RLimit>,
    /// `StandardOutput=`; default journal.
    pub standard_output: StdOutput,
    /// `StandardError=`; default inherit (same as stdout).
    pub standard_error: StdOutput,
    /// `SyslogIdentifier=`; default: the process name.
    pub syslog_identifier: Option<String>,
    /// `SyslogLevel=` (0 emerg .. 7 debug); default 6 (info).
    pub syslog_level: u8,
    /// `SyslogLevelPrefix=`: honour `<N>` prefixes; default yes.
    pub syslog_level_prefix: bool,
    /// `MemoryMax=`.
    pub memory_max: Option<MemoryLimit>,
    /// `CPUQuota=` in permyriad of one CPU (20.5% = 2050, 200% = 20000), the
    /// precision systemd keeps.
    pub cpu_quota_permyriad: Option<u32>,
    /// `TasksMax=`.
    pub tasks_max: Option<TasksMax>,
    /// `LogRateLimitIntervalSec=`; `None` uses the journal's default.
    pub log_rate_limit_interval: Option<Duration>,
    /// `LogRateLimitBurst=`; `None` uses the journal's default.
    pub log_rate_limit_burst: Option<u32>,
    /// Directories, credentials, stdin, `ExecSearchPath=`, scheduling
    /// (`unit::execution`).
    pub exec: ExecSettings,
}

impl ServiceSection {
    /// The resource directives that are set, each with the cgroup
    /// controller it needs (`("TasksMax=", "pids")`).
    pub fn resource_controllers(&self) -> Vec<(&'static str, &'static str)> {
        [
            (self.memory_max.is_some(), "MemoryMax=", "memory"),
            (self.cpu_quota_permyriad.is_some(), "CPUQuota=", "cpu"),
            (self.tasks_max.is_some(), "TasksMax=", "pids"),
        ]
        .into_iter()
        .filter(|(set, _, _)| *set)
        .map(|(_, d, c)| (d, c))
        .collect()
    }

    /// Why each resource directive set does nothing when units run under
    /// `root`, whose `cgroup.subtree_control` enables `enabled`: the notes
    /// `corral status` shows and the warnings `corral verify` gives.
    pub fn unapplied_resources(
        &self,
        root: &Path,
        enabled: &[String],
    ) -> Vec<(&'static str, String)> {
        self.resource_controllers()
            .into_iter()
            .filter(|(_, c)| !enabled.iter().any(|e| e == c))
            .map(|(directive, controller)| {
                (
                    directive,
                    format!(
                        "{directive} not applied: the {controller} controller is not enabled for {} \
                         (add it to that cgroup's parent cgroup.subtree_control, or ask root to delegate it)",
                        root.display()
                    ),
                )
            })
            .collect()
    }

    /// The environment of the service's processes, composed as systemd does:
    /// the manager's environment block, then `PassEnvironment=` names looked
    /// up with `pass_from`, then `Environment=`, then each
    /// `EnvironmentFile=` (read now; a missing optional file is skipped),
    /// then `UnsetEnvironment=` (`NAME` removes the name, `NAME=value` only
    /// that exact assignment). Later sources override earlier ones.
    pub fn resolve_environment(
        &self,
        manager_env: &[(String, String)],
        pass_from: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Vec<(String, String)>, UnitError> {
        let mut env = EnvBlock::default();
        for (k, v) in manager_env {
            env.set(k.clone(), v.clone());
        }
        for name in &self.pass_environment {
            if let Some(v) = pass_from(name) {
                env.set(name.clone(), v);
            }
        }
        for (k, v) in &self.environment {
            env.set(k.clone(), v.clone());
        }
        for f in &self.environment_files {
            match super::envfile::parse(&f.path) {
                Ok(vars) => {
                    for (k, v) in vars {
                        env.set(k, v);
                    }
                }
                // systemd 252 skips an optional (`-`) file whatever the reason.
                Err(_) if f.optional => {}
                Err(e) => return Err(e),
            }
        }
        let mut env = env.into_vec();
        if !self.unset_environment.is_empty() {
            // One pass over the environment, however many names are unset.
            let mut names: HashSet<&str> = HashSet::new();
            let mut pairs: HashSet<(&str, &str)> = HashSet::new();
            for u in &self.unset_environment {
                match u.split_once('=') {
                    Some(kv) => pairs.insert(kv),
                    None => names.insert(u.as_str()),
                };
            }
            env.retain(|(k, v)| {
                !names.contains(k.as_str()) && !pairs.contains(&(k.as_str(), v.as_str()))
            });
        }
        Ok(env)
    }
}

/// systemd's DefaultTimeoutStartSec / DefaultTimeoutStopSec.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(90);

impl Default for ServiceSection {
    fn default() -> Self {
        ServiceSection {
            service_type: ServiceType::Simple,
            exec_start: Vec::new(),
            exec_condition: Vec::new(),
            exec_start_pre: Vec::new(),
            exec_start_post: Vec::new(),
            exec_reload: Vec::new(),
            exec_stop: Vec::new(),
            exec_stop_post: Vec::new(),
            exec_start_line: 0,
            pid_file: None,
            guess_main_pid: true,
            restart: RestartPolicy::No,
            restart_sec: Duration::from_millis(100),
            remain_after_exit: false,
            timeout_start: Some(DEFAULT_TIMEOUT),
            timeout_stop: Some(DEFAULT_TIMEOUT),
            runtime_max: None,
            kill_mode: KillMode::ControlGroup,
            kill_signal: libc::SIGTERM,
            send_sigkill: true,
            send_sighup: false,
            success_exit_status: ExitStatusSet::default(),
            restart_prevent_exit_status: ExitStatusSet::default(),
            restart_force_exit_status: ExitStatusSet::default(),
            working_directory: None,
            environment: Vec::new(),
            environment_files: Vec::new(),
            unset_environment: Vec::new(),
            pass_environment: Vec::new(),
            notify_access: NotifyAccess::None,
            bus_name: None,
            fd_store_max: 0,
            umask: None,
            nice: None,
            limits: BTreeMap::new(),
            standard_output: StdOutput::Journal,
            standard_error: StdOutput::Inherit,
            syslog_identifier: None,
            syslog_level: 6,
            syslog_level_prefix: true,
            memory_max: None,
            cpu_quota_permyriad: None,
            tasks_max: None,
            log_rate_limit_interval: None,
            log_rate_limit_burst: None,
            exec: ExecSettings::default(),
        }
    }
}

/// Settings whose default depends on other settings, resolved after all files.
#[derive(Debug, Default)]
pub(crate) struct Explicit {
    pub service_type: bool,
    pub timeout_start: bool,
    pub notify_access: bool,
    pub standard_output: bool,
}

/// Where the directives that `finish` checks were last set, so its errors
/// can name a file and line.
#[derive(Debug, Default)]
pub(crate) struct Origins {
    pub service_type: Option<(PathBuf, usize)>,
    pub exec_start: Option<(PathBuf, usize)>,
    pub restart: Option<(PathBuf, usize)>,
}

/// What applying directives needs besides the unit.
pub(crate) struct Applier<'a> {
    pub spec: &'a SpecifierContext,
    pub explicit: Explicit,
    pub origins: Origins,
}

impl<'a> Applier<'a> {
    /// An applier with nothing applied yet.
    pub fn new(spec: &'a SpecifierContext) -> Applier<'a> {
        Applier {
            spec,
            explicit: Explicit::default(),
            origins: Origins::default(),
        }
    }
}

pub(crate) fn push_diag(
    unit: &mut Unit,
    d: &Directive,
    sev: Severity,
    kind: DiagnosticKind,
    message: String,
) {
    unit.diagnostics.push(Diagnostic {
        file: d.file.to_path_buf(),
        line: d.line,
        directive: d.key.clone(),
        severity: sev,
        kind,
        message,
        fatal: false,
    });
}

/// A bad assignment systemd 252 logs and ignores: the unit loads without it.
pub(crate) fn invalid(unit: &mut Unit, d: &Directive, message: String) {
    push_diag(unit, d, Severity::Error, DiagnosticKind::Invalid, message);
}

/// A bad assignment over which systemd 252 refuses the whole unit.
fn refused(unit: &mut Unit, d: &Directive, message: String) {
    push_diag(unit, d, Severity::Error, DiagnosticKind::Invalid, message);
    if let Some(last) = unit.diagnostics.last_mut() {
        last.fatal = true;
    }
}

/// An environment being composed in linear time: a later assignment of a
/// name replaces the value where the name first appeared, as systemd's
/// `strv_env_replace_consume()` does.
#[derive(Default)]
struct EnvBlock {
    vars: Vec<(String, String)>,
    /// Position of each name in `vars`.
    index: HashMap<String, usize>,
}

impl EnvBlock {
    fn set(&mut self, name: String, value: String) {
        match self.index.get(&name) {
            Some(&i) => self.vars[i].1 = value,
            None => {
                self.index.insert(name.clone(), self.vars.len());
                self.vars.push((name, value));
            }
        }
    }

    fn into_vec(self) -> Vec<(String, String)> {
        self.vars
    }
}

/// `env` with each name once, at its first position, with its last value.
fn env_merged(env: Vec<(String, String)>) -> Vec<(String, String)> {
    let mut names = HashSet::with_capacity(env.len());
    if env.iter().all(|(k, _)| names.insert(k.as_str())) {
        // No name repeats (the usual case): nothing to copy.
        return env;
    }
    drop(names);
    let mut block = EnvBlock::default();
    for (k, v) in env {
        block.set(k, v);
    }
    block.into_vec()
}

/// Removes repeated items, keeping the first of each, in one pass.
pub(super) fn dedup_in_order<T: std::hash::Hash + Eq + Clone>(list: &mut Vec<T>) {
    let mut seen = HashSet::with_capacity(list.len());
    list.retain(|x| seen.insert(x.clone()));
    // A loaded unit lives as long as the manager: pushes left room for
    // three more names in every list that has one.
    list.shrink_to_fit();
}

const WORDS: SplitOptions = SplitOptions {
    unquote: true,
    cunescape: true,
};

impl Applier<'_> {
    /// Expands specifiers of a value, reporting failure as an error on `d`.
    pub(super) fn spec(&self, unit: &mut Unit, d: &Directive, s: &str) -> Option<String> {
        let expanded = self.spec.expand(s, &unit.name, unit.fragment().as_deref());
        match expanded {
            Ok(v) => Some(v),
            Err(e) => {
                invalid(unit, d, format!("{e}; directive ignored"));
                None
            }
        }
    }

    /// Splits into words (quotes, escapes) and expands specifiers in each;
    /// a word whose specifiers fail is left out (systemd: "..., ignoring").
    pub(super) fn words(&self, unit: &mut Unit, d: &Directive) -> Option<Vec<String>> {
        let (ws, notes) = match split(&d.value, WORDS) {
            Ok(x) => x,
            Err(e) => {
                invalid(unit, d, format!("{e}; directive ignored"));
                return None;
            }
        };
        for e in notes.invalid_escapes {
            push_diag(
                unit,
                d,
                Severity::Warning,
                DiagnosticKind::Invalid,
                format!(
                    "invalid escape sequence '{e}' kept as written; write \\\\ for a backslash"
                ),
            );
        }
        let mut out = Vec::with_capacity(ws.len());
        for w in ws {
            if !w.contains('%') {
                // Nothing to expand: the word itself, not a copy.
                out.push(w);
                continue;
            }
            let expanded = self.spec.expand(&w, &unit.name, unit.fragment().as_deref());
            match expanded {
                Ok(v) => out.push(v),
                Err(e) => invalid(unit, d, format!("{e}; this word is ignored")),
            }
        }
        Some(out)
    }

    fn unit_list(&self, unit: &mut Unit, d: &Directive, list: ListField) {
        if d.value.is_empty() {
            *list.get(unit) = Vec::new();
            return;
        }
        let Some(words) = self.words(unit, d) else {
            return;
        };
        for w in words {
            match UnitName::parse_strict(&w) {
                // Repeats are removed once, in `finish`: a check here would
                // make a long list quadratic.
                Ok(n) => list.get(unit).push(n),
                Err(e) => invalid(unit, d, format!("{e}; this name is ignored")),
            }
        }
    }

    pub(super) fn bool_value(&self, unit: &mut Unit, d: &Directive) -> Option<bool> {
        let v = parse_bool(&d.value);
        if v.is_none() {
            invalid(
                unit,
                d,
                format!(
                    "'{}' is not a boolean (use yes or no); directive ignored",
                    d.value
                ),
            );
        }
        v
    }

    pub(super) fn time_value(
        &self,
        unit: &mut Unit,
        d: &Directive,
        timeout: bool,
    ) -> Option<Option<Duration>> {
        let r = if timeout {
            parse_timeout(&d.value)
        } else {
            parse_timespan(&d.value)
        };
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                invalid(unit, d, format!("{e}; directive ignored"));
                None
            }
        }
    }

    /// Applies one directive of a `[Unit]` section.
    pub fn apply_unit(&mut self, unit: &mut Unit, d: &Directive) {
        let key = d.key.as_str();
        let list = match key {
            "Requires" => Some(ListField::Requires),
            "Wants" => Some(ListField::Wants),
            "Requisite" => Some(ListField::Requisite),
            "BindsTo" => Some(ListField::BindsTo),
            "PartOf" => Some(ListField::PartOf),
            "Conflicts" => Some(ListField::Conflicts),
            "After" => Some(ListField::After),
            "Before" => Some(ListField::Before),
            "OnFailure" => Some(ListField::OnFailure),
            _ => None,
        };
        if let Some(l) = list {
            self.unit_list(unit, d, l);
            return;
        }
        match key {
            "Description" => {
                if let Some(v) = self.spec(unit, d, &d.value) {
                    unit.unit.description = (!v.is_empty()).then_some(v);
                }
            }
            "Documentation" => {
                if d.value.is_empty() {
                    unit.unit.documentation.clear();
                } else if let Some(ws) = self.words(unit, d) {
                    unit.unit.documentation.extend(ws);
                }
            }
            "StartLimitIntervalSec" | "StartLimitInterval" => {
                if let Some(v) = self.time_value(unit, d, false) {
                    unit.unit.start_limit_interval = v.unwrap_or(Duration::ZERO);
                }
            }
            "StartLimitBurst" => match d.value.parse::<u32>() {
                Ok(n) => unit.unit.start_limit_burst = n,
                Err(_) => invalid(
                    unit,
                    d,
                    format!("'{}' is not a count; directive ignored", d.value),
                ),
            },
            "DefaultDependencies" => {
                if let Some(b) = self.bool_value(unit, d) {
                    unit.unit.default_dependencies = b;
                }
            }
            "RefuseManualStart" => {
                if let Some(b) = self.bool_value(unit, d) {
                    unit.unit.refuse_manual_start = b;
                }
            }
            "RefuseManualStop" => {
                if let Some(b) = self.bool_value(unit, d) {
                    unit.unit.refuse_manual_stop = b;
                }
            }
            "StopWhenUnneeded" => {
                if let Some(b) = self.bool_value(unit, d) {
                    unit.unit.stop_when_unneeded = b;
                }
            }
            "CollectMode" => match d.value.as_str() {
                "inactive" => unit.unit.collect_failed = false,
                "inactive-or-failed" => unit.unit.collect_failed = true,
                other => invalid(
                    unit,
                    d,
                    format!(
                        "unknown collect mode '{other}' (use inactive or inactive-or-failed); directive ignored"
                    ),
                ),
            },
            "SuccessAction" | "FailureAction" => {
                let a = match d.value.as_str() {
                    "none" => EmergencyAction::None,
                    "exit" => EmergencyAction::Exit,
                    "exit-force" => EmergencyAction::ExitForce,
                    "reboot" | "reboot-force" | "reboot-immediate" | "poweroff"
                    | "poweroff-force" | "poweroff-immediate" | "halt" | "halt-force"
                    | "halt-immediate" | "kexec" | "kexec-force" => {
                        return invalid(
                            unit,
                            d,
                            format!(
                                "'{}' is an action of the system manager; a user manager takes none, exit or exit-force; directive ignored",
                                d.value
                            ),
                        );
                    }
                    other => {
                        return invalid(
                            unit,
                            d,
                            format!(
                                "unknown action '{other}' (use none, exit or exit-force); directive ignored"
                            ),
                        );
                    }
                };
                if key == "SuccessAction" {
                    unit.unit.success_action = a;
                } else {
                    unit.unit.failure_action = a;
                }
            }
            k if k.starts_with("Condition") || k.starts_with("Assert") => self.condition(unit, d),
            _ => self.unsupported(unit, d),
        }
    }

    fn condition(&mut self, unit: &mut Unit, d: &Directive) {
        let assert = d.key.starts_with("Assert");
        let name = d
            .key
            .strip_prefix("Condition")
            .or_else(|| d.key.strip_prefix("Assert"))
            .unwrap_or("");
        let Some(kind) = ConditionKind::from_name(name) else {
            self.unsupported(unit, d);
            return;
        };
        let list = if assert {
            &mut unit.unit.asserts
        } else {
            &mut unit.unit.conditions
        };
        // An empty assignment resets every condition (or assert) so far.
        if d.value.is_empty() {
            list.clear();
            return;
        }
        let mut v = d.value.as_str();
        let mut trigger = false;
        let mut negate = false;
        if let Some(r) = v.strip_prefix('|') {
            trigger = true;
            v = r.trim_start();
        }
        if let Some(r) = v.strip_prefix('!') {
            negate = true;
            v = r.trim_start();
        }
        let Some(value) = self.spec(unit, d, v) else {
            return;
        };
        if let Err(e) = kind.validate(&value) {
            invalid(unit, d, format!("{e}; condition ignored"));
            return;
        }
        let cond = Condition {
            kind,
            assert,
            trigger,
            negate,
            value,
            file: d.file.to_path_buf(),
            line: d.line,
        };
        if assert {
            unit.unit.asserts.push(cond);
        } else {
            unit.unit.conditions.push(cond);
        }
    }

    /// Keeps an uninterpreted directive and warns about it.
    pub fn unsupported(&mut self, unit: &mut Unit, d: &Directive) {
        if !d.key.starts_with("X-") {
            let (kind, msg) = if super::loader::is_known_systemd_directive(&d.section, &d.key) {
                (
                    DiagnosticKind::Unsupported,
                    "unsupported, ignored".to_string(),
                )
            } else {
                (
                    DiagnosticKind::Unknown,
                    // systemd's words, which users search for.
                    format!(
                        "Unknown key name '{}' in section '{}', ignoring.",
                        d.key, d.section
                    ),
                )
            };
            push_diag(unit, d, Severity::Warning, kind, msg);
        }
        unit.unsupported.push(d.clone());
    }

    /// Applies one directive of an `[Install]` section.
    pub fn apply_install(&mut self, unit: &mut Unit, d: &Directive) {
        let field = match d.key.as_str() {
            "WantedBy" => ListField::WantedBy,
            "RequiredBy" => ListField::RequiredBy,
            "Alias" => ListField::Alias,
            "Also" => ListField::Also,
            "DefaultInstance" => {
                if let Some(v) = self.spec(unit, d, &d.value) {
                    unit.install.default_instance = (!v.is_empty()).then_some(v);
                }
                return;
            }
            _ => {
                self.unsupported(unit, d);
                return;
            }
        };
        self.unit_list(unit, d, field);
    }

    /// Applies one directive of a `[Service]` section.
    pub fn apply_service(&mut self, unit: &mut Unit, d: &Directive) {
        let key = d.key.as_str();
        if let Some(which) = ExecField::from_key(key) {
            self.exec(unit, d, which);
            return;
        }
        if let Some(res) = ResourceLimit::from_directive(key) {
            match parse_rlimit(res, &d.value) {
                Ok(l) => {
                    svc(unit).limits.insert(res, l);
                }
                Err(e) => invalid(unit, d, format!("{e}; directive ignored")),
            }
            return;
        }
        match key {
            "Type" => {
                let t = match d.value.as_str() {
                    "simple" => ServiceType::Simple,
                    "exec" => ServiceType::Exec,
                    "forking" => ServiceType::Forking,
                    "oneshot" => ServiceType::Oneshot,
                    "notify" => ServiceType::Notify,
                    "dbus" => ServiceType::Dbus,
                    "idle" => ServiceType::Idle,
                    other => {
                        return invalid(
                            unit,
                            d,
                            format!(
                                "unknown service type '{other}' (use simple, exec, forking, oneshot, notify, dbus or idle); directive ignored"
                            ),
                        );
                    }
                };
                svc(unit).service_type = t;
                self.explicit.service_type = true;
                self.origins.service_type = Some((d.file.to_path_buf(), d.line));
            }
            "PIDFile" => {
                if d.value.is_empty() {
                    svc(unit).pid_file = None;
                } else if let Some(p) = self.spec(unit, d, &d.value) {
                    // systemd makes a relative PIDFile= relative to /run (%t for users).
                    let path = if p.starts_with('/') {
                        PathBuf::from(p)
                    } else {
                        self.spec.runtime_dir.join(p)
                    };
                    svc(unit).pid_file = Some(path);
                }
            }
            "Restart" => {
                let r = match d.value.as_str() {
                    "no" => RestartPolicy::No,
                    "on-success" => RestartPolicy::OnSuccess,
                    "on-failure" => RestartPolicy::OnFailure,
                    "on-abnormal" => RestartPolicy::OnAbnormal,
                    "on-watchdog" => RestartPolicy::OnWatchdog,
                    "on-abort" => RestartPolicy::OnAbort,
                    "always" => RestartPolicy::Always,
                    other => {
                        return invalid(
                            unit,
                            d,
                            format!(
                                "unknown restart policy '{other}' (use no, on-success, on-failure, on-abnormal, on-watchdog, on-abort or always); directive ignored"
                            ),
                        );
                    }
                };
                svc(unit).restart = r;
                self.origins.restart = Some((d.file.to_path_buf(), d.line));
            }
            "RestartSec" => {
                if let Some(v) = self.time_value(unit, d, false) {
                    svc(unit).restart_sec = v.unwrap_or(Duration::MAX);
                }
            }
            "RemainAfterExit" => {
                if let Some(b) = self.bool_value(unit, d) {
                    svc(unit).remain_after_exit = b;
                }
            }
            "GuessMainPID" => {
                if let Some(b) = self.bool_value(unit, d) {
                    svc(unit).guess_main_pid = b;
                }
            }
            "TimeoutStartSec" => {
                if let Some(v) = self.time_value(unit, d, true) {
                    svc(unit).timeout_start = v;
                    self.explicit.timeout_start = true;
                }
            }
            "TimeoutStopSec" => {
                if let Some(v) = self.time_value(unit, d, true) {
                    svc(unit).timeout_stop = v;
                }
            }
            "TimeoutSec" => {
                if let Some(v) = self.time_value(unit, d, true) {
                    let s = svc(unit);
                    s.timeout_start = v;
                    s.timeout_stop = v;
                    self.explicit.timeout_start = true;
                }
            }
            "RuntimeMaxSec" => {
                if let Some(v) = self.time_value(unit, d, false) {
                    svc(unit).runtime_max = v;
                }
            }
            "KillMode" => {
                let m = match d.value.as_str() {
                    "control-group" => KillMode::ControlGroup,
                    "mixed" => KillMode::Mixed,
                    "process" => KillMode::Process,
                    "none" => {
                        // corral always empties a unit's cgroup on stop, so it cannot honour none.
                        push_diag(
                            unit,
                            d,
                            Severity::Warning,
                            DiagnosticKind::Unsupported,
                            "KillMode=none is unsupported, ignored: corral stops a unit by emptying its cgroup (control-group)".to_string(),
                        );
                        KillMode::ControlGroup
                    }
                    other => {
                        return invalid(
                            unit,
                            d,
                            format!(
                                "unknown kill mode '{other}' (use control-group, mixed or process); directive ignored"
                            ),
                        );
                    }
                };
                svc(unit).kill_mode = m;
            }
            "KillSignal" => match parse_signal(&d.value) {
                Some(s) => svc(unit).kill_signal = s,
                None => invalid(
                    unit,
                    d,
                    format!(
                        "'{}' is not a signal (e.g. SIGTERM or 15); directive ignored",
                        d.value
                    ),
                ),
            },
            "SendSIGKILL" => {
                if let Some(b) = self.bool_value(unit, d) {
                    svc(unit).send_sigkill = b;
                }
            }
            "SendSIGHUP" => {
                if let Some(b) = self.bool_value(unit, d) {
                    svc(unit).send_sighup = b;
                }
            }
            "SuccessExitStatus" | "RestartPreventExitStatus" | "RestartForceExitStatus" => {
                self.exit_status(unit, d)
            }
            "WorkingDirectory" => self.working_directory(unit, d),
            "Environment" => {
                if d.value.is_empty() {
                    svc(unit).environment.clear();
                    return;
                }
                let Some(words) = self.words(unit, d) else {
                    return;
                };
                for mut w in words {
                    match w.split_once('=') {
                        // Merged by name once, in `finish` (linear); the
                        // word's own buffer becomes the name.
                        Some((k, _)) if is_env_name(k) => {
                            let value = w[k.len() + 1..].to_string();
                            w.truncate(k.len());
                            svc(unit).environment.push((w, value))
                        }
                        _ => invalid(
                            unit,
                            d,
                            format!("'{w}' is not a NAME=value assignment; it is ignored"),
                        ),
                    }
                }
            }
            "EnvironmentFile" => {
                if d.value.is_empty() {
                    svc(unit).environment_files.clear();
                    return;
                }
                let (optional, raw) = match d.value.strip_prefix('-') {
                    Some(r) => (true, r),
                    None => (false, d.value.as_str()),
                };
                let Some(p) = self.spec(unit, d, raw) else {
                    return;
                };
                if !p.starts_with('/') {
                    return invalid(
                        unit,
                        d,
                        format!("'{p}' is not an absolute path; directive ignored"),
                    );
                }
                svc(unit).environment_files.push(EnvironmentFile {
                    path: PathBuf::from(p),
                    optional,
                });
            }
            "UnsetEnvironment" | "PassEnvironment" => {
                let pass = key == "PassEnvironment";
                if d.value.is_empty() {
                    let s = svc(unit);
                    if pass {
                        s.pass_environment.clear();
                    } else {
                        s.unset_environment.clear();
                    }
                    return;
                }
                let Some(words) = self.words(unit, d) else {
                    return;
                };
                for w in words {
                    let name_ok = match w.split_once('=') {
                        Some((k, _)) => !pass && is_env_name(k),
                        None => is_env_name(&w),
                    };
                    if !name_ok {
                        invalid(
                            unit,
                            d,
                            format!("'{w}' is not a variable name; it is ignored"),
                        );
                        continue;
                    }
                    let s = svc(unit);
                    // Repeats are removed in `finish`.
                    if pass {
                        s.pass_environment.push(w);
                    } else {
                        s.unset_environment.push(w);
                    }
                }
            }
            "NotifyAccess" => {
                let n = match d.value.as_str() {
                    "none" => NotifyAccess::None,
                    "main" => NotifyAccess::Main,
                    "exec" => NotifyAccess::Exec,
                    "all" => NotifyAccess::All,
                    other => {
                        return invalid(
                            unit,
                            d,
                            format!(
                                "unknown notify access '{other}' (use none, main, exec or all); directive ignored"
                            ),
                        );
                    }
                };
                svc(unit).notify_access = n;
                self.explicit.notify_access = true;
            }
            "BusName" => {
                if let Some(v) = self.spec(unit, d, &d.value) {
                    svc(unit).bus_name = (!v.is_empty()).then_some(v);
                }
            }
            "UMask" => match parse_umask(&d.value) {
                Some(m) => svc(unit).umask = Some(m),
                None => invalid(
                    unit,
                    d,
                    format!(
                        "'{}' is not an octal mask such as 0022; directive ignored",
                        d.value
                    ),
                ),
            },
            "Nice" => match d.value.parse::<i32>() {
                Ok(n) if (-20..=19).contains(&n) => svc(unit).nice = Some(n),
                _ => invalid(
                    unit,
                    d,
                    format!(
                        "'{}' is not a nice level between -20 and 19; directive ignored",
                        d.value
                    ),
                ),
            },
            "StandardOutput" | "StandardError" => {
                let Some(v) = self.spec(unit, d, &d.value) else {
                    return;
                };
                match parse_std_output(&v) {
                    Ok(o) => {
                        if matches!(o, StdOutput::Fd(_)) {
                            push_diag(
                                unit,
                                d,
                                Severity::Warning,
                                DiagnosticKind::Unsupported,
                                format!(
                                    "'{v}' is unsupported (named fds are not passed as output); output goes to the journal"
                                ),
                            );
                        }
                        let s = svc(unit);
                        if key == "StandardOutput" {
                            self.explicit.standard_output = true;
                            s.standard_output = o;
                        } else {
                            s.standard_error = o;
                        }
                    }
                    Err(e) => invalid(unit, d, format!("{e}; directive ignored")),
                }
            }
            "SyslogIdentifier" => {
                if let Some(v) = self.spec(unit, d, &d.value) {
                    svc(unit).syslog_identifier = (!v.is_empty()).then_some(v);
                }
            }
            "SyslogLevel" => match parse_syslog_level(&d.value) {
                Some(l) => svc(unit).syslog_level = l,
                None => invalid(
                    unit,
                    d,
                    format!(
                        "'{}' is not a log level (emerg, alert, crit, err, warning, notice, info, debug); directive ignored",
                        d.value
                    ),
                ),
            },
            "SyslogLevelPrefix" => {
                if let Some(b) = self.bool_value(unit, d) {
                    svc(unit).syslog_level_prefix = b;
                }
            }
            "MemoryMax" => {
                let v = d.value.trim();
                let m = if v == "infinity" {
                    Some(MemoryLimit::Infinity)
                } else if v.ends_with(['%', '‰', '‱']) {
                    parse_percent_permyriad(v)
                        .filter(|&p| p <= 10_000)
                        .map(MemoryLimit::Permyriad)
                } else {
                    parse_size(v).ok().flatten().map(MemoryLimit::Bytes)
                };
                match m {
                    Some(m) => svc(unit).memory_max = Some(m),
                    None if v.is_empty() => svc(unit).memory_max = None,
                    None => invalid(
                        unit,
                        d,
                        format!(
                            "'{v}' is not a memory size (e.g. 512M, 50%, infinity); directive ignored"
                        ),
                    ),
                }
            }
            "CPUQuota" => {
                if d.value.is_empty() {
                    svc(unit).cpu_quota_permyriad = None;
                    return;
                }
                match parse_percent_permyriad(&d.value).filter(|&p| p > 0) {
                    Some(p) => svc(unit).cpu_quota_permyriad = Some(p),
                    None => invalid(
                        unit,
                        d,
                        format!(
                            "'{}' is not a positive percentage such as 20% or 200%; directive ignored",
                            d.value
                        ),
                    ),
                }
            }
            "TasksMax" => {
                let v = d.value.trim();
                let t = if v == "infinity" {
                    Some(TasksMax::Infinity)
                } else if v.ends_with(['%', '‰', '‱']) {
                    parse_percent_permyriad(v)
                        .filter(|&p| p > 0 && p <= 10_000)
                        .map(TasksMax::Permyriad)
                } else {
                    v.parse::<u64>()
                        .ok()
                        .filter(|&n| n > 0)
                        .map(TasksMax::Count)
                };
                match t {
                    Some(t) => svc(unit).tasks_max = Some(t),
                    None if v.is_empty() => svc(unit).tasks_max = None,
                    None => invalid(
                        unit,
                        d,
                        format!(
                            "'{v}' is not a task count (e.g. 100, 50%, infinity); directive ignored"
                        ),
                    ),
                }
            }
            "LogRateLimitIntervalSec" => {
                if let Some(v) = self.time_value(unit, d, false) {
                    svc(unit).log_rate_limit_interval = Some(v.unwrap_or(Duration::MAX));
                }
            }
            "FileDescriptorStoreMax" => match d.value.parse::<u32>() {
                Ok(n) => svc(unit).fd_store_max = n,
                Err(_) => invalid(
                    unit,
                    d,
                    format!("'{}' is not a count; directive ignored", d.value),
                ),
            },
            "LogRateLimitBurst" => match d.value.parse::<u32>() {
                Ok(n) => svc(unit).log_rate_limit_burst = Some(n),
                Err(_) => invalid(
                    unit,
                    d,
                    format!("'{}' is not a count; directive ignored", d.value),
                ),
            },
            // The old names of [Unit] settings, still accepted in [Service].
            "StartLimitInterval" | "StartLimitIntervalSec" | "StartLimitBurst" => {
                self.apply_unit(unit, d)
            }
            _ => {
                if !self.apply_execution(unit, d) {
                    self.unsupported(unit, d)
                }
            }
        }
    }

    fn exec(&mut self, unit: &mut Unit, d: &Directive, which: ExecField) {
        if d.value.is_empty() {
            which.get(svc(unit)).clear();
            return;
        }
        let commands = self.exec_commands(unit, d);
        if which == ExecField::Start && !commands.is_empty() {
            svc(unit).exec_start_line = d.line;
            self.origins.exec_start = Some((d.file.to_path_buf(), d.line));
        }
        which.get(svc(unit)).extend(commands);
    }

    /// Parses a non-empty Exec value of any section into commands that
    /// carry their origin, reporting warnings and errors on `d`.
    pub(crate) fn exec_commands(&mut self, unit: &mut Unit, d: &Directive) -> Vec<ExecCommand> {
        let name = unit.name.clone();
        let fragment = unit.fragment();
        let spec = self.spec;
        let mut expand = |s: &str| {
            spec.expand(s, &name, fragment.as_deref())
                .map_err(|e| e.to_string())
        };
        let parsed = parse_exec(&d.value, &mut expand);
        for w in parsed.warnings {
            push_diag(unit, d, Severity::Warning, DiagnosticKind::Invalid, w);
        }
        let origin = super::exec::ExecOrigin {
            unit: unit.name.to_string(),
            directive: d.key.clone(),
            line: d.line,
        };
        match parsed.error {
            None => {}
            Some(e) if e.fatal => refused(
                unit,
                d,
                format!(
                    "{}; systemd refuses to load a unit with this command (with the '-' prefix it would only be ignored)",
                    e.message
                ),
            ),
            Some(e) => invalid(unit, d, format!("{}; command ignored", e.message)),
        }
        parsed
            .commands
            .into_iter()
            .map(|mut c| {
                c.origin = origin.clone();
                c
            })
            .collect()
    }

    fn exit_status(&mut self, unit: &mut Unit, d: &Directive) {
        let set = match d.key.as_str() {
            "SuccessExitStatus" => &mut svc(unit).success_exit_status,
            "RestartPreventExitStatus" => &mut svc(unit).restart_prevent_exit_status,
            _ => &mut svc(unit).restart_force_exit_status,
        };
        if d.value.is_empty() {
            *set = ExitStatusSet::default();
            return;
        }
        let mut bad = Vec::new();
        for w in d.value.split_whitespace() {
            if let Some(c) = parse_exit_status(w) {
                if !set.codes.contains(&c) {
                    set.codes.push(c);
                }
            } else if let Some(s) = parse_signal(w) {
                // As systemd 252: an exit status first, then a signal, with
                // or without "SIG" (KILL, SIGKILL).
                if !set.signals.contains(&s) {
                    set.signals.push(s);
                }
            } else {
                bad.push(w.to_string());
            }
        }
        for w in bad {
            invalid(
                unit,
                d,
                format!(
                    "'{w}' is neither an exit status (0-255 or a name like DATAERR) nor a signal (SIGKILL or KILL); it is ignored"
                ),
            );
        }
    }

    fn working_directory(&mut self, unit: &mut Unit, d: &Directive) {
        if d.value.is_empty() {
            svc(unit).working_directory = None;
            return;
        }
        let (missing_ok, raw) = match d.value.strip_prefix('-') {
            Some(r) => (true, r),
            None => (false, d.value.as_str()),
        };
        // systemd 252 refuses the unit over a bad WorkingDirectory= unless
        // the `-` prefix says a missing directory is fine.
        let report = |unit: &mut Unit, message: String| {
            if missing_ok {
                invalid(unit, d, format!("{message}; directive ignored"));
            } else {
                refused(
                    unit,
                    d,
                    format!(
                        "{message}; systemd refuses to load the unit (write -PATH to have it ignored)"
                    ),
                );
            }
        };
        let path = if raw == "~" {
            self.spec.home.clone()
        } else {
            let fragment = unit.fragment();
            let p = match self.spec.expand(raw, &unit.name, fragment.as_deref()) {
                Ok(p) => p,
                Err(e) => return report(unit, e.to_string()),
            };
            if !p.starts_with('/') {
                return report(unit, format!("'{p}' must be an absolute path or ~"));
            }
            PathBuf::from(p)
        };
        svc(unit).working_directory = Some(WorkingDirectory { path, missing_ok });
    }

    /// Resolves defaults that depend on other settings and checks the
    /// combinations systemd refuses.
    pub fn finish(&mut self, unit: &mut Unit) {
        // The default `[Unit]` has no names to dedup, and a change would
        // give the unit a copy of its own.
        let default_unit = unit.unit.is_default();
        let default_install = unit.install.is_default();
        for field in ListField::ALL {
            let default = if field.in_install() {
                default_install
            } else {
                default_unit
            };
            if !default {
                dedup_in_order(field.get(unit));
            }
        }
        if !default_install {
            unit.install.intern();
        }
        self.finish_timer(unit);
        if let Some(t) = &mut unit.timer {
            t.intern();
        }
        self.finish_socket(unit);
        if unit.service.is_none() {
            return;
        }
        // Errors about the whole unit name the fragment (or the directive
        // that decided, where there is one): systemd 252 refuses such units.
        let file = unit
            .fragment()
            .or_else(|| unit.dropins.first().cloned())
            .unwrap_or_else(|| PathBuf::from(unit.name.as_str()));
        let Some(s) = unit.service.as_mut() else {
            return;
        };
        s.environment = env_merged(std::mem::take(&mut s.environment));
        dedup_in_order(&mut s.pass_environment);
        dedup_in_order(&mut s.unset_environment);
        if !self.explicit.service_type {
            // systemd.service(5): oneshot without ExecStart=, dbus with BusName=.
            if s.exec_start.is_empty() {
                s.service_type = ServiceType::Oneshot;
            } else if s.bus_name.is_some() {
                s.service_type = ServiceType::Dbus;
            }
        }
        // systemd.exec(5): with StandardInput=socket, StandardOutput=
        // defaults to inherit (the connection).
        if s.exec.stdin() == crate::unit::execution::StdInput::Socket
            && !self.explicit.standard_output
        {
            s.standard_output = StdOutput::Inherit;
        }
        if s.service_type == ServiceType::Oneshot && !self.explicit.timeout_start {
            s.timeout_start = None;
        }
        if !self.explicit.notify_access && s.service_type == ServiceType::Notify {
            s.notify_access = NotifyAccess::Main;
        }
        let whole = || (file.clone(), 0);
        let at = |o: &Option<(PathBuf, usize)>| o.clone().unwrap_or_else(whole);
        let mut problems: Vec<((PathBuf, usize), &str, String)> = Vec::new();
        if s.exec_start.len() > 1 && s.service_type != ServiceType::Oneshot {
            problems.push((
                at(&self.origins.exec_start),
                "ExecStart",
                "more than one ExecStart= is only allowed for Type=oneshot; set Type=oneshot or use ExecStartPre=".to_string(),
            ));
        }
        if s.exec_start.is_empty() && s.service_type != ServiceType::Oneshot {
            problems.push((
                at(&self.origins.service_type),
                "ExecStart",
                format!(
                    "a Type={} service needs an ExecStart=; add the command to run",
                    format!("{:?}", s.service_type).to_lowercase()
                ),
            ));
        } else if s.exec_start.is_empty()
            && s.exec_stop.is_empty()
            && unit.unit.success_action == EmergencyAction::None
        {
            // systemd 252's service_verify(): a oneshot may have no command at
            // all when SuccessAction= says what it is for (systemd-exit.service).
            problems.push((
                whole(),
                "ExecStart",
                "the service has no ExecStart= (nor ExecStop= or SuccessAction=); add the command to run"
                    .to_string(),
            ));
        }
        if s.service_type == ServiceType::Dbus && s.bus_name.is_none() {
            problems.push((
                at(&self.origins.service_type),
                "BusName",
                "Type=dbus needs BusName=; add the bus name the service acquires".to_string(),
            ));
        }
        if s.service_type == ServiceType::Oneshot
            && matches!(s.restart, RestartPolicy::Always | RestartPolicy::OnSuccess)
        {
            problems.push((
                at(&self.origins.restart),
                "Restart",
                "Restart=always and Restart=on-success are not allowed for Type=oneshot; use on-failure".to_string(),
            ));
        }
        for ((file, line), directive, message) in problems {
            unit.diagnostics.push(Diagnostic {
                file,
                line,
                directive: directive.to_string(),
                severity: Severity::Error,
                kind: DiagnosticKind::Invalid,
                message,
                fatal: true,
            });
        }
    }
}

pub(super) fn svc(unit: &mut Unit) -> &mut ServiceSection {
    unit.service.get_or_insert_with(Box::default)
}

#[derive(Clone, Copy)]
enum ListField {
    Requires,
    Wants,
    Requisite,
    BindsTo,
    PartOf,
    Conflicts,
    After,
    Before,
    OnFailure,
    WantedBy,
    RequiredBy,
    Alias,
    Also,
}

impl ListField {
    const ALL: [ListField; 13] = [
        ListField::Requires,
        ListField::Wants,
        ListField::Requisite,
        ListField::BindsTo,
        ListField::PartOf,
        ListField::Conflicts,
        ListField::After,
        ListField::Before,
        ListField::OnFailure,
        ListField::WantedBy,
        ListField::RequiredBy,
        ListField::Alias,
        ListField::Also,
    ];

    /// A list of `[Install]`, not of `[Unit]`.
    fn in_install(self) -> bool {
        matches!(
            self,
            ListField::WantedBy | ListField::RequiredBy | ListField::Alias | ListField::Also
        )
    }

    fn get(self, u: &mut Unit) -> &mut Vec<UnitName> {
        match self {
            ListField::Requires => &mut u.unit.requires,
            ListField::Wants => &mut u.unit.wants,
            ListField::Requisite => &mut u.unit.requisite,
            ListField::BindsTo => &mut u.unit.binds_to,
            ListField::PartOf => &mut u.unit.part_of,
            ListField::Conflicts => &mut u.unit.conflicts,
            ListField::After => &mut u.unit.after,
            ListField::Before => &mut u.unit.before,
            ListField::OnFailure => &mut u.unit.on_failure,
            ListField::WantedBy => &mut u.install.wanted_by,
            ListField::RequiredBy => &mut u.install.required_by,
            ListField::Alias => &mut u.install.alias,
            ListField::Also => &mut u.install.also,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum ExecField {
    Start,
    Condition,
    StartPre,
    StartPost,
    Reload,
    Stop,
    StopPost,
}

impl ExecField {
    fn from_key(k: &str) -> Option<ExecField> {
        Some(match k {
            "ExecStart" => ExecField::Start,
            "ExecCondition" => ExecField::Condition,
            "ExecStartPre" => ExecField::StartPre,
            "ExecStartPost" => ExecField::StartPost,
            "ExecReload" => ExecField::Reload,
            "ExecStop" => ExecField::Stop,
            "ExecStopPost" => ExecField::StopPost,
            _ => return None,
        })
    }

    fn get(self, s: &mut ServiceSection) -> &mut Vec<ExecCommand> {
        match self {
            ExecField::Start => &mut s.exec_start,
            ExecField::Condition => &mut s.exec_condition,
            ExecField::StartPre => &mut s.exec_start_pre,
            ExecField::StartPost => &mut s.exec_start_post,
            ExecField::Reload => &mut s.exec_reload,
            ExecField::Stop => &mut s.exec_stop,
            ExecField::StopPost => &mut s.exec_stop_post,
        }
    }
}

/// Parses `StandardOutput=`/`StandardError=` values.
pub fn parse_std_output(v: &str) -> Result<StdOutput, String> {
    let path = |p: &str| -> Result<PathBuf, String> {
        if p.starts_with('/') {
            Ok(PathBuf::from(p))
        } else {
            Err(format!("'{p}' is not an absolute path"))
        }
    };
    Ok(match v {
        "inherit" => StdOutput::Inherit,
        "null" => StdOutput::Null,
        "tty" => StdOutput::Tty,
        // kmsg and syslog have no separate sink here: the journal is corral's only log.
        "journal" | "syslog" | "kmsg" => StdOutput::Journal,
        "journal+console" | "syslog+console" | "kmsg+console" => StdOutput::JournalAndConsole,
        "socket" => StdOutput::Socket,
        _ => {
            if let Some(p) = v.strip_prefix("file:") {
                StdOutput::File(path(p)?)
            } else if let Some(p) = v.strip_prefix("append:") {
                StdOutput::Append(path(p)?)
            } else if let Some(p) = v.strip_prefix("truncate:") {
                StdOutput::Truncate(path(p)?)
            } else if let Some(n) = v.strip_prefix("fd:") {
                StdOutput::Fd(n.to_string())
            } else if v.is_empty() {
                return Err("empty output target".to_string());
            } else {
                return Err(format!(
                    "unknown output '{v}' (use inherit, null, tty, journal, journal+console, file:PATH, append:PATH or truncate:PATH)"
                ));
            }
        }
    })
}

/// Parses a syslog level name or number.
pub fn parse_syslog_level(v: &str) -> Option<u8> {
    const LEVELS: [&str; 8] = [
        "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug",
    ];
    if let Ok(n) = v.parse::<u8>() {
        return (n <= 7).then_some(n);
    }
    LEVELS.iter().position(|l| *l == v).map(|i| i as u8)
}

/// Parses a `Limit*=` value: `N`, `soft:hard`, `infinity`, with the units of
/// the resource (sizes for bytes, time spans for CPU and RTTIME).
pub fn parse_rlimit(res: ResourceLimit, v: &str) -> Result<RLimit, String> {
    let one = |s: &str| -> Result<LimitValue, String> {
        let s = s.trim();
        if s == "infinity" {
            return Ok(None);
        }
        match res {
            ResourceLimit::Cpu => parse_timespan(s)
                .map(|d| d.map(|d| d.as_secs() + u64::from(d.subsec_nanos() > 0)))
                .map_err(|e| format!("LimitCPU: {e}")),
            ResourceLimit::Rttime => parse_timespan_with(s, 1.0)
                .map(|d| d.map(|d| d.as_micros() as u64))
                .map_err(|e| format!("LimitRTTIME: {e}")),
            ResourceLimit::Nofile
            | ResourceLimit::Nproc
            | ResourceLimit::Locks
            | ResourceLimit::Sigpending
            | ResourceLimit::Rtprio => s
                .parse::<u64>()
                .map(Some)
                .map_err(|_| format!("'{s}' is not a count or infinity")),
            ResourceLimit::Nice => {
                // A signed value is a nice level (-20..19), mapped to RLIMIT_NICE's 40..1.
                if s.starts_with('-') || s.starts_with('+') {
                    let n: i64 = s
                        .parse()
                        .map_err(|_| format!("'{s}' is not a nice level"))?;
                    if !(-20..=19).contains(&n) {
                        return Err(format!("nice level {n} is outside -20..19"));
                    }
                    Ok(Some((20 - n) as u64))
                } else {
                    let n: u64 = s.parse().map_err(|_| format!("'{s}' is not a number"))?;
                    if n > 40 {
                        return Err(format!("LimitNICE={n} is above 40"));
                    }
                    Ok(Some(n))
                }
            }
            _ => parse_size(s),
        }
    };
    if v.trim().is_empty() {
        return Err("empty limit".to_string());
    }
    let (soft, hard) = match v.split_once(':') {
        Some((a, b)) => (one(a)?, one(b)?),
        None => {
            let x = one(v)?;
            (x, x)
        }
    };
    if let (Some(s), Some(h)) = (soft, hard)
        && s > h
    {
        return Err(format!("soft limit {s} is above hard limit {h}"));
    }
    if let (None, Some(_)) = (soft, hard) {
        return Err("an infinite soft limit above a finite hard limit".to_string());
    }
    Ok(RLimit { soft, hard })
}
