//! Exec command lines (`ExecStart=` and friends): prefixes, words, `$VAR`
//! expansion at run time, and finding the program on PATH.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::UnitError;
use super::words::{SplitOptions, Words, is_ws};

/// The special characters in front of an Exec program path.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct ExecFlags {
    /// `-`: a failing exit status is recorded but treated as success.
    pub ignore_failure: bool,
    /// `@`: the second word is argv\[0\], not the program path.
    pub argv0_override: bool,
    /// `:`: no `$VAR` substitution.
    pub no_env_expand: bool,
    /// `+`: run with full privileges (User=, sandboxing ignored).
    pub full_privileges: bool,
    /// `!`: User=/Group= not applied by the manager, sandboxing kept.
    pub no_setuid: bool,
    /// `!!`: like `!` but only on systems without ambient capabilities.
    pub ambient_fallback: bool,
}

impl ExecFlags {
    /// The prefix characters that reproduce these flags.
    pub fn prefix(&self) -> String {
        let mut s = String::new();
        if self.ignore_failure {
            s.push('-');
        }
        if self.argv0_override {
            s.push('@');
        }
        if self.no_env_expand {
            s.push(':');
        }
        if self.full_privileges {
            s.push('+');
        }
        if self.no_setuid {
            s.push('!');
        }
        if self.ambient_fallback {
            s.push_str("!!");
        }
        s
    }
}

/// Where a command was written, so run-time errors can point at it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct ExecOrigin {
    /// The unit name (`memcached@11212.service`).
    pub unit: String,
    /// The directive (`ExecStart`).
    pub directive: String,
    /// The line of the directive in its file (0: not from a file).
    pub line: usize,
}

/// One command of an Exec directive.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ExecCommand {
    /// How the command runs.
    pub flags: ExecFlags,
    /// The program: an absolute path or a bare name searched on PATH
    /// (specifiers already expanded, `$VAR` not yet).
    pub program: String,
    /// The argument vector, argv\[0\] included; argv\[0\] is the program as
    /// written unless `@` gave another one.
    pub argv: Vec<String>,
    /// Where it was written (for error messages).
    pub origin: ExecOrigin,
}

/// An environment lookup usable by [`ExecCommand::expand`].
pub trait EnvLookup {
    /// The value of `name`, if set.
    fn lookup(&self, name: &str) -> Option<String>;
}

impl<S: std::hash::BuildHasher> EnvLookup for HashMap<String, String, S> {
    fn lookup(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

impl<F: Fn(&str) -> Option<String>> EnvLookup for F {
    fn lookup(&self, name: &str) -> Option<String> {
        self(name)
    }
}

impl EnvLookup for [(String, String)] {
    fn lookup(&self, name: &str) -> Option<String> {
        self.iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }
}

impl EnvLookup for Vec<(String, String)> {
    fn lookup(&self, name: &str) -> Option<String> {
        self.as_slice().lookup(name)
    }
}

/// Splits a variable's value into words the way `$NAME` expansion does:
/// at whitespace, honouring quotes, tolerating an unclosed quote.
pub fn split_value_relaxed(v: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur: Option<String> = None;
    let mut quote: Option<char> = None;
    let mut chars = v.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (_, '\\') => {
                let w = cur.get_or_insert_with(String::new);
                match chars.next() {
                    Some(n) => w.push(n),
                    None => w.push('\\'),
                }
            }
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => cur.get_or_insert_with(String::new).push(c),
            (None, '"' | '\'') => {
                cur.get_or_insert_with(String::new);
                quote = Some(c);
            }
            (None, c) if is_ws(c) => {
                if let Some(w) = cur.take() {
                    out.push(w);
                }
            }
            (None, c) => cur.get_or_insert_with(String::new).push(c),
        }
    }
    if let Some(w) = cur {
        out.push(w);
    }
    out
}

