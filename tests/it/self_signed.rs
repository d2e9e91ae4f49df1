//! `[server.tls] self_signed = true`: a development certificate for localhost,
//! 127.0.0.1, ::1 and `server_name`, made at start. Clients that do not trust it fail
//! the handshake; one that trusts the written certificate, or pins the logged
//! fingerprint, is served. Kept in memory, or written to `cert`/`key` (once, owner-only
//! key) and read back on later starts; `check` writes nothing.

use std::path::Path;

use crate::support::tls;
use crate::support::*;
use futures_rustls::pki_types::pem::PemObject;
use futures_rustls::pki_types::CertificateDer;

fn config(backend: &Backend, server: &str, tls: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n{server}\n[server.tls]\nself_signed = true\n{tls}\n[[proxy]]\npath = \"/\"\nto = \"http://{}/\"\n",
        backend.addr
    )
}

/// The fingerprint from the `SHA-256 fingerprint XX:..` line.
fn logged_fingerprint(p: &Sidecar) -> String {
    let logs = p.logs();
    let line = logs.iter().find(|l| l.contains("SHA-256 fingerprint ")).expect("a fingerprint line");
    let at = line.find("SHA-256 fingerprint ").expect("marker") + "SHA-256 fingerprint ".len();
    line[at..].split_whitespace().next().expect("fingerprint").to_string()
}

/// `GET /` over TLS as `name` with `cfg`; the status.
fn get_status(p: &Sidecar, name: &str, cfg: std::sync::Arc<futures_rustls::rustls::ClientConfig>) -> u16 {
    let (mut c, _) = tls::tls_conn(p.addr(), name, cfg);
    let host = if name.contains(':') { format!("[{name}]") } else { name.to_string() };
    c.send(format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n")).expect("send");
    c.read_response().status
}

/// The handshake error of a client using `cfg` as `name`.
fn handshake_error(p: &Sidecar, name: &str, cfg: std::sync::Arc<futures_rustls::rustls::ClientConfig>) -> String {
    match block_within(DEADLINE, "TLS handshake", tls::connect(p.addr(), name, cfg)) {
        Ok(_) => panic!("the handshake as {name:?} should have failed"),
        Err(e) => e.to_string(),
    }
}

fn read_cert(path: &Path) -> CertificateDer<'static> {
    CertificateDer::from_pem_file(path).expect("a PEM certificate")
}

#[test]
fn in_memory_certificate_is_refused_by_strangers_and_served_to_a_client_pinning_the_logged_fingerprint() {
    let b = backend::echo();
    let p = Sidecar::start(&config(&b, "", ""));
    assert!(p.is_https(), "{}", p.logs().join("\n"));
    let logs = p.logs().join("\n");
    assert!(
        logs.contains("self-signed certificate generated for localhost, 127.0.0.1, ::1 (kept in memory)"),
        "{logs}"
    );
    assert!(logs.contains("for development only"), "{logs}");
    let dir = p.config_path().parent().expect("the config's directory").to_path_buf();
    assert_eq!(std::fs::read_dir(dir).expect("dir").count(), 1, "only sidecar.toml: nothing written");

    let stranger = tls::client_config(&tls::self_signed(&["localhost"]).cert_der, &[b"http/1.1"]);
    let err = handshake_error(&p, "localhost", stranger);
    assert!(err.contains("invalid peer certificate") && err.contains("UnknownIssuer"), "{err}");
    assert!(b.requests().is_empty(), "nothing reached the backend");

    let pinned = tls::pinned_client_config(&logged_fingerprint(&p), &[b"http/1.1"]);
    assert_eq!(get_status(&p, "localhost", pinned), 200);
    let wrong = tls::pinned_client_config(&tls::sha256_fingerprint(b"another certificate"), &[b"http/1.1"]);
    assert!(handshake_error(&p, "localhost", wrong).contains("invalid peer certificate"));
}

#[test]
fn certificate_names_cover_loopback_and_the_server_name_only() {
    let b = backend::echo();
    let keep = TempDir::new();
    let (cert, key) = (keep.path().join("dev.crt"), keep.path().join("dev.key"));
    let tls_keys = format!("cert = {:?}\nkey = {:?}\n", cert.display().to_string(), key.display().to_string());
    let p = Sidecar::start(&config(&b, "server_name = \"dev.example.test\"", &tls_keys));
    let anchor = read_cert(&cert);
    for name in ["localhost", "127.0.0.1", "::1", "dev.example.test"] {
        assert_eq!(get_status(&p, name, tls::client_config(&anchor, &[b"http/1.1"])), 200, "as {name}");
    }
    let err = handshake_error(&p, "other.example.test", tls::client_config(&anchor, &[b"http/1.1"]));
    assert!(err.contains("certificate not valid for name \"other.example.test\""), "{err}");
}

