//! Unit cgroups a previous manager left behind, and this manager's claim on
//! its cgroup root (one root, one owner: docs/CGROUPS.md, "Ownership").
//!
//! A manager that was SIGKILLed (and restarted by `corrald --system`, or by
//! hand) leaves its units running in their cgroups below the root. The new
//! manager takes back every one its state record describes (manager/readopt.rs);
//! a cgroup with no matching record (a record of another invocation, of a unit
//! that no longer loads, or none) is a leftover: it is stopped before anything
//! starts, and the log and the unit's journal say so, so that no process of a
//! unit is ever left unmanaged.

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use crate::cgroup::owner::Claim;
use crate::cgroup::{Cgroup, CgroupError};
use crate::journal::{NewEntry, WriterHandle};

/// The claim [`claim_root`] took, for [`create_unit_cgroup`] to renew on a
/// recreated root; weak, so it ends when `run` drops the guard.
static CLAIM: Mutex<Option<Weak<Claim>>> = Mutex::new(None);

/// Lock file of a manager's claim, in its runtime directory.
pub const LOCK_FILE: &str = "cgroup.lock";

/// Claims `root` for this manager before it touches anything below it:
/// refused when another live manager owns it or uses `runtime_dir`. Keep
/// the guard for as long as the manager runs. `held`: the lock file as a
/// previous image of this process passed it (`daemon-reexec`).
pub fn claim_root(
    root: &Cgroup,
    runtime_dir: &Path,
    held: Option<std::fs::File>,
) -> Result<Arc<Claim>, CgroupError> {
    let claim = Arc::new(Claim::take_held(
        root.path(),
        &runtime_dir.join(LOCK_FILE),
        "corrald --user",
        held,
    )?);
    *CLAIM.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::downgrade(&claim));
    Ok(claim)
}

/// Creates a unit's cgroup `cg_name` below `root`. A root removed under the
/// manager (by hand, or by a system manager that took it for a leftover) is
/// recreated and claimed again where the manager may create it (root's own
/// manager); otherwise the start fails saying why (status 219/CGROUP).
pub fn create_unit_cgroup(root: &Cgroup, cg_name: &str, unit: &str) -> Result<Cgroup, String> {
    let first = match root.create_child(cg_name) {
        Ok(cg) => return Ok(cg),
        Err(e) => e,
    };
    if root.path().exists() || !first.is_not_found() {
        return Err(format!("cannot create the cgroup of {unit}: {first}"));
    }
    let recreated = crate::cgroup::find_mount()
        .and_then(|mount| Cgroup::create_all(&mount, root.path()))
        .and_then(|_| {
            let claim = CLAIM.lock().unwrap_or_else(|e| e.into_inner()).clone();
            match claim.and_then(|c| c.upgrade()) {
                Some(claim) => claim.renew(),
                None => Ok(()),
            }
        });
    match recreated {
        Ok(()) => {
            eprintln!(
                "corrald: the cgroup root {} was removed under this manager; recreated it",
                root.path().display()
            );
            root.create_child(cg_name)
                .map_err(|e| format!("cannot create the cgroup of {unit}: {e}"))
        }
        Err(e) => Err(format!(
            "cannot create the cgroup of {unit}: this manager's cgroup root {} was removed \
             and cannot be recreated ({e}); restart the manager (log in again) to get a new one",
            root.path().display()
        )),
    }
}

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
/// `own` (the manager's own cgroup, e.g. `user-UID/manager`) and those named
/// in `kept` (taken back); returns the names of the cgroups it stopped.
/// Failures are logged, never fatal: the manager must come up even if one
/// leftover resists.
pub async fn stop_all(
    root: &Cgroup,
    own: Option<&Path>,
    kept: &HashSet<String>,
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
        if kept.contains(&name) || name == super::fd_holder::CGROUP {
            continue;
        }
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
