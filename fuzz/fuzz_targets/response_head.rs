#![no_main]
//! `cargo +nightly fuzz run response_head`: see `sidecar::fuzzing::response_head` for the invariants.

libfuzzer_sys::fuzz_target!(|data: &[u8]| sidecar::fuzzing::response_head(data));
