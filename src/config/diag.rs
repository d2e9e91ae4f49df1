//! A config problem with its place: `file:line: key: message`. Every check in
//! `resolve.rs` produces one of these; all are collected, sorted by line and printed
//! before anything listens.

use std::fmt;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: PathBuf,
    pub line: usize,
    pub key: String,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}: {}", self.file.display(), self.line, self.key, self.message)
    }
}

/// Maps byte offsets of the source to 1-based line numbers.
pub struct Lines<'a> {
    pub file: &'a Path,
    pub source: &'a str,
}

impl Lines<'_> {
    pub fn line_of(&self, offset: usize) -> usize {
        let end = offset.min(self.source.len());
        self.source.as_bytes()[..end].iter().filter(|&&b| b == b'\n').count() + 1
    }

    pub fn at(&self, offset: usize, key: impl Into<String>, message: impl Into<String>) -> Diagnostic {
        self.at_line(self.line_of(offset), key, message)
    }

    pub fn at_line(&self, line: usize, key: impl Into<String>, message: impl Into<String>) -> Diagnostic {
        Diagnostic { file: self.file.to_path_buf(), line, key: key.into(), message: message.into() }
    }

    /// The dotted key for a TOML syntax/type error at `offset`: the enclosing
    /// `[table]` header plus the key written on that line.
    pub fn key_at(&self, offset: usize) -> String {
        let end = offset.min(self.source.len());
        let before = &self.source[..end];
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let line = self.source[line_start..].lines().next().unwrap_or("");
        let table = before[..line_start]
            .lines()
            .rev()
            .map(str::trim)
            .find(|l| l.starts_with('['))
            .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_string())
            .filter(|t| !t.is_empty());
        let key =
            line.split_once('=').map(|(k, _)| k.trim().to_string()).filter(|k| !k.is_empty() && !k.starts_with('['));
        match (table, key) {
            (Some(t), Some(k)) => format!("{t}.{k}"),
            (Some(t), None) => t,
            (None, Some(k)) => k,
            (None, None) => "(top level)".to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syntax_error_keys_are_never_empty() {
        // Found by fuzzing (fuzz/regressions/config): a bare `[` line named the key "".
        for (source, offset_of, want) in [
            ("[server]\nlisten = \"x\"\nbogus = 1\n", "bogus", "server.bogus"),
            ("[\ncert = 1\nkey = s\n", "key", "key"),
            ("[\nkey s\n", "key", "(top level)"),
            ("[server]\n = 1\n", " = 1", "server"),
            ("x = 1\n", "x", "x"),
        ] {
            let lines = Lines { file: Path::new("t.toml"), source };
            let offset = source.find(offset_of).expect("offset");
            assert_eq!(lines.key_at(offset), want, "{source:?}");
        }
    }
}
