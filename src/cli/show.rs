//! `corral show UNIT...`: properties as key=value for scripts (or JSON), and
//! the JSON forms that `status --json` and `list --json` share.

use std::path::PathBuf;

use serde_json::{Value, json};

use crate::ipc::proto::{LoadState, ManagerStatus, Request, Response, TimerStatus, UnitStatus};
use crate::supervisor::lines::format_timespan;
use crate::unit::calendar::format_timestamp;

use super::common::{VerbError, call, code_of, outln};
use super::{exit, jobs};

/// The properties of a unit, in systemctl's names and order: a timer's own
/// first, as systemctl prints the kind's interface before the unit's.
pub fn properties(u: &UnitStatus) -> Vec<(&'static str, String)> {
    let mut out = u.timer.as_ref().map(timer_properties).unwrap_or_default();
    out.extend(unit_properties(u));
    out
}

/// systemctl's words for a timer's properties (systemd 252's
/// `bus_print_property`): realtime instants as timestamps in the local
/// zone ("n/a" when unset), other `*USec` as time spans ("infinity" for a
/// monotonic elapse that is not armed, "0" for one never computed), one
/// line per value of `TimersMonotonic` and `TimersCalendar`.
pub fn timer_properties(t: &TimerStatus) -> Vec<(&'static str, String)> {
    let tz = jiff::tz::TimeZone::system();
    let stamp = |v: Option<u64>| v.map_or("n/a".to_string(), |u| format_timestamp(u, &tz));
    let span = |v: u64| format_timespan(v, 0);
    let yes = |b: bool| if b { "yes" } else { "no" }.to_string();
    let [fixed, persistent, wake, remain, clock, zone] = t.flags;
    let mut out = vec![("Unit", t.unit.clone())];
    for (base, offset, next) in &t.monotonic {
        // systemd keeps 0 for a value that has not been computed.
        let next = span(next.unwrap_or(0));
        out.push((
            "TimersMonotonic",
            format!("{{ {base}={} ; next_elapse={next} }}", span(*offset)),
        ));
    }
    for (spec, next) in &t.calendar {
        out.push((
            "TimersCalendar",
            format!("{{ OnCalendar={spec} ; next_elapse={} }}", stamp(*next)),
        ));
    }
    out.extend([
        ("OnClockChange", yes(clock)),
        ("OnTimezoneChange", yes(zone)),
        ("NextElapseUSecRealtime", stamp(t.next_realtime)),
        (
            "NextElapseUSecMonotonic",
            span(t.next_monotonic.unwrap_or(u64::MAX)),
        ),
        ("LastTriggerUSec", stamp(t.last_trigger)),
        (
            "LastTriggerUSecMonotonic",
            span(t.last_trigger_monotonic.unwrap_or(0)),
        ),
        ("AccuracyUSec", span(t.accuracy)),
        ("RandomizedDelayUSec", span(t.randomized_delay)),
        ("FixedRandomDelay", yes(fixed)),
        ("Persistent", yes(persistent)),
        ("WakeSystem", yes(wake)),
        ("RemainAfterElapse", yes(remain)),
    ]);
    out
}

/// The properties every unit has.
fn unit_properties(u: &UnitStatus) -> Vec<(&'static str, String)> {
    let opt = |v: Option<i32>| v.map_or("0".to_string(), |p| p.to_string());
    let load = super::list::load_word(&u.load);
    let load_error = match &u.load {
        LoadState::Loaded | LoadState::Masked => String::new(),
        LoadState::Error(e) => e.clone(),
        LoadState::NotFound => format!("Unit {} not found.", u.name),
    };
    vec![
        ("Id", u.name.clone()),
        ("Description", u.description.clone()),
        ("LoadState", load.to_string()),
        ("LoadError", load_error),
        ("ActiveState", u.active.as_str().to_string()),
        ("SubState", u.sub.as_str().to_string()),
        ("Result", u.result.as_str().to_string()),
        ("Type", u.kind.clone()),
        ("Restart", u.restart.clone()),
        ("NRestarts", u.restarts.to_string()),
        ("MainPID", opt(u.main_pid)),
        ("ControlPID", opt(u.control_pid)),
        // As systemctl: the main process's PID from the moment it is known,
        // and how it ended in numbers (CLD_* code; exit status or signal).
        (
            "ExecMainPID",
            u.main_pid
                .or(u.main_exit.as_ref().map(|e| e.pid))
                .map_or("0".into(), |p| p.to_string()),
        ),
        (
            "ExecMainCode",
            u.main_exit
                .as_ref()
                .map_or("0".into(), |e| cld_code(&e.code).to_string()),
        ),
        (
            "ExecMainStatus",
            u.main_exit
                .as_ref()
                .map_or("0".into(), |e| numeric_status(&e.status)),
        ),
        ("StatusText", u.status_text.clone().unwrap_or_default()),
        ("InvocationID", u.invocation.clone()),
        ("ControlGroup", u.cgroup.clone().unwrap_or_default()),
        ("TasksCurrent", u.processes.len().to_string()),
        ("StateChangeTimestampUSec", u.since_usec.to_string()),
        ("FragmentPath", u.fragment.clone()),
        ("DropInPaths", u.dropins.join(" ")),
        ("SourceKind", u.source.clone()),
        ("UnitFileState", u.file_state.clone()),
    ]
}

