//! Timer units: the pure machine ([`machine`]), the `Persistent=` stamp
//! files ([`stamp`]) and the local zone ([`zone`], in `unit`: the loader
//! parses calendar values with it too). The manager owns one kernel timer
//! per clock for all timers and feeds the machine events; nothing here
//! does I/O but [`stamp`] and [`zone`].

pub mod machine;
pub mod stamp;
pub use crate::unit::zone;
