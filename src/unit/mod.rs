//! Service definitions: systemd unit files and runit service directories,
//! read into one typed model ([`Unit`]).
//!
//! - [`name`]: unit names, templates and instances ([`UnitName`]).
//! - [`syntax`]: the ini-like file syntax (sections, comments, continuation).
//! - [`words`]: quoting and C escapes, as systemd splits values into words.
//! - [`values`]: booleans, time spans, sizes, signals, exit statuses.
//! - [`calendar`]: calendar event expressions (`OnCalendar=`) and their next elapse.
//! - [`exec`]: Exec command lines ([`ExecCommand`]) and `$VAR` expansion.
//! - [`envfile`]: the `EnvironmentFile=` format.
//! - [`file`]: reading user-written files safely (regular files only, size cap).
//! - [`specifier`]: `%` specifiers ([`SpecifierContext`]).
//! - [`model`]: the typed sections and how each directive is applied.
//! - [`execution`]: directories, credentials, stdin, scheduling (systemd.exec(5)).
//! - [`known`]: directive names systemd knows (unsupported vs. unknown).
//! - [`condition`]: `Condition*=`/`Assert*=` and their evaluation.
//! - [`timer`]: `[Timer]` of `.timer` units ([`timer::TimerSection`]) and their implicit dependencies.
//! - [`loader`]: search paths, drop-ins, templates, masking, aliases ([`Loader`]).
//! - [`runit`]: runit service directories as units.
//! - [`socket`]: `[Socket]` of `.socket` units ([`SocketSection`]).
//! - [`verify`]: `corral verify`'s report over files and directories.

pub mod calendar;
pub mod condition;
pub mod envfile;
pub mod exec;
pub mod execution;
pub mod file;
pub mod install;
pub mod known;
pub mod loader;
pub mod model;
pub mod name;
pub mod runit;
pub mod socket;
pub mod specifier;
pub mod start_check;
pub mod syntax;
pub mod timer;
pub mod values;
pub mod verify;
pub mod words;
pub mod zone;

use std::fmt;
use std::path::PathBuf;

pub use condition::{Condition, ConditionKind};
pub use exec::{ExecCommand, ExecFlags, ExecOrigin};
pub use loader::{Loader, UnitFileState};
pub use model::{
    EnvironmentFile, ExitStatusSet, InstallSection, KillMode, LimitValue, MemoryLimit,
    NotifyAccess, RLimit, ResourceLimit, RestartPolicy, ServiceSection, ServiceType, StdOutput,
    TasksMax, ThinList, Unit, UnitSection, UnitSource, WorkingDirectory,
};
pub use name::{UnitKind, UnitName};
pub use runit::RunitService;
pub use socket::{Listen, SocketAddress, SocketSection, SocketType};
pub use specifier::SpecifierContext;
pub use syntax::Directive;

/// Errors of the unit reader.
#[derive(Debug, thiserror::Error)]
pub enum UnitError {
    /// A file or directory could not be read.
    #[error("cannot {op} {path}: {source}")]
    Io {
        /// What was being done ("read unit file", "list directory", ...).
        op: &'static str,
        /// On what.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A file was not read: not a regular file, or larger than
    /// [`file::MAX_UNIT_FILE`].
    #[error("refused to read the {what} {path}: {reason}")]
    Refused {
        /// What the file was read as ("unit file", "drop-in", ...).
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why, and what to do.
        reason: String,
    },
    /// A unit name is malformed.
    #[error("invalid unit name '{name}': {reason}")]
    InvalidName {
        /// The name as given.
        name: String,
        /// Why it is rejected.
        reason: String,
    },
    /// No unit file or runit directory of that name exists.
    #[error("unit {name} not found; looked in: {}; put the unit file (or runit directory) in one of them", searched.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "))]
    NotFound {
        /// The unit asked for.
        name: String,
        /// The directories searched, in order.
        searched: Vec<PathBuf>,
    },
    /// A `%` specifier could not be resolved.
    #[error("cannot expand specifiers in '{value}': {message}")]
    Specifier {
        /// The value being expanded.
        value: String,
        /// What was wrong.
        message: String,
    },
    /// A command cannot be run as written.
    #[error("{unit}{}: {message}", if *line > 0 { format!(":{line}") } else { String::new() })]
    Exec {
        /// The unit (or file) the command comes from.
        unit: String,
        /// The line of the Exec directive (0 when unknown).
        line: usize,
        /// What is wrong and what to do.
        message: String,
    },
    /// Alias symlinks form a loop or a chain that is too long.
    #[error(
        "unit {name}: alias symlinks loop or chain more than 32 times; fix the symlinks in {dir}"
    )]
    AliasLoop {
        /// The name asked for.
        name: String,
        /// Where the chain was followed.
        dir: PathBuf,
    },
    /// A unit has errors that make it unusable.
    #[error("unit {unit} has {count} error(s), first: {first}; run `corral verify` on it")]
    Invalid {
        /// The unit.
        unit: String,
        /// How many errors.
        count: usize,
        /// The first error.
        first: Box<Diagnostic>,
    },
}

/// How bad a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// The directive (or file) was not applied; the unit may not work as meant.
    Error,
    /// Something is ignored or approximated; the unit still works.
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

/// What kind of remark a diagnostic is, so tools can filter without
/// matching message text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DiagnosticKind {
    /// A systemd directive or section corral does not implement; ignored.
    Unsupported,
    /// A unit type corral reads but does not run yet (socket, timer, ...).
    NotSupportedYet,
    /// A name that systemd does not know either (a typo?); ignored.
    Unknown,
    /// Malformed syntax or value.
    Invalid,
    /// A file or directory problem.
    Io,
}

/// One remark about a unit file, tied to a file and line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file the remark is about.
    pub file: PathBuf,
    /// 1-based line; 0 when the remark is about the whole file.
    pub line: usize,
    /// The directive (`ExecStart`), section (`[Socket]`) or empty.
    pub directive: String,
    /// Error or warning.
    pub severity: Severity,
    /// The category, for filtering.
    pub kind: DiagnosticKind,
    /// What is wrong and, where useful, what to do.
    pub message: String,
    /// systemd 252 refuses to load the whole unit over this error (a bad
    /// `ExecStart=`, a bad section header, an unreadable file, no
    /// `ExecStart=`, ...), and so does the manager. A non-fatal error only
    /// drops the assignment: systemd logs it ("..., ignoring") and loads the
    /// unit without it. Always false for warnings.
    pub fatal: bool,
}

impl Diagnostic {
    /// Whether this is an error.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// Whether this error makes the unit unloadable (see [`Diagnostic::fatal`]).
    pub fn is_fatal(&self) -> bool {
        self.is_error() && self.fatal
    }
}

/// `s` with control characters written as C escapes (`\e` as `\x1b`, a
/// newline as `\n`), as systemd's `cescape()` shows them, so that a
/// diagnostic cannot move the cursor, ring the bell or forge lines.
pub fn escape_control(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x0b' => out.push_str("\\v"),
            c if (c as u32) < 0x100 && c.is_control() => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = self.file.to_string_lossy();
        write!(f, "{}", escape_control(&file))?;
        if self.line > 0 {
            write!(f, ":{}", self.line)?;
        }
        write!(f, ": {}: ", self.severity)?;
        if !self.directive.is_empty() {
            write!(f, "{}: ", escape_control(&self.directive))?;
        }
        f.write_str(&escape_control(&self.message))
    }
}
