#![no_main]
//! `cargo +nightly fuzz run websocket_frames`: see `sidecar::fuzzing::websocket_frames` for the invariants.

libfuzzer_sys::fuzz_target!(|data: &[u8]| sidecar::fuzzing::websocket_frames(data));
