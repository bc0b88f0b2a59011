//! Loading: unit files read into definitions, daemon-reload, and the
//! lookup of the unit a request names (template instances on demand).

use std::sync::Arc;

use crate::ipc::proto::{ErrorKind, Failure};
use crate::supervisor::service;
use crate::supervisor::state::ActiveState;
use crate::unit::{Diagnostic, DiagnosticKind, Severity, UnitError, UnitKind, UnitName};

use super::socket::SocketDef;
use super::timer_unit::TimerDef;
use super::{Def, LoadError, Manager, UnitEntry, job_driver, normalize};
use crate::supervisor::lines::priority;

impl Manager {
    pub(super) fn load(&self, name: &UnitName) -> Result<Def, LoadError> {
        let unit = job_driver::load_unit(&self.loader, name).map_err(|e| match e {
            UnitError::NotFound { .. } => LoadError::NotFound(name.to_string()),
            e => LoadError::Bad(format!("Unit {name} failed to load: {e}")),
        })?;
        if unit.masked {
            return Err(LoadError::Masked(name.to_string()));
        }
        // As systemd 252: a bad assignment is dropped with a warning naming
        // file:line, and the unit loads without it; unknown keys (typos) and
        // what corral ignores are said too, once per load, in the unit's journal.
        let mut dropped = Vec::new();
        for d in unit.ignored_errors() {
            let mut w = d.clone();
            w.severity = Severity::Warning;
            dropped.push(w.to_string());
        }
        if let Err(e) = unit.ensure_valid() {
            // What was dropped is often why (a bad Listen*= leaves none).
            let why = dropped.iter().map(|d| format!("; {d}")).collect::<String>();
            return Err(LoadError::Bad(format!(
                "Unit {name} failed to load: {e}{why}"
            )));
        }
        for w in &dropped {
            self.log_at(name.as_str(), priority::WARNING, w);
        }
        for d in unit.diagnostics.iter().filter(|d| !d.is_error()) {
            self.log_at(name.as_str(), priority::WARNING, &load_warning(d));
        }
        match name.kind() {
            UnitKind::Target => Ok(Def::Target(Arc::new(unit))),
            UnitKind::Timer => self.load_timer(name, unit),
            UnitKind::Socket => SocketDef::new(unit)
                .map(|d| Def::Socket(Arc::new(d)))
                .map_err(LoadError::Bad),
            // Every other kind is refused there, with the reason.
            _ => {
                let enabled = self.root.subtree_control().unwrap_or_default();
                service::from_unit(unit, self.root.path(), &enabled)
                    .map(|d| Def::Service(Arc::new(d)))
                    .map_err(LoadError::Bad)
            }
        }
    }

    /// A timer's definition; refused when the unit it triggers has no file.
    fn load_timer(&self, name: &UnitName, unit: crate::unit::Unit) -> Result<Def, LoadError> {
        let Some(section) = unit.timer.as_deref().filter(|t| t.has_values()) else {
            return Err(LoadError::Bad(format!(
                "Unit {name} failed to load: it has no timer value (OnCalendar=, OnActiveSec=, ...)"
            )));
        };
        let Some(triggers) = section.triggered_unit(name) else {
            return Err(LoadError::Bad(format!(
                "Unit {name} failed to load: it names no unit to trigger"
            )));
        };
        match job_driver::load_unit(&self.loader, &triggers) {
            Err(UnitError::NotFound { .. }) => Err(LoadError::Bad(format!(
                "Unit {name} failed to load: the unit it triggers, {triggers}, is not found"
            ))),
            Ok(u) if u.masked => Err(LoadError::Bad(format!(
                "Unit {name} failed to load: the unit it triggers, {triggers}, is masked"
            ))),
            _ => Ok(Def::Timer(TimerDef {
                unit: Arc::new(unit),
            })),
        }
    }

    /// Loads every unit the loader lists; returns their names.
    pub(super) fn load_all(&mut self) -> Vec<String> {
        self.load_errors.clear();
        let mut names = Vec::new();
        for (name, _, file_state) in self.loader.list() {
            if name.is_template() {
                continue;
            }
            let def = self.load(&name);
            if let Err(f) = &def
                && !matches!(f, LoadError::NotFound(_))
            {
                self.load_errors.push(f.to_string());
            }
            names.push(name.to_string());
            match self.units.get_mut(name.as_str()) {
                Some(e) => {
                    e.file_state = Some(file_state);
                    self.replace_def(name.as_str(), def);
                }
                None => {
                    let mut e = UnitEntry::new(name.kind(), def);
                    e.file_state = Some(file_state);
                    self.units.insert(name, Box::new(e));
                }
            }
        }
        // Inserted one by one, the table's nodes are left about half full;
        // built again from its entries, in order, they are full (64 KB
        // less for a thousand timers).
        self.units = std::mem::take(&mut self.units).into_iter().collect();
        names
    }

