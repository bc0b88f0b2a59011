//! Fuzz target: any bytes as a stream of control-protocol frames of either
//! protocol must never panic, and both frame readers must agree.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    corral::ipc::fuzz::fuzz_one(data);
});
