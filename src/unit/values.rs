//! Value syntaxes shared by many directives: booleans, time spans, sizes,
//! signals, exit statuses, percentages.

use std::time::Duration;

/// Parses systemd's booleans: 1/yes/y/true/t/on and 0/no/n/false/f/off.
pub fn parse_bool(s: &str) -> Option<bool> {
    match s.to_ascii_lowercase().as_str() {
        "1" | "yes" | "y" | "true" | "t" | "on" => Some(true),
        "0" | "no" | "n" | "false" | "f" | "off" => Some(false),
        _ => None,
    }
}

const USEC_PER_SEC: f64 = 1_000_000.0;

fn time_unit_usec(unit: &str) -> Option<f64> {
    Some(match unit {
        "" | "s" | "sec" | "second" | "seconds" => USEC_PER_SEC,
        "us" | "usec" | "µs" | "μs" => 1.0,
        "ms" | "msec" => 1_000.0,
        "m" | "min" | "minute" | "minutes" => 60.0 * USEC_PER_SEC,
        "h" | "hr" | "hour" | "hours" => 3600.0 * USEC_PER_SEC,
        "d" | "day" | "days" => 86_400.0 * USEC_PER_SEC,
        "w" | "week" | "weeks" => 7.0 * 86_400.0 * USEC_PER_SEC,
        "M" | "month" | "months" => 2_629_800.0 * USEC_PER_SEC,
        "y" | "year" | "years" => 31_557_600.0 * USEC_PER_SEC,
        "ns" | "nsec" => 0.001,
        _ => return None,
    })
}

/// Parses a time span: `50`, `2min 200ms`, `1.5h`, `5min20s`; `default_unit_usec`
/// scales a bare number (seconds for almost every directive).
///
/// Returns `Ok(None)` for `infinity`.
pub fn parse_timespan_with(s: &str, default_unit_usec: f64) -> Result<Option<Duration>, String> {
    let s = s.trim();
    if s == "infinity" {
        return Ok(None);
    }
    if s.is_empty() {
        return Err("empty time span".to_string());
    }
    let mut total: f64 = 0.0;
    let mut rest = s;
    let mut parts = 0;
    while !rest.is_empty() {
        rest = rest.trim_start();
        if rest.is_empty() {
            break;
        }
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let num = &rest[..num_len];
        if num.is_empty() || num.starts_with('.') && num.len() == 1 {
            return Err(format!(
                "'{s}' is not a time span (expected e.g. 90s, 5min 20s, infinity)"
            ));
        }
        let value: f64 = num
            .parse()
            .map_err(|_| format!("'{num}' in '{s}' is not a number"))?;
        rest = rest[num_len..].trim_start();
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.' || c.is_whitespace())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        let scale = if unit.is_empty() {
            default_unit_usec
        } else {
            time_unit_usec(unit).ok_or_else(|| {
                format!("unknown time unit '{unit}' in '{s}' (use us, ms, s, min, h, d, w, M, y)")
            })?
        };
        total += value * scale;
        rest = &rest[unit_len..];
        parts += 1;
    }
    if parts == 0 {
        return Err(format!("'{s}' is not a time span"));
    }
    if !total.is_finite() || total > u64::MAX as f64 / 2.0 {
        return Err(format!("time span '{s}' is too large; use infinity"));
    }
    Ok(Some(Duration::from_micros(total.round() as u64)))
}

/// Parses a time span whose bare numbers are seconds.
pub fn parse_timespan(s: &str) -> Result<Option<Duration>, String> {
    parse_timespan_with(s, USEC_PER_SEC)
}

/// Parses a time span where `0` and `infinity` both mean "no limit" (timeouts).
pub fn parse_timeout(s: &str) -> Result<Option<Duration>, String> {
    Ok(parse_timespan(s)?.filter(|d| !d.is_zero()))
}

