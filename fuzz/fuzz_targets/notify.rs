//! Fuzz target: any bytes as a NOTIFY_SOCKET datagram must never panic, and
//! what it parses to must survive being sent again.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    corral::supervisor::notify::fuzz_one(data);
});
