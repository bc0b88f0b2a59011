//! Link settings of the binaries.

use std::path::Path;

fn main() {
    // The CLI is started for every command, so its start-up time is what users
    // wait for: as a non-PIE executable it needs no relocation of its 300 KB of
    // pointer tables, which in a PIE cost ~70 copy-on-write page faults and
    // ~0.5 ms per run (docs/ARCHITECTURE.md). corrald keeps ASLR (PIE): it runs
    // for long, as root for the system side, and pays the relocation once.
    println!("cargo:rustc-link-arg-bin=corral=-no-pie");

    // The functions the manager runs in everyday use are laid side by side at
    // the start of .text (link/corrald.order, made by scripts/symbol-order.sh):
    // the kernel maps text 64 KiB around every page that faults, so scattered
    // hot code keeps most of a 6 MB .text resident (1.9 MB more RSS). Only lld
    // (rustc's own linker on x86_64 Linux) takes the list; a build with another
    // linker, or with CORRAL_SYMBOL_ORDER=0, links in the default order.
    println!("cargo:rerun-if-env-changed=CORRAL_SYMBOL_ORDER");
    println!("cargo:rerun-if-env-changed=RUSTC_LINKER");
    let lld = links_with_rust_lld();

    // The CLI takes the unwinder from libgcc_eh.a instead of loading
    // libgcc_s.so: one library less to map at each start, and no run of its
    // constructor, whose `cpuid`s trap to the hypervisor in a VM (together
    // ~0.1 ms of a 1 ms start-up, docs/ARCHITECTURE.md). The archive comes
    // last on the command line, after std's `-lgcc_s`: whole, its objects
    // define the unwinder's symbols, and lld then drops libgcc_s as not
    // needed (GNU ld would keep it, so only with lld).
    if lld {
        for arg in ["-Wl,--whole-archive", "-lgcc_eh", "-Wl,--no-whole-archive"] {
            println!("cargo:rustc-link-arg-bin=corral={arg}");
        }
    }

    // The CLI's quick verbs likewise (link/corral.order): each function
    // they run in a page of its own was a page fault, and fault-around
    // mapped 64 KiB more that the exit then unmapped, at every start.
    if std::env::var("CORRAL_SYMBOL_ORDER").as_deref() != Ok("0") && lld {
        for bin in ["corrald", "corral"] {
            let order = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("link/{bin}.order"));
            println!("cargo:rerun-if-changed={}", order.display());
            if order.is_file() {
                println!(
                    "cargo:rustc-link-arg-bin={bin}=-Wl,--symbol-ordering-file={}",
                    order.display()
                );
                // Functions of the list that a build no longer has are skipped.
                println!("cargo:rustc-link-arg-bin={bin}=-Wl,--no-warn-symbol-ordering");
            }
        }
    }
    println!("cargo:rerun-if-changed=build.rs");
}

/// Whether rustc links with its own lld, as it does by default on
/// x86_64-unknown-linux-gnu since Rust 1.90, i.e. no other linker was asked for.
fn links_with_rust_lld() -> bool {
    if std::env::var("TARGET").as_deref() != Ok("x86_64-unknown-linux-gnu") {
        return false;
    }
    let target_linker = "CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER";
    println!("cargo:rerun-if-env-changed={target_linker}");
    if std::env::var_os(target_linker).is_some() || std::env::var_os("RUSTC_LINKER").is_some() {
        return false;
    }
    let flags = std::env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    if ["linker", "link-self-contained", "fuse-ld"]
        .iter()
        .any(|f| flags.contains(f))
    {
        return false;
    }
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let Ok(out) = std::process::Command::new(rustc).arg("-V").output() else {
        return false;
    };
    // "rustc 1.95.0 (59807616e 2026-04-14)"
    let version = String::from_utf8_lossy(&out.stdout);
    let minor = version
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.split('.').nth(1))
        .and_then(|m| m.parse::<u32>().ok());
    minor.is_some_and(|m| m >= 90)
}
