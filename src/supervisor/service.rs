//! A loaded unit turned into what the manager runs: the state machine's
//! [`Spec`], the command lists, and what `status` must say about directives
//! that cannot take effect here.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::unit::model::{
    ExitStatusSet, KillMode as UKillMode, MemoryLimit, NotifyAccess, RestartPolicy as URestart,
    ServiceType, TasksMax, UnitSource,
};
use crate::unit::{ExecCommand, RunitService, Unit};

use super::state::{Cmd, ExitSet, KillMode, Readiness, RestartPolicy, Spec};

/// Everything the manager needs to run one service.
#[derive(Debug, Clone)]
pub struct ServiceDef {
    /// The unit as loaded (for status, cat and the environment).
    pub unit: Arc<Unit>,
    /// What the state machine needs.
    pub spec: Spec,
    /// The command lists, indexed by [`Cmd`].
    pub cmds: [Vec<ExecCommand>; 7],
    /// StartLimitIntervalSec= and StartLimitBurst=.
    pub start_limit: (Duration, u32),
    /// NotifyAccess= (Type=notify implies main when unset).
    pub notify_access: NotifyAccess,
    /// The runit service directory, when the unit is one.
    pub runit: Option<RunitService>,
    /// Cgroup files to write into each invocation's cgroup (`memory.max`, ...).
    pub limits: Vec<(&'static str, String)>,
    /// What `status` must say: directives not applied and why.
    pub notes: Vec<String>,
    /// Type=dbus: the `BusName=` whose owner decides whether the service runs.
    pub bus_name: Option<String>,
}

impl ServiceDef {
    /// The unit's full name.
    pub fn name(&self) -> &str {
        self.unit.name.as_str()
    }

    /// The command `index` of list `cmd`.
    pub fn command(&self, cmd: Cmd, index: usize) -> Option<&ExecCommand> {
        self.cmds[cmd as usize].get(index)
    }

    /// Type= as systemd spells it.
    pub fn kind_word(&self) -> &'static str {
        match self.spec.readiness {
            Readiness::Simple => "simple",
            Readiness::Exec => "exec",
            Readiness::Forking => "forking",
            Readiness::Oneshot => "oneshot",
            Readiness::Notify => "notify",
            Readiness::Idle => "idle",
            Readiness::Dbus => "dbus",
        }
    }

    /// Restart= as systemd spells it.
    pub fn restart_word(&self) -> &'static str {
        match self.spec.restart {
            RestartPolicy::No => "no",
            RestartPolicy::OnSuccess => "on-success",
            RestartPolicy::OnFailure => "on-failure",
            RestartPolicy::OnAbnormal => "on-abnormal",
            RestartPolicy::OnAbort => "on-abort",
            RestartPolicy::Always => "always",
        }
    }
}

fn exit_set(s: &ExitStatusSet) -> ExitSet {
    ExitSet {
        codes: s.codes.iter().map(|&c| i32::from(c)).collect(),
        signals: s.signals.clone(),
    }
}

