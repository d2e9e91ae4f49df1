//! `sidecar import-apache FILE`: prints the equivalent sidecar.toml on stdout, and on
//! stderr every warning and every directive it did not convert, each with its line.
//! The rule lints of `sidecar check` run too, reported at Apache lines.

use std::path::Path;

use crate::apache::{convert, parse_config};
use crate::rewrite::{self, RuleSource, SourceLines};

pub fn import_apache(path: &Path) -> i32 {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{}: cannot read: {e}", path.display());
            return 1;
        }
    };
    let nodes = match parse_config(&text) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("{}:{}: {}", path.display(), e.line, e.message);
            return 1;
        }
    };
    let (mut imported, rewrites) = convert(&nodes);
    let sources: Vec<(Vec<String>, String)> =
        rewrites.iter().map(|r| (r.conds.iter().map(|(_, c)| c.clone()).collect(), r.rule.1.clone())).collect();
    let srcs: Vec<RuleSource<'_>> = sources.iter().map(|(c, r)| RuleSource { conds: c, rule: r }).collect();
    let lines: Vec<SourceLines> = rewrites
        .iter()
        .map(|r| SourceLines { conds: r.conds.iter().map(|(line, _)| *line).collect(), rule: r.rule.0 })
        .collect();
    for lint in rewrite::lints(&srcs) {
        let Some(line) = lines.get(lint.entry).map(|l| l.line(lint.field)) else { continue };
        imported.warnings.push((line, lint.message));
    }
    if let Err(errors) = rewrite::Rules::parse(&srcs) {
        for e in errors {
            let Some(line) = lines.get(e.entry).map(|l| l.line(e.field)) else { continue };
            imported
                .warnings
                .push((line, format!("column {}: {} (sidecar check will refuse this rule)", e.column, e.message)));
        }
    }
    imported.warnings.sort_by_key(|(line, _)| *line);
    imported.warnings.dedup();
    super::print_out(&imported.toml);
    for (line, message) in &imported.warnings {
        match line {
            0 => eprintln!("{}: warning: {message}", path.display()),
            _ => eprintln!("{}:{line}: warning: {message}", path.display()),
        }
    }
    for (line, directive) in &imported.ignored {
        eprintln!("{}:{line}: ignored: {directive}", path.display());
    }
    0
}
