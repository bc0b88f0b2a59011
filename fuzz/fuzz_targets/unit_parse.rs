//! Fuzz target: any bytes as a unit file (and as an environment file, and
//! as the values the model parses) must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    corral::unit::verify::fuzz_one(data);
});
