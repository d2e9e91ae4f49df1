//! One module per subcommand; each returns the process exit code.

pub mod budget;
pub mod check;
pub mod demo;
mod demo_ws;
pub mod explain;
pub mod import_apache;
pub mod run;

/// Logging to stderr, `info` unless `RUST_LOG` says otherwise, one line per message:
/// `[2026-11-25T07:22:01Z INFO  sidecar::server] listening on …` (env_logger's own
/// layout and colours; the UTC timestamp is ours, which spares env_logger's date crate).
/// sidecar is built without rustls's own log lines (its `logging` feature is off) and
/// logs a failed handshake itself, with its peer. Where a build turns them on (the
/// tests' TLS clients do), rustls is kept to `error`: it warns once per connection
/// about what clients commonly send (an IP address as the server name).
pub fn init_logging() {
    use std::io::Write;

    use env_logger::fmt::style::{AnsiColor, Style};

    let env = env_logger::Env::default().default_filter_or("info,rustls=error");
    let _ = env_logger::Builder::from_env(env)
        .format(|buf, record| {
            let level = buf.default_level_style(record.level());
            // An unstyled level means colours are off: the brackets stay plain too.
            let subtle = if level == Style::new() { level } else { AnsiColor::BrightBlack.on_default() };
            let now = crate::access_log::rfc3339_time(std::time::SystemTime::now());
            let (level_name, target) = (record.level(), record.target());
            writeln!(
                buf,
                "{subtle}[{subtle:#}{now} {level}{level_name:<5}{level:#} {target}{subtle}]{subtle:#} {}",
                record.args()
            )
        })
        .try_init();
}

/// Writes `text` to stdout. A reader that went away (`sidecar check | head`) is no
/// reason to panic: the rest is simply not wanted.
pub fn print_out(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}