#[test]
fn certificate_written_at_first_start_is_trusted_by_clients_given_it_and_reused_by_the_next_start() {
    use std::os::unix::fs::PermissionsExt;
    let b = backend::echo();
    let keep = TempDir::new();
    let (cert, key) = (keep.path().join("dev.crt"), keep.path().join("dev.key"));
    let tls_keys = format!("cert = {:?}\nkey = {:?}\n", cert.display().to_string(), key.display().to_string());
    let first = Sidecar::start(&config(&b, "", &tls_keys));
    assert!(first.logs().join("\n").contains("written to"), "{}", first.logs().join("\n"));
    let mode = std::fs::metadata(&key).expect("key written").permissions().mode();
    assert_eq!(mode & 0o077, 0, "the key is not readable by group or others: {mode:o}");
    let anchor = read_cert(&cert);
    let fingerprint = logged_fingerprint(&first);
    assert_eq!(tls::sha256_fingerprint(&anchor), fingerprint, "the logged fingerprint is the written certificate's");
    assert_eq!(get_status(&first, "localhost", tls::client_config(&anchor, &[b"http/1.1"])), 200);
    drop(first);

    let second = Sidecar::start(&config(&b, "", &tls_keys));
    assert!(second.logs().join("\n").contains("read from"), "{}", second.logs().join("\n"));
    assert_eq!(logged_fingerprint(&second), fingerprint, "the same certificate after a restart");
    assert_eq!(get_status(&second, "127.0.0.1", tls::client_config(&anchor, &[b"http/1.1"])), 200);
}

#[test]
fn check_reports_the_development_certificate_and_writes_nothing() {
    let dir = TempDir::new();
    let path = dir.write(
        "sidecar.toml",
        "[server]\nlisten = \"127.0.0.1:0\"\n[server.tls]\nself_signed = true\ncert = \"dev.crt\"\nkey = \"dev.key\"\n[[proxy]]\npath = \"/\"\nto = \"http://127.0.0.1:1/\"\n",
    );
    let ran = run_binary(dir.path(), &["check", "--config", path.to_str().expect("utf-8")]);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert!(ran.stdout.contains("listen  https://127.0.0.1:0"), "{}", ran.stdout);
    assert!(ran.stdout.contains("self-signed development certificate: made at start for localhost"), "{}", ran.stdout);
    assert!(!dir.path().join("dev.crt").exists() && !dir.path().join("dev.key").exists(), "check wrote a file");
}

#[test]
fn sighup_keeps_the_in_memory_certificate() {
    let b = backend::echo();
    let p = Sidecar::start(&config(&b, "", ""));
    let fingerprint = logged_fingerprint(&p);
    p.signal("HUP");
    assert!(p.wait_for_log("SIGHUP: reloaded", DEADLINE), "{}", p.logs().join("\n"));
    let pinned = tls::pinned_client_config(&fingerprint, &[b"http/1.1"]);
    assert_eq!(get_status(&p, "localhost", pinned), 200, "a client that accepted it once still connects");
}

#[test]
fn a_config_that_cannot_write_the_certificate_exits_1_naming_the_key() {
    let dir = TempDir::new();
    std::fs::create_dir(dir.path().join("ro")).expect("mkdir");
    // A directory where the key file should go: the write fails whoever runs the test.
    std::fs::create_dir(dir.path().join("ro/dev.key")).expect("mkdir");
    let path = dir.write(
        "sidecar.toml",
        "[server]\nlisten = \"127.0.0.1:0\"\n[server.tls]\nself_signed = true\ncert = \"ro/dev.crt\"\nkey = \"ro/dev.key\"\n[[proxy]]\npath = \"/\"\nto = \"http://127.0.0.1:1/\"\n",
    );
    let ran = run_binary(dir.path(), &["--config", path.to_str().expect("utf-8")]);
    assert_eq!(ran.code, Some(1), "{}", ran.stderr);
    assert!(ran.stderr.contains("sidecar.toml:6: server.tls.key: cannot write "), "{}", ran.stderr);
    assert!(!ran.stderr.contains("listening on"), "{}", ran.stderr);
}
