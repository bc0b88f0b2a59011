//! `corral status [UNIT...]`: one unit as systemctl shows it, or the manager
//! and every unit as one tree.

use std::fmt::Write as _;
use std::io::IsTerminal;
use std::path::PathBuf;

use chrono::{Local, TimeZone};

use crate::ipc::proto::{
    ActiveState, ErrorKind, LoadState, MainExit, ManagerStatus, Process, Request, Response,
    SubState, UnitResult, UnitStatus,
};
use crate::supervisor::manager::normalize;
use crate::unit::condition::wildcard_match;
use crate::unit::values::EXIT_STATUS_NAMES;

use super::common::{VerbError, call, code_of, out, outln};
use super::{exit, jobs, show};

/// systemctl's exit code of `status` for a unit that is not running (LSB).
const NOT_RUNNING: u8 = 3;

/// systemctl's exit code of `status` for a unit that does not exist (LSB
/// "program or service status is unknown").
const STATUS_UNKNOWN: u8 = 4;

/// Runs `corral status`.
pub fn run(socket: Option<PathBuf>, units: Vec<String>, json: bool) -> Result<u8, VerbError> {
    let color = std::io::stdout().is_terminal();
    let now = now_usec();
    let asked = !units.is_empty();
    let units = expand_patterns(socket.clone(), units)?;
    if asked && units.is_empty() {
        // As systemctl: patterns that match no loaded unit print nothing and succeed.
        if json {
            outln(format_args!("[]"))?;
        }
        return Ok(exit::OK);
    }
    let typed = units.clone();
    match call(socket, &Request::Status { units })? {
        Response::Manager(m) => {
            if json {
                outln(format_args!("{}", show::manager_json(&m)))?;
            } else {
                out(format_args!("{}", render_manager(&m, now, color)))?;
            }
            Ok(exit::OK)
        }
        Response::Units(list) => {
            // As systemctl: the code of the first unit that is not running
            // (3) or does not exist (4), in the order asked.
            let mut code = exit::OK;
            let mut first = |c: u8| {
                if code == exit::OK {
                    code = c;
                }
            };
            let mut text = String::new();
            let mut values = Vec::new();
            for (i, item) in list.into_iter().enumerate() {
                match item {
                    Ok(u) => {
                        if !matches!(u.active, ActiveState::Active | ActiveState::Reloading) {
                            first(NOT_RUNNING);
                        }
                        if json {
                            values.push(show::unit_json(&u));
                        } else {
                            if i > 0 {
                                text.push('\n');
                            }
                            text.push_str(&render_unit(&u, now, color));
                        }
                    }
                    Err(f) if f.kind == ErrorKind::NotFound => {
                        let name = typed.get(i).map_or(String::new(), |t| normalize(t));
                        eprintln!("Unit {name} could not be found.");
                        first(STATUS_UNKNOWN);
                    }
                    Err(f) => {
                        eprintln!("{}", f.message);
                        first(code_of(&f));
                    }
                }
            }
            if json {
                outln(format_args!("{}", serde_json::Value::Array(values)))?;
            } else {
                out(format_args!("{text}"))?;
            }
            Ok(code)
        }
        other => Err(jobs::unexpected("status", &other)),
    }
}

/// Replaces each shell pattern (`*`, `?`, `[...]`) among `units` by the
/// loaded units whose names it matches, as systemctl does; plain names stay.
fn expand_patterns(socket: Option<PathBuf>, units: Vec<String>) -> Result<Vec<String>, VerbError> {
    if !units.iter().any(|u| u.contains(['*', '?', '['])) {
        return Ok(units);
    }
    let Response::Units(list) = call(socket, &Request::List)? else {
        return Err(VerbError::Unexpected {
            verb: "status",
            got: "not a unit list".into(),
        });
    };
    let loaded: Vec<String> = list
        .into_iter()
        .filter_map(Result::ok)
        .map(|u| u.name)
        .collect();
    let mut out: Vec<String> = Vec::new();
    for u in units {
        if !u.contains(['*', '?', '[']) {
            out.push(u);
            continue;
        }
        for name in loaded.iter().filter(|n| wildcard_match(&u, n)) {
            if !out.contains(name) {
                out.push(name.clone());
            }
        }
    }
    Ok(out)
}

