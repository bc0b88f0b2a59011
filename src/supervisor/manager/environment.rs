//! The environment of the processes a unit spawns: the manager's own
//! base, the environment block, and what each command sees.

use crate::supervisor::service::ServiceDef;
use crate::supervisor::state::Cmd;
use crate::unit::model::NotifyAccess;

use super::Manager;

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
        let set = |env: &mut Vec<(String, String)>, k: &str, v: String| {
            env.retain(|(key, _)| key != k);
            env.push((k.to_string(), v));
        };
        // The manager's block (set-environment) lies below the unit's own variables.
        for (k, v) in self.graph.env_vars() {
            set(&mut env, &k, v);
        }
        if let Some(inv) = &e.inv {
            set(&mut env, "INVOCATION_ID", inv.id.clone());
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
        if cmd != Cmd::Start
            && let Some(main) = e.state.main
        {
            set(&mut env, "MAINPID", main.to_string());
        }
        if matches!(cmd, Cmd::Stop | Cmd::StopPost) {
            set(
                &mut env,
                "SERVICE_RESULT",
                e.state.result.as_str().to_string(),
            );
            if let Some((_, exit)) = e.main_exit {
                set(&mut env, "EXIT_CODE", exit.code_word().to_string());
                set(&mut env, "EXIT_STATUS", exit.status_word());
            }
        }
        if let Some(svc) = def.and_then(|d| d.unit.service.as_ref()) {
            for (k, v) in &svc.environment {
                set(&mut env, k, v.clone());
            }
        }
        env
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
