//! Process signals: SIGTERM/SIGINT drain (stop accepting, let requests
//! finish, give tunnels up to `drain_timeout`, exit 0; a second SIGINT exits at once),
//! SIGHUP reloads sidecar.toml and the certificate files it names (a bad config is
//! logged and the old one stays).
//!
//! The main thread waits here with plain blocking calls; a reload or the drain reaches
//! each worker through a channel whose waker ends that worker's `epoll_wait` (its
//! runtime's cross-thread queue), off the request path.

use std::path::Path;
use std::sync::Arc;

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::config;
use crate::server::Running;

/// Exit code after a second SIGINT: the shell convention for "killed by SIGINT".
const FORCED_EXIT: i32 = 130;

/// Installs the handlers; signals that arrive from now on are queued for
/// `run_until_stopped`.
pub fn install() -> std::io::Result<Signals> {
    Signals::new([SIGTERM, SIGINT, SIGHUP])
}

/// Runs until the proxy has drained after a stop signal; returns the exit code.
/// `config_path`: the file SIGHUP reloads (`None` for `sidecar demo`, whose config is
/// built in: SIGHUP is then logged and ignored).
pub fn run_until_stopped(mut signals: Signals, mut running: Running, config_path: Option<&Path>) -> i32 {
    // When every worker has stopped (after a drain), end the wait for signals.
    let handle = signals.handle();
    let threads = running.take_threads();
    let watcher = std::thread::spawn(move || {
        for t in threads {
            let _ = t.join();
        }
        handle.close();
    });
    let mut draining = false;
    let mut code = 0;
    for sig in signals.forever() {
        match sig {
            SIGHUP if !draining => match config_path {
                Some(path) => reload(&mut running, path),
                None => log::warn!("SIGHUP: ignored, there is no config file to reload"),
            },
            SIGINT if draining => {
                log::warn!("second SIGINT: exiting now");
                code = FORCED_EXIT;
                break;
            }
            SIGTERM | SIGINT if !draining => {
                let name = if sig == SIGTERM { "SIGTERM" } else { "SIGINT" };
                log::info!("{name}: draining (no new connections; in-flight work has up to the drain timeout)");
                running.drain();
                draining = true;
            }
            _ => {}
        }
    }
    if code == 0 {
        let _ = watcher.join();
        log::info!("drained, exiting");
    }
    code
}

fn reload(running: &mut Running, path: &Path) {
    match config::load(path) {
        Ok(mut config) => {
            let old = running.shared.config();
            config.adopt_state(&old);
            if let Err(d) = config.write_self_signed() {
                log::error!("SIGHUP: reload rejected, old config kept: {d}");
                return;
            }
            config.retire_members(&old);
            let config = Arc::new(config);
            match running.reload(Arc::clone(&config)) {
                0 => log::info!("SIGHUP: reloaded {}", path.display()),
                late => log::warn!(
                    "SIGHUP: reloaded {}; {late} worker(s) had not taken it after {:?} and will when free",
                    path.display(),
                    crate::server::RELOAD_WAIT
                ),
            }
            if let Some(s) = config
                .self_signed
                .as_ref()
                .filter(|s| old.self_signed.as_ref().is_none_or(|o| o.fingerprint != s.fingerprint))
            {
                s.log();
            }
        }
        Err(diagnostics) => {
            for d in &diagnostics {
                log::error!("SIGHUP: reload rejected, old config kept: {d}");
            }
        }
    }
}
