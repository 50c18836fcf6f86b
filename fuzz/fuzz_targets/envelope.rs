#![no_main]
//! Fuzz target `envelope`: the body is `harness::envelope` (fuzz/harness.rs).

#[path = "../harness.rs"]
#[allow(dead_code)]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::envelope(data));
