#![no_main]
//! `cargo +nightly fuzz run chunked`: see `sidecar::fuzzing::chunked` for the invariants.

libfuzzer_sys::fuzz_target!(|data: &[u8]| sidecar::fuzzing::chunked(data));
