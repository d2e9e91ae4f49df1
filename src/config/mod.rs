//! The checked configuration: what the proxy runs on. `load` reads sidecar.toml,
//! `resolve` turns the serde mirror into a `Config` or into every `Diagnostic` at once.

mod diag;
mod duration;
pub mod file;
mod resolve;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures_rustls::rustls::{ClientConfig, ServerConfig};

pub use diag::Diagnostic;
pub use duration::parse_duration;

use crate::access_log::AccessFormat;
use crate::rewrite::Rules;
use crate::route::{ReverseRule, Routes};
use crate::target::Url;

/// Everything the proxy needs, checked.
pub struct Config {
    pub path: PathBuf,
    pub listen: Vec<SocketAddr>,
    /// TLS on the listeners, when `[server.tls]` is set.
    pub server_tls: Option<Arc<ServerConfig>>,
    pub server_name: Option<String>,
    pub workers: usize,
    pub timeouts: Timeouts,
    pub limits: Limits,
    pub via: bool,
    pub access_log: AccessFormat,
    pub admin: Option<SocketAddr>,
    pub rules: Rules,
    /// The `[[rewrite]]` sources, for `check` and lints.
    pub rule_sources: Vec<(Vec<String>, String)>,
    pub routes: Routes,
    pub reverse: Vec<ReverseRule>,
    pub balancers: Vec<BalancerConfig>,
    pub backend_tls: Arc<ClientConfig>,
}

/// Every wait has a deadline (SECURITY §0.8).
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    /// Backend response (Apache `ProxyTimeout`) → 504.
    pub proxy: Duration,
    pub connect: Duration,
    /// The whole request head must arrive within this (slowloris, SECURITY L2).
    pub header: Duration,
    /// An idle client connection between requests.
    pub keepalive: Duration,
    pub tunnel_idle: Duration,
    pub drain: Duration,
    /// A pooled backend connection unused this long is closed.
    pub pool_idle: Duration,
}

#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_head_bytes: usize,
    pub max_connections: usize,
    /// Request bodies over this are refused with 413; `None`: no limit.
    pub max_body_bytes: Option<u64>,
}

/// `+H`, `+N`, `+D` (Apache's BalancerMember status letters).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemberStatus {
    Normal,
    HotStandby,
    Draining,
    Disabled,
}

#[derive(Clone, Debug)]
pub struct MemberConfig {
    pub url: Url,
    pub weight: u32,
    pub status: MemberStatus,
    pub route: Option<String>,
    pub retry: Duration,
    pub fail_on_status: Vec<u16>,
}

#[derive(Clone, Debug)]
pub struct BalancerConfig {
    pub name: String,
    pub method: String,
    pub retry_max: Duration,
    pub sticky_session: Option<String>,
    pub max_attempts: u32,
    pub members: Vec<MemberConfig>,
}

impl BalancerConfig {
    /// Whether any member could take traffic now.
    pub fn usable(&self) -> bool {
        self.members.iter().any(|m| matches!(m.status, MemberStatus::Normal | MemberStatus::HotStandby))
    }

    /// The members as a JSON array, for `/status`.
    pub fn members_json(&self) -> String {
        let items: Vec<String> = self
            .members
            .iter()
            .map(|m| {
                format!("{{\"url\":\"{}\",\"loadfactor\":{},\"status\":\"{:?}\"}}", m.url.origin(), m.weight, m.status)
            })
            .collect();
        format!("[{}]", items.join(","))
    }
}

impl Config {
    pub fn balancer(&self, name: &str) -> Option<&BalancerConfig> {
        self.balancers.iter().find(|b| b.name == name)
    }
}

/// Reads and checks a config file. Errors are sorted by line.
pub fn load(path: &Path) -> Result<Config, Vec<Diagnostic>> {
    let source = std::fs::read_to_string(path).map_err(|e| {
        vec![Diagnostic {
            file: path.to_path_buf(),
            line: 0,
            key: "(file)".to_string(),
            message: format!("cannot read: {e}"),
        }]
    })?;
    resolve::resolve(path, &source)
}

/// Checks config text; `path` names it in diagnostics and anchors relative paths.
pub fn parse(path: &Path, source: &str) -> Result<Config, Vec<Diagnostic>> {
    resolve::resolve(path, source)
}