/// Parses a byte size with 1024-based suffixes (`64M`, `1.5G`, `524288`).
///
/// Returns `Ok(None)` for `infinity`.
pub fn parse_size(s: &str) -> Result<Option<u64>, String> {
    let s = s.trim();
    if s == "infinity" {
        return Ok(None);
    }
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, suffix) = s.split_at(split);
    let mult: u64 = match suffix.trim() {
        "" | "B" => 1,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        "T" => 1 << 40,
        "P" => 1 << 50,
        "E" => 1 << 60,
        other => {
            return Err(format!(
                "unknown size suffix '{other}' in '{s}' (use K, M, G, T, P, E or infinity)"
            ));
        }
    };
    if num.is_empty() {
        return Err(format!("'{s}' is not a size"));
    }
    if let Ok(n) = num.parse::<u64>() {
        return n
            .checked_mul(mult)
            .map(Some)
            .ok_or_else(|| format!("size '{s}' is too large"));
    }
    let f: f64 = num.parse().map_err(|_| format!("'{s}' is not a size"))?;
    let v = f * mult as f64;
    if !v.is_finite() || v >= u64::MAX as f64 {
        return Err(format!("size '{s}' is too large"));
    }
    Ok(Some(v as u64))
}

/// Parses a share into permyriad (hundredths of a percent) as systemd 252's
/// `parse_permyriad_unbounded()`: `N%` with at most two decimals (`20.5%`
/// is 2050, exactly), `N‰` with at most one, `N‱`; more decimals are an
/// error, not rounded.
pub fn parse_percent_permyriad(s: &str) -> Option<u32> {
    let s = s.trim();
    let (num, scale, places) = if let Some(n) = s.strip_suffix('%') {
        (n, 100u64, 2)
    } else if let Some(n) = s.strip_suffix('‰') {
        (n, 10, 1)
    } else {
        (s.strip_suffix('‱')?, 1, 0)
    };
    let (int, frac) = match num.split_once('.') {
        Some((i, f)) if !f.is_empty() && f.len() <= places => (i, f),
        Some(_) => return None,
        None => (num, ""),
    };
    if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let int: u64 = int.parse().ok()?;
    // "5" in "20.5%" is 50 hundredths.
    let mut f: u64 = if frac.is_empty() {
        0
    } else {
        frac.parse().ok()?
    };
    for _ in frac.len()..places {
        f *= 10;
    }
    let v = int.checked_mul(scale)?.checked_add(f)?;
    u32::try_from(v).ok()
}

/// Signal names and numbers, systemd style (`SIGTERM`, `TERM`, `15`, `SIGRTMIN+3`).
pub fn parse_signal(s: &str) -> Option<i32> {
    let s = s.trim();
    if let Ok(n) = s.parse::<i32>() {
        return (1..=libc::SIGRTMAX()).contains(&n).then_some(n);
    }
    let name = s.strip_prefix("SIG").unwrap_or(s);
    if let Some(off) = name.strip_prefix("RTMIN") {
        let k: i32 = if off.is_empty() {
            0
        } else {
            off.strip_prefix('+')?.parse().ok()?
        };
        let n = libc::SIGRTMIN().checked_add(k)?;
        return (k >= 0 && n <= libc::SIGRTMAX()).then_some(n);
    }
    if let Some(off) = name.strip_prefix("RTMAX") {
        let k: i32 = if off.is_empty() {
            0
        } else {
            off.strip_prefix('-')?.parse().ok()?
        };
        let n = libc::SIGRTMAX().checked_sub(k)?;
        return (k >= 0 && n >= libc::SIGRTMIN()).then_some(n);
    }
    SIGNALS.iter().find(|(n, _)| *n == name).map(|&(_, v)| v)
}

/// The conventional name of a signal number, `SIGTERM` for 15.
pub fn signal_name(sig: i32) -> String {
    match SIGNALS.iter().find(|&&(_, v)| v == sig) {
        Some((n, _)) => format!("SIG{n}"),
        None if sig >= libc::SIGRTMIN() && sig <= libc::SIGRTMAX() => {
            format!("SIGRTMIN+{}", sig - libc::SIGRTMIN())
        }
        None => sig.to_string(),
    }
}

