//! The manager's environment block: the variables that `corral
//! set-environment`, `unset-environment` and `import-environment` change and
//! that every unit started afterwards receives, below its own Environment=
//! and EnvironmentFile=.
//!
//! Per-user services need the login's DISPLAY, DBUS_SESSION_BUS_ADDRESS or
//! SSH_AUTH_SOCK, which only exist once a session is up; the block survives
//! manager restarts because it is saved in the state directory after every
//! change (written to a temporary file, synced, then renamed over the old
//! one, so a crash leaves either the old or the new block, never half).
//!
//! The file I/O here is synchronous and small; the manager calls
//! [`ManagerEnv::load`] and the mutating methods from `spawn_blocking` or
//! its blocking-work thread, not on the async runtime.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The file name of the saved block inside the state directory.
pub const FILE_NAME: &str = "environment.json";

/// The version of the saved file's format.
const FORMAT_VERSION: u32 = 1;

/// Errors of the environment block.
#[derive(Debug, Error)]
pub enum EnvError {
    /// A file operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done ("read", "write", "rename", ...).
        op: &'static str,
        /// On what.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The saved file is not a block corral wrote.
    #[error(
        "{path}: not a valid corral environment file ({reason}); move it away and set the variables again"
    )]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// `set-environment` got something that is not `NAME=value`.
    #[error(
        "Not a valid environment assignment: {0} (expected NAME=value, NAME made of letters, digits and _ and not starting with a digit)"
    )]
    BadAssignment(String),
    /// A variable name is not valid.
    #[error(
        "Not a valid environment variable name: {0} (letters, digits and _, not starting with a digit)"
    )]
    BadName(String),
}

/// Whether `name` is a valid variable name, as systemd's `env_name_is_valid`
/// decides: letters, digits and `_`, not starting with a digit.
pub fn name_is_valid(name: &str) -> bool {
    let mut chars = name.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Splits `NAME=value` and checks it.
pub fn parse_assignment(s: &str) -> Result<(String, String), EnvError> {
    let (name, value) = s
        .split_once('=')
        .ok_or_else(|| EnvError::BadAssignment(s.to_string()))?;
    if !name_is_valid(name) || value.contains('\0') {
        return Err(EnvError::BadAssignment(s.to_string()));
    }
    Ok((name.to_string(), value.to_string()))
}

/// What the CLI sends for `import-environment ARGS...`, resolved against
/// its own environment with turnstile's rules: `NAME=value` sets, `NAME=`
/// sets empty, a bare `NAME` copies the caller's value. A bare name the
/// caller does not have is skipped with a notice (as systemctl does). With
/// no arguments, the caller's whole environment is imported (as systemctl
/// 252 still does, with its deprecation warning).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Import {
    /// The assignments to send to the manager.
    pub set: Vec<(String, String)>,
    /// Messages for the user (skipped names, deprecation).
    pub notices: Vec<String>,
}

/// Resolves `import-environment` arguments against `caller` (the CLI's environment).
pub fn resolve_import<'a>(
    args: &[String],
    caller: impl IntoIterator<Item = (&'a str, &'a str)> + Clone,
) -> Result<Import, EnvError> {
    let mut out = Import::default();
    if args.is_empty() {
        out.notices.push(
            "Calling import-environment without a list of variable names is deprecated.".into(),
        );
        for (k, v) in caller {
            if name_is_valid(k) && !v.contains('\0') {
                out.set.push((k.to_string(), v.to_string()));
            }
        }
        return Ok(out);
    }
    for arg in args {
        if arg.contains('=') {
            out.set.push(parse_assignment(arg)?);
            continue;
        }
        if !name_is_valid(arg) {
            return Err(EnvError::BadName(arg.clone()));
        }
        match caller.clone().into_iter().find(|(k, _)| k == arg) {
            Some((_, v)) => out.set.push((arg.clone(), v.to_string())),
            None => out
                .notices
                .push(format!("Environment variable ${arg} not set, ignoring.")),
        }
    }
    Ok(out)
}

/// [`resolve_import`] against this process's own environment (what the CLI
/// calls); variables that are not UTF-8 cannot be sent and are left out.
pub fn resolve_import_from_process(args: &[String]) -> Result<Import, EnvError> {
    let vars: Vec<(String, String)> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect();
    resolve_import(args, vars.iter().map(|(k, v)| (k.as_str(), v.as_str())))
}

