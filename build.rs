//! Two link options for the release binary, each given only when a trial link shows
//! the linker takes it (lld, Rust's default linker on x86-64 Linux since 1.90, and mold
//! do; GNU ld does not), so another linker builds the same binary without them:
//!
//! - The code's layout: what runs (start-up, the worker loop, the request and tunnel
//!   paths, TLS) sits together. `link/hot-code.txt` lists those functions, made by
//!   `scripts/hot-code`, and the linker places them first. The kernel maps a binary's
//!   code in 64 KiB pieces around each page first touched, so code spread over the
//!   whole file makes an idle sidecar map most of it; gathered, about 1 MiB.
//! - Identical code folding (`--icf=all`): functions that compiled to the same bytes
//!   (generic code instantiated for types of one layout, mostly) are kept once, 44 KB
//!   less. Rust makes no promise that two functions have distinct addresses, and
//!   sidecar compares none.

use std::env;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

const LIST: &str = "link/hot-code.txt";

fn main() {
    println!("cargo:rerun-if-changed={LIST}");
    println!("cargo:rerun-if-changed=build.rs");
    if env::var("PROFILE").as_deref() != Ok("release") {
        return;
    }
    let Ok(dir) = env::var("CARGO_MANIFEST_DIR") else { return };
    let list = Path::new(&dir).join(LIST);
    if list.is_file() {
        link_bin_with_if_taken(&[
            format!("-Wl,--symbol-ordering-file={}", list.display()),
            "-Wl,--no-warn-symbol-ordering".to_string(),
        ]);
    }
    link_bin_with_if_taken(&["-Wl,--icf=all".to_string()]);
}

/// Passes `args` to the binary's link when a trial link takes them.
fn link_bin_with_if_taken(args: &[String]) {
    if links_with(args) {
        for arg in args {
            println!("cargo:rustc-link-arg-bin=sidecar={arg}");
        }
    }
}

/// Whether an empty program links with the link arguments `args` added, with the
/// compiler, target, linker and flags this build uses.
fn links_with(args: &[String]) -> bool {
    let (Ok(rustc), Ok(target), Ok(out)) = (env::var("RUSTC"), env::var("TARGET"), env::var("OUT_DIR")) else {
        return false;
    };
    let mut trial = Command::new(rustc);
    trial.args(["--crate-type=bin", "--crate-name=link_trial", "--target", &target, "-o"]);
    trial.arg(Path::new(&out).join("link-trial"));
    if let Ok(linker) = env::var("RUSTC_LINKER") {
        trial.arg(format!("-Clinker={linker}"));
    }
    if let Ok(flags) = env::var("CARGO_ENCODED_RUSTFLAGS") {
        trial.args(flags.split('\x1f').filter(|f| !f.is_empty()));
    }
    trial
        .args(args.iter().map(|arg| format!("-Clink-arg={arg}")))
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let Ok(mut child) = trial.spawn() else { return false };
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(b"fn main() {}\n");
    }
    child.wait().map(|status| status.success()).unwrap_or(false)
}