/// Microseconds since the epoch.
pub fn now_usec() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// The state dot, colored on a terminal.
fn dot(active: ActiveState, color: bool) -> String {
    let (glyph, code) = match active {
        ActiveState::Active | ActiveState::Reloading => ("●", "32"),
        ActiveState::Failed => ("×", "31"),
        ActiveState::Activating | ActiveState::Deactivating => ("●", "33"),
        ActiveState::Inactive => ("○", ""),
    };
    if color && !code.is_empty() {
        format!("\x1b[{code}m{glyph}\x1b[0m")
    } else {
        glyph.to_string()
    }
}

/// "Mon 2026-11-23 11:40:01 UTC" in local time, with the zone's abbreviation
/// as systemctl prints it.
pub fn format_time(usec: u64) -> String {
    match Local.timestamp_micros(usec as i64) {
        chrono::LocalResult::Single(t) => {
            let zone = zone_abbreviation((usec / 1_000_000) as libc::time_t)
                .unwrap_or_else(|| t.format("%Z").to_string());
            format!("{} {zone}", t.format("%a %Y-%m-%d %H:%M:%S"))
        }
        _ => usec.to_string(),
    }
}

/// The local time zone's abbreviation at `t` ("UTC", "CET"), from the C library.
fn zone_abbreviation(t: libc::time_t) -> Option<String> {
    // SAFETY: localtime_r writes into the tm we own; tm_zone then points to a
    // static string of the C library (or is null), read at once.
    unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&t, &mut tm).is_null() || tm.tm_zone.is_null() {
            return None;
        }
        Some(
            std::ffi::CStr::from_ptr(tm.tm_zone)
                .to_string_lossy()
                .into_owned(),
        )
    }
}

/// "3s", "1min 5s", "2h 3min", "4 days 2h": the two largest units, as systemd prints spans.
pub fn format_span(usec: u64) -> String {
    let s = usec / 1_000_000;
    let (d, h, m, sec) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    if d > 0 {
        format!("{d} day{} {h}h", if d == 1 { "" } else { "s" })
    } else if h > 0 {
        format!("{h}h {m}min")
    } else if m > 0 {
        format!("{m}min {sec}s")
    } else if s > 0 {
        format!("{s}s")
    } else {
        format!("{}ms", usec / 1000)
    }
}

/// "4min 3s left" until `t`, or how long ago it was.
pub fn left(t: u64, now: u64) -> String {
    if t >= now {
        format!("{} left", format_span(t - now))
    } else {
        format!("{} ago", format_span(now - t))
    }
}

/// The "Active:" value: state (sub) [Result], since, how long ago.
/// `text` coloured as systemctl colours the state of the Active: line on a
/// terminal: green while active or reloading, red when failed.
fn paint_state(text: String, active: ActiveState, color: bool) -> String {
    let code = match active {
        ActiveState::Active | ActiveState::Reloading => "32",
        ActiveState::Failed => "31",
        _ => return text,
    };
    if color {
        format!("\x1b[{code}m{text}\x1b[0m")
    } else {
        text
    }
}

/// `Tasks:` as systemd counts them (pids.current): threads, not processes.
fn tasks(processes: &[Process]) -> usize {
    processes
        .iter()
        .map(|p| {
            std::fs::read_dir(format!("/proc/{}/task", p.pid))
                .map(Iterator::count)
                // Gone since the manager listed it, but the tree below still
                // shows it: count it once rather than show fewer tasks than lines.
                .unwrap_or(1)
        })
        .sum()
}

