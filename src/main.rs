//! argv → a subcommand → an exit code: 0 clean, 1 bad config or bind, 2 bad command line.
#![forbid(unsafe_code)]

use argh::FromArgs;
use sidecar::cli::{Cli, Command};
use sidecar::cmd;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let name = args.first().map_or("sidecar", String::as_str);
    let rest: Vec<&str> = args.iter().skip(1).map(String::as_str).collect();
    let cli = match Cli::from_args(&[name], &rest) {
        Ok(cli) => cli,
        Err(exit) => {
            if exit.status.is_ok() {
                println!("{}", exit.output);
                std::process::exit(0);
            }
            eprintln!("{}", exit.output);
            std::process::exit(2);
        }
    };
    if cli.version {
        println!("sidecar {}", env!("CARGO_PKG_VERSION"));
        std::process::exit(0);
    }
    let code = match cli.command {
        None => cmd::run::run(&cli.config),
        Some(Command::Check(c)) => cmd::check::check(c.config.as_deref().unwrap_or(&cli.config)),
        Some(Command::Demo(d)) => cmd::demo::demo(d.port),
        Some(Command::ImportApache(a)) => cmd::import_apache::import_apache(&a.file),
    };
    std::process::exit(code);
}
