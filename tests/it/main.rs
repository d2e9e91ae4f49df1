//! The integration tests: one test binary that starts the real `sidecar` binary against
//! real servers on loopback and asserts on what crossed the wire. One module per feature
//! area; `support` is the harness they share (the process, raw client connections,
//! recording backends, certificates, a Prometheus reader, raw WebSocket frames).

mod support;

mod backend_responses;
mod balancer;
mod browser;
mod cli;
mod demo;
mod dns;
mod docs;
mod faults;
mod headers;
mod http;
mod open_proxy;
mod operations;
mod paths;
mod rewrite;
mod self_signed;
mod smuggling;
mod tls;
mod websocket;
mod ws_native;
