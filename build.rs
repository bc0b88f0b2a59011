//! Link settings of the binaries.

fn main() {
    // The CLI is started for every command, so its start-up time is what users
    // wait for: as a non-PIE executable it needs no relocation of its 300 KB of
    // pointer tables, which in a PIE cost ~70 copy-on-write page faults and
    // ~0.5 ms per run (docs/ARCHITECTURE.md). corrald keeps ASLR (PIE): it runs
    // for long, as root for the system side, and pays the relocation once.
    println!("cargo:rustc-link-arg-bin=corral=-no-pie");
    println!("cargo:rerun-if-changed=build.rs");
}
