#![no_main]
//! Fuzz target `config`: the body is `harness::config` (fuzz/harness.rs).

#[path = "../harness.rs"]
#[allow(dead_code)]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::config(data));