const SIGNALS: &[(&str, i32)] = &[
    ("HUP", libc::SIGHUP),
    ("INT", libc::SIGINT),
    ("QUIT", libc::SIGQUIT),
    ("ILL", libc::SIGILL),
    ("TRAP", libc::SIGTRAP),
    ("ABRT", libc::SIGABRT),
    ("IOT", libc::SIGIOT),
    ("BUS", libc::SIGBUS),
    ("FPE", libc::SIGFPE),
    ("KILL", libc::SIGKILL),
    ("USR1", libc::SIGUSR1),
    ("SEGV", libc::SIGSEGV),
    ("USR2", libc::SIGUSR2),
    ("PIPE", libc::SIGPIPE),
    ("ALRM", libc::SIGALRM),
    ("TERM", libc::SIGTERM),
    ("STKFLT", libc::SIGSTKFLT),
    ("CHLD", libc::SIGCHLD),
    ("CONT", libc::SIGCONT),
    ("STOP", libc::SIGSTOP),
    ("TSTP", libc::SIGTSTP),
    ("TTIN", libc::SIGTTIN),
    ("TTOU", libc::SIGTTOU),
    ("URG", libc::SIGURG),
    ("XCPU", libc::SIGXCPU),
    ("XFSZ", libc::SIGXFSZ),
    ("VTALRM", libc::SIGVTALRM),
    ("PROF", libc::SIGPROF),
    ("WINCH", libc::SIGWINCH),
    ("IO", libc::SIGIO),
    ("POLL", libc::SIGPOLL),
    ("PWR", libc::SIGPWR),
    ("SYS", libc::SIGSYS),
];

/// Exit status names systemd accepts in SuccessExitStatus= and friends:
/// libc, LSB, BSD sysexits and systemd's own 200+ codes.
pub const EXIT_STATUS_NAMES: &[(&str, u8)] = &[
    ("SUCCESS", 0),
    ("FAILURE", 1),
    ("INVALIDARGUMENT", 2),
    ("NOTIMPLEMENTED", 3),
    ("NOPERMISSION", 4),
    ("NOTINSTALLED", 5),
    ("NOTCONFIGURED", 6),
    ("NOTRUNNING", 7),
    ("USAGE", 64),
    ("DATAERR", 65),
    ("NOINPUT", 66),
    ("NOUSER", 67),
    ("NOHOST", 68),
    ("UNAVAILABLE", 69),
    ("SOFTWARE", 70),
    ("OSERR", 71),
    ("OSFILE", 72),
    ("CANTCREAT", 73),
    ("IOERR", 74),
    ("TEMPFAIL", 75),
    ("PROTOCOL", 76),
    ("NOPERM", 77),
    ("CONFIG", 78),
    ("CHDIR", 200),
    ("NICE", 201),
    ("FDS", 202),
    ("EXEC", 203),
    ("MEMORY", 204),
    ("LIMITS", 205),
    ("OOM_ADJUST", 206),
    ("SIGNAL_MASK", 207),
    ("STDIN", 208),
    ("STDOUT", 209),
    ("CHROOT", 210),
    ("IOPRIO", 211),
    ("TIMERSLACK", 212),
    ("SECUREBITS", 213),
    ("SETSCHEDULER", 214),
    ("CPUAFFINITY", 215),
    ("GROUP", 216),
    ("USER", 217),
    ("CAPABILITIES", 218),
    ("CGROUP", 219),
    ("SETSID", 220),
    ("CONFIRM", 221),
    ("STDERR", 222),
    ("PAM", 224),
    ("NETWORK", 225),
    ("NAMESPACE", 226),
    ("NO_NEW_PRIVILEGES", 227),
    ("SECCOMP", 228),
    ("SELINUX_CONTEXT", 229),
    ("PERSONALITY", 230),
    ("APPARMOR_PROFILE", 231),
    ("ADDRESS_FAMILIES", 232),
    ("RUNTIME_DIRECTORY", 233),
    ("CHOWN", 235),
    ("SMACK_PROCESS_LABEL", 236),
    ("KEYRING", 237),
    ("STATE_DIRECTORY", 238),
    ("CACHE_DIRECTORY", 239),
    ("LOGS_DIRECTORY", 240),
    ("CONFIGURATION_DIRECTORY", 241),
    ("NUMA_POLICY", 242),
    ("CREDENTIALS", 243),
    ("BPF", 245),
    ("EXCEPTION", 255),
];

