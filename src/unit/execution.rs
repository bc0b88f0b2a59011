//! The process-environment directives of systemd.exec(5) beyond the basics:
//! managed directories, credentials, standard input, `ExecSearchPath=`,
//! `IgnoreSIGPIPE=`, `NoNewPrivileges=` and the scheduling knobs (`CPUAffinity=`,
//! `IOScheduling*=`, `OOMScoreAdjust=`, `CPUScheduling*=`,
//! `TimerSlackNSec=`). Paths are resolved at load time for a user manager
//! (below `$XDG_RUNTIME_DIR`, `$XDG_CONFIG_HOME`, ...); the supervisor
//! creates them (`supervisor::directories`, `supervisor::credentials`) and
//! the spawner applies the rest between fork and exec.

use std::path::{Path, PathBuf};

use super::model::{Applier, Unit, invalid, push_diag, svc};
use super::syntax::Directive;
use super::values::{parse_bool, parse_timespan};
use super::words::{Unescaped, cunescape_one};
use super::{DiagnosticKind, Severity};

/// The five managed directory kinds of systemd.exec(5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DirectoryKind {
    /// `RuntimeDirectory=`, below `$XDG_RUNTIME_DIR`; removed at stop.
    Runtime,
    /// `StateDirectory=`, below `$XDG_CONFIG_HOME` (as systemd 252 documents).
    State,
    /// `CacheDirectory=`, below `$XDG_CACHE_HOME`.
    Cache,
    /// `LogsDirectory=`, below `$XDG_CONFIG_HOME/log`.
    Logs,
    /// `ConfigurationDirectory=`, below `$XDG_CONFIG_HOME`.
    Configuration,
}

impl DirectoryKind {
    /// Every kind, in the order systemd creates them.
    pub const ALL: [DirectoryKind; 5] = [
        DirectoryKind::Runtime,
        DirectoryKind::State,
        DirectoryKind::Cache,
        DirectoryKind::Logs,
        DirectoryKind::Configuration,
    ];

    /// The directive's name without `=` (`RuntimeDirectory`).
    pub fn directive(self) -> &'static str {
        match self {
            DirectoryKind::Runtime => "RuntimeDirectory",
            DirectoryKind::State => "StateDirectory",
            DirectoryKind::Cache => "CacheDirectory",
            DirectoryKind::Logs => "LogsDirectory",
            DirectoryKind::Configuration => "ConfigurationDirectory",
        }
    }

    /// The variable that lists the directories (`RUNTIME_DIRECTORY`).
    pub fn env_var(self) -> &'static str {
        match self {
            DirectoryKind::Runtime => "RUNTIME_DIRECTORY",
            DirectoryKind::State => "STATE_DIRECTORY",
            DirectoryKind::Cache => "CACHE_DIRECTORY",
            DirectoryKind::Logs => "LOGS_DIRECTORY",
            DirectoryKind::Configuration => "CONFIGURATION_DIRECTORY",
        }
    }

    /// systemd's exit status when the directory cannot be made (233, 238..241).
    pub fn exit_status(self) -> u8 {
        match self {
            DirectoryKind::Runtime => 233,
            DirectoryKind::State => 238,
            DirectoryKind::Cache => 239,
            DirectoryKind::Logs => 240,
            DirectoryKind::Configuration => 241,
        }
    }

    fn index(self) -> usize {
        self as usize
    }

    fn from_directive(key: &str) -> Option<(DirectoryKind, bool)> {
        DirectoryKind::ALL.into_iter().find_map(|k| {
            let rest = key.strip_prefix(k.directive())?;
            match rest {
                "" => Some((k, false)),
                "Mode" => Some((k, true)),
                _ => None,
            }
        })
    }
}

/// One directory of a `*Directory=` list, with the symlinks to it
/// (`RuntimeDirectory=foo:bar` makes `bar` a link to `foo`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ManagedDirectory {
    /// The directory, absolute.
    pub path: PathBuf,
    /// Symlinks to create to it, absolute.
    pub links: Vec<PathBuf>,
}

