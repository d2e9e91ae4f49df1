#![no_main]
//! `cargo +nightly fuzz run request_head`: see `sidecar::fuzzing::request_head` for the invariants.

libfuzzer_sys::fuzz_target!(|data: &[u8]| sidecar::fuzzing::request_head(data));
