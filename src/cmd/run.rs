//! `sidecar [--config FILE]`: load, bind, serve.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

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
    let shared = crate::shared::Shared::new(Arc::new(config));
    if let Some(listener) = admin {
        if let Err(e) = crate::admin::spawn(listener, Arc::clone(&shared)) {
            log::error!("cannot start the admin endpoint: {e}");
            return 1;
        }
    }
    let code = match server::start(Arc::clone(&shared)) {
        Ok(running) => crate::signals::run_until_stopped(signals, running, path),
        Err(e) => {
            log::error!("{e}");
            1
        }
    };
    // The last access lines are still queued; a stdout nobody reads may keep them.
    shared.access_log.flush(ACCESS_LOG_FLUSH_LIMIT);
    code
}

/// How long an exiting process waits for its queued access lines to be written.
const ACCESS_LOG_FLUSH_LIMIT: Duration = Duration::from_secs(2);
