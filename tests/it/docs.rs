//! The documentation stands alone and matches the binary: README.md starts with the two
//! commands a newcomer runs; every link in README.md and docs/ resolves to a file (and
//! heading) inside the repository; no file refers to documents outside it; every metric,
//! access-log field and `/status` field the running binary produces is documented in
//! docs/operations.md, and every metric documented there exists. (Config keys are
//! checked against docs/configuration.md by `config::documented`.)

use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use crate::support::*;
use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// README.md and every docs/*.md, as (repository-relative path, text).
fn documents() -> Vec<(String, String)> {
    let mut out = vec![("README.md".to_string(), read("README.md"))];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .expect("docs/ exists")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    docs.sort();
    for p in docs {
        let rel = format!("docs/{}", p.file_name().and_then(|n| n.to_str()).expect("utf-8 name"));
        out.push((rel.clone(), read(&rel)));
    }
    out
}

/// The text outside fenced code blocks, line by line.
fn prose(text: &str) -> Vec<&str> {
    let mut fenced = false;
    text.lines()
        .filter(|l| {
            if l.trim_start().starts_with("```") {
                fenced = !fenced;
                return false;
            }
            !fenced
        })
        .collect()
}

/// `line` without its `code spans`.
fn without_code_spans(line: &str) -> String {
    line.split('`').step_by(2).collect::<Vec<_>>().join(" ")
}

/// Link targets: inline `[text](target)`, reference definitions `[x]: target` and
/// autolinks `<scheme://...>`, outside code.
fn links(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in prose(text) {
        let line = without_code_spans(line);
        let mut rest = line.as_str();
        while let Some(i) = rest.find("](") {
            let after = &rest[i + 2..];
            let end = after.find(')').unwrap_or(after.len());
            out.push(after[..end].split_whitespace().next().unwrap_or("").to_string());
            rest = &after[end..];
        }
        let t = line.trim_start();
        if t.starts_with('[') {
            if let Some((_, target)) = t.split_once("]: ") {
                out.push(target.split_whitespace().next().unwrap_or("").to_string());
            }
        }
        let mut rest = line.as_str();
        while let Some(i) = rest.find('<') {
            let after = &rest[i + 1..];
            let end = after.find('>').unwrap_or(after.len());
            if after[..end].contains("://") {
                out.push(after[..end].to_string());
            }
            rest = &after[end..];
        }
    }
    out
}

/// GitHub's anchors for the headings of a Markdown text.
fn anchors(text: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    for line in prose(text) {
        let Some(heading) = line.strip_prefix('#').map(|h| h.trim_start_matches('#')) else { continue };
        let slug: String = heading
            .trim()
            .to_lowercase()
            .chars()
            .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
            .map(|c| if c == ' ' { '-' } else { c })
            .collect();
        let mut unique = slug.clone();
        let mut n = 1;
        while seen.contains(&unique) {
            unique = format!("{slug}-{n}");
            n += 1;
        }
        seen.insert(unique);
    }
    seen
}

/// `base/rel` with `.` and `..` applied; `None` when it climbs above the repository.
fn resolve(base: &Path, rel: &str) -> Option<PathBuf> {
    let mut parts: Vec<String> = base.components().map(|c| c.as_os_str().to_string_lossy().to_string()).collect();
    for c in Path::new(rel).components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::Normal(p) => parts.push(p.to_string_lossy().to_string()),
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(parts.iter().collect())
}

#[test]
fn readme_starts_with_the_two_commands_and_shows_the_repositorys_sidecar_toml() {
    let readme = read("README.md");
    let mut lines = readme.lines();
    assert_eq!(lines.next(), Some("# sidecar"));
    assert_eq!(lines.next(), Some(""));
    assert_eq!(lines.next(), Some("```sh"));
    assert!(lines.next().is_some_and(|l| l.starts_with("cargo run --release -- demo ")), "{readme}");
    assert!(lines.next().is_some_and(|l| l.starts_with("cargo test ")), "{readme}");
    assert_eq!(lines.next(), Some("```"));
    let shown = readme.split("```toml\n").nth(1).and_then(|b| b.split("```").next()).expect("a toml block");
    let file: String = read("sidecar.toml").lines().filter(|l| !l.starts_with('#')).map(|l| format!("{l}\n")).collect();
    assert_eq!(shown.trim(), file.trim(), "README.md shows sidecar.toml as it is");
}

