//! Timer units: the pure machine ([`machine`]), the `Persistent=` stamp
//! files ([`stamp`]) and the local zone ([`zone`]). The manager owns one
//! kernel timer per clock for all timers and feeds the machine events;
//! nothing here does I/O but [`stamp`] and [`zone`].

pub mod machine;
pub mod stamp;
pub mod zone;
