//! The command line and config errors: `check` exit codes, diagnostics that name
//! `file:line: key`, bad config or bind → 1 before listening, help for every flag, bad
//! command line → the error and the help, 2.

use crate::support::tls;
use crate::support::*;

/// Runs `sidecar check --config DIR/sidecar.toml` on `config`, with `files` beside it.
fn check(config: &str, files: &[(&str, &str)]) -> Ran {
    let dir = TempDir::new();
    for (name, contents) in files {
        dir.write(name, contents);
    }
    let path = dir.write("sidecar.toml", config);
    run_binary(dir.path(), &["check", "--config", path.to_str().expect("utf-8 path")])
}

/// Asserts exit 1 and a stderr line with `sidecar.toml:LINE:` that contains every one
/// of `needles`.
fn assert_diagnostic(ran: &Ran, line: usize, needles: &[&str]) {
    assert_eq!(ran.code, Some(1), "stderr:\n{}", ran.stderr);
    let at = format!("sidecar.toml:{line}:");
    assert!(
        ran.stderr.lines().any(|l| l.contains(&at) && needles.iter().all(|n| l.contains(n))),
        "want a line with {at:?} and {needles:?}; stderr:\n{}",
        ran.stderr
    );
}

#[test]
fn check_accepts_a_config_using_every_section_and_exits_0() {
    let server = tls::self_signed(&["ws.example.com"]);
    let ca = tls::Ca::new("backend CA");
    let config = r#"[server]
listen = "127.0.0.1:0"
server_name = "ws.example.com"
proxy_timeout = "60s"
connect_timeout = "5s"
header_timeout = "10s"
tunnel_idle_timeout = "1h"
drain_timeout = "30s"
via = false

[server.tls]
cert = "certs/server.crt"
key  = "certs/server.key"

[[rewrite]]
cond = ["%{HTTP:Upgrade} websocket [NC]", "%{HTTP:Connection} upgrade [NC]"]
rule = ".* wss://localhost:3000%{REQUEST_URI} [P,L]"

[[proxy]]
path = "/"
to = "balancer://backend-cluster/"
reverse = true
preserve_host = false

[balancer.backend-cluster]
method = "byrequests"
retry = "10s"
members = [
  "https://server01:3000",
  "https://server02:3000",
  { url = "https://server03:3000", loadfactor = 2 },
  { url = "https://spare:3000", status = "+H" },
]

[backend_tls]
ca = "certs/backend-ca.pem"
"#;
    let config = format!("{config}{LOOPBACK_RESOLVER}");
    let ran = check(
        &config,
        &[
            ("certs/server.crt", &server.cert_pem),
            ("certs/server.key", &server.key_pem),
            ("certs/backend-ca.pem", &ca.pem),
        ],
    );
    assert_eq!(ran.code, Some(0), "stdout:\n{}\nstderr:\n{}", ran.stdout, ran.stderr);
}

#[test]
fn check_rejects_an_unknown_key_naming_file_line_and_key() {
    let ran = check("[server]\nlisten = \"127.0.0.1:0\"\nbogus_key = 1\n", &[]);
    assert_diagnostic(&ran, 3, &["server.bogus_key"]);
}

#[test]
fn check_rejects_an_unknown_balancer_naming_file_line_and_key() {
    let ran = check(
        "[server]\nlisten = \"127.0.0.1:0\"\n\n[[proxy]]\npath = \"/\"\nto = \"balancer://backend-clustr/\"\n\n[balancer.backend-cluster]\nmembers = [\"http://127.0.0.1:1\"]\n",
        &[],
    );
    assert_diagnostic(&ran, 6, &["proxy[0].to", "backend-clustr"]);
}

#[test]
fn check_rejects_a_missing_cert_file_naming_file_line_and_key() {
    let key = tls::self_signed(&["localhost"]);
    let ran = check(
        "[server]\nlisten = \"127.0.0.1:0\"\n\n[server.tls]\ncert = \"certs/missing.crt\"\nkey = \"server.key\"\n",
        &[("server.key", &key.key_pem)],
    );
    assert_diagnostic(&ran, 5, &["server.tls.cert", "missing.crt"]);
}

