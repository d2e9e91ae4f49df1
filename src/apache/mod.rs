//! `sidecar import-apache` only: Apache httpd config → sidecar.toml (SPEC §5).

pub mod convert;
pub mod parse;

pub use convert::convert;
pub use parse::parse_config;
