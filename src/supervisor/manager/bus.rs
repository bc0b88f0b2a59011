//! Type=dbus on the manager's side: one connection to the session bus,
//! shared by every Type=dbus unit, made when the first of them starts and
//! made again by the next start after it broke (supervisor::dbus).
//!
//! Each invocation of a Type=dbus unit watches its `BusName=` from its
//! start to its end; what the bus reports becomes `BusNameAcquired` /
//! `BusNameLost` for the units with that name, and a broken connection
//! `BusUnavailable`.

use std::collections::VecDeque;

use tokio::sync::mpsc;

use super::{Input, Manager};
use crate::supervisor::lines::priority;

use crate::supervisor::dbus::{self, BusAddress, DbusError, Report, WatchCmd};
use crate::supervisor::service::ServiceDef;
use crate::supervisor::state::{ActiveState, Event, Sub};

/// The manager's connection to the session bus.
pub(super) struct Bus {
    /// Tells this connection's reports from those of an earlier one.
    generation: u64,
    /// Its address, for messages.
    address: String,
    /// Watch requests to the connection's task.
    cmds: mpsc::UnboundedSender<WatchCmd>,
    /// A duplicate of the task's socket, to see at once that the bus went
    /// away, before the task's report of it arrives.
    probe: std::os::unix::net::UnixStream,
}

impl Bus {
    /// Whether the connection is still up: its task runs and the bus has not hung up.
    fn alive(&self) -> bool {
        use std::os::fd::AsRawFd;
        let mut fd = libc::pollfd {
            fd: self.probe.as_raw_fd(),
            events: libc::POLLRDHUP,
            revents: 0,
        };
        // SAFETY: one valid pollfd, a zero timeout; POLLHUP/POLLERR/POLLRDHUP all mean gone.
        let hung_up = unsafe { libc::poll(&mut fd, 1, 0) } > 0;
        !self.cmds.is_closed() && !hung_up
    }
}

/// What a start that cannot reach the bus says, and what to do about it.
fn no_bus(err: &DbusError) -> String {
    format!(
        "{err}; a Type=dbus unit needs the session bus to see its BusName=: start one first \
         (for example a dbus.service unit that this unit is ordered After=), or point \
         DBUS_SESSION_BUS_ADDRESS at it with `corral set-environment`"
    )
}

impl Manager {
    /// The session bus: DBUS_SESSION_BUS_ADDRESS from the environment block
    /// (what units started now are given), else from corrald's own
    /// environment, else `unix:path=$XDG_RUNTIME_DIR/bus`.
    fn bus_address(&self) -> String {
        dbus::session_address(|k| self.env.lookup(k, &self.base_env))
    }

    /// Before a Type=dbus unit starts: connects to the bus unless connected.
    /// False (with the reason logged and kept for `status`) when no bus can
    /// be reached: the start is then refused instead of waiting for a name
    /// that cannot appear.
    pub(super) fn bus_ready(&mut self, name: &str) -> bool {
        let dbus_unit = self.units[name]
            .service_def()
            .is_some_and(|d| d.bus_name.is_some());
        if !dbus_unit || self.bus.as_ref().is_some_and(Bus::alive) {
            return true;
        }
        match self.connect_bus() {
            Ok(()) => true,
            Err(msg) => {
                self.log_at(name, priority::ERR, &msg);
                if let Some(e) = self.units.get_mut(name) {
                    e.failure_note = Some(msg.into());
                }
                false
            }
        }
    }

    fn connect_bus(&mut self) -> Result<(), String> {
        // Dropping the old connection ends its task; a Down it reports is stale now.
        self.bus = None;
        let text = self.bus_address();
        let address = BusAddress::parse(&text).map_err(|e| no_bus(&e))?;
        let stream = address.connect().map_err(|e| no_bus(&e))?;
        let probe = stream.try_clone().map_err(|source| {
            no_bus(&DbusError::Io {
                address: address.to_string(),
                source,
            })
        })?;
        self.bus_generation += 1;
        let generation = self.bus_generation;
        let (cmds, rx) = mpsc::unbounded_channel();
        let tx = self.tx.clone();
        self.rt.spawn(dbus::watch_names(
            stream,
            address.clone(),
            rx,
            move |report| tx.send(Input::Bus { generation, report }).is_ok(),
        ));
        // Units that started on an earlier connection: their names are checked on this one.
        for e in self.units.values() {
            if e.inv().is_some()
                && let Some(d) = e.service_def()
                && let Some(b) = &d.bus_name
            {
                let _ = cmds.send(WatchCmd::Add(b.clone()));
            }
        }
        eprintln!("corrald: connected to the session bus at {address}");
        self.bus = Some(Bus {
            generation,
            address: address.to_string(),
            cmds,
            probe,
        });
        Ok(())
    }

