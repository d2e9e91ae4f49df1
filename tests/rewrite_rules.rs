//! Issue 3 through the real binary: rule flags and back-references end to end, the
//! CVE-2023-25690 injection, `sidecar check` lints and `sidecar import-apache` on the
//! tutorial's two vhosts.

mod support;

use std::path::Path;

use support::backend::{self, Backend};
use support::*;

fn with_rules(b: &Backend, rules: &str) -> Sidecar {
    Sidecar::start(&format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nworkers = 1\n\n{rules}\n[[proxy]]\npath = \"/\"\nto = \"http://{}/\"\n",
        b.addr
    ))
}

fn get(p: &Sidecar, target: &str) -> Response {
    let mut c = p.conn();
    c.send(format!("GET {target} HTTP/1.1\r\nHost: front.example\r\n\r\n")).expect("send");
    c.read_response()
}

#[test]
fn forbidden_flag_answers_403_and_sends_nothing() {
    let b = backend::echo();
    let p = with_rules(&b, "[[rewrite]]\nrule = \"^/admin - [F]\"\n");
    get(&p, "/admin/x").assert_error(403);
    assert!(b.requests().is_empty());
    assert_eq!(get(&p, "/public").status, 200);
}

#[test]
fn redirect_flag_answers_301_with_the_substituted_location() {
    let b = backend::echo();
    let p = with_rules(&b, "[[rewrite]]\nrule = \"^/old/(.*)$ /new/$1 [R=301,L]\"\n");
    let r = get(&p, "/old/page?x=1");
    assert_eq!(r.status, 301);
    assert_eq!(r.header("Location"), Some("/new/page?x=1"));
    assert!(b.requests().is_empty());
}

#[test]
fn back_references_reach_the_backend() {
    let b = backend::echo();
    let rules = format!(
        "[[rewrite]]\ncond = [\"%{{HTTP_HOST}} ^(\\\\w+)\\\\.example$\"]\nrule = \"^/u/(\\\\d+)$ http://{}/%1/users/$1 [P]\"\n",
        b.addr
    );
    let p = with_rules(&b, &rules);
    assert_eq!(get(&p, "/u/42?full=1").status, 200);
    let reqs = b.requests();
    assert_eq!(reqs.iter().map(|r| r.target.as_str()).collect::<Vec<_>>(), ["/front/users/42?full=1"]);
}

#[test]
fn decoded_crlf_in_a_back_reference_never_splits_the_request() {
    // CVE-2023-25690: the back-reference carries decoded CR LF SP into the query.
    let b = backend::echo();
    let rules = format!("[[rewrite]]\nrule = \"^/here/(.*) http://{}/elsewhere?$1 [P]\"\n", b.addr);
    let p = with_rules(&b, &rules);
    let r = get(&p, "/here/1%20HTTP/1.1%0d%0aHost:%20x%0d%0a%0d%0aGET%20/SMUGGLED");
    assert!(r.status == 200 || r.status == 400, "{}", r.head_str());
    let reqs = b.requests();
    assert!(reqs.iter().all(|q| !q.target.contains("SMUGGLED") || q.target.starts_with("/elsewhere?")), "{reqs:?}");
    assert!(reqs.len() <= 1, "one request at most reached the backend: {}", show(&b.received()));
    if let Some(q) = reqs.first() {
        assert!(q.target.contains("%0D%0A") && q.target.contains("%20"), "escaped: {}", q.target);
    }
}

#[test]
fn crlf_in_the_path_of_an_upgrade_never_becomes_a_header() {
    let b = backend::ws_echo();
    let rules = format!(
        "[[rewrite]]\ncond = [\"%{{HTTP:Upgrade}} websocket [NC]\", \"%{{HTTP:Connection}} upgrade [NC]\"]\nrule = \".* ws://{}%{{REQUEST_URI}} [P,L]\"\n",
        b.addr
    );
    let p = with_rules(&b, &rules);
    let mut c = p.conn();
    c.send("GET /a%0d%0aX-Injected:%201 HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
        .expect("send");
    let _ = c.try_read_response(false, DEADLINE);
    for q in b.requests() {
        assert!(q.header("X-Injected").is_none(), "header injected: {}", q.head_str());
        assert!(q.target.contains("%0D%0A"), "{}", q.target);
    }
}

fn run_in(dir: &Path, args: &[&str]) -> Ran {
    run_binary(dir, args)
}

#[test]
fn check_warns_about_tutorial_mistakes_with_lines() {
    let dir = TempDir::new();
    dir.write(
        "sidecar.toml",
        "[server]\nlisten = \"127.0.0.1:0\"\n\n[[rewrite]]\ncond = [\"${HTTP:Upgrade} websocket [NC]\", \"%{HTTP:Connection} upgrade [NC]\"]\nrule = \".* wss:/localhost:3000/ [P,L]\"\n\n[[proxy]]\npath = \"/\"\nto = \"http://127.0.0.1:3000/\"\n",
    );
    let ran = run_in(dir.path(), &["check", "--config", "sidecar.toml"]);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    for want in [
        "sidecar.toml:5: warning: rewrite[0].cond[0]",
        "uses ${…}",
        "sidecar.toml:6: warning: rewrite[0].rule",
        "one slash",
        "does not carry the request path",
    ] {
        assert!(ran.stderr.contains(want), "missing {want:?} in\n{}", ran.stderr);
    }
}

#[test]
fn check_names_line_and_column_of_a_bad_regex() {
    let dir = TempDir::new();
    dir.write(
        "sidecar.toml",
        "[server]\nlisten = \"127.0.0.1:0\"\n\n[[rewrite]]\nrule = \"^/(unclosed /x [L]\"\n\n[[proxy]]\npath = \"/\"\nto = \"http://127.0.0.1:3000/\"\n",
    );
    let ran = run_in(dir.path(), &["check", "--config", "sidecar.toml"]);
    assert_eq!(ran.code, Some(1));
    assert!(ran.stderr.contains("sidecar.toml:5: rewrite[0].rule: column 1:"), "{}", ran.stderr);
}

#[test]
fn import_apache_converts_both_tutorial_vhosts_and_the_output_passes_check() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    for (file, warnings) in [
        (
            "tutorial-plain.conf",
            &[
                ":5: warning:",
                "uses ${…}",
                ":7: warning:",
                "one slash",
                "does not carry the request path",
                ":13: ignored: ErrorLog",
            ][..],
        ),
        ("tutorial-balancer.conf", &["port 443 without SSLCertificateFile"][..]),
    ] {
        let dir = TempDir::new();
        let path = fixtures.join(file);
        let ran = run_in(dir.path(), &["import-apache", path.to_str().expect("utf-8 path")]);
        assert_eq!(ran.code, Some(0), "{file}: {}", ran.stderr);
        for w in warnings {
            assert!(ran.stderr.contains(w), "{file}: missing {w:?} in\n{}", ran.stderr);
        }
        dir.write("imported.toml", &ran.stdout);
        let checked = run_in(dir.path(), &["check", "--config", "imported.toml"]);
        assert_eq!(checked.code, Some(0), "{file}: imported config fails check:\n{}\n{}", ran.stdout, checked.stderr);
        if file == "tutorial-balancer.conf" {
            assert!(
                ran.stdout.contains("[balancer.backend-cluster]") && ran.stdout.matches("https://server0").count() == 3,
                "{}",
                ran.stdout
            );
        }
    }
}