/// Turns a loaded `.service` unit into a [`ServiceDef`]; `root` is the cgroup
/// under which invocations run and `enabled` the controllers its
/// `cgroup.subtree_control` enables, to tell which resource directives work.
/// Returns the reason when the unit cannot be run.
pub fn from_unit(unit: Unit, root: &Path, enabled: &[String]) -> Result<ServiceDef, String> {
    let name = unit.name.as_str().to_string();
    let Some(svc) = unit.service.clone() else {
        // Only a kind the manager does not run reaches this without its
        // section: services, targets, sockets and timers load elsewhere.
        return Err(format!(
            "{name}: .{} units are not supported yet: read and kept, not run",
            unit.name.kind().suffix()
        ));
    };
    let mut notes = Vec::new();
    let readiness = match svc.service_type {
        ServiceType::Simple => Readiness::Simple,
        ServiceType::Exec => Readiness::Exec,
        ServiceType::Forking => Readiness::Forking,
        ServiceType::Oneshot => Readiness::Oneshot,
        ServiceType::Notify => Readiness::Notify,
        ServiceType::Idle => Readiness::Idle,
        ServiceType::Dbus => Readiness::Dbus,
    };
    let bus_name = match (readiness, &svc.bus_name) {
        (Readiness::Dbus, Some(b)) if super::dbus::valid_bus_name(b) => Some(b.clone()),
        (Readiness::Dbus, b) => {
            return Err(format!(
                "{name}: Type=dbus needs a valid BusName= (a well-known name such as org.example.App), got {b:?}"
            ));
        }
        _ => None,
    };
    let restart = match svc.restart {
        URestart::No => RestartPolicy::No,
        URestart::OnSuccess => RestartPolicy::OnSuccess,
        URestart::OnFailure => RestartPolicy::OnFailure,
        URestart::OnAbnormal => RestartPolicy::OnAbnormal,
        URestart::OnAbort => RestartPolicy::OnAbort,
        URestart::Always => RestartPolicy::Always,
        URestart::OnWatchdog => {
            notes.push("Restart=on-watchdog never restarts: corral has no watchdog".into());
            RestartPolicy::No
        }
    };
    let kill_mode = match svc.kill_mode {
        UKillMode::ControlGroup => KillMode::ControlGroup,
        UKillMode::Mixed => KillMode::Mixed,
        UKillMode::Process => KillMode::Process,
    };
    let cmds = [
        svc.exec_start_pre.clone(),
        svc.exec_start.clone(),
        svc.exec_start_post.clone(),
        svc.exec_reload.clone(),
        svc.exec_stop.clone(),
        svc.exec_stop_post.clone(),
        svc.exec_condition.clone(),
    ];
    if svc.exec_start.is_empty() && readiness != Readiness::Oneshot {
        return Err(format!(
            "{name}: has no ExecStart= (only Type=oneshot units may omit it); add an ExecStart= line"
        ));
    }
    if readiness != Readiness::Oneshot && svc.exec_start.len() > 1 {
        return Err(format!(
            "{name}: has {} ExecStart= lines, but only Type=oneshot units may have more than one",
            svc.exec_start.len()
        ));
    }
    let flags = |list: &Vec<ExecCommand>| list.iter().map(|c| c.flags.ignore_failure).collect();
    let spec = Spec {
        readiness,
        remain_after_exit: svc.remain_after_exit,
        cmds: [
            flags(&cmds[0]),
            flags(&cmds[1]),
            flags(&cmds[2]),
            flags(&cmds[3]),
            flags(&cmds[4]),
            flags(&cmds[5]),
            flags(&cmds[6]),
        ],
        restart,
        restart_sec: svc.restart_sec,
        timeout_start: svc.timeout_start,
        timeout_stop: svc.timeout_stop,
        runtime_max: svc.runtime_max,
        kill_mode,
        kill_signal: svc.kill_signal,
        send_sigkill: svc.send_sigkill,
        send_sighup: svc.send_sighup,
        success: exit_set(&svc.success_exit_status),
        restart_prevent: exit_set(&svc.restart_prevent_exit_status),
        restart_force: exit_set(&svc.restart_force_exit_status),
    };
    // The notes come from the model, so that `corral verify` warns alike.
    notes.extend(
        svc.unapplied_resources(root, enabled)
            .into_iter()
            .map(|(_, n)| n),
    );
    let mut limits = Vec::new();
    let mut resource = |controller: &str, file: &'static str, value: String| {
        if enabled.iter().any(|c| c == controller) {
            limits.push((file, value));
        }
    };
    if let Some(m) = svc.memory_max {
        let v = match m {
            MemoryLimit::Bytes(b) => b.to_string(),
            MemoryLimit::Permyriad(p) => {
                let total = physical_memory();
                (total / 10_000 * u64::from(p)).to_string()
            }
            MemoryLimit::Infinity => "max".into(),
        };
        resource("memory", "memory.max", v);
    }
    if let Some(q) = svc.cpu_quota_permyriad {
        // CPUQuota=50% (5000 permyriad) is 50 ms of CPU per 100 ms period;
        // 20.5% is 20.5 ms, as systemd keeps the permyriad; at least 1 ms
        // (systemd's floor).
        resource(
            "cpu",
            "cpu.max",
            format!("{} 100000", (u64::from(q) * 10).max(1000)),
        );
    }
    if let Some(t) = svc.tasks_max {
        let v = match t {
            TasksMax::Count(n) => n.to_string(),
            TasksMax::Permyriad(p) => {
                let max = std::fs::read_to_string("/proc/sys/kernel/pid_max")
                    .ok()
                    .and_then(|s| s.trim().parse::<u64>().ok())
                    .unwrap_or(32768);
                (max * u64::from(p) / 10_000).to_string()
            }
            TasksMax::Infinity => "max".into(),
        };
        resource("pids", "pids.max", v);
    }
    let notify_access = match (svc.notify_access, readiness) {
        (NotifyAccess::None, Readiness::Notify) => NotifyAccess::Main,
        (a, _) => a,
    };
    let runit = match &unit.source {
        UnitSource::Runit(r) => Some(RunitService::clone(r)),
        UnitSource::File => None,
    };
    let mut spec = spec;
    if runit.as_ref().is_some_and(|r| r.finish.is_some()) {
        // runsv runs ./finish after every exit of ./run: one more ExecStopPost,
        // whose failure is ignored; the manager gives it runsv's arguments.
        spec.cmds[Cmd::StopPost as usize].push(true);
    }
    let start_limit = (unit.unit.start_limit_interval, unit.unit.start_limit_burst);
    Ok(ServiceDef {
        unit: Arc::new(unit),
        spec,
        cmds,
        start_limit,
        notify_access,
        runit,
        limits,
        notes,
        bus_name,
    })
}