/// waitid()'s CLD_EXITED, CLD_KILLED, CLD_DUMPED for the words `status` shows.
fn cld_code(word: &str) -> i32 {
    match word {
        "exited" => libc::CLD_EXITED,
        "killed" => libc::CLD_KILLED,
        "dumped" => libc::CLD_DUMPED,
        _ => 0,
    }
}

/// An exit status as a number: the exit code, or the signal's number for
/// its short name (`PIPE` is 13).
fn numeric_status(word: &str) -> String {
    if word.parse::<i32>().is_ok() {
        return word.to_string();
    }
    format!("SIG{word}")
        .parse::<nix::sys::signal::Signal>()
        .map_or_else(|_| word.to_string(), |s| (s as i32).to_string())
}

/// A unit as a JSON object (the same keys as `show`, plus the process list).
pub fn unit_json(u: &UnitStatus) -> Value {
    let mut map = serde_json::Map::new();
    for (k, v) in properties(u) {
        // A timer may have several of each: an array, even of one, so a
        // reader finds every value under one type.
        if matches!(k, "TimersMonotonic" | "TimersCalendar") {
            if let Value::Array(a) = map
                .entry(k.to_string())
                .or_insert_with(|| Value::Array(Vec::new()))
            {
                a.push(Value::String(v));
            }
        } else {
            map.insert(k.to_string(), Value::String(v));
        }
    }
    map.insert(
        "Processes".into(),
        Value::Array(
            u.processes
                .iter()
                .map(|p| json!({"PID": p.pid, "Command": p.cmdline}))
                .collect(),
        ),
    );
    map.insert(
        "Notes".into(),
        Value::Array(u.notes.iter().cloned().map(Value::String).collect()),
    );
    Value::Object(map)
}

/// The manager and its units as JSON.
pub fn manager_json(m: &ManagerStatus) -> Value {
    json!({
        "PID": m.pid,
        "UID": m.uid,
        "Version": m.version,
        "ControlGroup": m.cgroup_root,
        "ManagerControlGroup": m.cgroup,
        "SinceUSec": m.since_usec,
        "Units": m.units.iter().map(unit_json).collect::<Vec<_>>(),
        "LoadErrors": m.load_errors,
        "Journal": m.journal,
    })
}

/// Runs `corral show`.
pub fn run(
    socket: Option<PathBuf>,
    units: Vec<String>,
    props: Vec<String>,
    value_only: bool,
    json: bool,
) -> Result<u8, VerbError> {
    jobs::need_units("show", &units)?;
    let Response::Units(list) = call(socket, &Request::Show { units })? else {
        return Err(VerbError::Unexpected {
            verb: "show",
            got: "not a unit list".into(),
        });
    };
    let wanted: Vec<String> = props
        .iter()
        .flat_map(|p| p.split(',').map(str::to_string))
        .collect();
    let mut code = exit::OK;
    let mut values = Vec::new();
    for (i, item) in list.into_iter().enumerate() {
        let u = match item {
            Ok(u) => u,
            Err(f) => {
                eprintln!("{}", f.message);
                code = code.max(code_of(&f));
                continue;
            }
        };
        if json {
            values.push(unit_json(&u));
            continue;
        }
        if i > 0 {
            outln(format_args!(""))?;
        }
        for (k, v) in properties(&u) {
            if !wanted.is_empty() && !wanted.iter().any(|w| w == k) {
                continue;
            }
            if value_only {
                outln(format_args!("{v}"))?;
            } else {
                outln(format_args!("{k}={v}"))?;
            }
        }
    }
    if json {
        outln(format_args!("{}", Value::Array(values)))?;
    }
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_main_code_and_status_are_numbers_as_in_systemctl() {
        assert_eq!(cld_code("exited"), 1);
        assert_eq!(cld_code("killed"), 2);
        assert_eq!(cld_code("dumped"), 3);
        assert_eq!(numeric_status("PIPE"), "13");
        assert_eq!(numeric_status("KILL"), "9");
        assert_eq!(numeric_status("203"), "203");
        assert_eq!(numeric_status("0"), "0");
    }
}
