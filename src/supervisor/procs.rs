//! Process details from /proc, for `status`.

use crate::ipc::proto::Process;

/// The command line of `pid`, arguments joined by spaces; `[comm]` when it
/// has none (a kernel thread or a zombie), `None` when the process is gone.
pub fn cmdline(pid: i32) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let args: Vec<String> = raw
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    if args.is_empty() {
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
        return Some(format!("[{}]", comm.trim_end()));
    }
    Some(args.join(" "))
}

/// The fields of `/proc/PID/stat` after the command name (state first);
/// `None` when the process is gone.
fn stat_fields(pid: i32) -> Option<Vec<String>> {
    let stat = std::fs::read(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) S ppid ...": comm may hold spaces and parens.
    let after = stat.iter().rposition(|&b| b == b')')? + 1;
    Some(
        String::from_utf8_lossy(&stat[after..])
            .split_whitespace()
            .map(str::to_owned)
            .collect(),
    )
}

/// The parent of `pid`; `None` when the process is gone.
pub fn parent(pid: i32) -> Option<i32> {
    stat_fields(pid)?.get(1)?.parse().ok()
}

/// When `pid` started (field 22 of /proc/PID/stat, clock ticks since
/// boot): with the PID, it names one process for as long as the machine
/// runs. `None` when the process is gone or a zombie.
pub fn start_time(pid: i32) -> Option<u64> {
    let f = stat_fields(pid)?;
    if matches!(f.first().map(String::as_str), Some("Z" | "X")) {
        return None;
    }
    // Fields after the command name start at field 3 (the state).
    f.get(22 - 3)?.parse().ok()
}

/// The processes `pids`, sorted, with their command lines; gone ones are skipped.
pub fn describe(mut pids: Vec<i32>) -> Vec<Process> {
    pids.sort_unstable();
    pids.into_iter()
        .filter_map(|pid| cmdline(pid).map(|cmdline| Process { pid, cmdline }))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_cmdline_is_readable() {
        let me = std::process::id() as i32;
        let line = cmdline(me).unwrap();
        assert!(!line.is_empty());
        assert_eq!(describe(vec![me])[0].pid, me);
        assert!(cmdline(i32::MAX).is_none());
        assert_eq!(parent(me), Some(nix::unistd::getppid().as_raw()));
        assert!(parent(i32::MAX).is_none());
        let child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let started = start_time(pid).expect("a running child has a start time");
        assert!(started >= start_time(me).unwrap());
        assert_eq!(start_time(pid), Some(started), "stable for one process");
        let mut child = child;
        child.kill().unwrap();
        // A zombie (killed, not yet waited for) has none.
        while std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z"))
        {
            std::thread::yield_now();
        }
        assert_eq!(start_time(pid), None);
        child.wait().unwrap();
        assert!(start_time(i32::MAX).is_none());
    }
}