#[test]
fn every_link_in_readme_and_docs_resolves_inside_the_repository() {
    let docs = documents();
    assert!(docs.iter().any(|(p, _)| p == "docs/configuration.md"), "docs/ has the configuration page");
    let mut problems = Vec::new();
    let mut checked = 0;
    for (path, text) in &docs {
        let dir = Path::new(path).parent().unwrap_or(Path::new(""));
        for link in links(text) {
            checked += 1;
            if link.contains("://") || link.starts_with("mailto:") || link.starts_with('/') {
                problems.push(format!("{path}: {link}: links must stay inside the repository (relative paths)"));
                continue;
            }
            let (file, anchor) = link.split_once('#').unwrap_or((&link, ""));
            let target = if file.is_empty() { Some(PathBuf::from(path)) } else { resolve(dir, file) };
            let Some(target) = target else {
                problems.push(format!("{path}: {link}: leaves the repository"));
                continue;
            };
            let on_disk = root().join(&target);
            if !on_disk.exists() {
                problems.push(format!("{path}: {link}: {} does not exist", target.display()));
                continue;
            }
            if !anchor.is_empty() {
                let text = std::fs::read_to_string(&on_disk).unwrap_or_default();
                if !anchors(&text).contains(anchor) {
                    problems.push(format!("{path}: {link}: no heading #{anchor} in {}", target.display()));
                }
            }
        }
    }
    assert!(checked >= 20, "only {checked} links found: is the link reader broken?");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_link_reader_and_anchors_follow_markdown_and_github() {
    let text = "# Top\n[a](x.md#top) and `[not](a link)` <https://example.org>\n```\n[code](no.md)\n```\n[r]: y.md\n## Local: `a = b`\n## Top\n";
    assert_eq!(links(text), ["x.md#top", "https://example.org", "y.md"]);
    let a = anchors(text);
    for want in ["top", "local-a--b", "top-1"] {
        assert!(a.contains(want), "{want} in {a:?}");
    }
    assert_eq!(resolve(Path::new("docs"), "../README.md"), Some(PathBuf::from("README.md")));
    assert_eq!(resolve(Path::new("docs"), "../../x"), None);
}

/// Every text file of the repository (not `target/`, not `.git`), as (relative path, text).
fn repository_files() -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut dirs = vec![PathBuf::new()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(root().join(&dir)).into_iter().flatten().flatten() {
            let rel = dir.join(entry.file_name());
            let name = entry.file_name().to_string_lossy().to_string();
            if entry.path().is_dir() {
                if name != "target" && name != ".git" {
                    dirs.push(rel);
                }
            } else if let Ok(text) = std::fs::read_to_string(entry.path()) {
                out.push((rel.to_string_lossy().to_string(), text));
            }
        }
    }
    out
}

#[test]
fn nothing_in_the_repository_refers_to_documents_outside_it() {
    // Built from pieces so that this file does not match itself.
    let words: Vec<String> = [["..", "/shared"], ["SPEC", ".md"], ["SPEC", " §"], ["STYLE", ".md"], ["STYLE", " §"]]
        .iter()
        .chain(&[["SECURITY", ".md"], ["closing", " note"]])
        .map(|[a, b]| format!("{a}{b}"))
        .collect();
    let files = repository_files();
    assert!(files.iter().any(|(p, _)| p == "src/main.rs"), "the walk found the sources");
    let mut problems = Vec::new();
    for (path, text) in &files {
        for (n, line) in text.lines().enumerate() {
            let lower = line.to_lowercase();
            let issue = lower
                .match_indices(&format!("{} ", "issue"))
                .any(|(i, m)| lower[i + m.len()..].starts_with(|c: char| c.is_ascii_digit() || c == '#'));
            if issue || words.iter().any(|w| line.contains(w.as_str())) {
                problems.push(format!("{path}:{}: {line}", n + 1));
            }
        }
    }
    assert!(problems.is_empty(), "references to documents outside the repository:\n{}", problems.join("\n"));
}

