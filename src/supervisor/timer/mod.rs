//! Timer units: the pure machine ([`machine`]) and the `Persistent=` stamp
//! files ([`stamp`]). The manager owns one kernel timer per clock for all
//! timers and feeds the machine events; nothing here does I/O but [`stamp`].

pub mod machine;
pub mod stamp;