/// The directories of one kind and their mode.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DirectorySet {
    /// The directories, in the order written.
    pub dirs: Vec<ManagedDirectory>,
    /// `*DirectoryMode=`; default 0755.
    pub mode: u32,
}

impl Default for DirectorySet {
    fn default() -> Self {
        DirectorySet {
            dirs: Vec::new(),
            mode: 0o755,
        }
    }
}

/// `RuntimeDirectoryPreserve=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum RuntimePreserve {
    /// Removed whenever the service stops.
    #[default]
    No,
    /// Kept.
    Yes,
    /// Kept across restarts, removed at a stop.
    Restart,
}

/// A credential of `SetCredential=`/`LoadCredential=`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CredentialSource {
    /// `SetCredential=ID:VALUE`: the bytes themselves (a fallback when a
    /// `LoadCredential=` of the same ID cannot be read).
    Data(Vec<u8>),
    /// `LoadCredential=ID:PATH`: an absolute path (a file, or a directory
    /// whose files become `ID_NAME`), or a name looked up in the manager's
    /// own `$CREDENTIALS_DIRECTORY` and the credstore directories.
    Load(String),
}

/// One credential.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Credential {
    /// Its ID: the file name below `$CREDENTIALS_DIRECTORY`.
    pub id: String,
    /// Where the data comes from.
    pub source: CredentialSource,
}

/// `StandardInput=`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum StdInput {
    /// /dev/null.
    Null,
    /// `StandardInputText=`/`StandardInputData=`.
    Data,
    /// `file:PATH`.
    File(PathBuf),
    /// `socket`: the connection of an `Accept=yes` socket.
    Socket,
}

/// `CPUSchedulingPolicy=` and friends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CpuScheduling {
    /// `SCHED_OTHER`, `SCHED_FIFO`, ...
    pub policy: i32,
    /// `CPUSchedulingPriority=` (clamped to the policy's range at load).
    pub priority: i32,
    /// `CPUSchedulingResetOnFork=`.
    pub reset_on_fork: bool,
}

/// The settings of this module, one field of [`super::model::ServiceSection`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecSettings {
    /// `IgnoreSIGPIPE=`; default yes.
    pub ignore_sigpipe: bool,
    /// `RuntimeDirectory=` ... `ConfigurationDirectory=`, indexed by [`DirectoryKind`].
    pub directories: [DirectorySet; 5],
    /// `RuntimeDirectoryPreserve=`.
    pub runtime_preserve: RuntimePreserve,
    /// `ExecSearchPath=`: where bare program names are looked up, and `PATH`
    /// unless the unit sets one.
    pub exec_search_path: Vec<PathBuf>,
    /// `SetCredential=` and `LoadCredential=`, in order.
    pub credentials: Vec<Credential>,
    /// `$CREDENTIALS_DIRECTORY` (`%d`): `%t/credentials/UNIT`.
    pub credentials_dir: Option<PathBuf>,
    /// `StandardInput=` as written (`None`: data when there is data, else null).
    pub standard_input: Option<StdInput>,
    /// `StandardInputText=`/`StandardInputData=`, joined in order.
    pub stdin_data: Vec<u8>,
    /// `CPUAffinity=`: the CPUs.
    pub cpu_affinity: Option<Vec<u32>>,
    /// `IOSchedulingClass=`/`IOSchedulingPriority=`: (class, level).
    pub io_priority: Option<(u8, u8)>,
    /// `OOMScoreAdjust=`.
    pub oom_score_adjust: Option<i32>,
    /// `CPUSchedulingPolicy=`/`CPUSchedulingPriority=`/`CPUSchedulingResetOnFork=`.
    pub cpu_scheduling: Option<CpuScheduling>,
    /// `TimerSlackNSec=`.
    pub timer_slack_nsec: Option<u64>,
    /// `NoNewPrivileges=`; default no. Only as written: the seccomp-based
    /// directives that imply it in systemd are not applied (see docs/UNITS.md).
    pub no_new_privileges: bool,
    /// `NonBlocking=`: O_NONBLOCK on the socket-activation fds the service
    /// gets (not its fd store's); default no.
    pub non_blocking: bool,
}

