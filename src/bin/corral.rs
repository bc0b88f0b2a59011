//! `corral`: the command-line client.
fn main() {}
