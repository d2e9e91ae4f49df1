//! Process signals (SPEC §4): SIGTERM/SIGINT drain (stop accepting, let requests
//! finish, give tunnels up to `drain_timeout`, exit 0; a second SIGINT exits at once),
//! SIGHUP reloads sidecar.toml and the certificate files it names (a bad config is
//! logged and the old one stays).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_signal::{Signal, Signals};
use futures_lite::StreamExt;

use crate::config;
use crate::server::Running;

/// Exit code after a second SIGINT: the shell convention for "killed by SIGINT".
const FORCED_EXIT: i32 = 130;

/// Runs until the proxy has drained after a stop signal; returns the exit code.
pub fn run_until_stopped(mut running: Running, config_path: &Path) -> i32 {
    let mut signals = match Signals::new([Signal::Term, Signal::Int, Signal::Hup]) {
        Ok(s) => s,
        Err(e) => {
            log::error!("cannot install signal handlers: {e}");
            running.wait();
            return 0;
        }
    };
    smol::block_on(async {
        loop {
            let next = futures_lite::future::or(async { signals.next().await }, async {
                // Workers can also stop by themselves (nothing else to wait for).
                while !running.is_finished() {
                    async_io::Timer::after(Duration::from_millis(100)).await;
                }
                None
            });
            match next.await {
                Some(Ok(Signal::Hup)) => reload(&mut running, config_path),
                Some(Ok(sig)) => {
                    let name = if sig == Signal::Term { "SIGTERM" } else { "SIGINT" };
                    log::info!("{name}: draining (no new connections; in-flight work has up to the drain timeout)");
                    running.drain();
                    return drain(running, signals).await;
                }
                Some(Err(e)) => log::error!("signal handling failed: {e}"),
                None => return 0,
            }
        }
    })
}

async fn drain(running: Running, mut signals: Signals) -> i32 {
    let finished = async {
        while !running.is_finished() {
            async_io::Timer::after(Duration::from_millis(20)).await;
        }
        0
    };
    let forced = async {
        while let Some(sig) = signals.next().await {
            if matches!(sig, Ok(Signal::Int)) {
                log::warn!("second SIGINT: exiting now");
                return FORCED_EXIT;
            }
        }
        std::future::pending::<i32>().await
    };
    let code = futures_lite::future::or(finished, forced).await;
    if code == 0 {
        log::info!("drained, exiting");
    }
    code
}

fn reload(running: &mut Running, path: &Path) {
    match config::load(path) {
        Ok(config) => {
            log::info!("SIGHUP: reloaded {}", path.display());
            running.reload(Arc::new(config));
        }
        Err(diagnostics) => {
            for d in &diagnostics {
                log::error!("SIGHUP: reload rejected, old config kept: {d}");
            }
        }
    }
}
