//! sidecar: a small reverse proxy for one application.
//!
//! ```text
//! client ─▶ server (accept, TLS) ─▶ proxy: read head (h1) ─▶ rewrite ─▶ route ─▶ replica
//!                                        │                                       │
//!                                        ◀── relay response / tunnel ◀── net::connect + pool
//! ```
//!
//! Import rule: a module imports only from layers before its own:
//! `h1`, `target` | `rewrite`, `route`, `balance`, `access_log` | `config`, `tls` | `net` |
//! `proxy` | `server` | `cmd`. `h1`, `target`, `rewrite`, `route`, `balance` and
//! `access_log` are pure: no async, clock, file or socket.
#![forbid(unsafe_code)]

pub mod access_log;
pub mod admin;
pub mod apache;
pub mod balance;
pub mod cli;
pub mod cmd;
pub mod config;
pub mod discovery;
pub mod dns;
pub mod h1;
pub mod health_check;
pub mod metrics;
pub mod net;
pub mod proxy;
pub mod rewrite;
pub mod route;
pub mod server;
pub mod shared;
pub mod signals;
pub mod target;
pub mod tls;
