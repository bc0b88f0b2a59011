//! The `EnvironmentFile=` format: `KEY=value` lines with shell-like quoting,
//! comments and backslash continuation, read as systemd 252 reads it.

use std::path::Path;

use super::UnitError;
use super::exec::is_env_name;
use super::file::{UserFile, read_user_file};

/// What parsing an environment file produced.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct EnvFile {
    /// The assignments, in file order (later ones win when applied).
    pub vars: Vec<(String, String)>,
    /// Lines that were ignored and why, as `line N: message`.
    pub warnings: Vec<String>,
}

/// Reads and parses an environment file.
pub fn parse(path: &Path) -> Result<Vec<(String, String)>, UnitError> {
    Ok(parse_with_warnings(path)?.vars)
}

/// Reads and parses an environment file, keeping the warnings.
pub fn parse_with_warnings(path: &Path) -> Result<EnvFile, UnitError> {
    let bytes = read_user_file(path, UserFile::Environment)?;
    Ok(parse_str(&String::from_utf8_lossy(&bytes)))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum St {
    PreKey,
    Key,
    PreValue,
    Value,
    ValueEscape,
    Single,
    Double,
    DoubleEscape,
    Comment,
    CommentEscape,
}

/// Parses environment file text.
pub fn parse_str(text: &str) -> EnvFile {
    let mut out = EnvFile::default();
    let mut st = St::PreKey;
    let mut key = String::new();
    let mut value = String::new();
    // Length of `value` up to the last non-whitespace byte of an unquoted part,
    // so that trailing blanks are dropped but quoted blanks kept.
    let mut keep_len = 0usize;
    let mut line = 1usize;
    let mut key_line = 1usize;
    let push = |out: &mut EnvFile, key: &mut String, value: &mut String, keep: usize, at: usize| {
        value.truncate(keep);
        let k = key.trim_end().to_string();
        if is_env_name(&k) {
            out.vars.push((k, std::mem::take(value)));
        } else {
            out.warnings.push(format!(
                "line {at}: '{k}' is not a valid variable name, assignment ignored"
            ));
        }
        key.clear();
        value.clear();
    };
    for c in text.chars() {
        match st {
            St::PreKey => {
                if c == '#' || c == ';' {
                    st = St::Comment;
                } else if !c.is_whitespace() {
                    st = St::Key;
                    key_line = line;
                    key.push(c);
                }
            }
            St::Key => {
                if c == '\n' {
                    out.warnings.push(format!(
                        "line {key_line}: '{}' has no '=', ignored",
                        key.trim_end()
                    ));
                    key.clear();
                    st = St::PreKey;
                } else if c == '=' {
                    st = St::PreValue;
                    keep_len = 0;
                } else {
                    key.push(c);
                }
            }
            St::PreValue => match c {
                '\n' => {
                    push(&mut out, &mut key, &mut value, keep_len, key_line);
                    st = St::PreKey;
                }
                '\'' => st = St::Single,
                '"' => st = St::Double,
                '\\' => st = St::ValueEscape,
                c if c.is_whitespace() => {}
                c => {
                    value.push(c);
                    keep_len = value.len();
                    st = St::Value;
                }
            },
            St::Value => match c {
                '\n' => {
                    push(&mut out, &mut key, &mut value, keep_len, key_line);
                    st = St::PreKey;
                }
                '\\' => st = St::ValueEscape,
                c => {
                    value.push(c);
                    if !c.is_whitespace() {
                        keep_len = value.len();
                    }
                }
            },
            St::ValueEscape => {
                // Backslash-newline continues the value on the next line.
                if c != '\n' {
                    value.push(c);
                    keep_len = value.len();
                }
                st = St::Value;
            }
            St::Single => {
                if c == '\'' {
                    keep_len = value.len();
                    st = St::PreValue;
                } else {
                    value.push(c);
                }
            }
            St::Double => match c {
                '"' => {
                    keep_len = value.len();
                    st = St::PreValue;
                }
                '\\' => st = St::DoubleEscape,
                c => value.push(c),
            },
            St::DoubleEscape => {
                match c {
                    '"' | '\\' | '`' | '$' => value.push(c),
                    '\n' => {}
                    c => {
                        value.push('\\');
                        value.push(c);
                    }
                }
                st = St::Double;
            }
            St::Comment => match c {
                '\\' => st = St::CommentEscape,
                '\n' => st = St::PreKey,
                _ => {}
            },
            St::CommentEscape => st = St::Comment,
        }
        if c == '\n' {
            line += 1;
        }
    }
    match st {
        St::PreValue | St::Value | St::ValueEscape => {
            push(&mut out, &mut key, &mut value, keep_len, key_line)
        }
        St::Single | St::Double | St::DoubleEscape => {
            // systemd keeps an unterminated quoted value as read.
            let keep = value.len();
            push(&mut out, &mut key, &mut value, keep, key_line)
        }
        St::Key => out.warnings.push(format!(
            "line {key_line}: '{}' has no '=', ignored",
            key.trim_end()
        )),
        _ => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(s: &str) -> Vec<(String, String)> {
        parse_str(s).vars
    }

    fn kv(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn table() {
        let cases: &[(&str, &[(&str, &str)])] = &[
            ("A=1\nB=2", &[("A", "1"), ("B", "2")]),
            ("  A = spaced value  \n", &[("A", "spaced value")]),
            (
                "# c\n; c\nA=x # not a comment\n",
                &[("A", "x # not a comment")],
            ),
            ("A=\"q  \\\"x\\\" \\n\"\n", &[("A", "q  \"x\" \\n")]),
            ("A='lit \\n $X'\n", &[("A", "lit \\n $X")]),
            ("A=one\\\ntwo\n", &[("A", "onetwo")]),
            ("A=\"multi\nline\"\n", &[("A", "multi\nline")]),
            ("A=\n", &[("A", "")]),
            ("A=a\\ b\\\\c\n", &[("A", "a b\\c")]),
            ("A='x'\"y\"\n", &[("A", "xy")]),
            ("# comment \\\nB=hidden\nC=3", &[("C", "3")]),
            ("A=\"unterminated", &[("A", "unterminated")]),
            (
                "DAEMON_OPTS=\"-F -u _chrony\"\n",
                &[("DAEMON_OPTS", "-F -u _chrony")],
            ),
        ];
        for (input, want) in cases {
            assert_eq!(vars(input), kv(want), "input {input:?}");
        }
    }

    #[test]
    fn invalid_lines_warn() {
        let f = parse_str("export A=1\nnoequals\n1X=2\nOK=y\n");
        assert_eq!(f.vars, kv(&[("OK", "y")]));
        assert_eq!(f.warnings.len(), 3, "{:?}", f.warnings);
        assert!(f.warnings[1].starts_with("line 2:"));
    }

    #[test]
    fn missing_file_names_path() {
        let e = parse(Path::new("/nonexistent/env"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent/env"), "{e}");
    }
}
