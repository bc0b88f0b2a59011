//! Status rendering: what `status`, `show`, `list`, `cat` and the other
//! queries answer, read from the manager's state.

use std::path::PathBuf;

use crate::cgroup::Cgroup;
use crate::ipc::proto;
use crate::ipc::proto::{
    ErrorKind, Failure, LoadState, MainExit, ManagerStatus, Response, UnitFile, UnitFiles,
    UnitStatus,
};
use crate::supervisor::control::Query;
use crate::supervisor::procs;
use crate::supervisor::state::{ActiveState, Sub};
use crate::supervisor::wire;
use crate::unit::{RunitService, UnitName};

use super::{Body, Def, Manager, normalize};

impl Manager {
    pub(super) fn rel_cgroup(&self, cg: &Cgroup) -> String {
        match cg.path().strip_prefix(&self.mount) {
            Ok(rel) => format!("/{}", rel.display()),
            Err(_) => cg.path().display().to_string(),
        }
    }

    pub(super) fn unit_status(&self, name: &str) -> UnitStatus {
        let e = &self.units[name];
        // A unit that still runs after daemon-reload found its file gone
        // shows as not-found (or masked) while it keeps its old definition.
        let load = match self.load_failure(name) {
            None => LoadState::Loaded,
            Some(f) => f.load_state(),
        };
        let (fragment, dropins, source, description) = match &e.def {
            Ok(d) => {
                let unit = d.unit();
                (
                    unit.fragment()
                        .map(|p| p.display().to_string())
                        .unwrap_or_default(),
                    unit.dropins
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect(),
                    if unit_runit(unit).is_some() {
                        "runit"
                    } else {
                        "unit-file"
                    }
                    .to_string(),
                    unit.unit
                        .description
                        .clone()
                        .unwrap_or_else(|| name.to_string()),
                )
            }
            Err(_) => (String::new(), Vec::new(), String::new(), name.to_string()),
        };
        // What only a service has: Type=, Restart=, its notes.
        let (kind, restart, mut notes) = match e.service_def() {
            Some(d) => (
                d.kind_word().to_string(),
                d.restart_word().to_string(),
                d.notes.clone(),
            ),
            None => (String::new(), String::new(), Vec::new()),
        };
        let phase = e.phase();
        if phase.active == ActiveState::Failed
            && let Some(n) = &e.failure_note
        {
            notes.push(n.to_string());
        }
        let svc = e.service();
        if let Some(d) = e.service_def()
            && let Some(s) = svc
            && let Some(n) = self.bus_note(d, s.state.sub)
        {
            notes.push(n);
        }
        self.graph_notes(name, &mut notes);
        if let Some(s) = svc
            && !s.left_behind.is_empty()
        {
            notes.push(format!(
                "left running by KillMode=process: {}",
                s.left_behind
                    .iter()
                    .map(|p| p.to_string())
                    .collect::<Vec<_>>()
                    .join(" ")
            ));
        }
        let (listen, triggers) = match &e.def {
            Ok(Def::Socket(d)) => (
                d.section().listen.iter().map(|l| l.describe()).collect(),
                d.triggers().map(|t| t.to_string()).into_iter().collect(),
            ),
            _ => (Vec::new(), Vec::new()),
        };
        let (main_pid, control_pid) = e.main_and_control();
        let timer = match &e.body {
            Body::Timer(t) => Some(t),
            _ => None,
        };
        let processes = e
            .cgroup()
            .map(|c| procs::describe(c.procs_recursive().unwrap_or_default()))
            .unwrap_or_default();
        let (log_cgroup, log_processes) = match self.runit_log_status(name) {
            Some((cg, procs)) => (Some(cg), procs),
            None => (None, Vec::new()),
        };
        UnitStatus {
            name: name.to_string(),
            description,
            load,
            fragment,
            dropins,
            source,
            file_state: e
                .file_state
                .as_ref()
                .map_or_else(String::new, ToString::to_string),
            kind,
            restart,
            active: wire::active_state(phase.active),
            sub: e.wire_sub(),
            result: wire::result(phase.result),
            since_usec: e.since_usec,
            main_pid,
            control_pid,
            main_exit: svc.and_then(|s| s.main_exit).map(|(pid, exit)| MainExit {
                pid,
                code: exit.code_word().to_string(),
                status: exit.status_word(),
                command: svc.and_then(|s| s.main_command.clone()).unwrap_or_default(),
            }),
            invocation: e.invocation_id(),
            cgroup: e.cgroup().map(|c| self.rel_cgroup(c)),
            processes,
            log_cgroup,
            log_processes,
            status_text: svc.and_then(|s| s.status_text.clone()),
            restarts: svc.map_or(0, |s| s.state.restarts),
            notes,
            journal: Vec::new(),
            next_elapse_usec: timer.and_then(|t| t.next_realtime()),
            last_trigger_usec: timer.and_then(|t| t.timer.last_trigger_realtime.get()),
            listen,
            connections: match (&e.def, &e.body) {
                (Ok(Def::Socket(d)), Body::Socket(s)) if d.spec.accept => {
                    Some((s.state.n_accepted, s.state.n_connections, s.state.n_refused))
                }
                _ => None,
            },
            triggers: match &e.def {
                Ok(Def::Timer(d)) => vec![d.triggers().to_string()],
                _ => triggers,
            },
            triggered_by: {
                let mut by = self.timers_of(name);
                by.extend(self.triggered_by(name));
                by
            },
            timer: match (&e.def, timer) {
                (Ok(Def::Timer(d)), Some(t)) => Some(self.timer_status(d, t)),
                _ => None,
            },
        }
    }

