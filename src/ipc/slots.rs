//! Connection slots: how many connections a server holds, per uid and in
//! all, and which idle connection gives its slot up when a newcomer needs it.
//!
//! A connection is *idle* while it waits for the first byte of its next
//! request; it holds no request and no half frame, so closing it costs its
//! client nothing but a reconnect. Connections in a handshake, in the middle
//! of a frame or inside a request (a `login --wait`, a `journal -f`) are
//! busy and keep their slot: the frame and handshake deadlines bound the
//! first two, the per-uid cap bounds what one uid can hold in the third.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

/// The limits a [`Slots`] table enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    /// Connections in all.
    pub max: usize,
    /// Connections of one non-root uid.
    pub per_uid: usize,
    /// Slots only root may take: non-root connections together stay below
    /// `max - root_reserve`.
    pub root_reserve: usize,
}

/// Why a newcomer was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Every slot open to this uid is taken by a busy connection.
    Full,
    /// This uid already holds its maximum of busy connections.
    UidFull,
}

/// The table of connections a server holds.
#[derive(Debug)]
pub(crate) struct Slots {
    /// What the table allows.
    limits: Limits,
    /// Every admitted connection; one lock, held only for short scans.
    table: Mutex<Table>,
}

#[derive(Debug, Default)]
struct Table {
    /// The next connection id.
    next_id: u64,
    /// Stamps idle periods, so the connection idle longest goes first.
    next_idle: u64,
    /// Admitted connections by id.
    conns: HashMap<u64, Conn>,
}

#[derive(Debug)]
struct Conn {
    /// The peer's uid.
    uid: u32,
    /// When the connection last became idle (a [`Table::next_idle`] stamp);
    /// `None` while busy.
    idle_since: Option<u64>,
    /// Woken when the connection is evicted.
    evict: Arc<Notify>,
}

impl Slots {
    /// An empty table.
    pub(crate) fn new(limits: Limits) -> Arc<Slots> {
        Arc::new(Slots {
            limits,
            table: Mutex::new(Table::default()),
        })
    }

    /// Admits a connection of `uid`, evicting the longest-idle connection
    /// whose slot it needs when there is no free one.
    pub(crate) fn admit(self: &Arc<Self>, uid: u32) -> Result<Slot, Refusal> {
        let mut t = self.lock();
        // Each pass either admits, refuses or removes one connection.
        while let Some(blocked) = self.blocked(&t, uid) {
            let victim = t
                .conns
                .iter()
                .filter(|(_, c)| c.idle_since.is_some() && blocked.may_evict(c.uid))
                .min_by_key(|(_, c)| c.idle_since)
                .map(|(id, _)| *id);
            let Some(victim) = victim else {
                return Err(match blocked {
                    Blocked::Uid(_) => Refusal::UidFull,
                    Blocked::Users | Blocked::All => Refusal::Full,
                });
            };
            if let Some(c) = t.conns.remove(&victim) {
                c.evict.notify_one();
            }
        }
        let id = t.next_id;
        t.next_id += 1;
        let evict = Arc::new(Notify::new());
        t.conns.insert(
            id,
            Conn {
                uid,
                idle_since: None,
                evict: evict.clone(),
            },
        );
        Ok(Slot {
            slots: self.clone(),
            id,
            evict,
        })
    }

