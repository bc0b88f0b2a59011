//! journalctl's output formats over [`Entry`]: short, short-iso, short-precise,
//! short-monotonic, short-unix, with-unit, cat, json, json-pretty, json-sse, export
//! (systemd's Journal Export Format, byte for byte) and verbose; `--output-fields`;
//! colors by priority; messages shown as journalctl 252 shows them (tabs expanded,
//! color codes and line-ending carriage returns dropped, anything else unprintable
//! as `[N blob data]`, unless `--all`).

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
    /// Seconds since the epoch, with microseconds.
    ShortUnix,
    /// The unit instead of the identifier, and a full date with the time zone.
    WithUnit,
    /// The message only.
    Cat,
    /// One JSON object per line.
    Json,
    /// Indented JSON.
    JsonPretty,
    /// JSON as Server-Sent Events (`data: {...}` and a blank line).
    JsonSse,
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
            "short-unix" => Format::ShortUnix,
            "with-unit" => Format::WithUnit,
            "cat" => Format::Cat,
            "json" => Format::Json,
            "json-pretty" => Format::JsonPretty,
            "json-sse" => Format::JsonSse,
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
        "short-unix",
        "with-unit",
        "cat",
        "json",
        "json-pretty",
        "json-sse",
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
    /// `--all`: messages as they are, unprintable characters included.
    pub all: bool,
    /// `--no-hostname`: short formats without the host name.
    pub no_hostname: bool,
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
            all: false,
            no_hostname: false,
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
    if let Some(id) = super::catalog::entry_message_id(e.stream, e.message_id, &e.message) {
        f.push(("MESSAGE_ID", id.as_bytes().to_vec()));
    }
    if let Some(pid) = e.pid {
        f.push(("_PID", pid.to_string().into_bytes()));
    }
    if !e.comm.is_empty() {
        f.push(("_COMM", e.comm.clone().into_bytes()));
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

/// The local time zone's abbreviation at `sec` ("UTC", "CET", "CEST"), as strftime's
/// %Z gives it: chrono knows only offsets.
fn zone_abbreviation(sec: i64) -> String {
    let t: libc::time_t = sec;
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are valid for the call; localtime_r is thread-safe and
    // leaves tm_zone pointing at static storage of libc's time zone data.
    let ok = !unsafe { libc::localtime_r(&t, &mut tm) }.is_null();
    if !ok || tm.tm_zone.is_null() {
        return local((sec.max(0) as u64) * 1_000_000)
            .format("%:z")
            .to_string();
    }
    // SAFETY: tm_zone is a NUL-terminated string owned by libc (checked non-null).
    unsafe { std::ffi::CStr::from_ptr(tm.tm_zone) }
        .to_string_lossy()
        .into_owned()
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
        Format::Short
        | Format::ShortIso
        | Format::ShortPrecise
        | Format::ShortMonotonic
        | Format::ShortUnix
        | Format::WithUnit => {
            let mut prefix = short_time(e, opts);
            if !opts.no_hostname {
                prefix.push(' ');
                prefix.push_str(&opts.hostname);
            }
            let ident = if opts.format == Format::WithUnit || e.identifier.is_empty() {
                &e.unit
            } else {
                &e.identifier
            };
            prefix.push(' ');
            prefix.push_str(ident);
            if let Some(pid) = e.pid {
                prefix.push_str(&format!("[{pid}]"));
            }
            prefix.push_str(": ");
            w.write_all(prefix.as_bytes())?;
            // journalctl's column count for the later lines of a message leaves
            // out the unit name of with-unit (it prints it uncounted).
            let indent = match opts.format {
                Format::WithUnit => prefix.len() - ident.len(),
                _ => prefix.len(),
            };
            write_message(w, e, opts, indent)
        }
        Format::Cat => {
            // journalctl's cat writes the message as it is, whatever it holds.
            let c = if opts.color {
                color_of(e.priority)
            } else {
                None
            };
            if let Some(c) = c {
                w.write_all(c.as_bytes())?;
            }
            w.write_all(&e.message)?;
            if c.is_some() {
                w.write_all(b"\x1b[0m")?;
            }
            w.write_all(b"\n")
        }
        Format::Json => {
            let v = json_object(e, opts);
            serde_json::to_writer(&mut *w, &v)?;
            w.write_all(b"\n")
        }
        Format::JsonPretty => write_json_pretty(w, e, opts),
        Format::JsonSse => {
            w.write_all(b"data: ")?;
            serde_json::to_writer(&mut *w, &json_object(e, opts))?;
            w.write_all(b"\n\n")
        }
        Format::Export => write_export(w, e, opts),
        Format::Verbose => write_verbose(w, e, opts),
    }
}