/// Every `name` in backticks in `text` that starts with `prefix`.
fn backticked(text: &str, prefix: &str) -> BTreeSet<String> {
    text.split('`').skip(1).step_by(2).filter(|s| s.starts_with(prefix)).map(str::to_string).collect()
}

/// A sidecar with an admin listener and a balancer in front of a WebSocket echo
/// backend, with `access_log`; after one plain request and one tunnel.
fn exercised(access_log: &str) -> (Sidecar, Backend) {
    let b = backend::ws_echo();
    let p = Sidecar::start(&format!(
        "[server]\nlisten = \"127.0.0.1:0\"\naccess_log = \"{access_log}\"\n\n[admin]\nlisten = \"127.0.0.1:0\"\n\n\
         [[proxy]]\npath = \"/\"\nto = \"balancer://app/\"\n\n[balancer.app]\nmembers = [\"http://{}\"]\n",
        b.addr
    ));
    assert_eq!(p.get("/x").status, 200);
    let mut ws = ws_open(p.addr(), "/ws");
    ws_round_trip(&mut ws, "hi");
    drop(ws);
    p.wait_for_stdout_lines(2, Duration::from_secs(5));
    (p, b)
}

#[test]
fn every_metric_is_documented_and_every_documented_metric_exists() {
    let (p, _b) = exercised("combined");
    let metrics = admin_get(p.admin_addr(), "/metrics").body_str();
    let produced: BTreeSet<String> = metrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.split_whitespace().next().map(str::to_string))
        .collect();
    assert!(produced.len() >= 10, "{metrics}");
    let documented = backticked(&read("docs/operations.md"), "sidecar_");
    let undocumented: Vec<_> = produced.difference(&documented).collect();
    let unknown: Vec<_> = documented.difference(&produced).collect();
    assert!(undocumented.is_empty(), "metrics missing from docs/operations.md: {undocumented:?}");
    assert!(unknown.is_empty(), "docs/operations.md names metrics the binary does not produce: {unknown:?}");
}

/// Every key of a JSON value, recursively.
fn json_keys(v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                out.insert(k.clone());
                json_keys(v, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|v| json_keys(v, out)),
        _ => {}
    }
}

#[test]
fn every_access_log_and_status_field_is_documented() {
    let ops = read("docs/operations.md");
    let documented = backticked(&ops, "");
    let (p, _b) = exercised("json");
    let mut keys = BTreeSet::new();
    for line in p.stdout_lines() {
        let v = json::parse(&line).unwrap_or_else(|e| panic!("access line is not JSON ({e}): {line}"));
        json_keys(&v, &mut keys);
    }
    assert!(keys.contains("tunnel_up"), "a tunnel line was logged: {:?}", p.stdout_lines());
    let status = json::parse(&admin_get(p.admin_addr(), "/status").body_str()).expect("/status is JSON");
    json_keys(&status, &mut keys);
    let missing: Vec<_> = keys.iter().filter(|k| !documented.contains(*k)).collect();
    assert!(missing.is_empty(), "JSON fields missing from docs/operations.md: {missing:?}");

    let (p, _b) = exercised("combined");
    let mut fields = BTreeSet::new();
    for line in p.stdout_lines() {
        // `route=… replica=…` and the rest: the words before `=` after the user agent.
        let tail = line.rsplit("\" ").next().unwrap_or("");
        fields.extend(tail.split_whitespace().filter_map(|w| w.split_once('=').map(|(k, _)| format!("{k}="))));
    }
    assert!(fields.contains("up=") && fields.contains("route="), "{:?}", p.stdout_lines());
    let missing: Vec<_> = fields.iter().filter(|f| !ops.contains(&format!("`{f}"))).collect();
    assert!(missing.is_empty(), "combined fields missing from docs/operations.md: {missing:?}");
}
