//! Word splitting as systemd's `extract_first_word()` does it: quotes (also
//! inside a word), C escapes, and whitespace separators.

use std::fmt;

/// Why a value could not be split into words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WordError {
    /// A `"` or `'` that is never closed.
    UnterminatedQuote(char),
    /// A backslash at the very end of the value.
    TrailingBackslash,
}

impl fmt::Display for WordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WordError::UnterminatedQuote(q) => {
                write!(f, "unbalanced quoting: a {q} is never closed")
            }
            WordError::TrailingBackslash => f.write_str("the value ends with a lone backslash"),
        }
    }
}

/// How to split.
#[derive(Debug, Clone, Copy)]
pub struct SplitOptions {
    /// Remove quotes (`"a b"` is one word `a b`).
    pub unquote: bool,
    /// Turn C escapes (`\n`, `\x41`, ...) into characters.
    pub cunescape: bool,
}

/// What splitting produced besides the words: escapes that were kept as written.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SplitNotes {
    /// Escape sequences that are not valid C escapes and were kept literally.
    pub invalid_escapes: Vec<String>,
}

/// True for the separators systemd uses (`WHITESPACE`).
pub fn is_ws(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r')
}

/// A cursor over a value that hands out one word at a time.
#[derive(Debug)]
pub struct Words<'a> {
    s: &'a str,
    pos: usize,
    opts: SplitOptions,
    /// Escapes kept literally so far.
    pub notes: SplitNotes,
}

impl<'a> Words<'a> {
    /// Starts splitting `s`.
    pub fn new(s: &'a str, opts: SplitOptions) -> Self {
        Words {
            s,
            pos: 0,
            opts,
            notes: SplitNotes::default(),
        }
    }

    /// The not yet consumed rest, with leading whitespace skipped.
    pub fn rest(&mut self) -> &'a str {
        self.skip_ws();
        &self.s[self.pos..]
    }

    /// Skips `n` bytes of the rest (after `rest()`); used for raw tokens like `;`.
    pub fn advance(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.s.len());
    }

    fn skip_ws(&mut self) {
        while let Some(c) = self.s[self.pos..].chars().next() {
            if !is_ws(c) {
                break;
            }
            self.pos += c.len_utf8();
        }
    }

    /// The next word, `Ok(None)` at the end.
    pub fn next_word(&mut self) -> Result<Option<String>, WordError> {
        self.skip_ws();
        if self.pos >= self.s.len() {
            return Ok(None);
        }
        let mut out = String::new();
        let mut quote: Option<char> = None;
        let rest = &self.s[self.pos..];
        let mut it = rest.char_indices().peekable();
        while let Some((i, c)) = it.next() {
            if c == '\\' {
                let Some(&(j, n)) = it.peek() else {
                    return Err(WordError::TrailingBackslash);
                };
                if !self.opts.cunescape {
                    it.next();
                    out.push(n);
                    continue;
                }
                match cunescape_one(&rest[j..]) {
                    Some((ch, len)) => {
                        out.push_str(&ch);
                        // Skip the consumed escape body.
                        while let Some(&(k, _)) = it.peek() {
                            if k >= j + len {
                                break;
                            }
                            it.next();
                        }
                    }
                    None => {
                        it.next();
                        self.notes.invalid_escapes.push(format!("\\{n}"));
                        out.push('\\');
                        out.push(n);
                    }
                }
                continue;
            }
            match quote {
                Some(q) if c == q => quote = None,
                Some(_) => out.push(c),
                None if self.opts.unquote && (c == '"' || c == '\'') => quote = Some(c),
                None if is_ws(c) => {
                    self.pos += i;
                    return Ok(Some(out));
                }
                None => out.push(c),
            }
        }
        if let Some(q) = quote {
            self.pos = self.s.len();
            return Err(WordError::UnterminatedQuote(q));
        }
        self.pos = self.s.len();
        Ok(Some(out))
    }
}

/// Splits a whole value into words.
pub fn split(s: &str, opts: SplitOptions) -> Result<(Vec<String>, SplitNotes), WordError> {
    let mut w = Words::new(s, opts);
    let mut out = Vec::new();
    while let Some(word) = w.next_word()? {
        out.push(word);
    }
    Ok((out, w.notes))
}

