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
    match server::start(Arc::new(config)) {
        Ok(running) => crate::signals::run_until_stopped(running, path),
        Err(e) => {
            log::error!("{e}");
            1
        }
    }
}
