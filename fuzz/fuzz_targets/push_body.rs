#![no_main]
//! Fuzz target `push_body`: the body is `harness::push_body` (fuzz/harness.rs).

#[path = "../harness.rs"]
#[allow(dead_code)]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::push_body(data));
