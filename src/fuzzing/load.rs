//! Fuzz entry points for configuration text: sidecar.toml as `sidecar check` loads it
//! (without touching the disk), and an Apache config through `import-apache`, whose
//! output must be TOML the loader reads, with every rewrite string carried over exactly.

use std::path::Path;

use crate::apache::{convert, parse_config};
use crate::cmd::check::{describe, warnings};
use crate::config::{self, Diagnostic};

const FILE: &str = "fuzz.toml";

/// The last line a diagnostic may name: the line after the last newline.
fn last_line(text: &str) -> usize {
    text.bytes().filter(|&b| b == b'\n').count() + 1
}

/// Config text: loading never panics and ends in a config (whose description and
/// warnings can be written) or in diagnostics, sorted, each naming a line of the text.
pub fn config(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    check_config_text(&text);
}

fn check_config_text(text: &str) {
    let last = last_line(text);
    match config::parse_text(Path::new(FILE), text) {
        Ok(c) => {
            assert!(!c.listen.is_empty(), "a config that listens nowhere");
            assert_eq!(c.rule_lines.len(), c.rule_sources.len());
            for (lines, (conds, _)) in c.rule_lines.iter().zip(&c.rule_sources) {
                assert_eq!(lines.conds.len(), conds.len());
                let all = lines.conds.iter().chain([&lines.rule]);
                assert!(all.clone().all(|l| (1..=last).contains(l)), "rule lines {:?} {}", lines.conds, lines.rule);
            }
            let _ = describe(&c);
            for (line, message) in warnings(&c) {
                assert!((1..=last).contains(&line), "warning on line {line} of {last}: {message}");
            }
        }
        Err(diagnostics) => {
            assert!(!diagnostics.is_empty(), "refused without a diagnostic");
            assert!(diagnostics.windows(2).all(|w| w[0].line <= w[1].line), "diagnostics not sorted by line");
            for d in &diagnostics {
                check_diagnostic(d, last);
            }
        }
    }
}

fn check_diagnostic(d: &Diagnostic, last: usize) {
    assert!((1..=last).contains(&d.line), "line {} of {last}: {d}", d.line);
    assert!(!d.key.is_empty() && !d.message.is_empty(), "{d:?}");
    assert!(d.to_string().starts_with(&format!("{FILE}:{}: ", d.line)), "{d}");
}

/// An Apache config: parse errors and warnings name lines of the input; the TOML
/// written parses, fits the config file's shape, and holds each `RewriteCond` and
/// `RewriteRule` string unchanged; loading it behaves as any config text does.
pub fn import_apache(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let last = last_line(&text);
    let nodes = match parse_config(&text) {
        Ok(nodes) => nodes,
        Err(e) => {
            assert!((1..=last).contains(&e.line), "parse error on line {} of {last}: {}", e.line, e.message);
            return;
        }
    };
    let (imported, rewrites) = convert(&nodes);
    for (line, message) in &imported.warnings {
        assert!(*line <= last, "warning on line {line} of {last}: {message}");
    }
    for (line, directive) in &imported.ignored {
        assert!((1..=last).contains(line), "ignored on line {line} of {last}: {directive}");
    }
    let toml = &imported.toml;
    let table: toml::Table =
        toml::from_str(toml).unwrap_or_else(|e| panic!("import wrote invalid TOML ({e}):\n{toml}"));
    if let Err(e) = toml::from_str::<config::file::File>(toml) {
        panic!("import wrote TOML the loader cannot read ({e}):\n{toml}");
    }
    let written = table.get("rewrite").and_then(|r| r.as_array()).map_or(&[][..], |a| a.as_slice());
    assert_eq!(written.len(), rewrites.len(), "rewrite entries:\n{toml}");
    for (entry, r) in written.iter().zip(&rewrites) {
        let rule = entry.get("rule").and_then(|v| v.as_str());
        assert_eq!(rule, Some(r.rule.1.as_str()), "rule changed:\n{toml}");
        let conds: Vec<&str> = entry
            .get("cond")
            .and_then(|c| c.as_array())
            .map_or(vec![], |a| a.iter().filter_map(|v| v.as_str()).collect());
        let want: Vec<&str> = r.conds.iter().map(|(_, c)| c.as_str()).collect();
        assert_eq!(conds, want, "conditions changed:\n{toml}");
    }
    check_config_text(toml);
}
