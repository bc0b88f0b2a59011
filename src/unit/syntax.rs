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
        fatal: false,
    }
}

/// An error over which systemd 252's `config_parse()` gives up on the file,
/// so the unit is not loaded.
fn fatal(file: &Path, line: usize, message: String) -> Diagnostic {
    Diagnostic {
        fatal: true,
        ..diag(file, line, "", Severity::Error, message)
    }
}

/// Splits text into lines as systemd 252's `read_line()` does: `\n`, `\r`
/// and NUL all end a line, and a run of them counts once as long as no kind
/// repeats (`\r\n`, `\n\r`, `\r\n\0` are one line end; `\n\n` is an
/// empty line; nothing follows a NUL in the same line end). So a NUL in
/// `ExecStart=/bin/true\0x` ends the assignment, and `x` is a line of its own.
pub fn split_lines(text: &[u8]) -> Vec<&[u8]> {
    const NUL: u8 = 1;
    const LF: u8 = 2;
    const CR: u8 = 4;
    let mut lines = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < text.len() {
        let kind = |b: u8| match b {
            b'\n' => LF,
            b'\r' => CR,
            0 => NUL,
            _ => 0,
        };
        if kind(text[i]) == 0 {
            i += 1;
            continue;
        }
        lines.push(&text[start..i]);
        let mut seen = 0u8;
        while i < text.len() {
            let k = kind(text[i]);
            if seen & NUL != 0 || k == 0 || seen & k != 0 {
                break;
            }
            seen |= k;
            i += 1;
        }
        start = i;
    }
    if start < text.len() {
        lines.push(&text[start..]);
    }
    lines
}

/// True when the line ends in an unescaped backslash (an odd run of them).
fn continues(line: &str) -> bool {
    line.bytes().rev().take_while(|&b| b == b'\\').count() % 2 == 1
}

/// Splits file text into sections and assignments.
pub fn parse(file: &Path, text: &str) -> ParsedFile {
    parse_bytes(file, text.as_bytes())
}

/// Splits file contents into sections and assignments, line by line as
/// systemd 252's `config_parse()` reads them ([`split_lines`]); a line that
/// is not UTF-8 is an error on that line (systemd then refuses the file).
pub fn parse_bytes(file: &Path, bytes: &[u8]) -> ParsedFile {
    let mut out = ParsedFile::default();
    let file_arc: Arc<Path> = Arc::from(file);
    let bytes = bytes.strip_prefix("\u{feff}".as_bytes()).unwrap_or(bytes);
    let mut section: Option<String> = None;
    let mut cont: Option<(String, usize)> = None;
    for (idx, raw) in split_lines(bytes).into_iter().enumerate() {
        let lineno = idx + 1;
        let line = match std::str::from_utf8(raw) {
            Ok(l) => l,
            Err(_) => {
                out.diagnostics.push(fatal(
                    file,
                    lineno,
                    "the line is not valid UTF-8; systemd refuses such a file (save it as UTF-8)"
                        .to_string(),
                ));
                continue;
            }
        };
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
            out.diagnostics.push(fatal(
                file,
                start,
                format!("line longer than {LINE_MAX} bytes; systemd refuses such a file"),
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
        // As systemd 252: a header must end in ']' and hold no control
        // characters, quotes or backslashes; otherwise the file is refused.
        let name = l.strip_suffix(']').map(|n| &n[1..]).filter(|n| {
            !n.chars()
                .any(|c| c < ' ' || matches!(c, '"' | '\'' | '\\' | '\x7f'))
        });
        let Some(name) = name else {
            out.diagnostics.push(fatal(
                file,
                lineno,
                format!(
                    "invalid section header '{l}'; write it as [Name] (systemd refuses such a file)"
                ),
            ));
            *section = None;
            return;
        };
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
            format!(
                "missing '=' in '{l}'; a line must be [Section], Key=value or a comment (line ignored)"
            ),
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
            "assignment without a key (line ignored)".to_string(),
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
        let p = parse(
            Path::new("t.service"),
            "X=1\n[Bad\n[S]\nnoequals\n=v\n[a\"b]\n[]\n",
        );
        let msgs: Vec<_> = p
            .diagnostics
            .iter()
            .map(|d| (d.line, d.severity, d.fatal))
            .collect();
        // systemd 252 gives up on the file over a bad header; it only logs
        // and skips a line without '=' or without a key.
        assert_eq!(
            msgs,
            [
                (1, Severity::Warning, false),
                (2, Severity::Error, true),
                (4, Severity::Error, false),
                (5, Severity::Error, false),
                (6, Severity::Error, true),
            ]
        );
        assert!(p.directives.is_empty());
        assert_eq!(p.sections.last().unwrap().name, "");
    }

    #[test]
    fn line_ends_as_systemd_252_reads_them() {
        let lines = |t: &[u8]| -> Vec<String> {
            split_lines(t)
                .into_iter()
                .map(|l| String::from_utf8_lossy(l).into_owned())
                .collect()
        };
        assert_eq!(lines(b"a\nb\n"), ["a", "b"]);
        assert_eq!(lines(b"a\r\nb\n\rc\r\n\0d"), ["a", "b", "c", "d"]);
        assert_eq!(lines(b"a\n\nb\r\rc"), ["a", "", "b", "", "c"]);
        assert_eq!(lines(b"a\rb"), ["a", "b"]);
        assert_eq!(lines(b"a\0b\0\nc"), ["a", "b", "", "c"]);
        assert!(lines(b"").is_empty());
        // A NUL ends the assignment; what follows is a line of its own.
        let p = parse_bytes(
            Path::new("t.service"),
            b"[S]\nExecStart=/bin/true\0nul\nB=2\rC=3\n",
        );
        let got: Vec<_> = p
            .directives
            .iter()
            .map(|d| (d.key.as_str(), d.value.as_str(), d.line))
            .collect();
        assert_eq!(
            got,
            [("ExecStart", "/bin/true", 2), ("B", "2", 4), ("C", "3", 5)]
        );
        assert_eq!(p.diagnostics.len(), 1);
        assert_eq!(p.diagnostics[0].line, 3);
        assert!(p.diagnostics[0].message.starts_with("missing '=' in 'nul'"));
        assert!(!p.diagnostics[0].fatal);
    }

    #[test]
    fn invalid_utf8_names_its_line_and_is_fatal() {
        let p = parse_bytes(Path::new("t.service"), b"[S]\nA=1\nB=caf\xe9\nC=2\n");
        assert_eq!(p.directives.len(), 2);
        assert_eq!(p.diagnostics.len(), 1);
        let d = &p.diagnostics[0];
        assert_eq!((d.line, d.fatal), (3, true));
        assert!(
            d.to_string()
                .starts_with("t.service:3: error: the line is not valid UTF-8")
        );
    }

    #[test]
    fn empty_value_and_bom() {
        assert_eq!(kv("\u{feff}[S]\nA=\n"), [one("S", "A", "", 2)]);
    }
}
