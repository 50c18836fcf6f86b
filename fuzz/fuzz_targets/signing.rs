#![no_main]
//! Fuzz target `signing`: the body is `harness::signing` (fuzz/harness.rs).

#[path = "../harness.rs"]
#[allow(dead_code)]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::signing(data));