#[derive(Serialize, Deserialize)]
struct Saved {
    version: u32,
    environment: BTreeMap<String, String>,
}

/// The manager's environment block, saved in its state directory.
#[derive(Debug, Clone)]
pub struct ManagerEnv {
    /// Where the block is saved (`<state dir>/environment.json`).
    path: PathBuf,
    vars: BTreeMap<String, String>,
}

impl ManagerEnv {
    /// Loads the block saved in `state_dir`, or an empty one when none was saved yet.
    pub fn load(state_dir: &Path) -> Result<Self, EnvError> {
        let path = state_dir.join(FILE_NAME);
        let vars = match fs::read(&path) {
            Ok(bytes) => {
                let saved: Saved =
                    serde_json::from_slice(&bytes).map_err(|e| EnvError::Corrupt {
                        path: path.clone(),
                        reason: e.to_string(),
                    })?;
                if saved.version != FORMAT_VERSION {
                    return Err(EnvError::Corrupt {
                        path,
                        reason: format!(
                            "format version {} (this corral reads {FORMAT_VERSION})",
                            saved.version
                        ),
                    });
                }
                if let Some(bad) = saved.environment.keys().find(|k| !name_is_valid(k)) {
                    return Err(EnvError::Corrupt {
                        path,
                        reason: format!("invalid variable name {bad:?}"),
                    });
                }
                saved.environment
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => BTreeMap::new(),
            Err(source) => {
                return Err(EnvError::Io {
                    op: "read",
                    path,
                    source,
                });
            }
        };
        Ok(ManagerEnv { path, vars })
    }

    /// The file the block is saved in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The variables, sorted by name.
    pub fn vars(&self) -> &BTreeMap<String, String> {
        &self.vars
    }

    /// The value of one variable.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str)
    }

