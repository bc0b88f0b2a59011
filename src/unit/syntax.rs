//! The unit file syntax of systemd.syntax(7): `[Section]` headers,
//! `Key=value` lines, `#`/`;` comments and backslash continuation.

use std::path::Path;
use std::sync::Arc;

use super::{Diagnostic, DiagnosticKind, Severity};

/// Longest logical line accepted, as systemd's LONG_LINE_MAX (1 MiB).
pub const LINE_MAX: usize = 1 << 20;

/// One `Key=value` assignment, with where it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive {
    /// The section it is in (`Service`).
    pub section: String,
    /// The key (`ExecStart`).
    pub key: String,
    /// The value, whitespace around it removed, continuations joined.
    pub value: String,
    /// The file it comes from.
    pub file: Arc<Path>,
    /// The line the assignment starts on (1-based).
    pub line: usize,
}

/// A section header, with where it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SectionHeader {
    /// The name between the brackets.
    pub name: String,
    /// Its line.
    pub line: usize,
}

/// The contents of one unit file or drop-in.
#[derive(Debug, Default, Clone)]
pub struct ParsedFile {
    /// The assignments in file order.
    pub directives: Vec<Directive>,
    /// The section headers in file order.
    pub sections: Vec<SectionHeader>,
    /// Syntax problems found.
    pub diagnostics: Vec<Diagnostic>,
}

fn diag(file: &Path, line: usize, directive: &str, sev: Severity, message: String) -> Diagnostic {
    Diagnostic {
        file: file.to_path_buf(),
        line,
        directive: directive.to_string(),
        severity: sev,
        kind: DiagnosticKind::Invalid,
        message,
    }
}

/// True when the line ends in an unescaped backslash (an odd run of them).
fn continues(line: &str) -> bool {
    line.bytes().rev().take_while(|&b| b == b'\\').count() % 2 == 1
}

/// Splits file text into sections and assignments.
pub fn parse(file: &Path, text: &str) -> ParsedFile {
    let mut out = ParsedFile::default();
    let file_arc: Arc<Path> = Arc::from(file);
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut section: Option<String> = None;
    let mut cont: Option<(String, usize)> = None;
    for (idx, raw) in text.split('\n').enumerate() {
        let lineno = idx + 1;
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        let trimmed = line.trim_start();
        // A comment is never continued, and inside a continuation it is skipped.
        if trimmed.starts_with('#') || trimmed.starts_with(';') {
            continue;
        }
        let (mut logical, start) = match cont.take() {
            Some((mut acc, start)) => {
                acc.push_str(line);
                (acc, start)
            }
            None => (line.to_string(), lineno),
        };
        if logical.len() > LINE_MAX {
            out.diagnostics.push(diag(
                file,
                start,
                "",
                Severity::Error,
                format!("line longer than {LINE_MAX} bytes, ignored"),
            ));
            continue;
        }
        if continues(&logical) {
            logical.pop();
            logical.push(' ');
            cont = Some((logical, start));
            continue;
        }
        parse_line(&mut out, file, &file_arc, &mut section, &logical, start);
    }
    // A continuation still open at the end of the file joins with nothing.
    if let Some((acc, start)) = cont {
        parse_line(&mut out, file, &file_arc, &mut section, &acc, start);
    }
    out
}

fn parse_line(
    out: &mut ParsedFile,
    file: &Path,
    file_arc: &Arc<Path>,
    section: &mut Option<String>,
    line: &str,
    lineno: usize,
) {
    let l = line.trim();
    if l.is_empty() || l.starts_with('#') || l.starts_with(';') {
        return;
    }
    if l.starts_with('[') {
        if !l.ends_with(']') || l.len() < 3 {
            out.diagnostics.push(diag(
                file,
                lineno,
                "",
                Severity::Error,
                format!("invalid section header '{l}'; write it as [Name]"),
            ));
            *section = None;
            return;
        }
        let name = &l[1..l.len() - 1];
        out.sections.push(SectionHeader {
            name: name.to_string(),
            line: lineno,
        });
        *section = Some(name.to_string());
        return;
    }
    if l.starts_with(".include ") {
        out.diagnostics.push(Diagnostic {
            kind: DiagnosticKind::Unsupported,
            ..diag(
                file,
                lineno,
                ".include",
                Severity::Warning,
                "unsupported, ignored (removed from systemd; use drop-ins)".to_string(),
            )
        });
        return;
    }
    let Some((key, value)) = l.split_once('=') else {
        out.diagnostics.push(diag(
            file,
            lineno,
            "",
            Severity::Error,
            format!("missing '=' in '{l}'; a line must be [Section], Key=value or a comment"),
        ));
        return;
    };
    let key = key.trim_end();
    if key.is_empty() {
        out.diagnostics.push(diag(
            file,
            lineno,
            "",
            Severity::Error,
            "assignment without a key".to_string(),
        ));
        return;
    }
    let Some(sec) = section.as_ref() else {
        out.diagnostics.push(diag(
            file,
            lineno,
            key,
            Severity::Warning,
            "assignment outside of any section, ignored; add a [Unit], [Service] or [Install] header".to_string(),
        ));
        return;
    };
    out.directives.push(Directive {
        section: sec.clone(),
        key: key.to_string(),
        value: value.trim_start().to_string(),
        file: file_arc.clone(),
        line: lineno,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(text: &str) -> Vec<(String, String, String, usize)> {
        parse(Path::new("t.service"), text)
            .directives
            .into_iter()
            .map(|d| (d.section, d.key, d.value, d.line))
            .collect()
    }

    fn one(s: &str, k: &str, v: &str, l: usize) -> (String, String, String, usize) {
        (s.into(), k.into(), v.into(), l)
    }

    #[test]
    fn basics() {
        let got = kv("[Unit]\nDescription = hello world \n# c\n; c\n\n[Service]\nType=simple\r\n");
        assert_eq!(
            got,
            [
                one("Unit", "Description", "hello world", 2),
                one("Service", "Type", "simple", 7)
            ]
        );
    }

    #[test]
    fn continuation() {
        let got = kv("[S]\nA=one \\\n  two\\\n# skipped\n; skipped\nthree\nB=x\\\\\nC=y\\");
        assert_eq!(
            got,
            [
                one("S", "A", "one    two three", 2),
                one("S", "B", "x\\\\", 7),
                one("S", "C", "y", 8)
            ]
        );
    }

    #[test]
    fn commented_line_is_not_continued() {
        let got = kv("[S]\n#A=x \\\nB=y\n");
        assert_eq!(got, [one("S", "B", "y", 3)]);
    }

    #[test]
    fn continuation_inside_quotes() {
        let got = kv("[S]\nE=/bin/sh -c \"a \\\n b\"\n");
        assert_eq!(got, [one("S", "E", "/bin/sh -c \"a   b\"", 2)]);
    }

    #[test]
    fn errors() {
        let p = parse(Path::new("t.service"), "X=1\n[Bad\n[S]\nnoequals\n=v\n");
        let msgs: Vec<_> = p.diagnostics.iter().map(|d| (d.line, d.severity)).collect();
        assert_eq!(
            msgs,
            [
                (1, Severity::Warning),
                (2, Severity::Error),
                (4, Severity::Error),
                (5, Severity::Error)
            ]
        );
        assert!(p.directives.is_empty());
    }

    #[test]
    fn empty_value_and_bom() {
        assert_eq!(kv("\u{feff}[S]\nA=\n"), [one("S", "A", "", 2)]);
    }
}
