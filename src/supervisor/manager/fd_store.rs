//! The fd store of a service (sd_notify `FDSTORE=1`, `FDNAME=`,
//! `FDSTOREREMOVE=1`, with `FileDescriptorStoreMax=`): fds the service
//! hands the manager so that they outlive its process. The next start gets
//! them after the sockets' fds, named in `LISTEN_FDNAMES`; the store is
//! emptied when the service stops for good, not when it restarts
//! (automatically or by a restart job), as systemd 252 does. A copy of each
//! is deposited with the fd holder (kind `stored`, with its unit and name),
//! so that the store outlives the manager too: a successor (after a crash
//! or `daemon-reexec`) takes it back.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use crate::supervisor::fd_holder::{Kept, Kind, Tag};

use crate::supervisor::lines::priority;
use crate::supervisor::notify::Message;
use crate::supervisor::state::Sub;

use super::Manager;

/// The name of a stored fd sent without a valid `FDNAME=` (systemd's).
const DEFAULT_NAME: &str = "stored";

/// The longest `FDNAME=` systemd accepts (its FDNAME_MAX).
const NAME_MAX: usize = 255;

/// One kept fd and its name.
#[derive(Debug)]
struct Stored {
    fd: OwnedFd,
    name: String,
    /// The id of its copy with the fd holder.
    held: Option<u64>,
}

/// The fds a service keeps in the manager, in the order they came.
#[derive(Debug, Default)]
pub(super) struct FdStore {
    fds: Vec<Stored>,
}

impl FdStore {
    /// Keeps `fds` under `name` while the store holds fewer than `max`,
    /// each deposited by `hold` (which answers its id with the holder);
    /// answers how many did not fit (those are closed).
    fn add(
        &mut self,
        fds: Vec<OwnedFd>,
        name: &str,
        max: usize,
        mut hold: impl FnMut(BorrowedFd<'_>) -> Option<u64>,
    ) -> usize {
        let mut refused = 0;
        for fd in fds {
            if self.fds.len() < max {
                let held = hold(fd.as_fd());
                self.fds.push(Stored {
                    fd,
                    name: name.to_string(),
                    held,
                });
            } else {
                refused += 1;
            }
        }
        refused
    }

    /// Closes the kept fds named `name`; answers the ids of their copies
    /// with the holder.
    fn remove(&mut self, name: &str) -> Vec<u64> {
        let (gone, kept) = std::mem::take(&mut self.fds)
            .into_iter()
            .partition(|s| s.name == name);
        self.fds = kept;
        gone.into_iter().filter_map(|s: Stored| s.held).collect()
    }

    /// Closes every kept fd; answers the ids of their copies with the holder.
    fn clear(&mut self) -> Vec<u64> {
        self.fds.drain(..).filter_map(|s| s.held).collect()
    }

    /// The kept fds with their names, in the order they came.
    fn listed(&self) -> impl Iterator<Item = (RawFd, String)> + '_ {
        self.fds.iter().map(|s| (s.fd.as_raw_fd(), s.name.clone()))
    }
}

/// Whether `name` may be an `FDNAME=`: printable ASCII without ':' (the
/// separator of `LISTEN_FDNAMES`), at most 255 bytes (systemd's
/// `fdname_is_valid`).
fn valid_name(name: &str) -> bool {
    name.len() <= NAME_MAX
        && name
            .bytes()
            .all(|b| (b' '..=b'~').contains(&b) && b != b':')
}

