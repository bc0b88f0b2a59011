//! See the crate-level layout.
pub mod environment;
pub mod graph;