impl Default for ExecSettings {
    fn default() -> Self {
        ExecSettings {
            ignore_sigpipe: true,
            directories: Default::default(),
            runtime_preserve: RuntimePreserve::No,
            exec_search_path: Vec::new(),
            credentials: Vec::new(),
            credentials_dir: None,
            standard_input: None,
            stdin_data: Vec::new(),
            cpu_affinity: None,
            io_priority: None,
            oom_score_adjust: None,
            cpu_scheduling: None,
            timer_slack_nsec: None,
            no_new_privileges: false,
            non_blocking: false,
        }
    }
}

impl ExecSettings {
    /// The directories of `kind`.
    pub fn directories(&self, kind: DirectoryKind) -> &DirectorySet {
        &self.directories[kind.index()]
    }

    /// Where standard input comes from: as written, else data when
    /// `StandardInputText=`/`StandardInputData=` gave some, else /dev/null.
    pub fn stdin(&self) -> StdInput {
        match &self.standard_input {
            Some(s) => s.clone(),
            None if !self.stdin_data.is_empty() => StdInput::Data,
            None => StdInput::Null,
        }
    }
}

/// systemd's IOPRIO_CLASS_* numbers by name.
const IO_CLASSES: [(&str, u8); 4] = [
    ("none", 0),
    ("realtime", 1),
    ("best-effort", 2),
    ("idle", 3),
];

/// The scheduling policies of `CPUSchedulingPolicy=`.
const POLICIES: [(&str, i32); 5] = [
    ("other", libc::SCHED_OTHER),
    ("batch", libc::SCHED_BATCH),
    ("idle", libc::SCHED_IDLE),
    ("fifo", libc::SCHED_FIFO),
    ("rr", libc::SCHED_RR),
];

/// A directory name of `*Directory=`: relative, no `..`, not empty.
fn relative_dir_ok(p: &str) -> bool {
    !p.is_empty()
        && !p.starts_with('/')
        && Path::new(p)
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)))
}

/// A credential ID: a valid file name of at most 255 bytes.
pub fn credential_id_valid(id: &str) -> bool {
    !id.is_empty() && id != "." && id != ".." && !id.contains('/') && id.len() <= 255
}

/// C escapes of `SetCredential=`/`StandardInputText=` to bytes; unlike word
/// splitting, `\x00` is a NUL byte here (systemd's UNESCAPE_ACCEPT_NUL).
fn cunescape_bytes(s: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('\\') {
        out.extend_from_slice(&rest.as_bytes()[..i]);
        let after = &rest[i + 1..];
        if after.starts_with("x00") || after.starts_with("000") {
            out.push(0);
            rest = &after[3..];
            continue;
        }
        match cunescape_one(after) {
            Some((Unescaped::Char(c), n)) => {
                let mut b = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
                rest = &after[n..];
            }
            Some((Unescaped::Byte(b), n)) => {
                out.push(b);
                rest = &after[n..];
            }
            None => return Err(format!("invalid escape sequence in '{s}'")),
        }
    }
    out.extend_from_slice(rest.as_bytes());
    Ok(out)
}

/// Standard base64 (whitespace ignored, padding optional), as
/// `StandardInputData=` takes it.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    let mut acc: u32 = 0;
    let mut bits = 0;
    let mut pad = false;
    for c in s.bytes().filter(|c| !c.is_ascii_whitespace()) {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => {
                pad = true;
                continue;
            }
            _ => return None,
        };
        if pad {
            return None;
        }
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    // Leftover bits must be padding zeros of a complete final group.
    (bits < 6 && acc == 0).then_some(out)
}

/// `CPUAffinity=`: CPU numbers and ranges separated by blanks or commas.
fn parse_cpu_list(s: &str) -> Option<Vec<u32>> {
    let mut cpus = Vec::new();
    for w in s.split(|c: char| c == ',' || c.is_whitespace()) {
        if w.is_empty() {
            continue;
        }
        let (a, b) = match w.split_once('-') {
            Some((a, b)) => (a.parse::<u32>().ok()?, b.parse::<u32>().ok()?),
            None => {
                let n = w.parse::<u32>().ok()?;
                (n, n)
            }
        };
        // The kernel's cpu_set_t has 1024 bits; systemd refuses larger numbers too.
        if a > b || b >= 1024 {
            return None;
        }
        cpus.extend(a..=b);
    }
    cpus.sort_unstable();
    cpus.dedup();
    Some(cpus)
}

