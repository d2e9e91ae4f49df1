#![no_main]
//! `cargo +nightly fuzz run config`: see `sidecar::fuzzing::config` for the invariants.

libfuzzer_sys::fuzz_target!(|data: &[u8]| sidecar::fuzzing::config(data));
