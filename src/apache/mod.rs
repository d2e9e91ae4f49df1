//! `sidecar import-apache` only: Apache httpd config → sidecar.toml.

pub mod convert;
pub mod parse;

pub use convert::{convert, Imported, RewriteEntry};
pub use parse::{parse_config, ParseError};
