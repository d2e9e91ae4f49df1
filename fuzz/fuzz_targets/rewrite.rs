#![no_main]
//! `cargo +nightly fuzz run rewrite`: see `sidecar::fuzzing::rewrite` for the invariants.

libfuzzer_sys::fuzz_target!(|data: &[u8]| sidecar::fuzzing::rewrite(data));