    /// `set-environment NAME=value...`: checks every assignment first, then
    /// applies them all and saves (nothing changes if one is invalid).
    pub fn set<S: AsRef<str>>(&mut self, assignments: &[S]) -> Result<(), EnvError> {
        let parsed = assignments
            .iter()
            .map(|a| parse_assignment(a.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        self.set_pairs(parsed)
    }

    /// Sets already split pairs (what [`resolve_import`] produced) and saves.
    pub fn set_pairs(&mut self, pairs: Vec<(String, String)>) -> Result<(), EnvError> {
        for (k, v) in &pairs {
            if !name_is_valid(k) || v.contains('\0') {
                return Err(EnvError::BadAssignment(format!("{k}={v}")));
            }
        }
        let before = self.vars.clone();
        self.vars.extend(pairs);
        self.save_or_restore(before)
    }

    /// `unset-environment NAME...` (a `NAME=value` argument unsets NAME only
    /// if its value is `value`, as systemd does), then saves.
    pub fn unset<S: AsRef<str>>(&mut self, names: &[S]) -> Result<(), EnvError> {
        for n in names {
            let n = n.as_ref();
            let name = n.split_once('=').map_or(n, |(k, _)| k);
            if !name_is_valid(name) {
                return Err(EnvError::BadName(n.to_string()));
            }
        }
        let before = self.vars.clone();
        for n in names {
            match n.as_ref().split_once('=') {
                Some((k, v)) => {
                    if self.vars.get(k).is_some_and(|cur| cur == v) {
                        self.vars.remove(k);
                    }
                }
                None => {
                    self.vars.remove(n.as_ref());
                }
            }
        }
        self.save_or_restore(before)
    }

    /// `show-environment`: one `NAME=value` per line, sorted, values quoted
    /// as systemctl quotes them (`$'...'` when the shell would need it).
    pub fn show(&self) -> String {
        self.show_over(&[])
    }

    /// [`ManagerEnv::show`] of this block laid over `base`.
    pub fn show_over(&self, base: &[(String, String)]) -> String {
        let mut all: BTreeMap<&str, &str> =
            base.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        all.extend(self.vars.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let mut out = String::new();
        for (k, v) in all {
            out.push_str(k);
            out.push('=');
            out.push_str(&shell_quote(v));
            out.push('\n');
        }
        out
    }

    /// The environment of a unit: this block first, then the unit's own
    /// `layers` (e.g. Environment= then EnvironmentFile=), each overriding
    /// what came before.
    pub fn merged<I, K, V>(&self, layers: I) -> BTreeMap<String, String>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let mut out = self.vars.clone();
        for (k, v) in layers {
            out.insert(k.into(), v.into());
        }
        out
    }

    fn save_or_restore(&mut self, before: BTreeMap<String, String>) -> Result<(), EnvError> {
        if self.vars == before {
            return Ok(());
        }
        if let Err(e) = self.save() {
            // What the manager answers must match what it would reload.
            self.vars = before;
            return Err(e);
        }
        Ok(())
    }

    /// Writes the block: temporary file, fsync, rename, fsync of the directory.
    fn save(&self) -> Result<(), EnvError> {
        let body = serde_json::to_vec_pretty(&Saved {
            version: FORMAT_VERSION,
            environment: self.vars.clone(),
        })
        .map_err(|e| EnvError::Corrupt {
            path: self.path.clone(),
            reason: e.to_string(),
        })?;
        crate::supervisor::atomic_file::write_atomic(&self.path, &body, |_| Ok(()))
            .map_err(|(op, path, source)| EnvError::Io { op, path, source })
    }
}

/// `env` with only the last assignment of each name, where it stands: as
/// assigning each in turn with "remove the name, append" would leave it,
/// in one pass instead of one per assignment.
pub fn last_assignments(mut env: Vec<(String, String)>) -> Vec<(String, String)> {
    let mut keep: Vec<bool> = {
        let mut seen: HashSet<&str> = HashSet::with_capacity(env.len());
        env.iter()
            .rev()
            .map(|(k, _)| seen.insert(k.as_str()))
            .collect()
    };
    keep.reverse();
    let mut i = 0;
    env.retain(|_| {
        i += 1;
        keep[i - 1]
    });
    env
}

/// Quotes a value as systemd's `shell_maybe_quote(…, SHELL_ESCAPE_POSIX)`:
/// unchanged when the shell needs no quoting, else `$'...'` with escapes.
pub fn shell_quote(v: &str) -> String {
    const NEEDS_QUOTES: &str = "\"\\`$*?[ \t\n\r'()<>|&;!";
    if v.chars()
        .all(|c| !NEEDS_QUOTES.contains(c) && !c.is_control())
    {
        return v.to_string();
    }
    let mut out = String::from("$'");
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\x0b' => out.push_str("\\v"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller() -> Vec<(&'static str, &'static str)> {
        vec![
            ("DISPLAY", ":0"),
            ("XAUTHORITY", "/home/u/.Xauthority"),
            ("EMPTY", ""),
        ]
    }

    #[test]
    fn names_follow_systemd_rules() {
        for ok in ["A", "_x", "DBUS_SESSION_BUS_ADDRESS", "a1"] {
            assert!(name_is_valid(ok), "{ok}");
        }
        for bad in ["", "1A", "A-B", "A B", "A=B", "Ä"] {
            assert!(!name_is_valid(bad), "{bad:?}");
        }
    }

    #[test]
    fn import_follows_turnstile_semantics() {
        let args: Vec<String> = [
            "DISPLAY",
            "XAUTHORITY",
            "FOO=bar",
            "BAZ=",
            "MISSING",
            "EMPTY",
        ]
        .map(String::from)
        .to_vec();
        let imp = resolve_import(&args, caller()).unwrap();
        assert_eq!(
            imp.set,
            [
                ("DISPLAY", ":0"),
                ("XAUTHORITY", "/home/u/.Xauthority"),
                ("FOO", "bar"),
                ("BAZ", ""),
                ("EMPTY", ""),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string()))
        );
        assert_eq!(
            imp.notices,
            ["Environment variable $MISSING not set, ignoring."]
        );
        assert!(matches!(
            resolve_import(&["1BAD".to_string()], caller()),
            Err(EnvError::BadName(_))
        ));
        let all = resolve_import(&[], caller()).unwrap();
        assert_eq!(all.set.len(), 3);
        assert_eq!(all.notices.len(), 1);
    }

    #[test]
    fn import_reads_this_process_environment() {
        // PATH is set for every test process; a name nobody sets is skipped.
        let imp = resolve_import_from_process(&[
            "PATH".to_string(),
            "CORRAL_TEST_SURELY_UNSET_VARIABLE".to_string(),
        ])
        .unwrap();
        assert_eq!(imp.set.len(), 1);
        assert_eq!(imp.set[0].0, "PATH");
        assert_eq!(Some(imp.set[0].1.clone()), std::env::var("PATH").ok());
        assert_eq!(imp.notices.len(), 1);
    }

