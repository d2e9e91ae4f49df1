//! The command line, as argh structs. Parsing errors exit 2 (`main.rs`).

use std::path::PathBuf;

use argh::FromArgs;

/// sidecar: a small, fast reverse proxy for one application (HTTP, WebSocket, TLS,
/// rewrite rules, balancing).
#[derive(FromArgs, Debug)]
pub struct Cli {
    /// config file (default: ./sidecar.toml)
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
    /// the Apache config file
    #[argh(positional)]
    pub file: PathBuf,
}

/// validate the config and print the resolved routes, rules and balancers
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "check")]
pub struct CheckArgs {
    /// config file (default: ./sidecar.toml)
    #[argh(option, short = 'c')]
    pub config: Option<PathBuf>,
}

/// run two example replicas (HTTP + WebSocket echo) and the proxy in front of them
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "demo")]
pub struct DemoArgs {
    /// port for the proxy (default 8080; any free port if taken)
    #[argh(option, default = "8080")]
    pub port: u16,
}