#[test]
fn check_rejects_a_bad_duration_naming_file_line_and_key() {
    let ran = check("[server]\nlisten = \"127.0.0.1:0\"\nproxy_timeout = \"5 parsecs\"\n", &[]);
    assert_diagnostic(&ran, 3, &["server.proxy_timeout"]);
}

#[test]
fn check_rejects_a_bad_hash_and_a_hash_without_byhash_naming_file_line_and_key() {
    let head = "[server]\nlisten = \"127.0.0.1:0\"\n[[proxy]]\npath = \"/\"\nto = \"balancer://app/\"\n[balancer.app]\nmembers = [\"http://127.0.0.1:1\"]\n";
    let ran = check(&format!("{head}method = \"byhash\"\nhash = \"param:sid\"\n"), &[]);
    assert_diagnostic(&ran, 9, &["balancer.app.hash", "unknown hash source \"param:sid\"", "\"query:NAME\""]);
    let ran = check(&format!("{head}method = \"bybusyness\"\nhash = \"query:sid\"\n"), &[]);
    assert_diagnostic(&ran, 9, &["balancer.app.hash", "only used with method = \"byhash\""]);
    let ran = check(&format!("{head}method = \"byhash\"\n"), &[]);
    assert_diagnostic(&ran, 8, &["balancer.app.hash", "method \"byhash\" needs `hash`"]);
}

#[test]
fn check_on_a_missing_config_file_exits_1() {
    let dir = TempDir::new();
    let ran = run_binary(dir.path(), &["check", "--config", "nope.toml"]);
    assert_eq!(ran.code, Some(1), "{}", ran.stderr);
    assert!(ran.stderr.contains("nope.toml"), "{}", ran.stderr);
}

#[test]
fn run_with_a_bad_config_exits_1_before_listening() {
    let dir = TempDir::new();
    let path = dir.write("sidecar.toml", "[server]\nlisten = \"127.0.0.1:0\"\nbogus_key = 1\n");
    let ran = run_binary(dir.path(), &["--config", path.to_str().expect("utf-8")]);
    assert_eq!(ran.code, Some(1), "{}", ran.stderr);
    assert!(!ran.stderr.contains("listening on"), "{}", ran.stderr);
    assert!(ran.stderr.contains("sidecar.toml:3:"), "{}", ran.stderr);
}

#[test]
fn listener_that_cannot_bind_exits_1_with_the_reason() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr");
    let dir = TempDir::new();
    let path = dir.write(
        "sidecar.toml",
        format!("[server]\nlisten = \"{addr}\"\n\n[[proxy]]\npath = \"/\"\nto = \"http://127.0.0.1:1/\"\n"),
    );
    let ran = run_binary(dir.path(), &["--config", path.to_str().expect("utf-8")]);
    assert_eq!(ran.code, Some(1), "{}", ran.stderr);
    assert!(ran.stderr.contains(&addr.to_string()), "the reason names the address: {}", ran.stderr);
    drop(taken);
}

#[test]
fn bogus_flag_exits_2() {
    let dir = TempDir::new();
    let ran = run_binary(dir.path(), &["--bogus"]);
    assert_eq!(ran.code, Some(2), "stdout:\n{}\nstderr:\n{}", ran.stdout, ran.stderr);
}

/// The option lines of a help text: (flags, purpose) from its `Options:` and
/// `Positional Arguments:` sections.
fn help_entries(help: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut in_options = false;
    for line in help.lines() {
        if line == "Options:" || line == "Positional Arguments:" {
            in_options = true;
            continue;
        }
        if !line.starts_with("  ") {
            in_options = false;
            continue;
        }
        if in_options {
            let body = line.trim_start();
            // Flags and purpose are separated by a run of spaces; a purpose that wraps
            // continues on a line that starts with many spaces.
            if line.starts_with("   ") {
                continue;
            }
            let (flags, purpose) = body.split_once("  ").unwrap_or((body, ""));
            out.push((flags.trim().to_string(), purpose.trim().to_string()));
        }
    }
    out
}

