#![no_main]
//! `cargo +nightly fuzz run import_apache`: see `sidecar::fuzzing::import_apache` for the invariants.

libfuzzer_sys::fuzz_target!(|data: &[u8]| sidecar::fuzzing::import_apache(data));
