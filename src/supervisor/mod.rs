//! The user manager (`corrald --user`): the lifecycle state machine of each
//! unit ([`state`]), the event loop that drives it and the handlers of
//! control requests.

pub mod state;