    /// What `show` reports for a unit that does not exist, as systemd's
    /// stub: not-found and inactive.
    pub(super) fn not_found_status(name: &str) -> UnitStatus {
        UnitStatus {
            name: name.to_string(),
            description: name.to_string(),
            load: LoadState::NotFound,
            fragment: String::new(),
            dropins: Vec::new(),
            source: String::new(),
            file_state: String::new(),
            kind: String::new(),
            restart: String::new(),
            active: proto::ActiveState::Inactive,
            sub: wire::service_sub(Sub::Dead),
            result: proto::UnitResult::Success,
            since_usec: 0,
            main_pid: None,
            control_pid: None,
            main_exit: None,
            invocation: String::new(),
            cgroup: None,
            processes: Vec::new(),
            log_cgroup: None,
            log_processes: Vec::new(),
            status_text: None,
            restarts: 0,
            notes: Vec::new(),
            journal: Vec::new(),
            next_elapse_usec: None,
            last_trigger_usec: None,
            listen: Vec::new(),
            connections: None,
            triggers: Vec::new(),
            triggered_by: Vec::new(),
            timer: None,
        }
    }

    pub(super) fn units_for(&mut self, typed: Vec<String>) -> Vec<Result<UnitStatus, Failure>> {
        typed
            .into_iter()
            .map(|t| self.resolve(&t).map(|n| self.unit_status(&n)))
            .collect()
    }

