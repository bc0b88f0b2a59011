//! Unit cgroups a previous manager left behind.
//!
//! A manager that was SIGKILLed (and restarted by `corrald --system`, or by
//! hand) leaves its units running in their cgroups below the root. Nothing
//! tracks them any more: no state, no journal pipes, no restart policy. Until
//! re-adopting them is built, the new manager stops every one of them before
//! it starts anything, and says so in its log and in the unit's journal, so
//! no process of a unit is ever left unmanaged.

use std::path::Path;
use std::time::Duration;

use crate::cgroup::Cgroup;
use crate::journal::{NewEntry, WriterHandle};

/// How long a leftover cgroup may take to empty after `cgroup.kill`.
const KILL_WAIT: Duration = Duration::from_secs(10);

/// The unit a leftover cgroup belonged to: its directory name, without the
/// `-<8 hex>` suffix an invocation gets when the plain name was still busy.
pub fn unit_of(dir_name: &str) -> &str {
    match dir_name.rsplit_once('-') {
        Some((base, id))
            if id.len() == 8 && id.bytes().all(|b| b.is_ascii_hexdigit()) && base.contains('.') =>
        {
            base
        }
        _ => dir_name,
    }
}

/// Kills and removes every child cgroup of `root` except the one holding
/// `own` (the manager's own cgroup, e.g. `user-UID/manager`); returns the
/// names of the cgroups it stopped. Failures are logged, never fatal: the
/// manager must come up even if one leftover resists.
pub async fn stop_all(
    root: &Cgroup,
    own: Option<&Path>,
    journal: Option<&WriterHandle>,
) -> Vec<String> {
    let children = match root.children() {
        Ok(c) => c,
        Err(e) => {
            eprintln!(
                "corrald: cannot list the cgroups left below {}: {e}",
                root.path().display()
            );
            return Vec::new();
        }
    };
    let mut stopped = Vec::new();
    for cg in children {
        if own.is_some_and(|own| own.starts_with(cg.path())) {
            continue;
        }
        let name = cg
            .path()
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let pids = cg.procs_recursive().unwrap_or_default();
        let result = async {
            if !pids.is_empty() {
                cg.kill()?;
                match tokio::time::timeout(KILL_WAIT, cg.wait_empty()).await {
                    Ok(r) => r?,
                    Err(_) => {
                        return Err(format!(
                            "still populated {} s after cgroup.kill",
                            KILL_WAIT.as_secs()
                        )
                        .into());
                    }
                }
            }
            cg.remove()?;
            Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
        }
        .await;
        let message = match &result {
            Ok(()) if pids.is_empty() => {
                format!("Removed the empty cgroup {name} left by a previous manager.")
            }
            Ok(()) => format!(
                "Stopped {} process(es) left by a previous manager in cgroup {name} (PIDs {}): \
                 they were no longer supervised.",
                pids.len(),
                pids.iter()
                    .map(|p| p.to_string())
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
            Err(e) => format!("Cannot stop the cgroup {name} left by a previous manager: {e}"),
        };
        eprintln!("corrald: {message}");
        if let Some(j) = journal {
            let mut entry = NewEntry::manager(unit_of(&name), 0, message);
            if result.is_err() {
                entry.priority = 3;
            }
            let _ = j.append(entry).await;
        }
        if result.is_ok() {
            stopped.push(name);
        }
    }
    stopped
}

#[cfg(test)]
mod tests {
    use super::unit_of;

    #[test]
    fn leftover_cgroups_name_their_unit() {
        assert_eq!(unit_of("ssh-agent.service"), "ssh-agent.service");
        assert_eq!(unit_of("ssh-agent.service-1a2b3c4d"), "ssh-agent.service");
        assert_eq!(
            unit_of("memcached@11212.service-deadbeef"),
            "memcached@11212.service"
        );
        assert_eq!(unit_of("run-parts"), "run-parts");
        assert_eq!(unit_of("a.service-xyz"), "a.service-xyz");
    }
}