/// The name systemctl shows beside the main PID: the process's comm (what
/// `ps -o comm` shows, kept when a daemon rewrites its command line, as
/// nginx does), else the program of its command line.
/// "code=exited, status=203/EXEC" or "code=killed, signal=TERM" as systemctl
/// status prints them: only libc's and systemd's own exit codes are named.
fn exit_detail(e: &MainExit) -> String {
    if e.code != "exited" && e.code != "unknown" {
        return format!("code={}, signal={}", e.code, e.status);
    }
    let name = e.status.parse::<u8>().ok().and_then(|n| {
        (n <= 1 || n >= 200)
            .then(|| EXIT_STATUS_NAMES.iter().find(|(_, v)| *v == n))
            .flatten()
    });
    match name {
        Some((w, _)) => format!("code={}, status={}/{w}", e.code, e.status),
        None => format!("code={}, status={}", e.code, e.status),
    }
}

fn main_comm(pid: i32, cmdline: Option<&str>) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|c| c.trim_end_matches('\n').to_string())
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(|| cmdline.map(|c| comm_of(c).to_string()))
        .unwrap_or_default()
}

fn active_line(u: &UnitStatus, now: u64, color: bool) -> String {
    let mut s = format!("{} ({})", u.active.as_str(), u.sub.as_str());
    if u.active == ActiveState::Failed && u.result != UnitResult::Success {
        s = format!("{} (Result: {})", u.active.as_str(), u.result.as_str());
    } else if matches!(u.sub, SubState::Target(_)) {
        // A target has no processes: systemctl shows only active or inactive.
        s = u.active.as_str().to_string();
    } else if matches!(u.result, UnitResult::Condition | UnitResult::ExecCondition) {
        s = format!(
            "{} ({}) (Result: {})",
            u.active.as_str(),
            u.sub.as_str(),
            u.result.as_str()
        );
    }
    s = paint_state(s, u.active, color);
    if u.since_usec > 0 {
        let _ = write!(
            s,
            " since {}; {} ago",
            format_time(u.since_usec),
            format_span(now.saturating_sub(u.since_usec))
        );
    }
    s
}

fn comm_of(cmdline: &str) -> &str {
    let first = cmdline.split(' ').next().unwrap_or(cmdline);
    first.rsplit('/').next().unwrap_or(first)
}

/// A `Listen*=` entry as systemctl's status shows it:
/// `/run/x.sock (Stream)`.
fn listen_line(l: &str) -> String {
    let Some((directive, value)) = l.split_once('=') else {
        return l.to_string();
    };
    let kind = directive.strip_prefix("Listen").unwrap_or(directive);
    format!("{value} ({kind})")
}