    /// Gives a loaded unit the definition daemon-reload read. While the unit
    /// is in use (an invocation, or up without processes: an exited
    /// oneshot, a target) a new definition that cannot run (not found,
    /// masked, broken) waits in `pending` until the unit is down, so that
    /// it can still be stopped; a runnable one waits only for the
    /// invocation to end.
    pub(super) fn replace_def(&mut self, name: &str, def: Result<Def, LoadError>) {
        let Some(e) = self.units.get_mut(name) else {
            return;
        };
        let in_use = !e.phase().is_stopped();
        if e.inv().is_some() || (in_use && def.is_err()) {
            e.pending = Some(Box::new(def));
            return;
        }
        e.pending = None;
        e.set_def(def, false);
    }

    /// Applies a definition read by daemon-reload once the unit has no
    /// invocation left (one that cannot run: once it is also down).
    pub(super) fn settle_pending(&mut self, name: &str) {
        let Some(e) = self.units.get_mut(name) else {
            return;
        };
        let runnable = matches!(e.pending.as_deref(), Some(Ok(_)));
        if e.inv().is_some() || !(runnable || e.phase().is_stopped()) {
            return;
        }
        if let Some(p) = e.pending.take() {
            e.set_def(*p, true);
        }
    }

    /// Drops a unit whose file is gone once nothing holds it (inactive, no
    /// processes, no definition waiting), as systemd unloads not-found
    /// units: it is then "not found" again until a file appears. Returns
    /// whether it was dropped.
    pub(super) fn forget_if_gone(&mut self, name: &str) -> bool {
        let gone = self.units.get(name).is_some_and(|e| {
            matches!(&e.def, Err(LoadError::NotFound(_)))
                && e.pending.is_none()
                && e.inv().is_none()
                && e.phase().active == ActiveState::Inactive
                && !self.lingering.values().any(|l| l.unit == name)
        });
        if gone {
            self.units.remove(name);
        }
        gone
    }

    /// The load failure of a unit as it is now: what daemon-reload read for
    /// it (still pending while it runs), else its definition's.
    pub(super) fn load_failure(&self, name: &str) -> Option<&LoadError> {
        let e = self.units.get(name)?;
        match e.pending.as_deref() {
            Some(Err(f)) => Some(f),
            Some(Ok(_)) => None,
            None => e.def.as_ref().err(),
        }
    }

    pub(super) fn reload_units(&mut self) -> Vec<String> {
        let before = self.units.len();
        let listed = self.load_all();
        // Every other loaded unit is read again too: template instances (from
        // their template), targets without a file (default.target), and units
        // whose file is gone or was unmasked, which become not-found.
        let others: Vec<UnitName> = self
            .units
            .keys()
            .filter(|k| !listed.iter().any(|l| l == k.as_str()))
            .cloned()
            .collect();
        for n in others {
            let k = n.as_str();
            let def = self.load(&n);
            if let Some(e) = self.units.get_mut(k) {
                e.file_state = None;
            }
            self.replace_def(k, def);
            self.forget_if_gone(k);
        }
        let mut notes = vec![format!(
            "reloaded unit files: {} units known ({} before)",
            self.units.len(),
            before
        )];
        notes.extend(self.load_errors.iter().cloned());
        notes
    }

    /// Finds (loading on demand, e.g. a template instance) the unit `typed` names.
    pub(super) fn resolve(&mut self, typed: &str) -> Result<String, Failure> {
        let full = normalize(typed);
        if self.units.contains_key(full.as_str()) && !self.forget_if_gone(&full) {
            return Ok(full);
        }
        let name = UnitName::parse(&full).map_err(|e| Failure {
            kind: ErrorKind::BadRequest,
            message: format!("Invalid unit name {typed:?}: {e}"),
        })?;
        let def = self.load(&name);
        if let Err(f @ LoadError::NotFound(_)) = &def {
            return Err(f.failure());
        }
        self.units
            .insert(name.clone(), Box::new(UnitEntry::new(name.kind(), def)));
        Ok(full)
    }
}

/// A load warning as the manager logs it: an unknown key in systemd's own
/// line (`file:line: Unknown key name 'Restrat' in section 'Service',
/// ignoring.`), anything else as `corral verify` prints it.
fn load_warning(d: &Diagnostic) -> String {
    if d.kind == DiagnosticKind::Unknown && !d.directive.is_empty() && d.line > 0 {
        let file = d.file.to_string_lossy();
        return format!(
            "{}:{}: {}",
            crate::unit::escape_control(&file),
            d.line,
            crate::unit::escape_control(&d.message)
        );
    }
    d.to_string()
}