impl Manager {
    /// The fd-store part of a notification of `name` (already admitted by
    /// NotifyAccess=): keeps, removes or closes the fds sent along.
    pub(super) fn fd_store_notified(&mut self, name: &str, msg: &Message, fds: Vec<OwnedFd>) {
        let max = self.units[name]
            .service_def()
            .and_then(|d| d.unit.service.as_ref())
            .map_or(0, |s| s.fd_store_max as usize);
        let given = msg.fd_name.as_deref();
        let valid = given.filter(|n| valid_name(n));
        if given.is_some() && valid.is_none() {
            self.log_at(
                name,
                priority::WARNING,
                "Passed FDNAME= name is invalid, ignoring.",
            );
        }
        if msg.fd_store_remove {
            match valid {
                Some(n) => {
                    let held = self
                        .service_mut(name)
                        .map(|s| s.fd_store.remove(n))
                        .unwrap_or_default();
                    self.drop_held(&held);
                }
                None => self.log_at(
                    name,
                    priority::WARNING,
                    "FDSTOREREMOVE=1 requested, but no name specified, ignoring.",
                ),
            }
        }
        if fds.is_empty() {
            return;
        }
        if !msg.fd_store {
            self.log_at(
                name,
                priority::WARNING,
                "Got extra file descriptors with the notification message, closing them.",
            );
            return;
        }
        if max == 0 {
            self.log_at(
                name,
                priority::WARNING,
                "Got FDSTORE=1, but FileDescriptorStoreMax=0 (the default) allows no stored \
                 file descriptors: closing them. Set FileDescriptorStoreMax= to keep them.",
            );
            return;
        }
        let fd_name = valid.unwrap_or(DEFAULT_NAME);
        let holder = self.output.holder().cloned();
        let hold = |fd: BorrowedFd<'_>| {
            let tag = Tag {
                kind: Kind::Stored,
                unit: name.to_string(),
                name: fd_name.to_string(),
            };
            holder.as_ref()?.deposit_tagged(fd, &tag).ok()
        };
        let refused = self
            .service_mut(name)
            .map_or(0, |s| s.fd_store.add(fds, fd_name, max, hold));
        if refused > 0 {
            self.log_at(
                name,
                priority::WARNING,
                &format!(
                    "Cannot store more fds than FileDescriptorStoreMax={max}, closing remaining {refused}."
                ),
            );
        }
    }

    /// The fds the main process of `name` gets from fd 3 on, with their
    /// `LISTEN_FDNAMES` names: its sockets' fds, then its stored ones.
    pub(super) fn passed_fds(&self, name: &str) -> Vec<(RawFd, String)> {
        let mut fds = self.activation_fds(name);
        if let Some(s) = self.service(name) {
            fds.extend(s.fd_store.listed());
        }
        fds
    }

    /// `name` changed state: once it is stopped for good (dead or failed,
    /// not waiting to restart, no restart or start job on its way), its
    /// stored fds are closed. A stop while it waits to restart counts.
    pub(super) fn fd_store_settle(&mut self, name: &str) {
        let starts_again = self.start_job_waits(name);
        let Some(s) = self.service_mut(name) else {
            return;
        };
        let gone = matches!(s.state.sub, Sub::Dead | Sub::Failed) && !s.state.start_after_stop;
        if gone && !starts_again {
            let held = s.fd_store.clear();
            self.drop_held(&held);
        }
    }

    /// Puts the fds a predecessor stored for its services (kept by the fd
    /// holder, `kept` in the order they came) back into their stores; the
    /// holder keeps its copies under the same ids. Those of a unit that is
    /// no longer a service are dropped.
    pub(super) fn restore_fd_stores(&mut self, mut kept: Vec<Kept>) {
        kept.sort_by_key(|k| k.id);
        for k in kept {
            match self.service_mut(&k.tag.unit) {
                Some(s) => s.fd_store.fds.push(Stored {
                    fd: k.fd,
                    name: k.tag.name,
                    held: Some(k.id),
                }),
                None => self.drop_held(&[k.id]),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fds(n: usize) -> Vec<OwnedFd> {
        (0..n)
            .map(|_| {
                let (r, _w) = nix::unistd::pipe().unwrap();
                r
            })
            .collect()
    }

    #[test]
    fn keeps_up_to_the_limit_in_order_and_removes_by_name() {
        let mut s = FdStore::default();
        let mut next = 0;
        let mut hold = |_: BorrowedFd<'_>| {
            next += 1;
            Some(next)
        };
        assert_eq!(s.add(fds(2), "a", 3, &mut hold), 0);
        assert_eq!(s.add(fds(2), "b", 3, &mut hold), 1, "one over the limit");
        let names: Vec<String> = s.listed().map(|(_, n)| n).collect();
        assert_eq!(names, ["a", "a", "b"]);
        assert_eq!(s.remove("a"), [1, 2], "the holder's copies go too");
        assert!(s.remove("zzz").is_empty());
        assert_eq!(s.listed().count(), 1);
        assert_eq!(s.clear(), [3]);
        assert_eq!(s.listed().count(), 0);
    }

    #[test]
    fn a_full_store_closes_what_it_refuses() {
        let (r, w) = nix::unistd::pipe().unwrap();
        let mut s = FdStore::default();
        assert_eq!(s.add(vec![r], "x", 0, |_| None), 1);
        // The read end is closed: a write gets EPIPE.
        let e = nix::unistd::write(&w, b"x").unwrap_err();
        assert_eq!(e, nix::errno::Errno::EPIPE);
    }

    #[test]
    fn names_follow_systemd() {
        for (n, ok) in [
            ("stored", true),
            ("", true),
            ("a b", true),
            ("a:b", false),
            ("é", false),
            ("tab\t", false),
        ] {
            assert_eq!(valid_name(n), ok, "{n:?}");
        }
        assert!(valid_name(&"x".repeat(255)));
        assert!(!valid_name(&"x".repeat(256)));
    }
}
