//! `sidecar import-apache` only: Apache httpd config → sidecar.toml, with a warning for
//! each line that will not do what its author expects.

pub mod convert;
pub mod parse;

pub use convert::convert;
pub use parse::parse_config;
