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

/// Replaces `${NAME}` (unset: empty) and `$$` (a literal `$`) inside one word.
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
        } else if let Some(body) = after.strip_prefix('{')
            && let Some(end) = body.find('}')
            && is_env_name(&body[..end])
        {
            out.push_str(&env.lookup(&body[..end]).unwrap_or_default());
            rest = &body[end + 1..];
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
    /// The commands, in order (several when separated by ` ; `).
    pub commands: Vec<ExecCommand>,
    /// Non-fatal remarks (escapes kept literally).
    pub warnings: Vec<String>,
}

/// Parses an Exec value into commands; `expand_spec` expands `%` specifiers
/// in each word after unquoting, as systemd does.
pub fn parse_exec(
    value: &str,
    expand_spec: &mut dyn FnMut(&str) -> Result<String, String>,
) -> Result<ParsedExec, String> {
    let opts = SplitOptions {
        unquote: true,
        cunescape: true,
    };
    let mut words = Words::new(value, opts);
    let mut out = ParsedExec::default();
    loop {
        let rest = words.rest();
        if rest.is_empty() {
            break;
        }
        let first = words.next_word().map_err(|e| e.to_string())?;
        let Some(first) = first else { break };
        let mut flags = ExecFlags::default();
        let mut prog = first.as_str();
        loop {
            if let Some(r) = prog.strip_prefix("!!") {
                if flags.no_setuid || flags.full_privileges || flags.ambient_fallback {
                    return Err("only one of the prefixes +, ! and !! may be used".to_string());
                }
                flags.ambient_fallback = true;
                prog = r;
                continue;
            }
            let Some(c) = prog.chars().next() else { break };
            let dup = |b: bool| {
                if b {
                    Err(format!("the prefix '{c}' is given twice"))
                } else {
                    Ok(())
                }
            };
            match c {
                '-' => {
                    dup(flags.ignore_failure)?;
                    flags.ignore_failure = true;
                }
                '@' => {
                    dup(flags.argv0_override)?;
                    flags.argv0_override = true;
                }
                ':' => {
                    dup(flags.no_env_expand)?;
                    flags.no_env_expand = true;
                }
                '+' | '!' => {
                    if flags.no_setuid || flags.full_privileges || flags.ambient_fallback {
                        return Err("only one of the prefixes +, ! and !! may be used".to_string());
                    }
                    if c == '+' {
                        flags.full_privileges = true;
                    } else {
                        flags.no_setuid = true;
                    }
                }
                _ => break,
            }
            prog = &prog[1..];
        }
        if prog.is_empty() {
            return Err("the command line has prefixes but no program".to_string());
        }
        let program = expand_spec(prog)?;
        if program.is_empty() {
            return Err("the program name is empty after expanding specifiers".to_string());
        }
        if !program.starts_with('/') && program.contains('/') {
            return Err(format!(
                "'{program}' must be an absolute path or a name on PATH (relative paths with a '/' are not allowed)"
            ));
        }
        let mut argv = Vec::new();
        if !flags.argv0_override {
            argv.push(program.clone());
        }
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
                break;
            }
            if lone("\\;") {
                words.advance(2);
                argv.push(";".to_string());
                continue;
            }
            match words.next_word().map_err(|e| e.to_string())? {
                Some(w) => argv.push(expand_spec(&w)?),
                None => break,
            }
        }
        if flags.argv0_override && argv.is_empty() {
            return Err("'@' needs a second word to use as argv[0]".to_string());
        }
        out.commands.push(ExecCommand {
            flags,
            program,
            argv,
            origin: ExecOrigin::default(),
        });
    }
    for e in std::mem::take(&mut words.notes.invalid_escapes) {
        out.warnings.push(format!(
            "invalid escape sequence '{e}' kept as written; write \\\\ for a backslash"
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: &str) -> Vec<ExecCommand> {
        parse_exec(v, &mut |s| Ok(s.to_string())).unwrap().commands
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
        assert!(parse_exec("+!/bin/x", &mut |s| Ok(s.to_string())).is_err());
        assert!(parse_exec("--/bin/x", &mut |s| Ok(s.to_string())).is_err());
        assert!(parse_exec("-", &mut |s| Ok(s.to_string())).is_err());
        assert!(parse_exec("./run", &mut |s| Ok(s.to_string())).is_err());
        assert!(parse_exec("@/bin/x", &mut |s| Ok(s.to_string())).is_err());
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