/// The timestamp that starts a line of the short formats.
fn short_time(e: &Entry, opts: &OutputOptions) -> String {
    let f = opts.format;
    match f {
        Format::ShortMonotonic => {
            return format!(
                "[{:>5}.{:06}]",
                e.monotonic / 1_000_000,
                e.monotonic % 1_000_000
            );
        }
        Format::ShortUnix => {
            return format!("{}.{:06}", e.realtime / 1_000_000, e.realtime % 1_000_000);
        }
        _ => {}
    }
    let sec = (e.realtime / 1_000_000) as i64;
    let mut cache = opts.time_cache.borrow_mut();
    let text = match &*cache {
        Some((cf, cs, text)) if *cf == f && *cs == sec => text.clone(),
        _ => {
            let fmt = match f {
                Format::ShortIso => "%Y-%m-%dT%H:%M:%S%z",
                Format::WithUnit => "%a %Y-%m-%d %H:%M:%S",
                _ => "%b %d %H:%M:%S",
            };
            let mut text = local(e.realtime).format(fmt).to_string();
            if f == Format::WithUnit {
                text.push(' ');
                text.push_str(&zone_abbreviation(sec));
            }
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

/// Writes the message of the short formats: each of its lines, the later
/// ones indented by `indent` (the prefix's width), as journalctl's print_multiline.
fn write_message(
    w: &mut dyn Write,
    e: &Entry,
    opts: &OutputOptions,
    indent: usize,
) -> io::Result<()> {
    let c = if opts.color {
        color_of(e.priority)
    } else {
        None
    };
    let cleaned;
    let text: &[u8] = if opts.all {
        &e.message
    } else {
        cleaned = strip_tab_ansi(&e.message);
        if !is_printable_text(&cleaned) {
            // Unprintable bytes would corrupt a terminal.
            return writeln!(w, "[{} blob data]", format_bytes(e.message.len() as u64));
        }
        &cleaned
    };
    // journalctl writes nothing after a final newline, and one empty line for an
    // empty message.
    let body = text.strip_suffix(b"\n").unwrap_or(text);
    for (i, line) in body.split(|&b| b == b'\n').enumerate() {
        if i > 0 {
            write!(w, "{:indent$}", "")?;
        }
        if let Some(c) = c {
            w.write_all(c.as_bytes())?;
        }
        w.write_all(line)?;
        if c.is_some() {
            w.write_all(b"\x1b[0m")?;
        }
        w.write_all(b"\n")?;
    }
    Ok(())
}

/// What journalctl 252 (strip_tab_ansi) does to a message before showing it
/// without `--all`: a tab becomes 8 spaces, SGR color sequences (`ESC [ digits;... m`)
/// go, and carriage returns go when a newline or the end follows them; every other
/// byte stays (and may make the message unprintable).
pub fn strip_tab_ansi(m: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    if !m.iter().any(|&b| matches!(b, b'\t' | b'\x1b' | b'\r')) {
        return std::borrow::Cow::Borrowed(m);
    }
    let mut out = Vec::with_capacity(m.len() + 16);
    let mut crs = 0;
    let mut i = 0;
    while i < m.len() {
        let b = m[i];
        match b {
            b'\r' => {
                crs += 1;
                i += 1;
                continue;
            }
            b'\n' => crs = 0,
            _ => {}
        }
        out.extend(std::iter::repeat_n(b'\r', crs));
        crs = 0;
        match b {
            b'\t' => out.extend_from_slice(b"        "),
            b'\x1b' if m.get(i + 1) == Some(&b'[') => {
                let params = m[i + 2..]
                    .iter()
                    .take_while(|c| c.is_ascii_digit() || **c == b';')
                    .count();
                if m.get(i + 2 + params) == Some(&b'm') {
                    i += 3 + params;
                    continue;
                }
                out.push(b);
            }
            _ => out.push(b),
        }
        i += 1;
    }
    std::borrow::Cow::Owned(out)
}

/// systemd's format_bytes (IEC, one decimal, "B" below 1 KiB): "91B", "1.9K", "1.0M".
pub fn format_bytes(t: u64) -> String {
    const SUFFIXES: [&str; 6] = ["K", "M", "G", "T", "P", "E"];
    let Some(k) = (1..=6u32).rev().find(|k| t >= 1u64 << (10 * k)) else {
        return format!("{t}B");
    };
    let whole = t >> (10 * k);
    let tenth = ((t >> (10 * (k - 1))) * 10 / 1024) % 10;
    format!("{whole}.{tenth}{}", SUFFIXES[k as usize - 1])
}

/// journalctl's utf8_is_printable with newlines allowed: valid UTF-8 without
/// control characters but tab and newline (C1 controls and DEL included).
fn is_printable_text(v: &[u8]) -> bool {
    if v.iter()
        .all(|&b| (0x20..0x7f).contains(&b) || b == b'\t' || b == b'\n')
    {
        return true;
    }
    match std::str::from_utf8(v) {
        Ok(s) => !s.chars().any(|c| c.is_control() && c != '\t' && c != '\n'),
        Err(_) => false,
    }
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
    // journalctl prints values that are not printable UTF-8 (a carriage return
    // is enough) as arrays of byte numbers.
    match std::str::from_utf8(v) {
        Ok(s) if is_printable_text(v) => serde_json::Value::String(s.to_owned()),
        _ => serde_json::Value::Array(v.iter().map(|b| (*b).into()).collect()),
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
        match v {
            // journalctl puts each byte of a binary value on a line of its own.
            serde_json::Value::Array(bytes) => {
                writeln!(w, "\t\"{k}\" : [")?;
                for (j, b) in bytes.iter().enumerate() {
                    let sep = if j + 1 < bytes.len() { "," } else { "" };
                    writeln!(w, "\t\t{b}{sep}")?;
                }
                write!(w, "\t]")?;
            }
            v => write!(w, "\t\"{k}\" : {v}")?,
        }
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
    let t = local(e.realtime).format("%a %Y-%m-%d %H:%M:%S%.6f");
    let zone = zone_abbreviation((e.realtime / 1_000_000) as i64);
    writeln!(w, "{t} {zone} [{}]", e.cursor(opts.store_id))?;
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
    use super::{format_bytes, is_printable, strip_tab_ansi};

    #[test]
    fn blob_sizes_as_systemds_format_bytes() {
        assert_eq!(format_bytes(0), "0B");
        assert_eq!(format_bytes(1023), "1023B");
        assert_eq!(format_bytes(1024), "1.0K");
        assert_eq!(format_bytes(2001), "1.9K");
        assert_eq!(format_bytes(1536), "1.5K");
        assert_eq!(format_bytes(1 << 20), "1.0M");
        assert_eq!(format_bytes(5 << 30 | 512 << 20), "5.5G");
    }

    #[test]
    fn strip_keeps_what_journalctl_keeps() {
        assert_eq!(&*strip_tab_ansi(b"a\tb"), b"a        b");
        assert_eq!(&*strip_tab_ansi(b"x\r"), b"x");
        assert_eq!(&*strip_tab_ansi(b"x\r\r\ny"), b"x\ny");
        assert_eq!(&*strip_tab_ansi(b"a\rb"), b"a\rb");
        assert_eq!(&*strip_tab_ansi(b"\x1b[1;31mred\x1b[m"), b"red");
        // Only color (SGR) sequences go; another escape stays, and makes a blob.
        assert_eq!(&*strip_tab_ansi(b"\x1b[2J"), b"\x1b[2J");
        assert_eq!(&*strip_tab_ansi(b"\x1bZ"), b"\x1bZ");
    }

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
