//! The command line, as argh structs, and what a bad one prints: the error, then the
//! help of the command it was meant for (exit 2, `main.rs`).

use std::path::PathBuf;

use argh::{FromArgs, SubCommands};

/// sidecar: a small, fast reverse proxy for one application (HTTP, WebSocket, TLS,
/// rewrite rules, balancing). Without a command it serves the config file until
/// SIGTERM or SIGINT (drain, exit 0); SIGHUP reloads the config.
#[derive(FromArgs, Debug)]
#[argh(
    note = "Run `sidecar <command> --help` for a command's options. Docs: docs/ in the source tree.",
    error_code(1, "the config is invalid or a listener cannot bind"),
    error_code(2, "bad command line (the help is printed)"),
    error_code(130, "a second SIGINT while draining")
)]
pub struct Cli {
    /// config file to serve (default: ./sidecar.toml)
    #[argh(option, short = 'c', default = "PathBuf::from(\"sidecar.toml\")")]
    pub config: PathBuf,
    /// print the version and exit
    #[argh(switch, short = 'V')]
    pub version: bool,
    #[argh(subcommand)]
    pub command: Option<Command>,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand)]
pub enum Command {
    Check(CheckArgs),
    Demo(DemoArgs),
    ImportApache(ImportApacheArgs),
}

/// print the sidecar.toml equivalent of an Apache httpd <VirtualHost> config
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "import-apache")]
pub struct ImportApacheArgs {
    /// the Apache config file to convert (warnings and ignored directives go to stderr)
    #[argh(positional)]
    pub file: PathBuf,
}

/// validate the config and print the resolved routes, rules and balancers (exit 0 or 1)
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "check")]
pub struct CheckArgs {
    /// config file to check (default: the top-level --config, ./sidecar.toml)
    #[argh(option, short = 'c')]
    pub config: Option<PathBuf>,
    /// explain what sidecar would do with this request ('GET /chat'), sending nothing
    #[argh(option)]
    pub explain: Option<String>,
    /// a header of the --explain request ('Upgrade: websocket'); repeat for more
    #[argh(option, short = 'H')]
    pub header: Vec<String>,
}

/// run two example replicas (HTTP + WebSocket echo) and the proxy in front of them on
/// 127.0.0.1; Ctrl-C drains and stops
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "demo")]
pub struct DemoArgs {
    /// port for the proxy on 127.0.0.1 (default 8080; any free port if taken; 0: any)
    #[argh(option, default = "8080")]
    pub port: u16,
    /// serve over https/wss with a self-signed certificate made at start
    #[argh(switch)]
    pub tls: bool,
}

/// What the command line asks for, or what to print before exiting.
#[derive(Debug)]
pub enum Parsed {
    Run(Cli),
    /// `--help`: the text for stdout, exit 0.
    Help(String),
    /// A bad command line: the text for stderr, exit 2.
    Bad(String),
}

/// Parses `args` (without the program name); `name` is how usage lines call the program.
pub fn parse(name: &str, args: &[&str]) -> Parsed {
    match Cli::from_args(&[name], args) {
        Ok(cli) => Parsed::Run(cli),
        Err(exit) if exit.status.is_ok() => Parsed::Help(exit.output),
        Err(exit) => Parsed::Bad(format!("{}\n\n{}", exit.output.trim_end(), help_for(name, args))),
    }
}

/// The help of the subcommand `args` name (the top level's when none does).
fn help_for(name: &str, args: &[&str]) -> String {
    let mut words = args.iter();
    let mut command = None;
    while let Some(w) = words.next() {
        if *w == "-c" || *w == "--config" {
            words.next();
        } else if !w.starts_with('-') {
            command = Command::COMMANDS.iter().find(|c| c.name == *w).map(|c| c.name);
            break;
        }
    }
    let ask: Vec<&str> = command.into_iter().chain(["--help"]).collect();
    match Cli::from_args(&[name], &ask) {
        Err(exit) => exit.output,
        Ok(_) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_command_lines_print_the_error_and_the_help_of_the_command_meant() {
        for (args, error, usage) in [
            (&["--bogus"][..], "Unrecognized argument: --bogus", "Usage: sidecar [-c <config>]"),
            (&["bogus"][..], "Unrecognized argument: bogus", "Usage: sidecar [-c <config>]"),
            (&["demo", "--bogus"][..], "Unrecognized argument: --bogus", "Usage: sidecar demo"),
            (&["demo", "--port", "x"][..], "--port", "Usage: sidecar demo"),
            (&["-c", "demo", "check", "--nope"][..], "--nope", "Usage: sidecar check"),
            (&["import-apache"][..], "file", "Usage: sidecar import-apache"),
            (&["check", "a", "b"][..], "Unrecognized argument: a", "Usage: sidecar check"),
        ] {
            match parse("sidecar", args) {
                Parsed::Bad(text) => {
                    assert!(text.contains(error), "{args:?}: want {error:?} in\n{text}");
                    assert!(text.contains(usage), "{args:?}: want {usage:?} in\n{text}");
                    assert!(text.contains("Options:"), "{args:?}: the help follows the error\n{text}");
                }
                other => panic!("{args:?}: expected a bad command line, got {other:?}"),
            }
        }
    }

    #[test]
    fn good_command_lines_parse() {
        let Parsed::Run(cli) = parse("sidecar", &["demo", "--tls", "--port", "0"]) else { panic!("demo") };
        assert!(matches!(cli.command, Some(Command::Demo(DemoArgs { port: 0, tls: true }))));
        let Parsed::Run(cli) = parse("sidecar", &["-c", "x.toml"]) else { panic!("run") };
        assert_eq!(cli.config, PathBuf::from("x.toml"));
        assert!(cli.command.is_none());
        assert!(
            matches!(parse("sidecar", &["check", "--help"]), Parsed::Help(h) if h.contains("Usage: sidecar check"))
        );
    }
}
