//! journalctl's output formats over [`Entry`]: short, short-iso, short-precise,
//! short-monotonic, cat, json, json-pretty, export (systemd's Journal Export Format,
//! byte for byte) and verbose; `--output-fields`; colors by priority.

use std::io::{self, Write};

use chrono::{Local, TimeZone};

use super::{Entry, Stream, flags};

/// An output format (`-o`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `Nov 23 11:25:06 host ident[pid]: message`.
    Short,
    /// ISO 8601 timestamps.
    ShortIso,
    /// Microsecond timestamps.
    ShortPrecise,
    /// Monotonic timestamps.
    ShortMonotonic,
    /// The message only.
    Cat,
    /// One JSON object per line.
    Json,
    /// Indented JSON.
    JsonPretty,
    /// systemd's Journal Export Format.
    Export,
    /// Every field.
    Verbose,
}

impl Format {
    /// Parses a `-o` name.
    pub fn parse(s: &str) -> Option<Format> {
        Some(match s {
            "short" => Format::Short,
            "short-iso" => Format::ShortIso,
            "short-precise" => Format::ShortPrecise,
            "short-monotonic" => Format::ShortMonotonic,
            "cat" => Format::Cat,
            "json" => Format::Json,
            "json-pretty" => Format::JsonPretty,
            "export" => Format::Export,
            "verbose" => Format::Verbose,
            _ => return None,
        })
    }

    /// The names accepted by [`Format::parse`].
    pub const NAMES: &'static [&'static str] = &[
        "short",
        "short-iso",
        "short-precise",
        "short-monotonic",
        "cat",
        "json",
        "json-pretty",
        "export",
        "verbose",
    ];
}

/// How to print.
#[derive(Debug, Clone)]
pub struct OutputOptions {
    /// The format.
    pub format: Format,
    /// `--output-fields`: only these fields (json, json-pretty, export, verbose; the
    /// cursor and timestamps are always there, as journalctl does).
    pub fields: Option<Vec<String>>,
    /// Color by priority (short formats and cat).
    pub color: bool,
    /// Host name shown in short formats and as `_HOSTNAME`.
    pub hostname: String,
    /// The store's id (part of cursors).
    pub store_id: u128,
    /// The last formatted (format, second) and its text: consecutive entries mostly
    /// share their second, and strftime-style formatting costs more than the rest.
    time_cache: std::cell::RefCell<Option<(Format, i64, String)>>,
}

impl OutputOptions {
    /// Options for `format` with this machine's host name, no colors, all fields.
    pub fn new(format: Format, store_id: u128) -> OutputOptions {
        OutputOptions {
            format,
            fields: None,
            color: false,
            hostname: hostname(),
            store_id,
            time_cache: std::cell::RefCell::new(None),
        }
    }
}

/// This machine's host name.
pub fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".into())
}

/// The data fields of an entry, journald names, in the order they are printed.
pub fn fields(e: &Entry, hostname: &str) -> Vec<(&'static str, Vec<u8>)> {
    let mut f: Vec<(&'static str, Vec<u8>)> = Vec::with_capacity(12);
    f.push(("PRIORITY", e.priority.to_string().into_bytes()));
    f.push(("SYSLOG_IDENTIFIER", e.identifier.clone().into_bytes()));
    f.push(("MESSAGE", e.message.clone()));
    if let Some(pid) = e.pid {
        f.push(("_PID", pid.to_string().into_bytes()));
    }
    f.push(("_UID", e.uid.to_string().into_bytes()));
    let transport = match e.stream {
        Stream::Manager => "journal",
        _ => "stdout",
    };
    f.push(("_TRANSPORT", transport.as_bytes().to_vec()));
    f.push(("_SYSTEMD_USER_UNIT", e.unit.clone().into_bytes()));
    if e.invocation != 0 {
        f.push((
            "_SYSTEMD_INVOCATION_ID",
            format!("{:032x}", e.invocation).into_bytes(),
        ));
    }
    f.push(("_HOSTNAME", hostname.as_bytes().to_vec()));
    f.push(("CORRAL_STREAM", e.stream.name().as_bytes().to_vec()));
    if e.flags & flags::SPLIT != 0 {
        f.push(("_LINE_BREAK", b"line-max".to_vec()));
    } else if e.flags & flags::NO_NEWLINE != 0 {
        f.push(("_LINE_BREAK", b"eof".to_vec()));
    }
    if e.flags & flags::CONTINUED != 0 {
        f.push(("CORRAL_CONTINUED", b"1".to_vec()));
    }
    f
}

fn wanted(opts: &OutputOptions, name: &str) -> bool {
    opts.fields
        .as_ref()
        .is_none_or(|fs| fs.iter().any(|f| f == name))
}

fn local(us: u64) -> chrono::DateTime<Local> {
    Local
        .timestamp_micros(us as i64)
        .single()
        .unwrap_or_else(|| Local.timestamp_micros(0).single().expect("epoch"))
}

fn color_of(priority: u8) -> Option<&'static str> {
    match priority {
        0..=2 => Some("\x1b[1;31m"),
        3 => Some("\x1b[31m"),
        4 => Some("\x1b[33m"),
        5 => Some("\x1b[1m"),
        7 => Some("\x1b[2m"),
        _ => None,
    }
}