/// An exit status name (`DATAERR`) or number (`0`..`255`).
pub fn parse_exit_status(s: &str) -> Option<u8> {
    if let Ok(n) = s.parse::<u16>() {
        return u8::try_from(n).ok();
    }
    EXIT_STATUS_NAMES
        .iter()
        .find(|(n, _)| *n == s)
        .map(|&(_, v)| v)
}

/// Parses an octal file mode creation mask such as `0027` or `077`.
pub fn parse_umask(s: &str) -> Option<u32> {
    let v = u32::from_str_radix(s, 8).ok()?;
    (v <= 0o777).then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Option<Duration> {
        parse_timespan(s).unwrap()
    }

    #[test]
    fn timespans() {
        assert_eq!(d("50"), Some(Duration::from_secs(50)));
        assert_eq!(d("2min 200ms"), Some(Duration::from_millis(120_200)));
        assert_eq!(d("5min 20s"), Some(Duration::from_secs(320)));
        assert_eq!(d("5min20s"), Some(Duration::from_secs(320)));
        assert_eq!(d("1.5h"), Some(Duration::from_secs(5400)));
        assert_eq!(d("5sec"), Some(Duration::from_secs(5)));
        assert_eq!(d("0ms"), Some(Duration::ZERO));
        assert_eq!(d("3m"), Some(Duration::from_secs(180)));
        assert_eq!(d("100 ms"), Some(Duration::from_millis(100)));
        assert_eq!(d("1w 2d"), Some(Duration::from_secs(9 * 86400)));
        assert_eq!(d("infinity"), None);
        for bad in ["", "abc", "5 parsecs", "-5", "1..2s", "."] {
            assert!(parse_timespan(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_timeout("0").unwrap(), None);
        assert_eq!(parse_timeout("90").unwrap(), Some(Duration::from_secs(90)));
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64M").unwrap(), Some(64 << 20));
        assert_eq!(parse_size("524288").unwrap(), Some(524_288));
        assert_eq!(parse_size("1.5K").unwrap(), Some(1536));
        assert_eq!(parse_size("infinity").unwrap(), None);
        assert!(parse_size("12Q").is_err());
        assert!(parse_size("99999999999E").is_err());
    }

    #[test]
    fn signals_and_statuses() {
        assert_eq!(parse_signal("SIGTERM"), Some(15));
        assert_eq!(parse_signal("TERM"), Some(15));
        assert_eq!(parse_signal("9"), Some(9));
        assert_eq!(parse_signal("SIGRTMIN+2"), Some(libc::SIGRTMIN() + 2));
        assert_eq!(parse_signal("SIGFOO"), None);
        assert_eq!(parse_signal("0"), None);
        assert_eq!(parse_signal("SIGRTMIN+2147483647"), None);
        assert_eq!(parse_signal("SIGRTMAX-2147483647"), None);
        assert_eq!(signal_name(9), "SIGKILL");
        assert_eq!(parse_exit_status("DATAERR"), Some(65));
        assert_eq!(parse_exit_status("143"), Some(143));
        assert_eq!(parse_exit_status("256"), None);
        assert_eq!(parse_percent_permyriad("99%"), Some(9900));
        assert_eq!(parse_percent_permyriad("12.5%"), Some(1250));
        assert_eq!(parse_percent_permyriad("20.55%"), Some(2055));
        assert_eq!(parse_percent_permyriad("0.01%"), Some(1));
        assert_eq!(parse_percent_permyriad("205‰"), Some(2050));
        assert_eq!(parse_percent_permyriad("20.5‰"), Some(205));
        assert_eq!(parse_percent_permyriad("7‱"), Some(7));
        for bad in ["20.555%", "20.%", ".5%", "-1%", "x%", "20", "1.5‱", "1e3%"] {
            assert_eq!(parse_percent_permyriad(bad), None, "{bad:?}");
        }
        assert_eq!(parse_umask("0027"), Some(0o27));
        assert_eq!(parse_umask("8"), None);
        assert_eq!(parse_bool("On"), Some(true));
    }
}
