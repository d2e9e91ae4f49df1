//! sidecar: a small reverse proxy for one application.
//!
//! ```text
//! client ─▶ server (accept, TLS) ─▶ proxy: read head (h1) ─▶ rewrite ─▶ route ─▶ replica
//!                                        │                                       │
//!                                        ◀── relay response / tunnel ◀── net::connect + pool
//! ```
//!
//! Import rule: a module imports only from layers before its own:
//! `h1`, `target`, `websocket` | `rewrite`, `route`, `balance`, `access_log` | `config`, `tls`, `dev_cert` | `rt` | `net`,
//! `dns`, `metrics`, `shared`, `throttle`, `access_queue` | `server::Worker` | `proxy`, `admin`,
//! `health_check`, `discovery` | `server`, `signals` | `cmd`.
//! `server::Worker` (one worker thread's state, which every connection task reads) sits
//! below the proxy; the rest of `server` drives it. `dns::resolv_conf` is pure and read by
//! `config` at load. `h1`, `target`, `rewrite`, `route`, `balance` and `access_log` are
//! pure: no async, clock, file or socket; so is `websocket`.
//!
//! Only `cli`, `cmd` (for `main.rs`), `rewrite` (for its benchmark) and `fuzzing` (for
//! the fuzz targets in `fuzz/`) are public.
#![forbid(unsafe_code)]

pub(crate) mod access_log;
pub(crate) mod access_queue;
pub(crate) mod admin;
pub(crate) mod apache;
pub(crate) mod balance;
pub mod cli;
pub mod cmd;
pub(crate) mod config;
pub(crate) mod dev_cert;
pub(crate) mod discovery;
pub(crate) mod dns;
#[doc(hidden)]
pub mod fuzzing;
pub(crate) mod h1;
pub(crate) mod health_check;
pub(crate) mod metrics;
pub(crate) mod net;
pub(crate) mod proxy;
pub mod rewrite;
pub(crate) mod route;
pub(crate) mod rt;
pub(crate) mod server;
pub(crate) mod shared;
pub(crate) mod signals;
pub(crate) mod target;
pub(crate) mod throttle;
pub(crate) mod tls;
pub(crate) mod websocket;
