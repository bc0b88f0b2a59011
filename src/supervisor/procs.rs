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
    }
}