#[test]
fn help_of_sidecar_and_of_each_command_lists_every_flag_with_a_purpose() {
    let dir = TempDir::new();
    for (args, usage, flags) in [
        (&["--help"][..], "Usage: sidecar [-c <config>] [-V]", &["-c, --config", "-V, --version", "--help, help"][..]),
        (
            &["check", "--help"][..],
            "Usage: sidecar check",
            &["-c, --config", "--explain", "-H, --header", "--help, help"][..],
        ),
        (&["demo", "--help"][..], "Usage: sidecar demo", &["--port", "--tls", "--help, help"][..]),
        (&["import-apache", "--help"][..], "Usage: sidecar import-apache", &["file", "--help, help"][..]),
    ] {
        let ran = run_binary(dir.path(), args);
        assert_eq!(ran.code, Some(0), "{args:?}: {}", ran.stderr);
        assert!(ran.stdout.starts_with(usage), "{args:?}: want {usage:?} first:\n{}", ran.stdout);
        let entries = help_entries(&ran.stdout);
        let listed: Vec<&str> = entries.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(listed, flags, "{args:?}: the flags listed:\n{}", ran.stdout);
        for (flag, purpose) in &entries {
            assert!(purpose.len() > 8, "{args:?}: {flag} needs a one-line purpose:\n{}", ran.stdout);
        }
    }
    let top = run_binary(dir.path(), &["--help"]).stdout;
    for command in ["check", "demo", "import-apache"] {
        assert!(top.lines().any(|l| l.trim_start().starts_with(command)), "{command} listed:\n{top}");
    }
    assert!(top.contains("130"), "the exit codes are listed:\n{top}");
}

#[test]
fn an_unknown_command_or_flag_prints_the_error_and_the_help_and_exits_2() {
    let dir = TempDir::new();
    for (args, error, usage) in [
        (&["--bogus"][..], "Unrecognized argument: --bogus", "Usage: sidecar [-c <config>]"),
        (&["serve"][..], "Unrecognized argument: serve", "Usage: sidecar [-c <config>]"),
        (&["demo", "--bogus"][..], "Unrecognized argument: --bogus", "Usage: sidecar demo"),
        (&["check", "--port", "1"][..], "Unrecognized argument: --port", "Usage: sidecar check"),
        (&["import-apache"][..], "Required positional arguments not provided", "Usage: sidecar import-apache"),
    ] {
        let ran = run_binary(dir.path(), args);
        assert_eq!(ran.code, Some(2), "{args:?}\nstdout:\n{}\nstderr:\n{}", ran.stdout, ran.stderr);
        assert!(ran.stdout.is_empty(), "{args:?}: nothing on stdout: {}", ran.stdout);
        assert!(ran.stderr.starts_with(error), "{args:?}: the error first:\n{}", ran.stderr);
        assert!(
            ran.stderr.contains(usage) && ran.stderr.contains("Options:"),
            "{args:?}: then the help:\n{}",
            ran.stderr
        );
    }
}

#[test]
fn version_exits_0_and_prints_the_version() {
    let dir = TempDir::new();
    let ran = run_binary(dir.path(), &["--version"]);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert!(ran.stdout.contains(env!("CARGO_PKG_VERSION")), "{}", ran.stdout);
}

#[test]
fn help_exits_0_and_lists_the_subcommands() {
    let dir = TempDir::new();
    let ran = run_binary(dir.path(), &["--help"]);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert!(ran.stdout.contains("check"), "{}", ran.stdout);
}

// ---- check --explain -----------------------------------------------------------------------

/// A WebSocket rule to a balancer, a redirect rule and a catch-all route; members on
/// ports nothing listens on: `--explain` must send nothing, so none is needed.
const EXPLAINED: &str = r#"[server]
listen = "127.0.0.1:0"

[[rewrite]]
cond = ["%{HTTP:Upgrade} websocket [NC]", "%{HTTP:Connection} upgrade [NC]"]
rule = "^/socket.io/(.*) balancer://app/socket.io/$1 [P,L]"

[[rewrite]]
rule = "^/old/(.*) /new/$1 [R=301,L]"

[[proxy]]
path = "/"
to = "balancer://app/"

[balancer.app]
method = "byrequests"
stickysession = "ROUTEID"
members = [{ url = "http://127.0.0.2:9", route = "one" }, { url = "http://127.0.0.3:9", route = "two", loadfactor = 2 }]
"#;

