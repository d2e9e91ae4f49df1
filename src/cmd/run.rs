//! `sidecar [--config FILE]`: load, bind, serve.

use std::path::Path;
use std::sync::Arc;

use crate::config;
use crate::server;

pub fn run(path: &Path) -> i32 {
    super::init_logging();
    let config = match config::load(path) {
        Ok(c) => c,
        Err(diagnostics) => {
            for d in diagnostics {
                eprintln!("{d}");
            }
            return 1;
        }
    };
    let admin = match config.admin.map(|addr| (addr, crate::admin::bind(addr))) {
        None => None,
        Some((_, Ok(listener))) => Some(listener),
        Some((addr, Err(e))) => {
            log::error!("cannot listen on {addr} (admin): {e}");
            return 1;
        }
    };
    // Handlers go in before anything listens: a SIGTERM that arrives right after the
    // `listening on` line must drain, not kill the process by default disposition.
    let signals = match crate::signals::install() {
        Ok(s) => s,
        Err(e) => {
            log::error!("cannot install signal handlers: {e}");
            return 1;
        }
    };
    // Members named by DNS are looked up before anything listens, so the first
    // requests find them; from then on the first worker keeps them fresh.
    crate::discovery::resolve_now(&config);
    let shared = crate::shared::Shared::new(Arc::new(config));
    match server::start(shared, admin) {
        Ok(running) => crate::signals::run_until_stopped(signals, running, path),
        Err(e) => {
            log::error!("{e}");
            1
        }
    }
}