/// Whether `s` is a valid environment variable name for `$NAME` expansion.
pub fn is_env_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Replaces `${NAME}` (unset: empty) and `$$` (a literal `$`) inside one
/// word, as systemd 252's `replace_env()` does: the name is whatever stands
/// between `${` and `}` (`${A-B}` looks up `A-B`, which is never set); a
/// `:` before the `}` (`${A:-x}`) or a missing `}` leaves the text as written.
pub fn replace_braced(word: &str, env: &(impl EnvLookup + ?Sized)) -> String {
    if !word.contains('$') {
        return word.to_string();
    }
    let mut out = String::with_capacity(word.len());
    let mut rest = word;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(a) = after.strip_prefix('$') {
            out.push('$');
            rest = a;
        } else if let Some(body) = after.strip_prefix('{') {
            match body.find(['}', ':']) {
                Some(end) if body.as_bytes()[end] == b'}' => {
                    out.push_str(&env.lookup(&body[..end]).unwrap_or_default());
                    rest = &body[end + 1..];
                }
                // `${NAME:...}` is not expanded; scanning goes on at the `:`.
                Some(colon) => {
                    out.push_str("${");
                    out.push_str(&body[..colon]);
                    rest = &body[colon..];
                }
                None => {
                    out.push('$');
                    out.push_str(after);
                    rest = "";
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

impl ExecCommand {
    /// The argument vector with `$VAR` / `${VAR}` substituted, as systemd does
    /// it when the command runs.
    ///
    /// A word that is exactly `$NAME` becomes the value split at whitespace
    /// (zero or more words; an unset variable removes the word). `${NAME}`
    /// anywhere in a word is replaced by the value as is, keeping one word.
    /// `$$` is a `$`. With the `:` prefix nothing is substituted.
    pub fn expand(&self, env: &(impl EnvLookup + ?Sized)) -> Vec<String> {
        if self.flags.no_env_expand {
            return self.argv.clone();
        }
        let mut out = Vec::with_capacity(self.argv.len());
        for word in &self.argv {
            // As in systemd 252: a word starting with `$` (not `${`, not `$$`)
            // names one variable with all of its rest.
            if let Some(name) = word.strip_prefix('$')
                && !name.starts_with('{')
                && !name.starts_with('$')
            {
                if let Some(v) = env.lookup(name) {
                    out.extend(split_value_relaxed(&v));
                }
                continue;
            }
            out.push(replace_braced(word, env));
        }
        out
    }

    /// The program with `${VAR}` substituted (systemd expands the path too).
    pub fn expanded_program(&self, env: &(impl EnvLookup + ?Sized)) -> String {
        if self.flags.no_env_expand {
            self.program.clone()
        } else {
            replace_braced(&self.program, env)
        }
    }

    /// The absolute path of the program: as written if absolute, otherwise the
    /// first executable file of that name in `path_env` (a `PATH` value).
    ///
    /// The error names the unit and line, e.g. `memcached.service:7:
    /// ExecStart= must be an absolute path or a name on PATH: ...`.
    pub fn resolve_program(&self, path_env: &str) -> Result<PathBuf, UnitError> {
        let prog = Path::new(&self.program);
        if prog.is_absolute() {
            return Ok(prog.to_path_buf());
        }
        let directive = if self.origin.directive.is_empty() {
            "ExecStart"
        } else {
            self.origin.directive.as_str()
        };
        let fail = |message: String| UnitError::Exec {
            unit: self.origin.unit.clone(),
            line: self.origin.line,
            message,
        };
        if self.program.contains('/') || self.program.is_empty() {
            return Err(fail(format!(
                "{directive}= must be an absolute path or a name on PATH, not '{}'",
                self.program
            )));
        }
        for dir in path_env.split(':').filter(|d| d.starts_with('/')) {
            let cand = Path::new(dir).join(OsStr::from_bytes(self.program.as_bytes()));
            if let Ok(md) = std::fs::metadata(&cand)
                && md.is_file()
                && md.permissions().mode() & 0o111 != 0
            {
                return Ok(cand);
            }
        }
        Err(fail(format!(
            "{directive}= must be an absolute path or a name on PATH: '{}' is not an executable file in PATH={}; install it or write its full path",
            self.program, path_env
        )))
    }
}

impl std::fmt::Display for ExecCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{}", self.flags.prefix(), self.program)?;
        let skip = if self.flags.argv0_override { 0 } else { 1 };
        for a in self.argv.iter().skip(skip) {
            if a.is_empty() || a.contains(|c: char| is_ws(c) || c == '"' || c == '\'' || c == '\\')
            {
                write!(f, " \"{}\"", a.replace('\\', "\\\\").replace('"', "\\\""))?;
            } else {
                write!(f, " {a}")?;
            }
        }
        Ok(())
    }
}

/// The result of parsing one Exec directive's value.
#[derive(Debug, Default)]
pub struct ParsedExec {
    /// The commands, in order (several when separated by ` ; `); those
    /// before an error are kept, as systemd keeps them.
    pub commands: Vec<ExecCommand>,
    /// Non-fatal remarks (escapes kept literally).
    pub warnings: Vec<String>,
    /// What stopped the parsing, if anything.
    pub error: Option<ExecParseError>,
}

/// A command systemd 252 would not accept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecParseError {
    /// What is wrong.
    pub message: String,
    /// systemd refuses to load the unit over it (it returns -ENOEXEC):
    /// true unless the command has the `-` prefix, or the first word itself
    /// could not be split (then systemd only logs it).
    pub fatal: bool,
}

/// systemd's `string_is_safe()`: no control characters, quotes or backslashes.
fn string_is_safe(s: &str) -> bool {
    !s.chars()
        .any(|c| c < ' ' || matches!(c, '"' | '\'' | '\\' | '\x7f'))
}

/// systemd's `path_is_valid()` / `filename_is_valid()` for a program.
fn program_is_valid(p: &str) -> bool {
    const NAME_MAX: usize = 255;
    const PATH_MAX: usize = 4096;
    if p.starts_with('/') {
        p.len() < PATH_MAX && p.split('/').all(|c| c.len() <= NAME_MAX)
    } else {
        !p.contains('/') && p != "." && p != ".." && p.len() <= NAME_MAX
    }
}

/// systemd's `path_simplify()`: no repeated or trailing slashes, no `.`
/// components (`..` stays).
pub fn path_simplify(p: &str) -> String {
    let parts: Vec<&str> = p
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    let joined = parts.join("/");
    match (p.starts_with('/'), joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}

/// The prefix characters of a command's first word, read as systemd 252
/// does (a repeated or conflicting one ends the prefix and becomes part of
/// the program name). Returns the flags and the rest of the word.
fn exec_prefixes(word: &str) -> (ExecFlags, &str) {
    let mut flags = ExecFlags::default();
    let mut rest = word;
    loop {
        let privileged = flags.full_privileges || flags.no_setuid || flags.ambient_fallback;
        match rest.chars().next() {
            Some('-') if !flags.ignore_failure => flags.ignore_failure = true,
            Some('@') if !flags.argv0_override => flags.argv0_override = true,
            Some(':') if !flags.no_env_expand => flags.no_env_expand = true,
            Some('+') if !privileged => flags.full_privileges = true,
            Some('!') if !privileged => flags.no_setuid = true,
            Some('!') if flags.no_setuid && !flags.full_privileges && !flags.ambient_fallback => {
                flags.no_setuid = false;
                flags.ambient_fallback = true;
            }
            _ => return (flags, rest),
        }
        rest = &rest[1..];
    }
}

/// Parses an Exec value into commands as systemd 252's `config_parse_exec()`
/// does; `expand_spec` expands `%` specifiers in each word after unquoting.
pub fn parse_exec(
    value: &str,
    expand_spec: &mut dyn FnMut(&str) -> Result<String, String>,
) -> ParsedExec {
    let opts = SplitOptions {
        unquote: true,
        cunescape: true,
    };
    let mut words = Words::new(value, opts);
    let mut out = ParsedExec::default();
    if let Err(e) = parse_commands(&mut words, expand_spec, &mut out.commands) {
        out.error = Some(e);
    }
    for e in std::mem::take(&mut words.notes.invalid_escapes) {
        out.warnings.push(format!(
            "invalid escape sequence '{e}' kept as written; write \\\\ for a backslash"
        ));
    }
    out
}

fn parse_commands(
    words: &mut Words<'_>,
    expand_spec: &mut dyn FnMut(&str) -> Result<String, String>,
    commands: &mut Vec<ExecCommand>,
) -> Result<(), ExecParseError> {
    loop {
        // systemd only logs a first word that cannot be split ("ignoring").
        let first = match words.next_word() {
            Ok(Some(w)) => w,
            Ok(None) => return Ok(()),
            Err(e) => {
                return Err(ExecParseError {
                    message: e.to_string(),
                    fatal: false,
                });
            }
        };
        // A lone ";" where a command would start separates nothing: skipped.
        if first == ";" {
            continue;
        }
        let (flags, prog) = exec_prefixes(&first);
        let fail = |message: String| ExecParseError {
            message,
            fatal: !flags.ignore_failure,
        };
        let path = expand_spec(prog).map_err(fail)?;
        if path.is_empty() {
            return Err(fail(if prog.is_empty() {
                "the command line has prefixes but no program".to_string()
            } else {
                "the program name is empty after expanding specifiers".to_string()
            }));
        }
        if !string_is_safe(&path) {
            return Err(fail(format!(
                "the program name '{path}' contains control characters, quotes or backslashes"
            )));
        }
        if path.ends_with('/') {
            return Err(fail(format!("the program '{path}' names a directory")));
        }
        if !program_is_valid(&path) {
            return Err(fail(format!(
                "'{path}' must be an absolute path or a name on PATH (relative paths with a '/' are not allowed)"
            )));
        }
        let mut argv = Vec::new();
        if !flags.argv0_override {
            argv.push(path.clone());
        }
        let program = path_simplify(&path);
        let mut separator = false;
        loop {
            let rest = words.rest();
            if rest.is_empty() {
                break;
            }
            // A lone ';' separates commands; '\;' is a literal ';' argument.
            let lone = |p: &str| {
                rest.strip_prefix(p)
                    .is_some_and(|r| r.is_empty() || r.starts_with(is_ws))
            };
            if lone(";") {
                words.advance(1);
                separator = true;
                break;
            }
            if lone("\\;") {
                words.advance(2);
                argv.push(";".to_string());
                continue;
            }
            match words.next_word().map_err(|e| fail(e.to_string()))? {
                Some(w) => argv.push(expand_spec(&w).map_err(fail)?),
                None => break,
            }
        }
        if argv.is_empty() {
            return Err(fail(
                "'@' needs a second word to use as argv[0]".to_string(),
            ));
        }
        commands.push(ExecCommand {
            flags,
            program,
            argv,
            origin: ExecOrigin::default(),
        });
        if !separator {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: &str) -> Vec<ExecCommand> {
        let p = parse_exec(v, &mut |s| Ok(s.to_string()));
        assert_eq!(p.error, None, "{v:?}");
        p.commands
    }

    /// The error of a line: (message, fatal).
    fn error(v: &str) -> (String, bool) {
        let e = parse_exec(v, &mut |s| Ok(s.to_string()))
            .error
            .unwrap_or_else(|| panic!("{v:?} parsed"));
        (e.message, e.fatal)
    }

    #[test]
    fn prefixes() {
        let c = &parse("-@/bin/sh mysh -c x")[0];
        assert!(c.flags.ignore_failure && c.flags.argv0_override);
        assert_eq!(c.program, "/bin/sh");
        assert_eq!(c.argv, ["mysh", "-c", "x"]);
        let c = &parse("!!/bin/true")[0];
        assert!(c.flags.ambient_fallback && !c.flags.no_setuid);
        let c = &parse(":+/bin/echo $X")[0];
        assert!(c.flags.no_env_expand && c.flags.full_privileges);
        assert_eq!(c.argv, ["/bin/echo", "$X"]);
        let c = &parse("!/etc/mysql/debian-start")[0];
        assert!(c.flags.no_setuid);
        // A repeated or conflicting prefix ends the prefixes (systemd 252).
        for bad in [
            "+!/bin/x",
            "!!!/bin/x",
            "./run",
            "@/bin/x",
            "/bin/",
            "/bin/a\\x01b",
        ] {
            assert!(error(bad).1, "{bad:?}");
        }
        // With '-' systemd only logs the bad command and ignores it.
        for ignored in ["-", "--/bin/x", "-./run", "-@/bin/x", "-/bin/x \"open"] {
            assert!(!error(ignored).1, "{ignored:?}");
        }
        // A first word that cannot be split is only logged by systemd.
        assert_eq!(
            error("\"/bin/open"),
            (
                "unbalanced quoting: a \" is never closed".to_string(),
                false
            )
        );
        // argv[0] keeps what was written; the program is simplified.
        let c = &parse("/usr//bin/./env x")[0];
        assert_eq!(
            (c.program.as_str(), c.argv[0].as_str()),
            ("/usr/bin/env", "/usr//bin/./env")
        );
    }

    #[test]
    fn lone_semicolons_where_a_command_starts_are_skipped() {
        assert!(parse(";").is_empty());
        assert!(parse(" ; ; ").is_empty());
        let cs = parse("/bin/a ; ; /bin/b");
        let argvs: Vec<_> = cs.iter().map(|c| c.argv.clone()).collect();
        assert_eq!(argvs, [vec!["/bin/a"], vec!["/bin/b"]]);
        assert_eq!(parse("; /bin/c x")[0].argv, ["/bin/c", "x"]);
        // Commands before an error are kept, as systemd appends them one by one.
        let p = parse_exec("/bin/a ; -bin/b", &mut |s| Ok(s.to_string()));
        assert_eq!(p.commands.len(), 1);
        assert!(!p.error.unwrap().fatal);
    }

    #[test]
    fn several_commands() {
        let cs = parse("/bin/a 1 ; /bin/b \\; 2;x");
        assert_eq!(cs.len(), 2);
        assert_eq!(cs[0].argv, ["/bin/a", "1"]);
        assert_eq!(cs[1].argv, ["/bin/b", ";", "2;x"]);
        assert_eq!(parse("/bin/echo ';'")[0].argv, ["/bin/echo", ";"]);
    }

    #[test]
    fn expansion() {
        let env: HashMap<String, String> = [
            ("LOGGING".to_string(), "--log-level=info  --x".to_string()),
            ("E".to_string(), String::new()),
            ("S".to_string(), "a b".to_string()),
        ]
        .into();
        let c = &parse("/usr/bin/podman $LOGGING system ${S} x${S}y $UNSET ${UNSET}z $$HOME $E")[0];
        assert_eq!(
            c.expand(&env),
            [
                "/usr/bin/podman",
                "--log-level=info",
                "--x",
                "system",
                "a b",
                "xa by",
                "z",
                "$HOME"
            ]
        );
        // systemd takes the whole rest of the word as the name: `$S-y` is unset.
        let f = |n: &str| (n == "S").then(|| "v".to_string());
        assert_eq!(parse("/bin/x $S-y a$S")[0].expand(&f), ["/bin/x", "a$S"]);
        // `${...}` takes any name up to the `}` (`A-B` is never set); `:` or a
        // missing `}` leaves the text alone (systemd 252's replace_env()).
        let g = |n: &str| (n == "A").then(|| "v".to_string());
        assert_eq!(
            parse("/bin/x ${A-B}z ${A:-d} ${A}${A ${} $")[0].expand(&g),
            ["/bin/x", "z", "${A:-d}", "v${A", ""]
        );
        let q = |_: &str| Some("'a b' \"c\\\" d\" 'e".to_string());
        assert_eq!(
            parse("/bin/x $Q")[0].expand(&q),
            ["/bin/x", "a b", "c\" d", "e"]
        );
    }

    #[test]
    fn resolve() {
        let c = &parse("sh -c true")[0];
        assert_eq!(
            c.resolve_program("/nonexistent:/bin:/usr/bin").unwrap(),
            Path::new("/bin/sh")
        );
        let mut c = parse("no-such-program-here")[0].clone();
        c.origin = ExecOrigin {
            unit: "memcached.service".to_string(),
            directive: "ExecStart".to_string(),
            line: 7,
        };
        let err = c.resolve_program("/bin").unwrap_err().to_string();
        assert!(
            err.starts_with(
                "memcached.service:7: ExecStart= must be an absolute path or a name on PATH"
            ),
            "{err}"
        );
        c.origin.line = 0;
        let err = c.resolve_program("/bin").unwrap_err().to_string();
        assert!(err.starts_with("memcached.service: ExecStart="), "{err}");
    }
}
