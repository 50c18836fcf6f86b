#![no_main]
//! Fuzz target `token`: the body is `harness::token` (fuzz/harness.rs).

#[path = "../harness.rs"]
#[allow(dead_code)]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::token(data));
