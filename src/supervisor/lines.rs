//! The manager's lines about a unit, worded as systemd 252 words them
//! (src/core/job.c, unit.c, service.c), with its priorities.
//!
//! Two families, as in systemd: job lines name the unit with its
//! description ("Started web.service - A web server.") and unit lines start
//! with the unit's name ("web.service: Failed with result 'signal'."). Which
//! lines a change of state produces is a pure function of the machine's
//! states before and after ([`service_lines`], [`target_lines`]),
//! table-tested below. Each line is stored with the `MESSAGE_ID=` systemd
//! gives it ([`Line::message_id`]); the tests here check every id, and that
//! `journal::catalog` recognises the same id from the wording (what stores
//! before format v3, which have no MESSAGE_ID column, rely on).

use std::fmt::Write as _;

use super::state::{ActiveState, Event, Exit, Readiness, ServiceResult, Spec, State, Sub};
use super::target;
use crate::unit::values::EXIT_STATUS_NAMES;

/// syslog priorities the manager writes.
pub mod priority {
    /// LOG_ERR.
    pub const ERR: u8 = 3;
    /// LOG_WARNING.
    pub const WARNING: u8 = 4;
    /// LOG_NOTICE.
    pub const NOTICE: u8 = 5;
    /// LOG_INFO.
    pub const INFO: u8 = 6;
}

/// One line of the manager about a unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// "Starting X - D..."
    Starting,
    /// "Started X - D."
    Started,
    /// "Finished X - D." (a oneshot's start job done)
    Finished,
    /// "Failed to start X - D."
    FailedToStart,
    /// "Stopping X - D..."
    Stopping,
    /// "Stopped X - D."
    Stopped,
    /// "Reloading X - D..."
    Reloading,
    /// "Reloaded X - D."
    Reloaded,
    /// "Reload failed for X - D."
    ReloadFailed,
    /// "Reached target X - D."
    ReachedTarget,
    /// "Stopped target X - D."
    StoppedTarget,
    /// "Dependency failed for X - D."
    DependencyFailed,
    /// "Assertion failed for X - D."
    AssertionFailed,
    /// "X - D was skipped because of an unmet condition check (Condition...=...)."
    ConditionSkipped(String),
    /// "X: Main process exited, code=..., status=N/NAME" (a failure only).
    MainExited(Exit),
    /// "X: Control process exited, code=..., status=N/NAME" (a failure only).
    ControlExited(Exit),
    /// "X: Failed with result 'R'."
    FailedWithResult(ServiceResult),
    /// "X: Deactivated successfully."
    Deactivated,
    /// "X: Skipped due to 'R'." (ExecCondition= said no)
    Skipped(ServiceResult),
    /// "X: Scheduled restart job, restart counter is at N."
    RestartScheduled(u32),
    /// "X: Start request repeated too quickly."
    StartLimitHit,
    /// "X: Consumed T CPU time.": µs of CPU of the invocation's cgroup. The
    /// machine's lines carry 0, for the manager to fill in from cpu.stat (or
    /// drop, when it cannot be read) before the cgroup goes.
    Consumed(u64),
    /// "X: ..." any other line, at the given priority.
    Note(u8, String),
}

/// How a line names its unit: the id, and the description when there is one.
#[derive(Debug, Clone, Copy)]
pub struct Named<'a> {
    /// The unit's full name.
    pub unit: &'a str,
    /// Description=, if set.
    pub description: Option<&'a str>,
}

impl Named<'_> {
    /// systemd's combined status string: "id - description", or the id alone
    /// when there is no description (or it is the id).
    pub fn combined(&self) -> String {
        match self.description {
            Some(d) if !d.is_empty() && d != self.unit => format!("{} - {d}", self.unit),
            _ => self.unit.to_string(),
        }
    }
}

impl Line {
    /// The line's syslog priority, as systemd logs it.
    pub fn priority(&self) -> u8 {
        use priority::*;
        match self {
            Line::FailedToStart | Line::ReloadFailed => ERR,
            Line::DependencyFailed
            | Line::AssertionFailed
            | Line::FailedWithResult(_)
            | Line::StartLimitHit => WARNING,
            // A process that called exit() has most likely said why itself.
            Line::MainExited(Exit::Code(_)) | Line::ControlExited(Exit::Code(_)) => NOTICE,
            Line::MainExited(_) | Line::ControlExited(_) => WARNING,
            Line::Note(p, _) => *p,
            _ => INFO,
        }
    }