fn explain(args: &[&str]) -> Ran {
    let dir = TempDir::new();
    let path = dir.write("sidecar.toml", EXPLAINED);
    let mut all = vec!["check", "--config", path.to_str().expect("utf-8 path"), "--explain"];
    all.extend_from_slice(args);
    run_binary(dir.path(), &all)
}

#[test]
fn check_explain_walks_a_socket_io_upgrade_through_rules_route_and_pick() {
    let ran = explain(&[
        "GET /socket.io/?EIO=4&transport=websocket",
        "-H",
        "Upgrade: websocket",
        "-H",
        "Connection: Upgrade",
        "-H",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "-H",
        "Sec-WebSocket-Version: 13",
    ]);
    assert_eq!(ran.code, Some(0), "stderr:\n{}", ran.stderr);
    let want = r#"request GET /socket.io/?EIO=4&transport=websocket HTTP/1.1
  Host: localhost
  Upgrade: websocket
  Connection: Upgrade
  Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==
  Sec-WebSocket-Version: 13
rewrite[0] rule "^/socket.io/(.*) balancer://app/socket.io/$1 [P,L]" on path "/socket.io/": applies
rewrite[0] cond[0] "%{HTTP:Upgrade} websocket [NC]" on "websocket": holds
rewrite[0] cond[1] "%{HTTP:Connection} upgrade [NC]" on "Upgrade": holds
decision: rewrite[0] forwards it to balancer://app/socket.io/?EIO=4&transport=websocket as "/socket.io/?EIO=4&transport=websocket" (WebSocket handshake, tunnelled after a valid 101)
balancer app: method byrequests (smooth weighted round robin)
  member http://127.0.0.2:9 status normal state healthy loadfactor 1 requests 0 tunnels 0
  member http://127.0.0.3:9 status normal state healthy loadfactor 2 requests 0 tunnels 0
pick: http://127.0.0.3:9 (byrequests's choice now)
"#;
    assert_eq!(ran.stdout, want);
}

#[test]
fn check_explain_shows_failed_conditions_redirects_stickiness_and_refusals() {
    for (args, want) in [
        (
            vec!["GET /socket.io/x", "-H", "Cookie: ROUTEID=abc.one"],
            "request GET /socket.io/x HTTP/1.1\n  Host: localhost\n  Cookie: ROUTEID=abc.one\n\
             rewrite[0] rule \"^/socket.io/(.*) balancer://app/socket.io/$1 [P,L]\" on path \"/socket.io/x\": applies\n\
             rewrite[0] cond[0] \"%{HTTP:Upgrade} websocket [NC]\" on \"\": fails\n\
             rewrite[1] rule \"^/old/(.*) /new/$1 [R=301,L]\" on path \"/socket.io/x\": does not apply\n\
             decision: proxy[0] forwards it to balancer://app/ as \"/socket.io/x\" (HTTP request)\n\
             balancer app: method byrequests (smooth weighted round robin)\n\
             \x20 member http://127.0.0.2:9 status normal state healthy loadfactor 1 requests 0 tunnels 0\n\
             \x20 member http://127.0.0.3:9 status normal state healthy loadfactor 2 requests 0 tunnels 0\n\
             pick: http://127.0.0.2:9 (the sticky cookie names route \"one\")\n",
        ),
        (
            vec!["GET /old/a?b=1"],
            "request GET /old/a?b=1 HTTP/1.1\n  Host: localhost\n\
             rewrite[0] rule \"^/socket.io/(.*) balancer://app/socket.io/$1 [P,L]\" on path \"/old/a\": does not apply\n\
             rewrite[1] rule \"^/old/(.*) /new/$1 [R=301,L]\" on path \"/old/a\": applies\n\
             decision: rewrite[1] redirects with 301 to /new/a?b=1\n",
        ),
        (
            vec!["POST /x", "-H", "Content-Length: 1", "-H", "Transfer-Encoding: chunked"],
            "request POST /x HTTP/1.1\n  Host: localhost\n  Content-Length: 1\n  Transfer-Encoding: chunked\n\
             decision: answer 400 (both Content-Length and Transfer-Encoding)\n",
        ),
    ] {
        let ran = explain(&args);
        assert_eq!(ran.code, Some(0), "{args:?}: stderr:\n{}", ran.stderr);
        assert_eq!(ran.stdout, want, "{args:?}");
    }
}

