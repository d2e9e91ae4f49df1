//! `sidecar [--config FILE]`: load, bind, serve. `serve` is the start-up and shutdown
//! sequence `sidecar demo` shares, so both log and stop the same way.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::config::{self, Config};
use crate::server::{self, Running};

/// How long an exiting process waits for its queued access lines to be written.
const ACCESS_LOG_FLUSH_LIMIT: Duration = Duration::from_secs(2);

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
    serve(config, Some(path), |_| {})
}

/// Serves `config` until a stop signal has drained it; returns the exit code.
/// `reload_from`: the file SIGHUP reloads. `started` runs once every listener is bound.
pub(crate) fn serve(config: Config, reload_from: Option<&Path>, started: impl FnOnce(&Running)) -> i32 {
    if let Err(d) = config.write_self_signed() {
        eprintln!("{d}");
        return 1;
    }
    if let Some(s) = &config.self_signed {
        s.log();
    }
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
    if let Some(listener) = admin {
        if let Err(e) = crate::admin::spawn(listener, Arc::clone(&shared)) {
            log::error!("cannot start the admin endpoint: {e}");
            return 1;
        }
    }
    let code = match server::start(Arc::clone(&shared)) {
        Ok(running) => {
            started(&running);
            crate::signals::run_until_stopped(signals, running, reload_from)
        }
        Err(e) => {
            log::error!("{e}");
            1
        }
    };
    // The last access lines are still queued; a stdout nobody reads may keep them.
    shared.access_log.flush(ACCESS_LOG_FLUSH_LIMIT);
    code
}