/// Decodes one C escape; `s` starts after the backslash. Returns the text and
/// how many bytes of `s` it used.
pub fn cunescape_one(s: &str) -> Option<(String, usize)> {
    let b = s.as_bytes();
    let c = *b.first()?;
    let simple = match c {
        b'a' => Some('\x07'),
        b'b' => Some('\x08'),
        b'f' => Some('\x0c'),
        b'n' => Some('\n'),
        b'r' => Some('\r'),
        b't' => Some('\t'),
        b'v' => Some('\x0b'),
        b'\\' => Some('\\'),
        b'"' => Some('"'),
        b'\'' => Some('\''),
        b's' => Some(' '),
        _ => None,
    };
    if let Some(ch) = simple {
        return Some((ch.to_string(), 1));
    }
    let hex = |n: usize| -> Option<u32> {
        let digits = s.get(1..1 + n)?;
        if !digits.bytes().all(|d| d.is_ascii_hexdigit()) {
            return None;
        }
        u32::from_str_radix(digits, 16).ok()
    };
    match c {
        b'x' => {
            let v = hex(2)?;
            // NUL bytes cannot live in a C string; systemd refuses them too.
            if v == 0 {
                return None;
            }
            Some((byte_to_string(v as u8), 3))
        }
        b'u' => {
            let v = hex(4)?;
            let ch = char::from_u32(v).filter(|&c| c != '\0')?;
            Some((ch.to_string(), 5))
        }
        b'U' => {
            let v = hex(8)?;
            let ch = char::from_u32(v).filter(|&c| c != '\0')?;
            Some((ch.to_string(), 9))
        }
        b'0'..=b'7' => {
            let digits = s.get(0..3)?;
            if !digits.bytes().all(|d| (b'0'..=b'7').contains(&d)) {
                return None;
            }
            let v = u32::from_str_radix(digits, 8).ok()?;
            if v == 0 || v > 255 {
                return None;
            }
            Some((byte_to_string(v as u8), 3))
        }
        _ => None,
    }
}

/// Bytes above 0x7f from `\xNN` are taken as Latin-1 code points, since a
/// Rust string cannot hold a lone non-UTF-8 byte.
fn byte_to_string(b: u8) -> String {
    (b as char).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXEC: SplitOptions = SplitOptions {
        unquote: true,
        cunescape: true,
    };

    fn words(s: &str) -> Vec<String> {
        split(s, EXEC).unwrap().0
    }

    #[test]
    fn table() {
        let cases: &[(&str, &[&str])] = &[
            ("a b  c", &["a", "b", "c"]),
            ("  lead trail  ", &["lead", "trail"]),
            (
                "'daemon on; master_process on;'",
                &["daemon on; master_process on;"],
            ),
            (
                "--components=\"pkcs11,secrets\"",
                &["--components=pkcs11,secrets"],
            ),
            ("\"a b\"'c d'", &["a bc d"]),
            ("a\\tb", &["a\tb"]),
            ("a\\sb", &["a b"]),
            ("\\x41\\102\\u00e9", &["AB\u{e9}"]),
            ("'it\\'s'", &["it's"]),
            ("\"\"", &[""]),
            ("x\\\\y", &["x\\y"]),
            ("tab\tsep", &["tab", "sep"]),
        ];
        for (input, want) in cases {
            assert_eq!(&words(input), want, "input {input:?}");
        }
    }

    #[test]
    fn invalid_escape_is_kept() {
        let (w, notes) = split("a\\qb \\;", EXEC).unwrap();
        assert_eq!(w, ["a\\qb", "\\;"]);
        assert_eq!(notes.invalid_escapes, ["\\q", "\\;"]);
    }

    #[test]
    fn errors() {
        assert_eq!(split("\"abc", EXEC), Err(WordError::UnterminatedQuote('"')));
        assert_eq!(split("'abc", EXEC), Err(WordError::UnterminatedQuote('\'')));
        assert_eq!(split("abc\\", EXEC), Err(WordError::TrailingBackslash));
    }
}
