//! The fuzz target's entry point (`verify::fuzz_one`) driven by a bounded,
//! deterministic mutation loop on stable Rust: seeds are the corpus unit
//! files (when present) and hand-written tricky inputs; mutations flip
//! bytes, insert the characters the syntax cares about, splice and
//! truncate. Any panic fails the test. `cargo fuzz run unit_parse` in fuzz/
//! runs the same function under libFuzzer.

use corral::unit::verify::fuzz_one;

mod common;

/// xorshift64*: deterministic, so a failure reproduces with the same seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const SPECIAL: &[&[u8]] = &[
    b"\\",
    b"\\\n",
    b"\"",
    b"'",
    b"%",
    b"%i",
    b"%%",
    b"$",
    b"${",
    b"}",
    b"\n",
    b"[",
    b"]",
    b"=",
    b";",
    b" ; ",
    b"#",
    b"-",
    b"@",
    b"!!",
    b":",
    b"+",
    b"\\x",
    b"\\u",
    b"\\0",
    b"{a,b}",
    b"*",
    b"\xff",
    b"\xc3",
    b"\n[Service]\n",
    b"\nExecStart=",
    b"\nEnvironment=",
    b"infinity",
    b"|!",
    b"SIGRTMIN+",
    b"99999999999999999999",
    b"1.5.5",
    b"\t",
    b"\r\n",
];

const SEEDS: &[&str] = &[
    "[Unit]\nDescription=%n on %H\nAfter=a.service b.target\n[Service]\nExecStart=/bin/sh -c \"echo $X ${Y}\" ; /bin/true \\; x\nEnvironment=\"A=1 2\" B=3\nRestartSec=5min 20s\nLimitNOFILE=1024:4096\nSuccessExitStatus=1 DATAERR SIGKILL\n[Install]\nWantedBy=default.target\n",
    "[Service]\nExecStart=-@:/bin/x argv0 'a\\x41' \\\n  # comment\n  more\nEnvironmentFile=-/etc/%p\nWorkingDirectory=~\nStandardOutput=append:/tmp/x\n",
    "A=\"quoted \\\" value\"\nB='single'\\\nC=cont\n# comment \\\nD=4\n",
    "[Unit]\nConditionPathExistsGlob=/var/{a,b}/*.c[vl]d\nConditionCPUs=>=2\nAssertUser=@system\n",
];

fn seeds() -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = SEEDS.iter().map(|s| s.as_bytes().to_vec()).collect();
    if let Some(c) = common::corpus::corpus() {
        for sub in [
            "systemd-user/podman",
            "systemd-system/mariadb-server",
            "systemd-system/chrony",
        ] {
            if let Ok(rd) = std::fs::read_dir(c.join(sub)) {
                let mut files: Vec<_> = rd
                    .flatten()
                    .map(|e| e.path())
                    .filter(|p| p.is_file())
                    .collect();
                files.sort();
                out.extend(files.iter().filter_map(|p| std::fs::read(p).ok()));
            }
        }
    }
    out
}

fn mutate(rng: &mut Rng, input: &mut Vec<u8>, pool: &[Vec<u8>]) {
    for _ in 0..=rng.below(4) {
        match rng.below(6) {
            0 if !input.is_empty() => {
                let i = rng.below(input.len());
                input[i] ^= 1 << rng.below(8);
            }
            1 => {
                let s = SPECIAL[rng.below(SPECIAL.len())];
                let i = rng.below(input.len() + 1);
                input.splice(i..i, s.iter().copied());
            }
            2 if !input.is_empty() => {
                let a = rng.below(input.len());
                let b = (a + rng.below(64)).min(input.len());
                input.drain(a..b);
            }
            3 => {
                let other = &pool[rng.below(pool.len())];
                if !other.is_empty() {
                    let a = rng.below(other.len());
                    let b = (a + rng.below(256)).min(other.len());
                    let i = rng.below(input.len() + 1);
                    input.splice(i..i, other[a..b].iter().copied());
                }
            }
            4 if !input.is_empty() => {
                let cut = rng.below(input.len());
                input.truncate(cut);
            }
            _ => {
                let i = rng.below(input.len() + 1);
                input.insert(i, rng.next() as u8);
            }
        }
    }
    // Keep inputs small enough that the loop stays fast.
    input.truncate(16 * 1024);
}

#[test]
fn bounded_mutation_loop_never_panics() {
    let iterations: usize = std::env::var("CORRAL_FUZZ_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let pool = seeds();
    let mut rng = Rng(0x5eed_c0ff_ee00_0001);
    let mut runs = 0usize;
    for s in &pool {
        fuzz_one(s);
        runs += 1;
    }
    for n in 0..iterations {
        let mut input = pool[rng.below(pool.len())].clone();
        mutate(&mut rng, &mut input, &pool);
        let result = std::panic::catch_unwind(|| fuzz_one(&input));
        if result.is_err() {
            let path = std::env::temp_dir().join(format!("corral-fuzz-crash-{n}"));
            std::fs::write(&path, &input).unwrap();
            panic!(
                "fuzz_one panicked on iteration {n}; input saved to {}",
                path.display()
            );
        }
        runs += 1;
    }
    eprintln!("{runs} executions ran clean");
}

#[test]
fn pathological_inputs() {
    let cases: Vec<Vec<u8>> = vec![
        Vec::new(),
        b"\\".to_vec(),
        b"[".to_vec(),
        b"[]".to_vec(),
        b"=".to_vec(),
        "\\\n".repeat(10_000).into_bytes(),
        format!("[Service]\nExecStart={}", "\"".repeat(5001)).into_bytes(),
        format!("[Service]\nExecStart=/bin/x {}", "%".repeat(3)).into_bytes(),
        format!("x[Unit]\nConditionPathExistsGlob=/{}", "{a,b}".repeat(200)).into_bytes(),
        format!("x{}", "{".repeat(100_000)).into_bytes(),
        b"\x01[Service]\nExecStart=@\nExecStart=!!!\nExecStart=-- /x\nLimitNICE=-999999999999999999999\nKillSignal=SIGRTMIN+2147483647\n".to_vec(),
        vec![0xff; 4096],
    ];
    for c in &cases {
        fuzz_one(c);
    }
}
