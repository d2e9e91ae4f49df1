//! A stub resolver of our own, so that finding a balancer's members never blocks a
//! worker (getaddrinfo would) and sees every address and its TTL (getaddrinfo hides
//! TTLs). `resolv_conf` (PURE) reads resolv.conf and hosts files into settings,
//! `search` (PURE) orders the names to try, `wire` (PURE) encodes and decodes packets
//! with `hickory-proto`, `transport` talks UDP with TCP fallback over async-io
//! sockets, and `lookup` puts them together. What a lookup means for a balancer is
//! `discovery`'s business.
//!
//! `hickory-proto` (without its default tokio and std features) is used for the wire
//! format only: DNS name compression and record parsing are easy to get subtly wrong
//! on hostile input, and it is the maintained crate behind hickory-resolver.

mod lookup;
pub mod resolv_conf;
mod search;
mod transport;
mod wire;

pub use lookup::{lookup_ip, lookup_srv};
pub use resolv_conf::ResolverConfig;
