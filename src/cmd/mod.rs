//! One module per subcommand; each returns the process exit code.

pub mod budget;
pub mod check;
pub mod demo;
pub mod explain;
pub mod import_apache;
pub mod run;

/// Logging to stderr, `info` unless `RUST_LOG` says otherwise.
pub fn init_logging() {
    let env = env_logger::Env::default().default_filter_or("info");
    let _ = env_logger::Builder::from_env(env).try_init();
}
