//! A stub resolver of our own, so that finding a balancer's members never blocks a
//! worker (getaddrinfo would) and sees every address and its TTL (getaddrinfo hides
//! TTLs). `resolv_conf` (PURE) reads resolv.conf and hosts files into settings,
//! `search` (PURE) orders the names to try, `wire` (PURE) encodes and decodes packets,
//! `transport` talks UDP with TCP fallback over async-io sockets, and `lookup` puts
//! them together. What a lookup means for a balancer is
//! `discovery`'s business.
//!
//! The wire format is ours: one question of three types and three record layouts, a
//! few hundred lines against the URL, IDNA and Unicode tables a general DNS crate
//! links in. Its tests check it against hickory-proto's encoder and against hostile
//! packets (compression loops, lengths past the end).

mod lookup;
pub mod resolv_conf;
mod search;
mod transport;
mod wire;

pub use lookup::{lookup_ip, lookup_srv};
pub use resolv_conf::ResolverConfig;