    /// systemd's MESSAGE_ID of the line (sd-messages.h), if it has one.
    pub fn message_id(&self) -> Option<&'static str> {
        use crate::journal::catalog::*;
        Some(match self {
            Line::Starting => UNIT_STARTING,
            Line::Started | Line::Finished | Line::ReachedTarget => UNIT_STARTED,
            Line::FailedToStart | Line::DependencyFailed | Line::AssertionFailed => UNIT_FAILED,
            Line::Stopping => UNIT_STOPPING,
            Line::Stopped | Line::StoppedTarget => UNIT_STOPPED,
            Line::Reloading => UNIT_RELOADING,
            Line::Reloaded | Line::ReloadFailed => UNIT_RELOADED,
            Line::MainExited(_) | Line::ControlExited(_) => UNIT_PROCESS_EXIT,
            Line::FailedWithResult(_) => UNIT_FAILURE_RESULT,
            Line::Deactivated => UNIT_SUCCESS,
            Line::Skipped(_) => UNIT_SKIPPED,
            Line::RestartScheduled(_) => UNIT_RESTART_SCHEDULED,
            Line::Consumed(_) => UNIT_RESOURCES,
            Line::ConditionSkipped(_) | Line::StartLimitHit | Line::Note(..) => return None,
        })
    }

    /// The MESSAGE text.
    pub fn text(&self, n: Named<'_>) -> String {
        let c = || n.combined();
        let u = n.unit;
        match self {
            Line::Starting => format!("Starting {}...", c()),
            Line::Started => format!("Started {}.", c()),
            Line::Finished => format!("Finished {}.", c()),
            Line::FailedToStart => format!("Failed to start {}.", c()),
            Line::Stopping => format!("Stopping {}...", c()),
            Line::Stopped => format!("Stopped {}.", c()),
            Line::Reloading => format!("Reloading {}...", c()),
            Line::Reloaded => format!("Reloaded {}.", c()),
            Line::ReloadFailed => format!("Reload failed for {}.", c()),
            Line::ReachedTarget => format!("Reached target {}.", c()),
            Line::StoppedTarget => format!("Stopped target {}.", c()),
            Line::DependencyFailed => format!("Dependency failed for {}.", c()),
            Line::AssertionFailed => format!("Assertion failed for {}.", c()),
            Line::ConditionSkipped(why) => format!(
                "{} was skipped because of an unmet condition check ({why}).",
                c()
            ),
            Line::MainExited(e) => format!("{u}: Main process exited, {}", exit_words(*e)),
            Line::ControlExited(e) => format!("{u}: Control process exited, {}", exit_words(*e)),
            Line::FailedWithResult(r) => format!("{u}: Failed with result '{}'.", r.as_str()),
            Line::Deactivated => format!("{u}: Deactivated successfully."),
            Line::Skipped(r) => format!("{u}: Skipped due to '{}'.", r.as_str()),
            Line::RestartScheduled(n) => {
                format!("{u}: Scheduled restart job, restart counter is at {n}.")
            }
            Line::StartLimitHit => format!("{u}: Start request repeated too quickly."),
            Line::Consumed(usec) => {
                format!("{u}: Consumed {} CPU time.", format_timespan_ms(*usec))
            }
            Line::Note(_, text) => format!("{u}: {text}"),
        }
    }
}

/// "code=exited, status=1/FAILURE", "code=killed, status=9/KILL", as
/// systemd's unit_log_process_exit (an exit code without a name is "n/a").
pub fn exit_words(e: Exit) -> String {
    if e == Exit::Unknown {
        return "status unknown (not the manager's child after re-adoption)".to_string();
    }
    let name = match e {
        Exit::Code(c) => EXIT_STATUS_NAMES
            .iter()
            .find(|(_, n)| i32::from(*n) == c)
            .map_or_else(|| "n/a".to_string(), |(w, _)| (*w).to_string()),
        Exit::Signal { .. } | Exit::Unknown => e.status_word(),
    };
    let number = match e {
        Exit::Code(c) => c,
        Exit::Signal { sig, .. } => sig,
        Exit::Unknown => -1,
    };
    format!("code={}, status={number}/{name}", e.code_word())
}

/// systemd's format_timespan with millisecond accuracy: "345ms", "1.234s",
/// "1min 2.345s", "2h 5min 3.100s".
pub fn format_timespan_ms(usec: u64) -> String {
    format_timespan(usec, 1000)
}

/// systemd's format_timespan(usec, accuracy) (`accuracy` in µs; 0 is as
/// fine as 1, as `systemctl show` prints spans: "1min", "1.500000s").
pub fn format_timespan(usec: u64, accuracy: u64) -> String {
    const TABLE: [(&str, u64); 9] = [
        ("y", 31_557_600_000_000),
        ("month", 2_629_800_000_000),
        ("w", 604_800_000_000),
        ("d", 86_400_000_000),
        ("h", 3_600_000_000),
        ("min", 60_000_000),
        ("s", 1_000_000),
        ("ms", 1000),
        ("us", 1),
    ];
    if usec == 0 {
        return "0".to_string();
    }
    if usec == u64::MAX {
        return "infinity".to_string();
    }
    let mut out = String::new();
    let mut t = usec;
    let mut something = false;
    for (suffix, unit) in TABLE {
        if t == 0 || (t < accuracy && something) {
            break;
        }
        if t < unit {
            continue;
        }
        let sep = if out.is_empty() { "" } else { " " };
        let (a, mut b) = (t / unit, t % unit);
        // Below a minute a remainder is shown after a dot, to the accuracy.
        if t < 60_000_000 && b > 0 {
            let mut digits = 0i32;
            let mut cc = unit;
            while cc > 1 {
                digits += 1;
                cc /= 10;
            }
            let mut cc = accuracy;
            while cc > 1 {
                b /= 10;
                digits -= 1;
                cc /= 10;
            }
            if digits > 0 {
                let _ = write!(out, "{sep}{a}.{b:0w$}{suffix}", w = digits as usize);
                return out;
            }
        }
        let _ = write!(out, "{sep}{a}{suffix}");
        t = b;
        something = true;
    }
    out
}