    pub(super) fn query(&mut self, query: Query) -> Response {
        match query {
            Query::Manager => {
                let listed: Vec<UnitStatus> = self
                    .units
                    .keys()
                    .map(|n| self.unit_status(n.as_str()))
                    .filter(|u| u.active != proto::ActiveState::Inactive)
                    .collect();
                Response::Manager(ManagerStatus {
                    pid: std::process::id() as i32,
                    uid: nix::unistd::getuid().as_raw(),
                    version: env!("CARGO_PKG_VERSION").to_string(),
                    cgroup_root: self.rel_cgroup(&self.root),
                    cgroup: crate::cgroup::own_cgroup()
                        .map(|p| match p.strip_prefix(&self.mount) {
                            Ok(rel) => format!("/{}", rel.display()),
                            Err(_) => p.display().to_string(),
                        })
                        .unwrap_or_default(),
                    since_usec: self.started_usec,
                    units: listed,
                    load_errors: self.load_errors.clone(),
                    journal: self.output.journal().and_then(|j| j.problem()),
                })
            }
            Query::Status { units } => {
                let mut list = self.units_for(units);
                for u in list.iter_mut().flatten() {
                    u.journal = self.output.last_lines(&u.name, 10);
                }
                Response::Units(list)
            }
            // systemctl show prints a unit that does not exist as not-found
            // and inactive (and exits 0); status says it could not be found.
            Query::Show { units } => Response::Units(
                units
                    .into_iter()
                    .map(|t| match self.resolve(&t) {
                        Ok(n) => Ok(self.unit_status(&n)),
                        Err(f) if f.kind == ErrorKind::NotFound => {
                            Ok(Self::not_found_status(&normalize(&t)))
                        }
                        Err(f) => Err(f),
                    })
                    .collect(),
            ),
            Query::SearchPaths => Response::SearchPaths {
                units: lossy(self.loader.unit_paths()),
                runit: lossy(self.loader.runit_dirs()),
            },
            Query::List => {
                // Units whose file went away and that have stopped since are gone.
                let all: Vec<String> = self.units.keys().map(UnitName::to_string).collect();
                for n in &all {
                    self.forget_if_gone(n);
                }
                let names: Vec<String> = self.units.keys().map(UnitName::to_string).collect();
                Response::Units(names.iter().map(|n| Ok(self.unit_status(n))).collect())
            }
            Query::Cat { units } => Response::Files(
                units
                    .into_iter()
                    .map(|t| {
                        let r = self.resolve(&t);
                        let unit = r.clone().unwrap_or_else(|_| normalize(&t));
                        let files = r.and_then(|n| self.unit_files(&n));
                        UnitFiles { unit, files }
                    })
                    .collect(),
            ),
            Query::ActiveStates { units } => Response::States(
                units
                    .into_iter()
                    .map(|t| match self.resolve(&t) {
                        Ok(n) => (
                            n.clone(),
                            Some(wire::active_state(self.units[n.as_str()].phase().active)),
                        ),
                        Err(_) => (normalize(&t), None),
                    })
                    .collect(),
            ),
            Query::DaemonReload => Response::Done(self.reload_units()),
            Query::ResetFailedAll => {
                let names: Vec<String> = self.units.keys().map(UnitName::to_string).collect();
                for n in names {
                    self.reset_failed(&n);
                }
                Response::Jobs(Vec::new())
            }
            Query::ListDependencies { unit, reverse, all } => {
                self.list_dependencies(&unit, reverse, all)
            }
            Query::SetEnvironment { assignments } => self.env.change(|env| env.set(&assignments)),
            Query::UnsetEnvironment { names } => self.env.change(|env| env.unset(&names)),
            Query::ImportEnvironment { pairs } => self.env.change(|env| env.set_pairs(pairs)),
            Query::ShowEnvironment => self.env.show(&self.base_env),
        }
    }

    pub(super) fn unit_files(&self, name: &str) -> Result<Vec<UnitFile>, Failure> {
        let e = &self.units[name];
        let unit = match &e.def {
            Ok(d) => d.unit().clone(),
            Err(f) => return Err(f.failure()),
        };
        let mut paths: Vec<PathBuf> = unit.files().collect();
        if let Some(r) = &unit_runit(&unit) {
            paths.extend(r.finish.clone());
            paths.extend(r.log_run.clone());
        }
        Ok(paths
            .into_iter()
            .map(|p| UnitFile {
                text: std::fs::read(&p)
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .unwrap_or_else(|err| format!("# cannot read {}: {err}\n", p.display())),
                path: p.display().to_string(),
            })
            .collect())
    }
}

/// Paths for the protocol, which carries them as (lossy) UTF-8.
pub(super) fn lossy(paths: &[PathBuf]) -> Vec<String> {
    paths
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect()
}

pub(super) fn unit_runit(unit: &crate::unit::Unit) -> Option<RunitService> {
    match &unit.source {
        crate::unit::model::UnitSource::Runit(r) => Some(RunitService::clone(r)),
        crate::unit::model::UnitSource::File => None,
    }
}
