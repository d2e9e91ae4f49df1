//! sidecar: a small reverse proxy for one application.
//!
//! ```text
//! client ─▶ net::listen ─▶ proxy (read head: h1) ─▶ rewrite ─▶ route ─▶ balance
//!                                │                                      │
//!                                ◀── relay response / tunnel ◀── net::connect + pool
//! ```
//!
//! Import rule: a module imports only from layers before its own:
//! `h1`, `target` | `rewrite`, `route`, `balance` | `config`, `tls` | `net` | `proxy` |
//! `cmd`. `h1`, `target`, `rewrite`, `route` and `balance` are pure: no async, clock,
//! file or socket.
#![forbid(unsafe_code)]

pub mod balance;
pub mod config;
pub mod h1;
pub mod rewrite;
pub mod route;
pub mod target;
pub mod tls;