    /// The narrowest limit a newcomer of `uid` runs into, if any: evicting a
    /// connection it covers frees the wider ones too.
    fn blocked(&self, t: &Table, uid: u32) -> Option<Blocked> {
        let l = self.limits;
        if uid != 0 {
            let mine = t.conns.values().filter(|c| c.uid == uid).count();
            if mine >= l.per_uid {
                return Some(Blocked::Uid(uid));
            }
            let users = t.conns.values().filter(|c| c.uid != 0).count();
            if users >= l.max.saturating_sub(l.root_reserve) {
                return Some(Blocked::Users);
            }
        }
        (t.conns.len() >= l.max).then_some(Blocked::All)
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        // The table stays consistent between statements, so a panic elsewhere
        // while it was held does not make it unusable.
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Which limit a newcomer hit.
#[derive(Debug, Clone, Copy)]
enum Blocked {
    /// Its uid's cap.
    Uid(u32),
    /// The slots open to non-root uids.
    Users,
    /// Every slot.
    All,
}

impl Blocked {
    /// Whether evicting a connection of `uid` lifts this limit.
    fn may_evict(self, uid: u32) -> bool {
        match self {
            Blocked::Uid(u) => u == uid,
            Blocked::Users => uid != 0,
            Blocked::All => true,
        }
    }
}

/// One admitted connection's slot; dropping it frees the slot.
#[derive(Debug)]
pub(crate) struct Slot {
    slots: Arc<Slots>,
    id: u64,
    evict: Arc<Notify>,
}

impl Slot {
    /// Marks the connection idle: from now on a newcomer may evict it.
    pub(crate) fn set_idle(&self) {
        let mut t = self.slots.lock();
        let stamp = t.next_idle;
        t.next_idle += 1;
        if let Some(c) = t.conns.get_mut(&self.id) {
            c.idle_since = Some(stamp);
        }
    }

    /// Marks the connection busy; false if it was evicted meanwhile (its
    /// slot belongs to someone else and it must close).
    pub(crate) fn set_busy(&self) -> bool {
        let mut t = self.slots.lock();
        match t.conns.get_mut(&self.id) {
            Some(c) => {
                c.idle_since = None;
                true
            }
            None => false,
        }
    }

    /// Resolves once the connection has been evicted.
    pub(crate) async fn evicted(&self) {
        self.evict.notified().await;
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.slots.lock().conns.remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slots(max: usize, per_uid: usize, root_reserve: usize) -> Arc<Slots> {
        Slots::new(Limits {
            max,
            per_uid,
            root_reserve,
        })
    }

    #[test]
    fn one_uid_stops_at_its_cap_and_others_still_get_in() {
        let s = slots(8, 2, 2);
        let a: Vec<_> = (0..2).map(|_| s.admit(1000).unwrap()).collect();
        assert_eq!(s.admit(1000).unwrap_err(), Refusal::UidFull);
        let _b = s.admit(1001).unwrap();
        drop(a);
        assert!(s.admit(1000).is_ok());
    }

    #[test]
    fn the_root_reserve_is_left_to_root() {
        let s = slots(4, 2, 2);
        let _users = [s.admit(1).unwrap(), s.admit(2).unwrap()];
        assert_eq!(s.admit(3).unwrap_err(), Refusal::Full);
        let _roots = [s.admit(0).unwrap(), s.admit(0).unwrap()];
        assert_eq!(s.admit(0).unwrap_err(), Refusal::Full);
    }

    #[test]
    fn a_newcomer_evicts_the_longest_idle_connection_it_needs() {
        let s = slots(3, 2, 0);
        let a1 = s.admit(1).unwrap();
        let a2 = s.admit(1).unwrap();
        let b = s.admit(2).unwrap();
        a2.set_idle();
        a1.set_idle();
        b.set_idle();
        // uid 1 is at its cap: only its own idle connections may go, oldest first.
        let a3 = s.admit(1).unwrap();
        assert!(!a2.set_busy(), "the longest idle connection of uid 1 goes");
        assert!(a1.set_busy());
        // All full: the oldest idle of anyone (b; a1 is busy now).
        let _c = s.admit(3).unwrap();
        assert!(!b.set_busy());
        // Nobody idle: refused.
        assert_eq!(s.admit(4).unwrap_err(), Refusal::Full);
        drop(a3);
        assert!(s.admit(4).is_ok());
    }

    #[test]
    fn an_evicted_slot_frees_nothing_twice() {
        let s = slots(1, 1, 0);
        let a = s.admit(1).unwrap();
        a.set_idle();
        let b = s.admit(2).unwrap();
        drop(a);
        // a's drop must not have freed b's slot.
        assert_eq!(s.admit(3).unwrap_err(), Refusal::Full);
        drop(b);
        assert!(s.admit(3).is_ok());
    }

    #[tokio::test]
    async fn eviction_wakes_the_idle_connection() {
        let s = slots(1, 1, 0);
        let a = s.admit(1).unwrap();
        a.set_idle();
        let _b = s.admit(2).unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(10), a.evicted())
            .await
            .expect("the evicted connection was not woken");
    }
}
