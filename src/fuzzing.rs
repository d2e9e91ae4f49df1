//! Entry points of the fuzz targets (`fuzz/fuzz_targets/*.rs`, cargo-fuzz on nightly)
//! and of the stable-toolchain test that replays their corpora and every kept crash.
//!
//! Each entry point takes arbitrary bytes, runs them through the code the proxy runs on
//! hostile input, and asserts invariants, not only "no panic": what parses is written
//! again by sidecar's own writers and parses to the same thing, the chunked decoder
//! never emits more than it was given, a rewrite never yields bytes that may not go on
//! the wire, config loading answers with a config or with located diagnostics. A broken
//! invariant panics, which libFuzzer reports as a crash.
//!
//! ```text
//! fuzzing/h1.rs       request_head · chunked · response_head · websocket_upgrade
//! fuzzing/rules.rs    rewrite (cond/rule parsing and evaluation)
//! fuzzing/load.rs     config (sidecar.toml text) · import_apache
//! fuzzing/ws.rs       websocket_frames (the tunnel's frame filter)
//! ```

mod h1;
mod load;
mod rules;
mod ws;

pub use h1::{chunked, request_head, response_head, websocket_upgrade};
pub use load::{config, import_apache};
pub use rules::rewrite;
pub use ws::websocket_frames;

/// A fuzz target's entry point: any bytes in, a panic when an invariant breaks.
pub type Entry = fn(&[u8]);

/// Every target with its entry point, by the name of its directory under
/// `fuzz/corpus/` and `fuzz/regressions/`.
pub const TARGETS: [(&str, Entry); 8] = [
    ("request_head", request_head),
    ("chunked", chunked),
    ("response_head", response_head),
    ("websocket_upgrade", websocket_upgrade),
    ("rewrite", rewrite),
    ("config", config),
    ("import_apache", import_apache),
    ("websocket_frames", websocket_frames),
];

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::TARGETS;

    fn fuzz_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
    }

    /// The files of `fuzz/<kind>/<target>/`, sorted; none when the directory is absent.
    fn inputs(kind: &str, target: &str) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = match std::fs::read_dir(fuzz_dir().join(kind).join(target)) {
            Ok(entries) => entries.filter_map(Result::ok).map(|e| e.path()).filter(|p| p.is_file()).collect(),
            Err(_) => Vec::new(),
        };
        files.sort();
        files
    }

    /// Runs the committed corpus and every kept crash of `target` through its entry point.
    fn replay(target: &str) {
        let entry = TARGETS.iter().find(|(name, _)| *name == target).map(|(_, entry)| entry).expect("a target");
        let corpus = inputs("corpus", target);
        // An empty replay would prove nothing.
        assert!(!corpus.is_empty(), "fuzz/corpus/{target}/ is empty or missing");
        for file in corpus.iter().chain(&inputs("regressions", target)) {
            let data = std::fs::read(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            let outcome = std::panic::catch_unwind(|| entry(&data));
            assert!(outcome.is_ok(), "{target}: {} broke an invariant (see the panic above)", file.display());
        }
    }

    /// One test per target, so they run in parallel and a failure names its target.
    mod replay {
        macro_rules! replays {
            ($($target:ident),*) => {$(
                #[test]
                fn $target() {
                    super::replay(stringify!($target));
                }
            )*};
        }
        replays!(
            request_head,
            chunked,
            response_head,
            websocket_upgrade,
            rewrite,
            config,
            import_apache,
            websocket_frames
        );
    }

    #[test]
    fn every_fuzz_target_has_an_entry_point() {
        let mut targets: Vec<String> = std::fs::read_dir(fuzz_dir().join("fuzz_targets"))
            .expect("fuzz/fuzz_targets")
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().to_str()?.strip_suffix(".rs").map(str::to_string))
            .collect();
        targets.sort();
        let mut known: Vec<&str> = TARGETS.iter().map(|(name, _)| *name).collect();
        known.sort();
        assert_eq!(targets, known, "fuzz/fuzz_targets/*.rs and fuzzing::TARGETS differ");
    }
}
