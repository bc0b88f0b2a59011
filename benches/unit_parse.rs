//! Parse the whole shared corpus (Debian 12 unit files and runit
//! directories): `verify_paths` over the tree (I/O included, as
//! `corral verify` does it) and in-memory parsing of every unit file.
//! Target: the whole corpus in under 50 ms. And `verify` of one unit
//! with 10 k / 40 k / 100 k `Environment=` lines (target: linear, 100 k
//! lines in at most 100 ms).

use std::path::{Path, PathBuf};
use std::time::Instant;

use corral::unit::loader::from_text;
use corral::unit::verify::{VerifyOptions, VerifyReport, verify_paths_with_options};
use corral::unit::{SpecifierContext, UnitName};
use criterion::{Criterion, criterion_group, criterion_main};

#[path = "../tests/common/corpus.rs"]
mod corpus_dir;

/// `corral verify --stored-symlinks` over the corpus, which stores its
/// symlinks as plain files.
fn verify_paths(roots: &[PathBuf]) -> VerifyReport {
    verify_paths_with_options(
        roots,
        SpecifierContext::current(),
        VerifyOptions {
            stored_symlinks: true,
            ..VerifyOptions::default()
        },
    )
}

fn unit_files(dir: &Path, out: &mut Vec<(UnitName, PathBuf, String)>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            unit_files(&p, out);
        } else if let Ok(n) = UnitName::parse_strict(&e.file_name().to_string_lossy())
            && let Ok(text) = std::fs::read_to_string(&p)
        {
            out.push((n, p, text));
        }
    }
}

fn bench(c: &mut Criterion) {
    let Some(corpus) = corpus_dir::corpus() else {
        eprintln!("note: shared corpus not found (set CORRAL_CORPUS); nothing to measure");
        return;
    };
    let roots: Vec<PathBuf> = ["systemd-user", "systemd-system", "runit"]
        .iter()
        .map(|r| corpus.join(r))
        .collect();
    // The fixture is read once, outside the timed loops.
    let mut files = Vec::new();
    for r in &roots {
        unit_files(r, &mut files);
    }
    let spec = SpecifierContext::current();
    let t = Instant::now();
    let report = verify_paths(&roots);
    eprintln!(
        "one cold-ish pass: {} units, {} diagnostics in {:.2} ms",
        report.units,
        report.diagnostics.len(),
        t.elapsed().as_secs_f64() * 1e3
    );
    c.bench_function("SpecifierContext::current", |b| {
        b.iter(SpecifierContext::current)
    });
    c.bench_function("verify_paths(corpus)", |b| b.iter(|| verify_paths(&roots)));
    c.bench_function("parse in memory (all unit files)", |b| {
        b.iter(|| {
            files
                .iter()
                .map(|(n, p, text)| from_text(n, p, text, &spec).diagnostics.len())
                .sum::<usize>()
        })
    });
}

/// `verify` of one service with `n` `Environment=` lines: linear in `n`
/// (issue 16: it was quadratic, 17.6 s for 100 k lines).
fn bench_environment_lines(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut g = c.benchmark_group("verify Environment= lines");
    g.sample_size(20);
    for n in [10_000usize, 40_000, 100_000] {
        // The fixture is written once per size, outside the timed loop.
        let path = dir.path().join(format!("env{n}.service"));
        let mut text = String::from("[Service]\nExecStart=/bin/true\n");
        for i in 0..n {
            text.push_str(&format!("Environment=VAR{i}=value{i}\n"));
        }
        std::fs::write(&path, text).expect("write fixture");
        let paths = [path];
        let report = verify_paths(&paths);
        assert!(!report.has_errors(), "{report}");
        g.throughput(criterion::Throughput::Elements(n as u64));
        g.bench_function(criterion::BenchmarkId::from_parameter(n), |b| {
            b.iter(|| verify_paths(&paths))
        });
    }
    g.finish();
}

criterion_group!(benches, bench, bench_environment_lines);
criterion_main!(benches);
