//! The serde mirror of sidecar.toml: types only, no checks beyond TOML's
//! own. `deny_unknown_fields` everywhere so a typo is an error with its line, and
//! `Spanned` on every value that `resolve.rs` checks later so its errors have a line too.
//! The two "string or table/list" shapes have hand-written visitors instead of
//! `untagged`, whose errors lose the key.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    pub server: Spanned<Server>,
    pub admin: Option<Spanned<Admin>>,
    #[serde(default)]
    pub rewrite: Vec<Spanned<Rewrite>>,
    #[serde(default)]
    pub proxy: Vec<Spanned<Proxy>>,
    #[serde(default)]
    pub balancer: BTreeMap<Spanned<String>, Spanned<Balancer>>,
    pub backend_tls: Option<Spanned<BackendTls>>,
    pub resolver: Option<Spanned<Resolver>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Server {
    pub listen: Spanned<Listen>,
    pub server_name: Option<Spanned<String>>,
    pub workers: Option<Spanned<u32>>,
    pub proxy_timeout: Option<Spanned<String>>,
    pub connect_timeout: Option<Spanned<String>>,
    pub header_timeout: Option<Spanned<String>>,
    pub keepalive_timeout: Option<Spanned<String>>,
    pub tunnel_idle_timeout: Option<Spanned<String>>,
    pub drain_timeout: Option<Spanned<String>>,
    pub drain_spread: Option<Spanned<String>>,
    pub ws_ping_interval: Option<Spanned<String>>,
    pub ws_pong_timeout: Option<Spanned<String>>,
    pub ws_ping_backend: Option<bool>,
    pub pool_idle_timeout: Option<Spanned<String>>,
    pub body_timeout: Option<Spanned<String>>,
    pub body_min_rate: Option<Spanned<u32>>,
    pub max_head_bytes: Option<Spanned<u32>>,
    pub max_headers: Option<Spanned<u32>>,
    pub max_connections: Option<Spanned<u32>>,
    pub max_body_bytes: Option<Spanned<u64>>,
    pub via: Option<bool>,
    pub access_log: Option<Spanned<String>>,
    pub tls: Option<Spanned<ServerTls>>,
}

/// `listen = "addr"` or `listen = ["addr", ...]`.
#[derive(Debug)]
pub struct Listen(pub Vec<String>);

impl<'de> Deserialize<'de> for Listen {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Listen;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an address such as \"127.0.0.1:8080\" or a list of them")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Listen, E> {
                Ok(Listen(vec![v.to_string()]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Listen, A::Error> {
                let mut all = Vec::new();
                while let Some(s) = seq.next_element::<String>()? {
                    all.push(s);
                }
                Ok(Listen(all))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerTls {
    pub cert: Option<Spanned<String>>,
    pub key: Option<Spanned<String>>,
    /// Generate a development certificate at start (written to `cert`/`key` when
    /// they are given and absent).
    pub self_signed: Option<Spanned<bool>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Admin {
    pub listen: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rewrite {
    #[serde(default)]
    pub cond: Vec<Spanned<String>>,
    pub rule: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Proxy {
    pub path: Spanned<String>,
    pub to: Spanned<String>,
    pub reverse: Option<bool>,
    pub preserve_host: Option<bool>,
    pub upgrade: Option<bool>,
    pub ws_ping_interval: Option<Spanned<String>>,
    pub ws_pong_timeout: Option<Spanned<String>>,
    pub ws_ping_backend: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Balancer {
    pub method: Option<Spanned<String>>,
    pub hash: Option<Spanned<String>>,
    pub hash_fallback: Option<Spanned<String>>,
    pub retry: Option<Spanned<String>>,
    pub retry_max: Option<Spanned<String>>,
    pub failonstatus: Option<Vec<u16>>,
    pub stickysession: Option<String>,
    pub maxattempts: Option<Spanned<u32>>,
    pub max_ejected_percent: Option<Spanned<u8>>,
    pub slow_start: Option<Spanned<String>>,
    pub health: Option<Spanned<HealthCheck>>,
    pub members: Vec<Spanned<MemberEntry>>,
}

/// `[balancer.NAME.health]`: active health checks.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {
    pub path: Option<Spanned<String>>,
    pub interval: Option<Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
    pub rise: Option<Spanned<u32>>,
    pub fall: Option<Spanned<u32>>,
    pub expect: Option<Spanned<String>>,
}

/// `[resolver]`: how member names are looked up.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resolver {
    pub nameservers: Option<Vec<Spanned<String>>>,
    pub search: Option<Vec<String>>,
    pub ndots: Option<Spanned<u8>>,
    pub timeout: Option<Spanned<String>>,
    pub attempts: Option<Spanned<u32>>,
    pub refresh: Option<Spanned<String>>,
}

/// A member: `"https://server01:3000"` or `{ url = "...", loadfactor = 2, ... }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Member {
    pub url: Spanned<String>,
    pub loadfactor: Option<Spanned<u32>>,
    pub status: Option<Spanned<String>>,
    pub route: Option<String>,
    pub retry: Option<Spanned<String>>,
    pub failonstatus: Option<Vec<u16>>,
}

impl Member {
    fn from_url(url: Spanned<String>) -> Self {
        Self { url, loadfactor: None, status: None, route: None, retry: None, failonstatus: None }
    }
}

/// Wraps `Member` so a bare string deserialises too.
#[derive(Debug)]
pub struct MemberEntry(pub Member);

impl<'de> Deserialize<'de> for MemberEntry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = MemberEntry;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a member URL string or a table with `url`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<MemberEntry, E> {
                Ok(MemberEntry(Member::from_url(Spanned::new(0..0, v.to_string()))))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<MemberEntry, A::Error> {
                Member::deserialize(de::value::MapAccessDeserializer::new(map)).map(MemberEntry)
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendTls {
    pub ca: Option<Spanned<String>>,
}
