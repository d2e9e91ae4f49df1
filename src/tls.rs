//! PEM files → rustls configs, at config load so `sidecar check` catches a bad
//! certificate. One crypto provider (ring), passed explicitly: no global
//! state. Backends are always verified (system roots plus `[backend_tls] ca`); there is
//! no switch that turns verification off (docs/security.md, principle 5).

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{self, ClientConfig, RootCertStore, ServerConfig};

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The listener's config: certificate chain and key from PEM, ALPN `http/1.1` only
/// (docs/security.md, T5). rustls offers TLS 1.2 and 1.3 with AEAD suites only (T4).
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, String> {
    let chain = read_certs(cert)?;
    if chain.is_empty() {
        return Err(format!("{}: no CERTIFICATE block in the file", cert.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{}: {}", key.display(), pem_error(&e)))?;
    server_config_from(chain, key)
}

/// `server_config` from a chain and key already in memory (a generated development
/// certificate).
pub fn server_config_from(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<ServerConfig>, String> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| format!("certificate and key do not fit together: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    // Resumption by stateless tickets (encrypted under a key made at start and rotated
    // every 6 hours): a returning client skips the certificate and its signature, and
    // sidecar keeps nothing per session, where the default cache would keep up to 256
    // sessions allocated at whatever moment they were made.
    config.ticketer = rustls::crypto::ring::Ticketer::new().map_err(|e| e.to_string())?;
    Ok(Arc::new(config))
}

/// The config for `https://` and `wss://` backends: the system roots plus `extra_ca`.
pub fn client_config(extra_ca: Option<&Path>) -> Result<Arc<ClientConfig>, String> {
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for cert in native.certs {
        let _ = roots.add(cert);
    }
    client_config_with_roots(roots, extra_ca)
}

/// The backend config over `roots` (plus `extra_ca`) only; checking config text alone
/// uses no roots, since reading the system store costs milliseconds and a disk.
pub fn client_config_with_roots(
    mut roots: RootCertStore,
    extra_ca: Option<&Path>,
) -> Result<Arc<ClientConfig>, String> {
    if let Some(path) = extra_ca {
        let certs = read_certs(path)?;
        if certs.is_empty() {
            return Err(format!("{}: no CERTIFICATE block in the file", path.display()));
        }
        for cert in certs {
            roots.add(cert).map_err(|e| format!("{}: {e}", path.display()))?;
        }
    }
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Every CERTIFICATE block of a PEM file, in order.
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{}: {}", path.display(), pem_error(&e)))
}

fn pem_error(e: &rustls::pki_types::pem::Error) -> String {
    use rustls::pki_types::pem::Error;
    match e {
        Error::Io(io) if io.kind() == std::io::ErrorKind::NotFound => {
            "no such file (paths are relative to the config file)".to_string()
        }
        Error::NoItemsFound => "no PEM block of the expected kind in the file".to_string(),
        other => other.to_string(),
    }
}