#[test]
fn check_explain_shows_the_byhash_key_its_ranking_and_the_fallback() {
    let config = |status: &str| {
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[[proxy]]\npath = \"/\"\nto = \"balancer://app/\"\n\
             [balancer.app]\nmethod = \"byhash\"\nhash = \"query:sid\"\nhash_fallback = \"byrequests\"\n\
             members = [\"http://127.0.0.2:9\", \"http://127.0.0.3:9\", {{ url = \"http://127.0.0.4:9\", loadfactor = 2{status} }}]\n"
        )
    };
    let head = |target: &str| {
        format!(
            "request GET {target} HTTP/1.1\n  Host: localhost\nno rewrite rules\n\
             decision: proxy[0] forwards it to balancer://app/ as \"{target}\" (HTTP request)\n\
             balancer app: method byhash (weighted rendezvous hash of query:sid; without it byrequests: smooth weighted round robin)\n"
        )
    };
    let members = |third: &str| {
        format!(
            "  member http://127.0.0.2:9 status normal state healthy loadfactor 1 requests 0 tunnels 0\n\
             \x20 member http://127.0.0.3:9 status normal state healthy loadfactor 1 requests 0 tunnels 0\n\
             \x20 member http://127.0.0.4:9 status {third} state healthy loadfactor 2 requests 0 tunnels 0\n"
        )
    };
    let ranks = "byhash: key query:sid = \"abc\" ranks http://127.0.0.4:9, http://127.0.0.2:9, http://127.0.0.3:9\n";
    let with_sid = "/socket.io/?EIO=4&transport=polling&sid=abc";
    let handshake = "/socket.io/?EIO=4&transport=polling";
    for (status, target, want) in [
        ("", with_sid, format!("{}{}{ranks}pick: http://127.0.0.4:9 (the key ranks it first)\n", head(with_sid), members("normal"))),
        (
            "",
            handshake,
            format!(
                "{}{}byhash: key query:sid absent \u{2192} fallback byrequests\npick: http://127.0.0.4:9 (byrequests's choice now)\n",
                head(handshake),
                members("normal")
            ),
        ),
        (
            ", status = \"+D\"",
            with_sid,
            format!(
                "{}{}{ranks}pick: http://127.0.0.2:9 (the key ranks it #2; http://127.0.0.4:9 is disabled)\n",
                head(with_sid),
                members("disabled")
            ),
        ),
    ] {
        let dir = TempDir::new();
        let path = dir.write("sidecar.toml", config(status));
        let request = format!("GET {target}");
        let ran =
            run_binary(dir.path(), &["check", "--config", path.to_str().expect("utf-8 path"), "--explain", &request]);
        assert_eq!(ran.code, Some(0), "{target} {status}: stderr:\n{}", ran.stderr);
        assert_eq!(ran.stdout, want, "{target} {status}");
    }
}

#[test]
fn check_explain_of_a_request_sidecar_would_refuse_to_parse_exits_2() {
    let ran = explain(&["GET"]);
    assert_eq!(ran.code, Some(2), "stdout:\n{}", ran.stdout);
    assert!(ran.stderr.contains("--explain: not a request sidecar would accept"), "{}", ran.stderr);
}

#[test]
fn help_and_check_into_a_closed_pipe_exit_without_a_panic() {
    // `sidecar --help | head -1`: the reader goes away before sidecar writes.
    use std::process::{Command, Stdio};
    let dir = TempDir::new();
    let config = dir.write(
        "sidecar.toml",
        b"[server]\nlisten = \"127.0.0.1:0\"\n\n[[proxy]]\npath = \"/\"\nto = \"http://127.0.0.1:9/\"\n",
    );
    for args in [vec!["--help".to_string()], vec!["check".into(), "--config".into(), config.display().to_string()]] {
        let mut child = Command::new(binary())
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn sidecar");
        drop(child.stdout.take());
        let out = child.wait_with_output().expect("wait");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
    }
}
