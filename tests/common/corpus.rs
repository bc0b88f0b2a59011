//! Where the shared corpus of real unit files is, for the suites that read it.

use std::path::{Path, PathBuf};

/// The shared corpus: `$CORRAL_CORPUS`, else the first `shared/corpus` found
/// walking up from the crate (`../shared/corpus` from the main checkout).
/// Missing: `None`, or a failure when CI=true.
pub fn corpus() -> Option<PathBuf> {
    let found = std::env::var_os("CORRAL_CORPUS")
        .map(PathBuf::from)
        .or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .ancestors()
                .map(|a| a.join("shared/corpus"))
                .find(|p| p.is_dir())
        })
        .filter(|p| p.is_dir());
    if found.is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "the shared corpus (../shared/corpus) is missing; CI must have it"
        );
        eprintln!("note: shared corpus not found; skipping (set CORRAL_CORPUS)");
    }
    found
}
