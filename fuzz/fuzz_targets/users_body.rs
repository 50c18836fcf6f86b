#![no_main]
//! Fuzz target `users_body`: the body is `harness::users_body` (fuzz/harness.rs).

#[path = "../harness.rs"]
#[allow(dead_code)]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::users_body(data));