/// `TimerSlackNSec=`: a bare number is nanoseconds, else a time span.
fn parse_nsec(s: &str) -> Option<u64> {
    let s = s.trim();
    if let Ok(n) = s.parse::<u64>() {
        return Some(n);
    }
    if let Some(n) = s.strip_suffix("ns").or_else(|| s.strip_suffix("nsec")) {
        return n.trim().parse().ok();
    }
    let d = parse_timespan(s).ok()??;
    u64::try_from(d.as_nanos()).ok()
}

impl Applier<'_> {
    /// Applies a directive of this module; false when `d` is none of them.
    pub(crate) fn apply_execution(&mut self, unit: &mut Unit, d: &Directive) -> bool {
        let key = d.key.as_str();
        if let Some((kind, mode)) = DirectoryKind::from_directive(key) {
            if mode {
                match u32::from_str_radix(d.value.trim(), 8) {
                    Ok(m) if m <= 0o7777 => svc(unit).exec.directories[kind.index()].mode = m,
                    _ => invalid(
                        unit,
                        d,
                        format!(
                            "'{}' is not an octal mode such as 0755; directive ignored",
                            d.value
                        ),
                    ),
                }
            } else {
                self.directory_list(unit, d, kind);
            }
            return true;
        }
        match key {
            "IgnoreSIGPIPE" => {
                if let Some(b) = self.bool_value(unit, d) {
                    svc(unit).exec.ignore_sigpipe = b;
                }
            }
            "NoNewPrivileges" => {
                if let Some(b) = self.bool_value(unit, d) {
                    svc(unit).exec.no_new_privileges = b;
                }
            }
            "NonBlocking" => {
                if let Some(b) = self.bool_value(unit, d) {
                    svc(unit).exec.non_blocking = b;
                }
            }
            "RuntimeDirectoryPreserve" => {
                let p = match d.value.as_str() {
                    "restart" => Some(RuntimePreserve::Restart),
                    v => parse_bool(v).map(|b| {
                        if b {
                            RuntimePreserve::Yes
                        } else {
                            RuntimePreserve::No
                        }
                    }),
                };
                match p {
                    Some(p) => svc(unit).exec.runtime_preserve = p,
                    None => invalid(
                        unit,
                        d,
                        format!("'{}' is not yes, no or restart; directive ignored", d.value),
                    ),
                }
            }
            "ExecSearchPath" => {
                if d.value.is_empty() {
                    svc(unit).exec.exec_search_path.clear();
                    return true;
                }
                let Some(v) = self.spec_value(unit, d) else {
                    return true;
                };
                let mut paths = Vec::new();
                for p in v.split(':').filter(|p| !p.is_empty()) {
                    if !p.starts_with('/') || p.split('/').any(|c| c == "..") {
                        invalid(
                            unit,
                            d,
                            format!(
                                "'{p}' is not an absolute path without '..'; directive ignored"
                            ),
                        );
                        return true;
                    }
                    paths.push(PathBuf::from(p));
                }
                svc(unit).exec.exec_search_path.extend(paths);
            }
            "SetCredential" | "LoadCredential" => self.credential(unit, d),
            "SetCredentialEncrypted" | "LoadCredentialEncrypted" => push_diag(
                unit,
                d,
                Severity::Warning,
                DiagnosticKind::Unsupported,
                format!(
                    "unsupported, ignored: encrypted credentials are decrypted with the keys of \
                     systemd-creds (the TPM2 or /var/lib/systemd/credentials.secret), which corral \
                     does not have; pass the plain credential with {}",
                    key.trim_end_matches("Encrypted")
                ),
            ),
            "StandardInput" => self.standard_input(unit, d),
            "StandardInputText" | "StandardInputData" => {
                if d.value.is_empty() {
                    svc(unit).exec.stdin_data.clear();
                    return true;
                }
                let bytes = if key == "StandardInputText" {
                    let Some(v) = self.spec_value(unit, d) else {
                        return true;
                    };
                    cunescape_bytes(&v).map(|mut b| {
                        b.push(b'\n');
                        b
                    })
                } else {
                    base64_decode(&d.value).ok_or_else(|| "not valid base64".to_string())
                };
                match bytes {
                    Ok(b) => svc(unit).exec.stdin_data.extend(b),
                    Err(e) => invalid(unit, d, format!("{e}; directive ignored")),
                }
            }
            "CPUAffinity" => {
                if d.value.is_empty() {
                    svc(unit).exec.cpu_affinity = None;
                } else if d.value == "numa" {
                    push_diag(
                        unit,
                        d,
                        Severity::Warning,
                        DiagnosticKind::Unsupported,
                        "CPUAffinity=numa is unsupported (corral has no NUMAPolicy=), ignored"
                            .to_string(),
                    );
                } else {
                    match self
                        .spec_value(unit, d)
                        .map(|v| parse_cpu_list(&v).ok_or(v))
                    {
                        Some(Ok(cpus)) => svc(unit).exec.cpu_affinity = Some(cpus),
                        Some(Err(v)) => invalid(
                            unit,
                            d,
                            format!("'{v}' is not a list of CPUs such as 0 2-3; directive ignored"),
                        ),
                        None => {}
                    }
                }
            }
            "IOSchedulingClass" => {
                let v = d.value.as_str();
                let class = IO_CLASSES
                    .iter()
                    .find(|(n, c)| *n == v || c.to_string() == v)
                    .map(|&(_, c)| c);
                match class {
                    Some(c) => {
                        let e = &mut svc(unit).exec;
                        let level = e.io_priority.map_or(4, |(_, l)| l);
                        e.io_priority = Some((c, level));
                    }
                    None => invalid(
                        unit,
                        d,
                        format!(
                            "'{v}' is not an I/O scheduling class (realtime, best-effort, idle or none); directive ignored"
                        ),
                    ),
                }
            }
            "IOSchedulingPriority" => match d.value.parse::<u8>() {
                Ok(l) if l <= 7 => {
                    let e = &mut svc(unit).exec;
                    let class = e.io_priority.map_or(2, |(c, _)| c);
                    e.io_priority = Some((class, l));
                }
                _ => invalid(
                    unit,
                    d,
                    format!(
                        "'{}' is not an I/O priority 0-7; directive ignored",
                        d.value
                    ),
                ),
            },
            "OOMScoreAdjust" => match d.value.parse::<i32>() {
                Ok(n) if (-1000..=1000).contains(&n) => svc(unit).exec.oom_score_adjust = Some(n),
                _ => invalid(
                    unit,
                    d,
                    format!(
                        "'{}' is not an OOM score adjustment between -1000 and 1000; directive ignored",
                        d.value
                    ),
                ),
            },
            "CPUSchedulingPolicy" | "CPUSchedulingPriority" | "CPUSchedulingResetOnFork" => {
                self.cpu_scheduling(unit, d)
            }
            "TimerSlackNSec" => match parse_nsec(&d.value) {
                Some(n) => svc(unit).exec.timer_slack_nsec = Some(n),
                None => invalid(
                    unit,
                    d,
                    format!(
                        "'{}' is not a time span (e.g. 50us, 1000); directive ignored",
                        d.value
                    ),
                ),
            },
            _ => return false,
        }
        true
    }

    fn spec_value(&self, unit: &mut Unit, d: &Directive) -> Option<String> {
        let expanded = self
            .spec
            .expand(&d.value, &unit.name, unit.fragment().as_deref());
        match expanded {
            Ok(v) => Some(v),
            Err(e) => {
                invalid(unit, d, format!("{e}; directive ignored"));
                None
            }
        }
    }

    fn directory_list(&mut self, unit: &mut Unit, d: &Directive, kind: DirectoryKind) {
        if d.value.is_empty() {
            svc(unit).exec.directories[kind.index()].dirs.clear();
            return;
        }
        let root = match kind {
            DirectoryKind::Runtime => self.spec.runtime_dir.clone(),
            DirectoryKind::State => self.spec.state_dir.clone(),
            DirectoryKind::Cache => self.spec.cache_dir.clone(),
            DirectoryKind::Logs => self.spec.logs_dir.clone(),
            DirectoryKind::Configuration => self.spec.config_dir.clone(),
        };
        let Some(words) = self.words(unit, d) else {
            return;
        };
        for w in words {
            let (dir, link) = match w.split_once(':') {
                Some((a, b)) if kind != DirectoryKind::Configuration => (a, Some(b)),
                _ => (w.as_str(), None),
            };
            if !relative_dir_ok(dir) || link.is_some_and(|l| !relative_dir_ok(l)) {
                invalid(
                    unit,
                    d,
                    format!(
                        "'{w}' is not a relative directory name without '..' (below {}); it is ignored",
                        root.display()
                    ),
                );
                continue;
            }
            let path = root.join(dir);
            let set = &mut svc(unit).exec.directories[kind.index()];
            let i = match set.dirs.iter().position(|m| m.path == path) {
                Some(i) => i,
                None => {
                    set.dirs.push(ManagedDirectory {
                        path,
                        links: Vec::new(),
                    });
                    set.dirs.len() - 1
                }
            };
            if let Some(l) = link {
                set.dirs[i].links.push(root.join(l));
            }
        }
    }

    fn credential(&mut self, unit: &mut Unit, d: &Directive) {
        if d.value.is_empty() {
            let load = d.key == "LoadCredential";
            svc(unit)
                .exec
                .credentials
                .retain(|c| matches!(c.source, CredentialSource::Load(_)) != load);
            return;
        }
        let (raw_id, rest) = match d.value.split_once(':') {
            Some((a, b)) => (a, Some(b)),
            None => (d.value.as_str(), None),
        };
        let id = match self
            .spec
            .expand(raw_id, &unit.name, unit.fragment().as_deref())
        {
            Ok(id) if credential_id_valid(&id) => id,
            Ok(id) => {
                return invalid(
                    unit,
                    d,
                    format!("'{id}' is not a credential ID (a file name); directive ignored"),
                );
            }
            Err(e) => return invalid(unit, d, format!("{e}; directive ignored")),
        };
        let source = if d.key == "SetCredential" {
            let Some(value) = rest else {
                return invalid(
                    unit,
                    d,
                    "SetCredential= takes ID:VALUE; directive ignored".to_string(),
                );
            };
            match cunescape_bytes(value) {
                Ok(b) => CredentialSource::Data(b),
                Err(e) => return invalid(unit, d, format!("{e}; directive ignored")),
            }
        } else {
            let path = match rest {
                None => id.clone(),
                Some(p) => match self.spec.expand(p, &unit.name, unit.fragment().as_deref()) {
                    Ok(p) => p,
                    Err(e) => return invalid(unit, d, format!("{e}; directive ignored")),
                },
            };
            if !path.starts_with('/') && !credential_id_valid(&path) {
                return invalid(
                    unit,
                    d,
                    format!(
                        "'{path}' is neither an absolute path nor a credential name; directive ignored"
                    ),
                );
            }
            CredentialSource::Load(path)
        };
        let dir = self
            .spec
            .runtime_dir
            .join("credentials")
            .join(unit.name.as_str());
        let e = &mut svc(unit).exec;
        e.credentials_dir = Some(dir);
        // A later assignment of the same kind and ID replaces the earlier one.
        let same_kind = |c: &Credential| {
            c.id == id
                && matches!(c.source, CredentialSource::Data(_))
                    == matches!(source, CredentialSource::Data(_))
        };
        e.credentials.retain(|c| !same_kind(c));
        e.credentials.push(Credential { id, source });
    }

    fn standard_input(&mut self, unit: &mut Unit, d: &Directive) {
        let Some(v) = self.spec_value(unit, d) else {
            return;
        };
        let input = match v.as_str() {
            "null" => StdInput::Null,
            "data" => StdInput::Data,
            "socket" => StdInput::Socket,
            "tty" | "tty-force" | "tty-fail" => {
                push_diag(
                    unit,
                    d,
                    Severity::Warning,
                    DiagnosticKind::Unsupported,
                    format!(
                        "StandardInput={v} is unsupported (a user manager has no terminal of its own); stdin is /dev/null"
                    ),
                );
                StdInput::Null
            }
            _ if v.starts_with("fd") => {
                push_diag(
                    unit,
                    d,
                    Severity::Warning,
                    DiagnosticKind::Unsupported,
                    format!(
                        "StandardInput={v} is unsupported (named fds are not passed as stdin); stdin is /dev/null"
                    ),
                );
                StdInput::Null
            }
            _ => match v.strip_prefix("file:") {
                Some(p) if p.starts_with('/') => StdInput::File(PathBuf::from(p)),
                _ => {
                    return invalid(
                        unit,
                        d,
                        format!(
                            "unknown input '{v}' (use null, data or file:PATH); directive ignored"
                        ),
                    );
                }
            },
        };
        svc(unit).exec.standard_input = Some(input);
    }

    fn cpu_scheduling(&mut self, unit: &mut Unit, d: &Directive) {
        let cur = svc(unit).exec.cpu_scheduling.unwrap_or(CpuScheduling {
            policy: libc::SCHED_OTHER,
            priority: 0,
            reset_on_fork: false,
        });
        let next = match d.key.as_str() {
            "CPUSchedulingPolicy" => POLICIES
                .iter()
                .find(|(n, p)| *n == d.value || p.to_string() == d.value)
                .map(|&(_, policy)| CpuScheduling { policy, ..cur })
                .ok_or("not a policy (other, batch, idle, fifo or rr)"),
            "CPUSchedulingPriority" => d
                .value
                .parse::<i32>()
                .ok()
                .filter(|p| (0..=99).contains(p))
                .map(|priority| CpuScheduling { priority, ..cur })
                .ok_or("not a priority 0-99"),
            _ => parse_bool(&d.value)
                .map(|reset_on_fork| CpuScheduling {
                    reset_on_fork,
                    ..cur
                })
                .ok_or("not a boolean"),
        };
        match next {
            Ok(mut s) => {
                // As systemd: the priority is clamped to the policy's range
                // (1-99 for fifo and rr, 0 for the others).
                // SAFETY: plain queries without side effects.
                let (lo, hi) = unsafe {
                    (
                        libc::sched_get_priority_min(s.policy),
                        libc::sched_get_priority_max(s.policy),
                    )
                };
                if lo >= 0 && hi >= lo {
                    s.priority = s.priority.clamp(lo, hi);
                }
                svc(unit).exec.cpu_scheduling = Some(s);
            }
            Err(why) => invalid(
                unit,
                d,
                format!("'{}' is {why}; directive ignored", d.value),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::unit::loader::from_text;
    use crate::unit::{SpecifierContext, UnitName};

    fn unit(text: &str) -> Unit {
        let n = UnitName::parse("x.service").unwrap();
        from_text(
            &n,
            Path::new("/units/x.service"),
            text,
            &SpecifierContext::example(),
        )
    }

    #[test]
    fn directives_are_typed_and_bad_values_dropped_with_file_and_line() {
        let ctx = SpecifierContext::example();
        let u = unit(
            "[Service]\nExecStart=/bin/true\nRuntimeDirectory=%N ../up a:b\nStateDirectoryMode=0700\n\
             LoadCredential=c\nSetCredential=s:v\\x00w\nSetCredential=bad/id:x\n\
             StandardInput=file:rel\nStandardInputText=a\nIOSchedulingClass=idle\n\
             CPUSchedulingPolicy=fifo\nOOMScoreAdjust=2000\nIgnoreSIGPIPE=no\nExecSearchPath=/a:/b\n\
             NoNewPrivileges=yes\nNonBlocking=yes\n",
        );
        let s = u.service.as_ref().unwrap();
        let e = &s.exec;
        let rt = e.directories(DirectoryKind::Runtime);
        assert_eq!(rt.dirs.len(), 2);
        assert_eq!(rt.dirs[0].path, ctx.runtime_dir.join("x"));
        assert_eq!(rt.dirs[1].links, vec![ctx.runtime_dir.join("b")]);
        assert_eq!(e.directories(DirectoryKind::State).mode, 0o700);
        assert_eq!(e.credentials.len(), 2);
        assert_eq!(
            e.credentials[1].source,
            CredentialSource::Data(b"v\0w".to_vec())
        );
        assert_eq!(
            e.credentials_dir.as_deref(),
            Some(ctx.runtime_dir.join("credentials/x.service").as_path())
        );
        assert_eq!(e.stdin(), StdInput::Data, "data implies StandardInput=data");
        assert_eq!(e.io_priority, Some((3, 4)));
        let sched = e.cpu_scheduling.unwrap();
        assert_eq!((sched.policy, sched.priority), (libc::SCHED_FIFO, 1));
        assert_eq!(e.oom_score_adjust, None);
        assert!(!e.ignore_sigpipe);
        assert!(e.no_new_privileges && e.non_blocking);
        assert_eq!(
            e.exec_search_path,
            vec![PathBuf::from("/a"), PathBuf::from("/b")]
        );
        let errors: Vec<String> = u.ignored_errors().map(|d| d.to_string()).collect();
        assert_eq!(errors.len(), 4, "{errors:#?}");
        assert!(errors[0].starts_with("/units/x.service:3: error: RuntimeDirectory: '../up'"));
        assert!(
            u.ensure_valid().is_ok(),
            "bad assignments only drop themselves"
        );
    }

    #[test]
    fn collect_mode_takes_systemds_two_words() {
        let base = "[Service]\nExecStart=/bin/true\n[Unit]\nCollectMode=";
        assert!(
            unit(&format!("{base}inactive-or-failed\n"))
                .unit
                .collect_failed
        );
        let back = unit(&format!("{base}inactive-or-failed\nCollectMode=inactive\n"));
        assert!(!back.unit.collect_failed, "the last one wins");
        let bad = unit(&format!("{base}never\n"));
        assert!(!bad.unit.collect_failed);
        assert!(
            bad.ignored_errors()
                .any(|d| d.message.contains("unknown collect mode 'never'")),
            "{:?}",
            bad.diagnostics
        );
    }

    #[test]
    fn success_action_lets_a_service_go_without_commands() {
        let u = unit("[Unit]\nSuccessAction=exit-force\n");
        assert!(u.ensure_valid().is_ok(), "{:?}", u.diagnostics);
        assert_eq!(
            u.unit.success_action,
            crate::unit::model::EmergencyAction::ExitForce
        );
        let none = unit("[Unit]\nFailureAction=exit\n");
        assert!(
            none.ensure_valid().is_err(),
            "FailureAction= alone is not enough"
        );
        let sys = unit("[Unit]\nSuccessAction=reboot\n[Service]\nExecStart=/bin/true\n");
        assert!(
            sys.ignored_errors()
                .any(|d| d.message.contains("system manager"))
        );
    }

    #[test]
    fn value_syntaxes() {
        assert_eq!(base64_decode("aGVsbG8K").unwrap(), b"hello\n");
        assert_eq!(base64_decode("aGVs bG8=").unwrap(), b"hello");
        assert!(base64_decode("a*").is_none());
        assert_eq!(cunescape_bytes(r"a\x00b\n").unwrap(), b"a\0b\n");
        assert!(cunescape_bytes(r"\q").is_err());
        assert_eq!(parse_cpu_list("0 2-3,5").unwrap(), vec![0, 2, 3, 5]);
        assert!(parse_cpu_list("3-1").is_none());
        assert_eq!(parse_nsec("50").unwrap(), 50);
        assert_eq!(parse_nsec("1ms").unwrap(), 1_000_000);
        assert!(relative_dir_ok("a/b"));
        for bad in ["", "/a", "a/../b", "..", "./a"] {
            assert!(!relative_dir_ok(bad), "{bad:?}");
        }
    }
}
