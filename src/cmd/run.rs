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
    let admin = config.admin;
    let shared = crate::shared::Shared::new(Arc::new(config));
    if let Some(addr) = admin {
        if let Err(e) = crate::admin::start(addr, Arc::clone(&shared)) {
            log::error!("cannot listen on {addr} (admin): {e}");
            return 1;
        }
    }
    match server::start(shared) {
        Ok(running) => crate::signals::run_until_stopped(running, path),
        Err(e) => {
            log::error!("{e}");
            1
        }
    }
}
