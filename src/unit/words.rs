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
    /// `\xNN` or `\NNN` escapes that make bytes which are not UTF-8 text.
    NotUtf8(String),
}

impl fmt::Display for WordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WordError::UnterminatedQuote(q) => {
                write!(f, "unbalanced quoting: a {q} is never closed")
            }
            WordError::TrailingBackslash => f.write_str("the value ends with a lone backslash"),
            WordError::NotUtf8(w) => write!(
                f,
                "the escapes in '{w}' make bytes that are not UTF-8 text, which corral cannot pass on unchanged; write the character itself or its UTF-8 bytes (\\xc3\\xa9 for \u{e9})"
            ),
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
        // Bytes, because `\xNN` and `\NNN` make single bytes (as in systemd),
        // which only together may form a character.
        let mut out: Vec<u8> = Vec::new();
        let mut quote: Option<char> = None;
        let rest = &self.s[self.pos..];
        let mut it = rest.char_indices().peekable();
        let push = |out: &mut Vec<u8>, c: char| {
            let mut b = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
        };
        let mut end = rest.len();
        while let Some((i, c)) = it.next() {
            if c == '\\' {
                let Some(&(j, n)) = it.peek() else {
                    return Err(WordError::TrailingBackslash);
                };
                if !self.opts.cunescape {
                    it.next();
                    push(&mut out, n);
                    continue;
                }
                match cunescape_one(&rest[j..]) {
                    Some((e, len)) => {
                        match e {
                            Unescaped::Char(ch) => push(&mut out, ch),
                            Unescaped::Byte(b) => out.push(b),
                        }
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
                        out.push(b'\\');
                        push(&mut out, n);
                    }
                }
                continue;
            }
            match quote {
                Some(q) if c == q => quote = None,
                Some(_) => push(&mut out, c),
                None if self.opts.unquote && (c == '"' || c == '\'') => quote = Some(c),
                None if is_ws(c) => {
                    end = i;
                    break;
                }
                None => push(&mut out, c),
            }
        }
        if let Some(q) = quote {
            self.pos = self.s.len();
            return Err(WordError::UnterminatedQuote(q));
        }
        let written = &rest[..end];
        self.pos += end;
        // Only escaped bytes above 0x7f can break UTF-8; the rest is text.
        String::from_utf8(out)
            .map(Some)
            .map_err(|_| WordError::NotUtf8(written.to_string()))
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

/// What one C escape stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unescaped {
    /// A character (`\n`, `\u00e9`, ...).
    Char(char),
    /// A single byte (`\xNN`, `\NNN`): systemd puts the raw byte in the
    /// string, so `\xc3\xa9` is the UTF-8 encoding of `é`.
    Byte(u8),
}

/// Decodes one C escape; `s` starts after the backslash. Returns what it
/// stands for and how many bytes of `s` it used.
pub fn cunescape_one(s: &str) -> Option<(Unescaped, usize)> {
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
        return Some((Unescaped::Char(ch), 1));
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
            Some((Unescaped::Byte(v as u8), 3))
        }
        b'u' => {
            let v = hex(4)?;
            let ch = char::from_u32(v).filter(|&c| c != '\0')?;
            Some((Unescaped::Char(ch), 5))
        }
        b'U' => {
            let v = hex(8)?;
            let ch = char::from_u32(v).filter(|&c| c != '\0')?;
            Some((Unescaped::Char(ch), 9))
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
            Some((Unescaped::Byte(v as u8), 3))
        }
        _ => None,
    }
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
            // Escaped bytes that together are UTF-8, as systemd passes them.
            ("\\xc3\\xa9-\\303\\251", &["\u{e9}-\u{e9}"]),
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
        // A lone high byte is not text: an error rather than another character.
        assert_eq!(
            split("ok caf\\xe9", EXEC),
            Err(WordError::NotUtf8("caf\\xe9".to_string()))
        );
    }
}