fn physical_memory() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let pages = unsafe { libc::sysconf(libc::_SC_PHYS_PAGES) };
    // SAFETY: as above.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    (pages.max(0) as u64) * (size.max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::unit::loader::from_text;
    use crate::unit::{SpecifierContext, UnitName};

    fn def(name: &str, text: &str, enabled: &[&str]) -> Result<ServiceDef, String> {
        let n = UnitName::parse(name).unwrap();
        let unit = from_text(
            &n,
            Path::new("/units").join(name).as_path(),
            text,
            &SpecifierContext::example(),
        );
        let enabled: Vec<String> = enabled.iter().map(|s| s.to_string()).collect();
        from_unit(unit, Path::new("/cg/root"), &enabled)
    }

    #[test]
    fn directives_reach_the_spec() {
        let d = def(
            "web.service",
            "[Service]\nType=forking\nRestart=on-abnormal\nRestartSec=2\nKillMode=mixed\n\
             KillSignal=SIGINT\nSendSIGKILL=no\nTimeoutStopSec=7\nRuntimeMaxSec=60\n\
             SuccessExitStatus=42 SIGUSR1\nRestartPreventExitStatus=3\nRestartForceExitStatus=4\n\
             ExecStartPre=-/bin/true\nExecStart=/bin/sleep 1\nExecStopPost=/bin/true\n",
            &[],
        )
        .unwrap();
        let s = &d.spec;
        assert_eq!(s.readiness, Readiness::Forking);
        assert_eq!(s.restart, RestartPolicy::OnAbnormal);
        assert_eq!(s.restart_sec, Duration::from_secs(2));
        assert_eq!(s.kill_mode, KillMode::Mixed);
        assert_eq!(s.kill_signal, libc::SIGINT);
        assert!(!s.send_sigkill);
        assert_eq!(s.timeout_stop, Some(Duration::from_secs(7)));
        assert_eq!(s.runtime_max, Some(Duration::from_secs(60)));
        assert_eq!(s.success.codes, vec![42]);
        assert_eq!(s.success.signals, vec![libc::SIGUSR1]);
        assert_eq!(s.restart_prevent.codes, vec![3]);
        assert_eq!(s.restart_force.codes, vec![4]);
        assert_eq!(s.cmds[Cmd::StartPre as usize], vec![true], "the - prefix");
        assert_eq!(s.cmds[Cmd::Start as usize], vec![false]);
        assert_eq!(s.cmds[Cmd::StopPost as usize], vec![false]);
        assert_eq!(d.kind_word(), "forking");
        assert_eq!(d.restart_word(), "on-abnormal");
    }

    #[test]
    fn resource_directives_apply_only_with_their_controller() {
        let text = "[Service]\nExecStart=/bin/true\nMemoryMax=64M\nTasksMax=10\nCPUQuota=50%\n";
        let none = def("a.service", text, &[]).unwrap();
        assert!(none.limits.is_empty());
        assert_eq!(none.notes.len(), 3, "{:?}", none.notes);
        assert!(none.notes[0].starts_with(
            "MemoryMax= not applied: the memory controller is not enabled for /cg/root"
        ));
        let all = def("a.service", text, &["memory", "pids", "cpu"]).unwrap();
        assert!(all.notes.is_empty(), "{:?}", all.notes);
        assert!(
            all.limits
                .contains(&("memory.max", (64u64 << 20).to_string()))
        );
        assert!(all.limits.contains(&("pids.max", "10".to_string())));
        assert!(
            all.limits
                .contains(&("cpu.max", "50000 100000".to_string()))
        );
    }

    #[test]
    fn units_that_cannot_run_say_why() {
        let e = def("a.service", "[Service]\nType=simple\n", &[]).unwrap_err();
        assert!(e.contains("has no ExecStart="), "{e}");
        let e = def(
            "b.service",
            "[Service]\nExecStart=/bin/true\nExecStart=/bin/false\n",
            &[],
        )
        .unwrap_err();
        assert!(e.contains("only Type=oneshot"), "{e}");
        let ok = def(
            "c.service",
            "[Service]\nType=oneshot\nRemainAfterExit=yes\n",
            &[],
        )
        .unwrap();
        assert_eq!(ok.notify_access, NotifyAccess::None);
        let n = def(
            "d.service",
            "[Service]\nType=notify\nExecStart=/bin/true\n",
            &[],
        )
        .unwrap();
        assert_eq!(
            n.notify_access,
            NotifyAccess::Main,
            "notify implies NotifyAccess=main"
        );
        let e = def(
            "e.service",
            "[Service]\nType=dbus\nBusName=org.bad'name\nExecStart=/bin/true\n",
            &[],
        )
        .unwrap_err();
        assert!(e.contains("valid BusName="), "{e}");
    }

    #[test]
    fn dbus_units_keep_their_type_and_bus_name() {
        let d = def(
            "dconf.service",
            "[Service]\nExecStart=/usr/libexec/dconf-service\nType=dbus\nBusName=ca.desrt.dconf\n",
            &[],
        )
        .unwrap();
        assert_eq!(d.spec.readiness, Readiness::Dbus);
        assert_eq!(d.kind_word(), "dbus");
        assert_eq!(d.bus_name.as_deref(), Some("ca.desrt.dconf"));
        assert!(d.notes.is_empty(), "{:?}", d.notes);
        let implied = def(
            "p.service",
            "[Service]\nExecStart=/bin/true\nBusName=org.example.P\n",
            &[],
        )
        .unwrap();
        assert_eq!(
            implied.spec.readiness,
            Readiness::Dbus,
            "BusName= implies Type=dbus"
        );
    }
}
