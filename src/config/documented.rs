//! docs/configuration.md and the serde structs of `file.rs` list the same keys, table by
//! table, and every documented key appears in its section's example.
//!
//! The keys the code accepts are asked from serde itself: a table with one unknown key
//! is deserialised, and `deny_unknown_fields` answers with every field it expected. So a
//! field added to `file.rs` fails this test until it is documented, and a documented key
//! the code does not have fails it too. Sections are the page's `## ` headings whose
//! first code span is a TOML table header (`[server.tls]`, `[[proxy]]`), plus
//! `## Top level`.

use std::collections::BTreeSet;

use super::file::File;

const DOC: &str = include_str!("../../docs/configuration.md");
const PROBE: &str = "zz_undocumented_probe";

/// One `## ` section of the page.
struct Section {
    heading: String,
    /// The TOML header it documents (`[server.tls]`), or `""` for the top level.
    table: String,
    /// Keys from its table rows (`| `key` | ...`), with their type column.
    keys: Vec<(String, String)>,
    /// Its ```toml blocks.
    examples: Vec<String>,
}

fn sections(doc: &str) -> Vec<Section> {
    let mut out: Vec<Section> = Vec::new();
    let mut in_toml: Option<String> = None;
    for line in doc.lines() {
        if let Some(block) = in_toml.as_mut() {
            if line.trim_start().starts_with("```") {
                if let (Some(s), Some(b)) = (out.last_mut(), in_toml.take()) {
                    s.examples.push(b);
                }
            } else {
                block.push_str(line);
                block.push('\n');
            }
            continue;
        }
        if line.trim_start().starts_with("```toml") {
            in_toml = Some(String::new());
            continue;
        }
        if let Some(heading) = line.strip_prefix("## ") {
            let table = if heading == "Top level" {
                Some(String::new())
            } else {
                heading.split('`').nth(1).filter(|c| c.starts_with('[')).map(str::to_string)
            };
            out.push(Section {
                heading: heading.to_string(),
                table: table.unwrap_or_else(|| "-".into()),
                ..Section::empty()
            });
            continue;
        }
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if let (Some(s), [_, key, kind, ..]) = (out.last_mut(), &cells[..]) {
            if let Some(k) = key.strip_prefix('`').and_then(|k| k.strip_suffix('`')) {
                s.keys.push((k.to_string(), kind.to_string()));
            }
        }
    }
    out.retain(|s| s.table != "-");
    out
}

impl Section {
    fn empty() -> Section {
        Section { heading: String::new(), table: String::new(), keys: Vec::new(), examples: Vec::new() }
    }

    /// The dotted path of its table without brackets: `server.tls`, `balancer.NAME.members`.
    fn path(&self) -> &str {
        self.table.trim_matches(|c| c == '[' || c == ']')
    }

    /// A config whose only problem is an unknown key in this section's table.
    fn probe(&self) -> String {
        match self.table.as_str() {
            "" => format!("{PROBE} = 1\n"),
            "[server]" => format!("[server]\n{PROBE} = 1\n"),
            header => format!("[server]\nlisten = \"127.0.0.1:1\"\n{header}\n{PROBE} = 1\n"),
        }
    }
}

/// The fields serde expects in the table `probe` puts an unknown key into.
fn code_keys(probe: &str) -> Result<BTreeSet<String>, String> {
    let err = match toml::from_str::<File>(probe) {
        Ok(_) => return Err("the probe was accepted: the table does not deny unknown fields".into()),
        Err(e) => e.message().to_string(),
    };
    let Some(expected) = err.strip_prefix(&format!("unknown field `{PROBE}`, ")) else {
        return Err(format!("the probe did not reach the table: {err}"));
    };
    if expected.starts_with("there are no fields") {
        return Ok(BTreeSet::new());
    }
    Ok(expected.split('`').skip(1).step_by(2).map(str::to_string).collect())
}

#[test]
fn every_config_key_in_the_code_is_documented_and_every_documented_key_exists() {
    let sections = sections(DOC);
    assert!(sections.len() >= 8, "expected the top level and a section per table, found {}", sections.len());
    let mut problems = Vec::new();
    for s in &sections {
        let code = match code_keys(&s.probe()) {
            Ok(k) => k,
            Err(e) => {
                problems.push(format!("## {}: {e}", s.heading));
                continue;
            }
        };
        let documented: BTreeSet<String> = s.keys.iter().map(|(k, _)| k.clone()).collect();
        let missing: Vec<&String> = code.difference(&documented).collect();
        let unknown: Vec<&String> = documented.difference(&code).collect();
        if !missing.is_empty() {
            problems.push(format!("## {}: in the code but not documented: {missing:?}", s.heading));
        }
        if !unknown.is_empty() {
            problems.push(format!("## {}: documented but not accepted by the code: {unknown:?}", s.heading));
        }
        // A key that is itself a table needs its own section.
        for (key, kind) in &s.keys {
            let nested = if s.path().is_empty() { key.clone() } else { format!("{}.{key}", s.path()) };
            let has_section =
                sections.iter().any(|t| t.path() == nested || t.path().starts_with(&format!("{nested}.")));
            if kind.contains("table") && !has_section {
                problems.push(format!("## {}: `{key}` is a table but no section documents [{nested}]", s.heading));
            }
        }
    }
    assert!(problems.is_empty(), "docs/configuration.md and src/config/file.rs disagree:\n{}", problems.join("\n"));
}

#[test]
fn every_documented_key_has_an_example_and_the_examples_parse() {
    let mut problems = Vec::new();
    for s in sections(DOC).iter().filter(|s| !s.table.is_empty()) {
        let examples = s.examples.join("\n");
        for (key, kind) in &s.keys {
            let shown = examples.lines().any(|l| {
                let l = l.trim_start();
                l.starts_with(&format!("{key} ="))
                    || l.contains(&format!("{{ {key} ="))
                    || l.contains(&format!(", {key} ="))
            });
            // A nested table is shown by its own section's example.
            if !shown && kind != "table" {
                problems.push(format!("## {}: no example sets `{key}`", s.heading));
            }
        }
        for example in &s.examples {
            // Each example with the one key every file needs, unless it has [server].
            let prelude = if example.contains("[server]\n") { "" } else { "[server]\nlisten = \"127.0.0.1:1\"\n" };
            if let Err(e) = toml::from_str::<File>(&format!("{prelude}{example}")) {
                problems.push(format!("## {}: an example is not valid sidecar.toml: {e}\n{example}", s.heading));
            }
        }
    }
    assert!(problems.is_empty(), "docs/configuration.md:\n{}", problems.join("\n"));
}

#[test]
fn the_complete_example_loads() {
    let tail = DOC.split("\n## A complete example").nth(1).expect("a `## A complete example` section");
    let block = tail.split("```toml\n").nth(1).and_then(|b| b.split("\n```").next()).expect("its toml block");
    if let Err(e) = super::parse(std::path::Path::new("docs/configuration.md"), block) {
        panic!("the complete example does not load: {e:?}");
    }
}

#[test]
fn code_keys_reads_serdes_expectations() {
    let top = code_keys(&format!("{PROBE} = 1\n")).expect("top level");
    assert!(top.contains("server") && top.contains("balancer"), "{top:?}");
    let member =
        code_keys(&format!("[server]\nlisten = \"x\"\n[[balancer.b.members]]\n{PROBE} = 1\n")).expect("member");
    assert!(member.contains("url") && member.contains("loadfactor"), "{member:?}");
    assert!(code_keys("[server]\nlisten = 1\n").is_err(), "an error that is not the probe's is reported");
}
