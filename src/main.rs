//! argv → a subcommand → an exit code: 0 clean, 1 bad config or bind, 2 bad command
//! line (the help follows the error), 130 second SIGINT.
#![forbid(unsafe_code)]

use sidecar::cli::{self, Command, Parsed};
use sidecar::cmd;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // Usage lines say `sidecar`, not the path it was started by.
    let name = args
        .first()
        .and_then(|a| std::path::Path::new(a).file_name())
        .and_then(|n| n.to_str())
        .unwrap_or("sidecar")
        .to_string();
    let rest: Vec<&str> = args.iter().skip(1).map(String::as_str).collect();
    let cli = match cli::parse(&name, &rest) {
        Parsed::Run(cli) => cli,
        Parsed::Help(text) => {
            cmd::print_out(&format!("{text}\n"));
            std::process::exit(0);
        }
        Parsed::Bad(text) => {
            eprintln!("{text}");
            std::process::exit(2);
        }
    };
    if cli.version {
        cmd::print_out(&format!("sidecar {}\n", env!("CARGO_PKG_VERSION")));
        std::process::exit(0);
    }
    let code = match cli.command {
        None => cmd::run::run(&cli.config),
        Some(Command::Check(c)) => {
            let path = c.config.as_deref().unwrap_or(&cli.config);
            match &c.explain {
                None => cmd::check::check(path),
                Some(request) => cmd::check::check_explain(path, request, &c.header),
            }
        }
        Some(Command::Demo(d)) => cmd::demo::demo(d.port, d.tls),
        Some(Command::ImportApache(a)) => cmd::import_apache::import_apache(&a.file),
    };
    std::process::exit(code);
}