    #[test]
    fn set_unset_show_and_persist_across_reload() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let mut env = ManagerEnv::load(&state).unwrap();
        assert!(env.vars().is_empty());
        env.set(&["DISPLAY=:0", "EMPTY=", "SPACED=a b", "Q=it's"])
            .unwrap();
        let imp = resolve_import(&["XAUTHORITY".to_string()], caller()).unwrap();
        env.set_pairs(imp.set).unwrap();
        env.unset(&["Q=other"]).unwrap();
        assert_eq!(
            env.get("Q"),
            Some("it's"),
            "NAME=value unsets only that value"
        );
        env.unset(&["Q"]).unwrap();
        assert_eq!(
            env.show(),
            "DISPLAY=:0\nEMPTY=\nSPACED=$'a b'\nXAUTHORITY=/home/u/.Xauthority\n"
        );

        let reloaded = ManagerEnv::load(&state).unwrap();
        assert_eq!(reloaded.vars(), env.vars());
        let leftovers: Vec<_> = fs::read_dir(&state)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(leftovers, [FILE_NAME], "no temporary file is left behind");
    }

    #[test]
    fn invalid_assignment_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut env = ManagerEnv::load(dir.path()).unwrap();
        env.set(&["A=1"]).unwrap();
        let err = env.set(&["B=2", "NOEQUALS"]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Not a valid environment assignment: NOEQUALS (expected NAME=value, NAME made of letters, digits and _ and not starting with a digit)"
        );
        assert_eq!(env.get("B"), None);
        assert_eq!(ManagerEnv::load(dir.path()).unwrap().get("B"), None);
        assert!(matches!(env.unset(&["1X"]), Err(EnvError::BadName(_))));
    }

    #[test]
    fn unit_environment_overrides_the_block() {
        let dir = tempfile::tempdir().unwrap();
        let mut env = ManagerEnv::load(dir.path()).unwrap();
        env.set(&["A=manager", "B=manager"]).unwrap();
        let merged = env.merged([("B", "unit"), ("C", "unit")]);
        assert_eq!(
            merged.into_iter().collect::<Vec<_>>(),
            [("A", "manager"), ("B", "unit"), ("C", "unit")]
                .map(|(k, v)| (k.to_string(), v.to_string()))
        );
    }

    #[test]
    fn corrupt_and_unreadable_files_are_errors_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        fs::write(&path, b"{not json").unwrap();
        let err = ManagerEnv::load(dir.path()).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("{}: not a valid", path.display())),
            "{err}"
        );
        fs::write(&path, br#"{"version":99,"environment":{}}"#).unwrap();
        let err = ManagerEnv::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("format version 99"), "{err}");
        fs::remove_file(&path).unwrap();
        fs::create_dir(&path).unwrap();
        let err = ManagerEnv::load(dir.path()).unwrap_err();
        assert!(matches!(err, EnvError::Io { op: "read", .. }), "{err}");
    }

    #[test]
    fn save_failure_leaves_the_block_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        // A directory where the temporary file goes: saving must fail, and
        // the in-memory block must not pretend it changed.
        let mut env = ManagerEnv::load(dir.path()).unwrap();
        fs::create_dir(
            dir.path()
                .join(format!(".{FILE_NAME}.tmp-{}", std::process::id())),
        )
        .unwrap();
        let err = env.set(&["A=1"]).unwrap_err();
        assert!(matches!(err, EnvError::Io { op: "create", .. }), "{err}");
        assert!(env.vars().is_empty());
        assert!(!env.path().exists());
    }

    #[test]
    fn shell_quoting_matches_systemctl() {
        assert_eq!(shell_quote("/usr/bin:/bin"), "/usr/bin:/bin");
        assert_eq!(shell_quote(""), "");
        assert_eq!(shell_quote("a\nb"), "$'a\\nb'");
        assert_eq!(shell_quote("$HOME"), "$'$HOME'");
        assert_eq!(shell_quote("back\\slash"), "$'back\\\\slash'");
    }

    #[test]
    fn last_assignments_keeps_the_last_of_each_name_in_its_place() {
        let kv = |k: &str, v: &str| (k.to_string(), v.to_string());
        let env = vec![
            kv("A", "1"),
            kv("B", "1"),
            kv("A", "2"),
            kv("C", "1"),
            kv("B", "2"),
        ];
        assert_eq!(
            last_assignments(env),
            [kv("A", "2"), kv("C", "1"), kv("B", "2")]
        );
    }
}
