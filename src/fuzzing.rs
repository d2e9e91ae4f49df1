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
//! ```

mod h1;
mod load;
mod rules;

pub use h1::{chunked, request_head, response_head, websocket_upgrade};
pub use load::{config, import_apache};
pub use rules::rewrite;

/// Every target with its entry point, by the name of its directory under
/// `fuzz/corpus/` and `fuzz/regressions/`.
pub const TARGETS: [(&str, fn(&[u8])); 7] = [
    ("request_head", request_head),
    ("chunked", chunked),
    ("response_head", response_head),
    ("websocket_upgrade", websocket_upgrade),
    ("rewrite", rewrite),
    ("config", config),
    ("import_apache", import_apache),
];

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::TARGETS;

    /// The files of `fuzz/<kind>/<target>/`, sorted; none when the directory is absent.
    fn inputs(kind: &str, target: &str) -> Vec<PathBuf> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz").join(kind).join(target);
        let mut files: Vec<PathBuf> = match std::fs::read_dir(&dir) {
            Ok(entries) => entries.filter_map(Result::ok).map(|e| e.path()).filter(|p| p.is_file()).collect(),
            Err(_) => Vec::new(),
        };
        files.sort();
        files
    }

    /// Runs every file of `kind` through its target; returns how many ran.
    fn replay(kind: &str) -> usize {
        let mut ran = 0;
        for (target, entry) in TARGETS {
            for file in inputs(kind, target) {
                let data = std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
                let outcome = std::panic::catch_unwind(|| entry(&data));
                assert!(outcome.is_ok(), "{target}: {} broke an invariant (see the panic above)", file.display());
                ran += 1;
            }
        }
        ran
    }

    #[test]
    fn every_corpus_file_keeps_its_invariants() {
        let ran = replay("corpus");
        // Every target has a committed corpus: an empty replay would prove nothing.
        for (target, _) in TARGETS {
            assert!(!inputs("corpus", target).is_empty(), "fuzz/corpus/{target}/ is empty or missing");
        }
        assert!(ran >= TARGETS.len(), "replayed {ran} files");
    }

    #[test]
    fn every_kept_crash_stays_fixed() {
        replay("regressions");
    }
}
