#![no_main]
//! `cargo +nightly fuzz run websocket_upgrade`: see `sidecar::fuzzing::websocket_upgrade` for the invariants.

libfuzzer_sys::fuzz_target!(|data: &[u8]| sidecar::fuzzing::websocket_upgrade(data));
