//! The environment of the processes a unit spawns: the manager's own
//! base, the environment block (`set-environment`, owned here), and what
//! each command sees.

use std::path::Path;

use crate::ipc::proto::{ErrorKind, Failure, Response};
use crate::supervisor::environment::{EnvError, ManagerEnv};
use crate::supervisor::service::ServiceDef;
use crate::supervisor::state::Cmd;
use crate::unit::model::NotifyAccess;

use super::Manager;

/// The manager's environment block: loaded from the state directory at
/// start, changed by the environment requests (each saved before the
/// answer), laid below each unit's own variables.
pub(super) struct EnvBlock {
    /// The block, or why the saved one could not be read.
    block: Result<ManagerEnv, String>,
}

impl EnvBlock {
    /// The block saved in `state_dir`, or why it cannot be used.
    pub(super) fn load(state_dir: &Path) -> EnvBlock {
        let block = ManagerEnv::load(state_dir).map_err(|e| {
            format!("the manager's environment block is unavailable: {e}; set-environment will not work until it is fixed")
        });
        EnvBlock { block }
    }

    /// Whether the block could be loaded.
    pub(super) fn status(&self) -> Result<(), &str> {
        self.block.as_ref().map(|_| ()).map_err(String::as_str)
    }

    /// The variables of the block, for the processes of units.
    pub(super) fn vars(&self) -> Vec<(String, String)> {
        match &self.block {
            Ok(e) => e
                .vars()
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    /// The value of `k` in the block.
    pub(super) fn get(&self, k: &str) -> Option<String> {
        self.block.as_ref().ok()?.vars().get(k).cloned()
    }

    /// The value of `k` as the manager sees it: the block, else `base`
    /// (conditions, the session bus address).
    pub(super) fn lookup(&self, k: &str, base: &[(String, String)]) -> Option<String> {
        self.get(k).or_else(|| {
            base.iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.clone())
        })
    }

    /// `show-environment`: what units get from the manager, as systemctl
    /// shows it: the manager's `base` (HOME, USER, PATH, XDG_RUNTIME_DIR,
    /// SHELL, ...) with the block over it, as sorted `NAME=value` lines.
    pub(super) fn show(&self, base: &[(String, String)]) -> Response {
        match &self.block {
            Ok(env) => Response::Text(env.show_over(base)),
            Err(msg) => Response::Error(Failure {
                kind: ErrorKind::Internal,
                message: msg.clone(),
            }),
        }
    }

    /// set-, unset- or import-environment: `f` changes the block (which
    /// saves itself before the answer).
    pub(super) fn change(
        &mut self,
        f: impl FnOnce(&mut ManagerEnv) -> Result<(), EnvError>,
    ) -> Response {
        let env = match &mut self.block {
            Ok(env) => env,
            Err(msg) => {
                return Response::Error(Failure {
                    kind: ErrorKind::Internal,
                    message: msg.clone(),
                });
            }
        };
        match f(env) {
            Ok(()) => Response::Done(Vec::new()),
            Err(e) => {
                let kind = match e {
                    EnvError::BadAssignment(_) | EnvError::BadName(_) => ErrorKind::BadRequest,
                    EnvError::Io { .. } | EnvError::Corrupt { .. } => ErrorKind::Internal,
                };
                Response::Error(Failure {
                    kind,
                    message: e.to_string(),
                })
            }
        }
    }
}

impl Manager {
    /// The environment of a process of `name` (`cmd` tells which variables apply).
    pub(super) fn process_env(
        &self,
        name: &str,
        def: Option<&ServiceDef>,
        cmd: Cmd,
    ) -> Vec<(String, String)> {
        let e = &self.units[name];
        let mut env = self.base_env.clone();
        // Later assignments win; repeats are dropped once, at the end (linear).
        let set = |env: &mut Vec<(String, String)>, k: &str, v: String| {
            env.push((k.to_string(), v));
        };
        // The manager's block (set-environment) lies below the unit's own variables.
        for (k, v) in self.env.vars() {
            set(&mut env, &k, v);
        }
        if let Some(inv) = e.inv() {
            set(&mut env, "INVOCATION_ID", inv.id.clone());
        }
        // An instance serving an Accept=yes connection: who is at the other end.
        if let Some((_, c)) = self.connection_of(name) {
            for (k, v) in c.env() {
                set(&mut env, &k, v);
            }
        }
        if let Some(d) = def
            && d.notify_access != NotifyAccess::None
        {
            set(
                &mut env,
                "NOTIFY_SOCKET",
                self.notify_path.to_string_lossy().into_owned(),
            );
        }
        let svc = e.service();
        if cmd != Cmd::Start
            && let Some(main) = svc.and_then(|s| s.state.main)
        {
            set(&mut env, "MAINPID", main.to_string());
        }
        if matches!(cmd, Cmd::Stop | Cmd::StopPost) {
            set(
                &mut env,
                "SERVICE_RESULT",
                e.phase().result.as_str().to_string(),
            );
            if let Some((_, exit)) = svc.and_then(|s| s.main_exit) {
                set(&mut env, "EXIT_CODE", exit.code_word().to_string());
                set(&mut env, "EXIT_STATUS", exit.status_word());
            }
        }
        if let Some(svc) = def.and_then(|d| d.unit.service.as_ref()) {
            for (k, v) in &svc.environment {
                set(&mut env, k, v.clone());
            }
        }
        crate::supervisor::environment::last_assignments(env)
    }
}

/// The environment every process of the user's services starts from.
pub(super) fn base_environment() -> Vec<(String, String)> {
    let uid = nix::unistd::getuid();
    let user = nix::unistd::User::from_uid(uid).ok().flatten();
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let mut env = vec![(
        "PATH".to_string(),
        var("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".to_string()),
    )];
    let home = user
        .as_ref()
        .map(|u| u.dir.display().to_string())
        .or_else(|| var("HOME"));
    if let Some(h) = home {
        env.push(("HOME".into(), h));
    }
    if let Some(u) = &user {
        env.push(("USER".into(), u.name.clone()));
        env.push(("LOGNAME".into(), u.name.clone()));
        env.push(("SHELL".into(), u.shell.display().to_string()));
    }
    let runtime = var("XDG_RUNTIME_DIR").unwrap_or_else(|| format!("/run/user/{uid}"));
    env.push(("XDG_RUNTIME_DIR".into(), runtime));
    // Type=dbus units and the manager watching their names must agree on the bus.
    for k in ["LANG", "LC_ALL", "DBUS_SESSION_BUS_ADDRESS"] {
        if let Some(v) = var(k) {
            env.push((k.into(), v));
        }
    }
    env
}