/// Writes one entry in the chosen format.
pub fn write_entry(w: &mut dyn Write, e: &Entry, opts: &OutputOptions) -> io::Result<()> {
    match opts.format {
        Format::Short | Format::ShortIso | Format::ShortPrecise | Format::ShortMonotonic => {
            let t = match opts.format {
                Format::ShortMonotonic => format!(
                    "[{:>5}.{:06}]",
                    e.monotonic / 1_000_000,
                    e.monotonic % 1_000_000
                ),
                f => {
                    let sec = (e.realtime / 1_000_000) as i64;
                    let mut cache = opts.time_cache.borrow_mut();
                    let text = match &*cache {
                        Some((cf, cs, text)) if *cf == f && *cs == sec => text.clone(),
                        _ => {
                            let fmt = match f {
                                Format::ShortIso => "%Y-%m-%dT%H:%M:%S%z",
                                _ => "%b %d %H:%M:%S",
                            };
                            let text = local(e.realtime).format(fmt).to_string();
                            *cache = Some((f, sec, text.clone()));
                            text
                        }
                    };
                    if f == Format::ShortPrecise {
                        format!("{text}.{:06}", e.realtime % 1_000_000)
                    } else {
                        text
                    }
                }
            };
            let ident = if e.identifier.is_empty() {
                &e.unit
            } else {
                &e.identifier
            };
            match e.pid {
                Some(pid) => write!(w, "{t} {} {ident}[{pid}]: ", opts.hostname)?,
                None => write!(w, "{t} {} {ident}: ", opts.hostname)?,
            }
            write_message_line(w, e, opts)
        }
        Format::Cat => write_message_line(w, e, opts),
        Format::Json => {
            let v = json_object(e, opts);
            serde_json::to_writer(&mut *w, &v)?;
            w.write_all(b"\n")
        }
        Format::JsonPretty => write_json_pretty(w, e, opts),
        Format::Export => write_export(w, e, opts),
        Format::Verbose => write_verbose(w, e, opts),
    }
}

fn write_message_line(w: &mut dyn Write, e: &Entry, opts: &OutputOptions) -> io::Result<()> {
    let c = if opts.color {
        color_of(e.priority)
    } else {
        None
    };
    if let Some(c) = c {
        w.write_all(c.as_bytes())?;
    }
    // Unprintable bytes would corrupt a terminal; journalctl shows "[N B blob data]".
    if is_printable(&e.message) {
        w.write_all(&e.message)?;
    } else {
        write!(w, "[{} B blob data]", e.message.len())?;
    }
    if c.is_some() {
        w.write_all(b"\x1b[0m")?;
    }
    w.write_all(b"\n")
}

/// Whether a value is shown as text: valid UTF-8 without control characters but tab.
pub fn is_printable(v: &[u8]) -> bool {
    // Nearly every line is plain ASCII: a byte test the compiler vectorizes,
    // instead of decoding chars (a tenth of a 10 k-line query's time).
    if v.iter().all(|&b| (0x20..0x7f).contains(&b) || b == b'\t') {
        return true;
    }
    match std::str::from_utf8(v) {
        Ok(s) => !s.chars().any(|c| c.is_control() && c != '\t'),
        Err(_) => false,
    }
}

