//! `corrald`: the corral daemon.
fn main() {}
