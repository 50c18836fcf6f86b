#![no_main]
//! Fuzz target `client_frame`: the body is `harness::client_frame` (fuzz/harness.rs).

#[path = "../harness.rs"]
#[allow(dead_code)]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::client_frame(data));