fn header_fields(e: &Entry, opts: &OutputOptions) -> [(&'static str, String); 4] {
    [
        ("__CURSOR", e.cursor(opts.store_id)),
        ("__REALTIME_TIMESTAMP", e.realtime.to_string()),
        ("__MONOTONIC_TIMESTAMP", e.monotonic.to_string()),
        ("_BOOT_ID", format!("{:032x}", e.boot_id)),
    ]
}

fn json_value(v: &[u8]) -> serde_json::Value {
    // journalctl prints non-UTF-8 values as arrays of byte numbers.
    match std::str::from_utf8(v) {
        Ok(s) => serde_json::Value::String(s.to_owned()),
        Err(_) => serde_json::Value::Array(v.iter().map(|b| (*b).into()).collect()),
    }
}

/// The JSON object of an entry (journalctl's field names; values are strings).
pub fn json_object(e: &Entry, opts: &OutputOptions) -> serde_json::Map<String, serde_json::Value> {
    let mut m = serde_json::Map::new();
    for (k, v) in header_fields(e, opts) {
        m.insert(k.to_owned(), serde_json::Value::String(v));
    }
    for (k, v) in fields(e, &opts.hostname) {
        if wanted(opts, k) {
            m.insert(k.to_owned(), json_value(&v));
        }
    }
    m
}

fn write_json_pretty(w: &mut dyn Write, e: &Entry, opts: &OutputOptions) -> io::Result<()> {
    let m = json_object(e, opts);
    w.write_all(b"{\n")?;
    let n = m.len();
    for (i, (k, v)) in m.iter().enumerate() {
        write!(w, "\t\"{k}\" : {v}")?;
        w.write_all(if i + 1 < n { b",\n" } else { b"\n" })?;
    }
    w.write_all(b"}\n")
}

/// Journal Export Format: `NAME=value\n` for text, `NAME\n<le64 length><bytes>\n` for
/// binary-unsafe values, a blank line after each entry.
fn write_export(w: &mut dyn Write, e: &Entry, opts: &OutputOptions) -> io::Result<()> {
    let mut buf = Vec::with_capacity(512 + e.message.len());
    for (k, v) in header_fields(e, opts) {
        buf.extend_from_slice(k.as_bytes());
        buf.push(b'=');
        buf.extend_from_slice(v.as_bytes());
        buf.push(b'\n');
    }
    for (k, v) in fields(e, &opts.hostname) {
        if !wanted(opts, k) {
            continue;
        }
        buf.extend_from_slice(k.as_bytes());
        if export_text_safe(&v) {
            buf.push(b'=');
            buf.extend_from_slice(&v);
        } else {
            buf.push(b'\n');
            buf.extend_from_slice(&(v.len() as u64).to_le_bytes());
            buf.extend_from_slice(&v);
        }
        buf.push(b'\n');
    }
    buf.push(b'\n');
    w.write_all(&buf)
}

/// journalctl writes a value as text only when it is printable UTF-8 without newlines.
fn export_text_safe(v: &[u8]) -> bool {
    is_printable(v)
}

fn write_verbose(w: &mut dyn Write, e: &Entry, opts: &OutputOptions) -> io::Result<()> {
    let t = local(e.realtime).format("%a %Y-%m-%d %H:%M:%S%.6f %Z");
    writeln!(w, "{t} [{}]", e.cursor(opts.store_id))?;
    writeln!(w, "    _BOOT_ID={:032x}", e.boot_id)?;
    for (k, v) in fields(e, &opts.hostname) {
        if !wanted(opts, k) {
            continue;
        }
        if is_printable(&v) {
            write!(w, "    {k}=")?;
            w.write_all(&v)?;
            w.write_all(b"\n")?;
        } else {
            writeln!(w, "    {k}=[{} B blob data]", v.len())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::is_printable;

    #[test]
    fn printable_is_text_without_control_characters() {
        assert!(is_printable(b"plain ascii\twith a tab"));
        assert!(is_printable("caf\u{e9} \u{2603}".as_bytes()));
        assert!(is_printable(b""));
        assert!(!is_printable(b"bell\x07"));
        assert!(!is_printable(b"del\x7f"));
        assert!(!is_printable(b"new\nline"));
        // C1 controls are control characters too, though not ASCII.
        assert!(!is_printable("c1\u{85}".as_bytes()));
        assert!(!is_printable(b"not utf-8 \xff"));
    }
}