/// Whether a start of this service becomes active in the same step it
/// begins (simple, idle: the spawn is the start), in which case systemd has
/// already finished the job when it would log "Starting ...", and does not.
fn starts_at_once(spec: &Spec, after: &State) -> bool {
    after.sub == Sub::Start && matches!(spec.readiness, Readiness::Simple | Readiness::Idle)
}

/// The lines a service's step from `before` to `after` on `event` produces,
/// in systemd's order. Verdicts (conditions, assertions, failed
/// dependencies) are logged where the manager records them, not here.
pub fn service_lines(spec: &Spec, before: &State, after: &State, event: &Event) -> Vec<Line> {
    let mut out = Vec::new();
    let (b, a) = (before.sub.active(), after.sub.active());
    if before.sub == after.sub {
        return out;
    }
    // A reload's own phase.
    if after.sub == Sub::Reload && before.sub != Sub::Reload {
        out.push(Line::Reloading);
        return out;
    }
    if before.sub == Sub::Reload && a == ActiveState::Active {
        let failed =
            matches!(event, Event::ControlExited { exit, ignore: false } if *exit != Exit::Code(0));
        out.push(if failed {
            Line::ReloadFailed
        } else {
            Line::Reloaded
        });
        return out;
    }
    // A stop asked for, with processes to stop.
    if a == ActiveState::Deactivating && after.stop_requested && !before.stop_requested {
        out.push(Line::Stopping);
    }
    // An invocation ends: its result, what it consumed, then the job's line.
    if !before.sub.is_down() && after.sub.is_down() {
        out.push(match after.result {
            ServiceResult::Success => Line::Deactivated,
            ServiceResult::ExecCondition => Line::Skipped(after.result),
            r => Line::FailedWithResult(r),
        });
        out.push(Line::Consumed(0));
        // (A unit with nothing left to stop gets there in the stop's own step.)
        if before.stop_requested || after.stop_requested || before.start_after_stop {
            out.push(Line::Stopped);
        } else if b == ActiveState::Activating && after.sub == Sub::Failed {
            out.push(Line::FailedToStart);
        } else if b != ActiveState::Active
            && after.sub == Sub::Dead
            && spec.readiness == Readiness::Oneshot
        {
            // The start job of a oneshot ends with its last process, whether
            // the main process's exit or the cgroup's emptying came last
            // (the latter passes through a deactivating step).
            out.push(Line::Finished);
        }
        return out;
    }
    if before.sub.is_down() && !after.sub.is_down() {
        // A restart's new start: systemd's restart job stops the unit first.
        if before.sub == Sub::AutoRestart {
            out.push(Line::RestartScheduled(after.restarts));
            out.push(Line::Stopped);
        }
        match a {
            ActiveState::Activating if !starts_at_once(spec, after) => out.push(Line::Starting),
            ActiveState::Active => out.push(Line::Started),
            _ => {}
        }
        return out;
    }
    // A stop while waiting to restart: nothing runs, the stop job is done.
    if before.sub == Sub::AutoRestart && after.sub == Sub::Dead && after.stop_requested {
        out.push(Line::Stopped);
        return out;
    }
    if before.sub.is_down() && after.sub == Sub::Failed {
        // The start limit refused a start: the start job fails.
        if event == &Event::StartLimitHit {
            out.push(Line::StartLimitHit);
            out.push(Line::FailedWithResult(after.result));
            out.push(Line::FailedToStart);
        }
        return out;
    }
    if b == ActiveState::Activating && a == ActiveState::Active {
        out.push(
            if after.sub == Sub::Exited && spec.readiness == Readiness::Oneshot {
                Line::Finished
            } else {
                Line::Started
            },
        );
    }
    out
}

/// The lines a target's change from `before` to `after` produces.
pub fn target_lines(before: target::State, after: target::State) -> Vec<Line> {
    if before.sub == after.sub {
        return Vec::new();
    }
    match after.sub {
        target::Sub::Active => vec![Line::ReachedTarget],
        target::Sub::Dead => vec![Line::StoppedTarget],
        // A target fails only by a verdict, which the manager words itself
        // (systemd logs no result line for a target).
        target::Sub::Failed => Vec::new(),
    }
}

#[cfg(test)]
mod tests;