/// Renders `corral status UNIT` for one unit.
pub fn render_unit(u: &UnitStatus, now: u64, color: bool) -> String {
    let mut o = String::new();
    let _ = write!(o, "{} {}", dot(u.active, color), u.name);
    if u.description != u.name {
        let _ = write!(o, " - {}", u.description);
    }
    o.push('\n');
    let loaded = match &u.load {
        // A unit without a file of its own (the built-in default.target).
        LoadState::Loaded if u.fragment.is_empty() => "loaded".to_string(),
        LoadState::Loaded if u.file_state.is_empty() => format!("loaded ({})", u.fragment),
        LoadState::Loaded => format!("loaded ({}; {})", u.fragment, u.file_state),
        LoadState::Masked => "masked (Reason: Unit is masked.)".to_string(),
        LoadState::Error(e) => format!("error (Reason: {e})"),
        LoadState::NotFound => format!("not-found (Reason: Unit {} not found.)", u.name),
    };
    let _ = writeln!(o, "     Loaded: {loaded}");
    if !u.dropins.is_empty() {
        let _ = writeln!(o, "    Drop-In: {}", u.dropins.join("\n             "));
    }
    let _ = writeln!(o, "     Active: {}", active_line(u, now, color));
    if u.sub.as_str() != "dead" && matches!(u.sub, SubState::Timer(_)) {
        let trigger = match u.next_elapse_usec {
            Some(t) => format!("{}; {}", format_time(t), left(t, now)),
            None => "n/a".to_string(),
        };
        let _ = writeln!(o, "    Trigger: {trigger}");
    }
    if !u.triggered_by.is_empty() {
        let _ = writeln!(o, "TriggeredBy: {}", u.triggered_by.join("\n             "));
    }
    if !u.triggers.is_empty() {
        let _ = writeln!(o, "   Triggers: {}", u.triggers.join("\n             "));
    }
    for (i, l) in u.listen.iter().enumerate() {
        let head = if i == 0 {
            "     Listen:"
        } else {
            "            "
        };
        let _ = writeln!(o, "{head} {}", listen_line(l));
    }
    if let Some((accepted, connected, refused)) = u.connections {
        let _ = write!(o, "   Accepted: {accepted}; Connected: {connected};");
        if refused > 0 {
            let _ = write!(o, " Refused: {refused}");
        }
        let _ = writeln!(o);
    }
    if let Some(pid) = u.main_pid {
        let cmdline = u.processes.iter().find(|p| p.pid == pid);
        let comm = main_comm(pid, cmdline.map(|p| p.cmdline.as_str()));
        let _ = writeln!(o, "   Main PID: {pid} ({comm})");
    } else if let Some(e) = u.main_exit.as_ref().filter(|e| e.pid > 0) {
        // As systemctl: the exited ExecStart= process, then the main PID
        // with the same ending.
        let ending = exit_detail(e);
        if !e.command.is_empty() {
            let _ = writeln!(o, "    Process: {} {} ({ending})", e.pid, e.command);
        }
        let _ = writeln!(o, "   Main PID: {} ({ending})", e.pid);
    } else if let Some(e) = u.main_exit.as_ref() {
        // The start failed before a process existed (no cgroup, a program
        // not on PATH): systemd's child would have had a PID; ours never
        // did, so the line names the command and its status only.
        let command = if e.command.is_empty() {
            "ExecStart="
        } else {
            e.command.as_str()
        };
        let _ = writeln!(o, "    Process: {command} ({})", exit_detail(e));
    }
    if let Some(pid) = u.control_pid {
        let _ = writeln!(o, "    Control: {pid}");
    }
    if let Some(t) = &u.status_text {
        let _ = writeln!(o, "     Status: \"{t}\"");
    }
    if u.restarts > 0 {
        let _ = writeln!(o, "   Restarts: {}", u.restarts);
    }
    if let Some(cg) = &u.cgroup {
        let _ = writeln!(o, "      Tasks: {}", tasks(&u.processes));
        let _ = writeln!(o, "     CGroup: {cg}");
        process_tree(&mut o, &u.processes);
    }
    // runit's log/run, in a cgroup of its own that outlives each run.
    if let Some(cg) = &u.log_cgroup {
        let _ = writeln!(o, " Log CGroup: {cg}");
        process_tree(&mut o, &u.log_processes);
    }
    for note in &u.notes {
        let _ = writeln!(o, "      Notes: {note}");
    }
    if !u.journal.is_empty() {
        o.push('\n');
        for line in &u.journal {
            let _ = writeln!(o, "{line}");
        }
    }
    o
}

/// The processes of a cgroup, one branch each, below its `CGroup:` line.
fn process_tree(o: &mut String, processes: &[Process]) {
    let n = processes.len();
    for (i, p) in processes.iter().enumerate() {
        let branch = if i + 1 == n { "└─" } else { "├─" };
        let _ = writeln!(o, "             {branch}{} {}", p.pid, p.cmdline);
    }
}

