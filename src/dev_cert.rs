//! Development certificates for `[server.tls] self_signed = true` and `sidecar demo
//! --tls`: a self-signed certificate generated at start (rcgen, ring backend: the
//! crypto provider rustls already uses), its PEM form for writing next to the config,
//! and the fingerprints a person compares or gives to a browser.

use std::fmt::Write;

use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, PublicKeyData};
use rustls::pki_types::CertificateDer;

/// The names every development certificate covers, so `https://localhost`,
/// `https://127.0.0.1` and `https://[::1]` all match it.
pub const LOCAL_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// 825 days: the longest validity macOS and iOS accept for a TLS server certificate
/// even when the user trusts it by hand; browsers elsewhere accept it too.
const VALIDITY_DAYS: i64 = 825;

/// A certificate with its key, both DER, and what identifies it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DevCert {
    /// The subject alternative names, in order.
    pub names: Vec<String>,
    pub cert_der: CertificateDer<'static>,
    /// PKCS#8.
    pub key_der: Vec<u8>,
    /// SHA-256 of the certificate, as `AB:CD:...` (what `openssl x509 -fingerprint
    /// -sha256` and browsers' certificate viewers show).
    pub fingerprint: String,
    /// Base64 SHA-256 of the SubjectPublicKeyInfo: the value Chromium's
    /// `--ignore-certificate-errors-spki-list` takes to trust exactly this key.
    pub spki_sha256: String,
}

/// `LOCAL_NAMES` plus `server_name` when it is not one of them.
pub fn names_for(server_name: Option<&str>) -> Vec<String> {
    let mut names: Vec<String> = LOCAL_NAMES.iter().map(|s| s.to_string()).collect();
    if let Some(extra) = server_name.map(str::trim).filter(|s| !s.is_empty()) {
        if !names.iter().any(|n| n.eq_ignore_ascii_case(extra)) {
            names.push(extra.to_string());
        }
    }
    names
}

impl DevCert {
    /// A fresh ECDSA P-256 key and a self-signed certificate for `names` (DNS names or
    /// IP literals), valid from a day ago (clocks drift) for `VALIDITY_DAYS`.
    pub fn generate(names: &[String]) -> Result<DevCert, String> {
        let mut params = CertificateParams::new(names.to_vec()).map_err(|e| format!("{names:?}: {e}"))?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "sidecar development certificate");
        params.distinguished_name = dn;
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::days(1);
        params.not_after = now + time::Duration::days(VALIDITY_DAYS);
        let key = KeyPair::generate().map_err(|e| format!("cannot generate a key: {e}"))?;
        let cert = params.self_signed(&key).map_err(|e| format!("cannot sign the certificate: {e}"))?;
        let spki = key.subject_public_key_info();
        Ok(DevCert {
            names: names.to_vec(),
            fingerprint: fingerprint(cert.der()),
            spki_sha256: spki_pin(&spki),
            cert_der: cert.der().clone(),
            key_der: key.serialize_der(),
        })
    }

    pub fn cert_pem(&self) -> String {
        pem("CERTIFICATE", &self.cert_der)
    }

    pub fn key_pem(&self) -> String {
        pem("PRIVATE KEY", &self.key_der)
    }
}

/// SHA-256 of `der` as colon-separated upper-case hex pairs.
pub fn fingerprint(der: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, der);
    let mut out = String::with_capacity(95);
    for (i, b) in digest.as_ref().iter().enumerate() {
        if i > 0 {
            out.push(':');
        }
        let _ = write!(out, "{b:02X}");
    }
    out
}

/// Base64 SHA-256 of a DER SubjectPublicKeyInfo (an HPKP-style pin).
pub fn spki_pin(spki_der: &[u8]) -> String {
    data_encoding::BASE64.encode(ring::digest::digest(&ring::digest::SHA256, spki_der).as_ref())
}

/// RFC 7468 text encoding: base64 in 64-column lines between BEGIN/END labels.
fn pem(label: &str, der: &[u8]) -> String {
    let b64 = data_encoding::BASE64.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    let _ = writeln!(out, "-----END {label}-----");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::PrivateKeyDer;

    #[test]
    fn names_cover_loopback_and_the_server_name_once() {
        for (server_name, want) in [
            (None, vec!["localhost", "127.0.0.1", "::1"]),
            (Some("dev.example.test"), vec!["localhost", "127.0.0.1", "::1", "dev.example.test"]),
            (Some("LOCALHOST"), vec!["localhost", "127.0.0.1", "::1"]),
            (Some("::1"), vec!["localhost", "127.0.0.1", "::1"]),
            (Some("  "), vec!["localhost", "127.0.0.1", "::1"]),
            (Some("10.0.0.5"), vec!["localhost", "127.0.0.1", "::1", "10.0.0.5"]),
        ] {
            assert_eq!(names_for(server_name), want, "server_name {server_name:?}");
        }
    }

    #[test]
    fn fingerprint_is_sha256_in_colon_hex() {
        // SHA-256("abc"), FIPS 180-2 appendix B.1.
        assert_eq!(
            fingerprint(b"abc"),
            "BA:78:16:BF:8F:01:CF:EA:41:41:40:DE:5D:AE:22:23:B0:03:61:A3:96:17:7A:9C:B4:10:FF:61:F2:00:15:AD"
        );
        assert_eq!(spki_pin(b"abc"), "ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=");
    }

    #[test]
    fn pem_wraps_at_64_columns() {
        let text = pem("CERTIFICATE", &[0u8; 100]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.first(), Some(&"-----BEGIN CERTIFICATE-----"));
        assert_eq!(lines.last(), Some(&"-----END CERTIFICATE-----"));
        assert_eq!(lines[1].len(), 64);
        assert!(lines[1..lines.len() - 1].iter().all(|l| l.len() <= 64));
    }

    #[test]
    fn generated_certificate_round_trips_through_pem_and_loads_into_rustls() {
        let names = names_for(Some("dev.example.test"));
        let dev = DevCert::generate(&names).expect("generate");
        let cert = CertificateDer::from_pem_slice(dev.cert_pem().as_bytes()).expect("cert PEM");
        assert_eq!(cert, dev.cert_der);
        let key = PrivateKeyDer::from_pem_slice(dev.key_pem().as_bytes()).expect("key PEM");
        assert_eq!(key.secret_der(), dev.key_der.as_slice());
        assert_eq!(dev.fingerprint, fingerprint(&dev.cert_der));
        assert_eq!(dev.fingerprint.len(), 32 * 3 - 1);
        crate::tls::server_config_from(vec![dev.cert_der.clone()], key).expect("rustls accepts the pair");
        let other = DevCert::generate(&names).expect("generate again");
        assert_ne!(other.fingerprint, dev.fingerprint, "every generation is a new key and certificate");
    }

    #[test]
    fn a_name_that_cannot_be_a_dns_name_is_an_error_not_a_panic() {
        let err = DevCert::generate(&["bad name\u{e9}".to_string()]).expect_err("non-IA5 name");
        assert!(err.contains("bad name"), "{err}");
    }
}