    /// A new invocation of a Type=dbus unit: watch its name.
    pub(super) fn bus_watch(&mut self, name: &str, def: &ServiceDef, queue: &mut VecDeque<Event>) {
        let Some(b) = &def.bus_name else { return };
        let sent = self
            .bus
            .as_ref()
            .is_some_and(|bus| bus.cmds.send(WatchCmd::Add(b.clone())).is_ok());
        if !sent {
            let msg = format!(
                "the session bus connection ended before BusName={b} could be watched; \
                 start the unit again to reconnect"
            );
            self.log_at(name, priority::ERR, &msg);
            if let Some(e) = self.units.get_mut(name) {
                e.failure_note = Some(msg.into());
            }
            queue.push_back(Event::BusUnavailable);
        }
    }

    /// The invocation of a Type=dbus unit ended: stop watching its name.
    pub(super) fn bus_unwatch(&mut self, def: &ServiceDef) {
        if let (Some(b), Some(bus)) = (&def.bus_name, &self.bus) {
            let _ = bus.cmds.send(WatchCmd::Remove(b.clone()));
        }
    }

    /// While a Type=dbus unit waits for its name: a line for `status`.
    pub(super) fn bus_note(&self, def: &ServiceDef, sub: Sub) -> Option<String> {
        let b = def.bus_name.as_ref().filter(|_| sub == Sub::Start)?;
        Some(match &self.bus {
            Some(bus) => format!("waiting for {b} to get an owner on the bus {}", bus.address),
            None => format!("waiting for {b}; not connected to the session bus"),
        })
    }

    /// A report of the bus connection.
    pub(super) fn bus_report(&mut self, generation: u64, report: Report) {
        if self.bus.as_ref().map(|b| b.generation) != Some(generation) {
            return;
        }
        let watching = |this: &Manager, want: Option<&str>| -> Vec<String> {
            this.units
                .iter()
                .filter(|(_, e)| {
                    e.inv().is_some()
                        && e.service_def().is_some_and(|d| {
                            d.bus_name.is_some()
                                && want.is_none_or(|w| d.bus_name.as_deref() == Some(w))
                        })
                })
                .map(|(k, _)| k.to_string())
                .collect()
        };
        match report {
            Report::Owner { name, owner } => {
                for unit in watching(self, Some(&name)) {
                    let Some(state) = self.service(&unit).map(|s| &s.state) else {
                        continue;
                    };
                    // A change is news, unless the unit is stopping anyway.
                    if state.bus_name_good != owner.is_some()
                        && state.sub.active() != ActiveState::Deactivating
                    {
                        let msg = match &owner {
                            Some(o) => format!("BusName={name} is owned by {o}."),
                            None => format!("BusName={name} has no owner any more."),
                        };
                        self.log(&unit, &msg);
                    }
                    let event = match owner {
                        Some(_) => Event::BusNameAcquired,
                        None => Event::BusNameLost,
                    };
                    self.feed(&unit, event);
                }
            }
            Report::Down(err) => {
                self.bus = None;
                eprintln!("corrald: {err}");
                for unit in watching(self, None) {
                    let waiting = self.service(&unit).is_some_and(|s| {
                        matches!(s.state.sub, Sub::Condition | Sub::StartPre | Sub::Start)
                    });
                    if waiting {
                        let msg = no_bus(&err);
                        self.log_at(&unit, priority::ERR, &msg);
                        if let Some(e) = self.units.get_mut(unit.as_str()) {
                            e.failure_note = Some(msg.into());
                        }
                    } else {
                        self.log_at(
                            &unit, priority::WARNING,
                            &format!(
                                "{err}; BusName= is watched again once a Type=dbus unit starts and reconnects"
                            ),
                        );
                    }
                    self.feed(&unit, Event::BusUnavailable);
                }
            }
        }
    }
}