/// Renders `corral status` without units: the manager and every unit's cgroup as one tree.
pub fn render_manager(m: &ManagerStatus, now: u64, color: bool) -> String {
    let mut o = String::new();
    let failed = m
        .units
        .iter()
        .filter(|u| u.active == ActiveState::Failed)
        .count();
    let state = if failed > 0 { "degraded" } else { "running" };
    let top = if failed > 0 {
        ActiveState::Failed
    } else {
        ActiveState::Active
    };
    let _ = writeln!(o, "{} corrald --user (uid {})", dot(top, color), m.uid);
    let _ = writeln!(o, "    State: {state}");
    let _ = writeln!(
        o,
        "    Units: {} running, {failed} failed",
        m.units.iter().filter(|u| u.cgroup.is_some()).count()
    );
    let _ = writeln!(
        o,
        "    Since: {}; {} ago",
        format_time(m.since_usec),
        format_span(now.saturating_sub(m.since_usec))
    );
    let _ = writeln!(o, "  Version: {}", m.version);
    let _ = writeln!(o, "  Manager: PID {} in {}", m.pid, m.cgroup);
    if let Some(j) = &m.journal {
        let _ = writeln!(o, "  Journal: {j}");
    }
    let _ = writeln!(o, "   CGroup: {}", m.cgroup_root);
    // Each unit's cgroup, and beside it the one of a runit unit's log/run.
    let groups: Vec<(&str, &[Process])> = m
        .units
        .iter()
        .flat_map(|u| {
            [
                (u.cgroup.as_deref(), &u.processes[..]),
                (u.log_cgroup.as_deref(), &u.log_processes[..]),
            ]
        })
        .filter_map(|(cg, procs)| Some((cg?, procs)))
        .collect();
    let n = groups.len();
    for (i, (cg, procs)) in groups.iter().enumerate() {
        let last = i + 1 == n;
        let (branch, cont) = if last {
            ("└─", "  ")
        } else {
            ("├─", "│ ")
        };
        let leaf = cg.rsplit('/').next().unwrap_or(cg);
        let _ = writeln!(o, "           {branch}{leaf}");
        let k = procs.len();
        for (j, p) in procs.iter().enumerate() {
            let b = if j + 1 == k { "└─" } else { "├─" };
            let _ = writeln!(o, "           {cont}{b}{} {}", p.pid, p.cmdline);
        }
    }
    for u in m.units.iter().filter(|u| u.active == ActiveState::Failed) {
        let _ = writeln!(o, "   Failed: {} (Result: {})", u.name, u.result.as_str());
    }
    for e in &m.load_errors {
        let _ = writeln!(o, "    Error: {e}");
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_is_coloured_as_systemctl_colours_it() {
        let paint = |a| paint_state("x".into(), a, true);
        assert_eq!(paint(ActiveState::Active), "\x1b[32mx\x1b[0m");
        assert_eq!(paint(ActiveState::Reloading), "\x1b[32mx\x1b[0m");
        assert_eq!(paint(ActiveState::Failed), "\x1b[31mx\x1b[0m");
        assert_eq!(paint(ActiveState::Inactive), "x");
        assert_eq!(paint(ActiveState::Activating), "x");
        assert_eq!(paint_state("x".into(), ActiveState::Failed, false), "x");
    }

    #[test]
    fn the_main_pid_is_named_by_its_comm() {
        let me = std::process::id() as i32;
        let comm = std::fs::read_to_string(format!("/proc/{me}/comm")).unwrap();
        // Not the program of a rewritten command line ("nginx: master process").
        assert_eq!(
            main_comm(me, Some("nginx: master process")),
            comm.trim_end()
        );
        assert_eq!(main_comm(i32::MAX, Some("/usr/bin/sleep 5")), "sleep");
    }

    #[test]
    fn spans_use_the_two_largest_units() {
        assert_eq!(format_span(3_000_000), "3s");
        assert_eq!(format_span(65_000_000), "1min 5s");
        assert_eq!(format_span(7_380_000_000), "2h 3min");
        assert_eq!(format_span(93_600_000_000), "1 day 2h");
        assert_eq!(format_span(12_000), "12ms");
    }
}
