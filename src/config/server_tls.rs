//! `[server.tls]` → the listeners' rustls config: a certificate and key from PEM
//! files, or with `self_signed = true` a development certificate made at load. That
//! one is kept in memory, or, when `cert`/`key` name files that do not exist yet,
//! written there when sidecar starts (not by `sidecar check`) and read back from then
//! on, so a browser exception or a `curl --cacert` keeps working across restarts.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;
use toml::Spanned;

use super::diag::{Diagnostic, Lines};
use super::file::ServerTls;
use super::resolve::Disk;
use super::Config;
use crate::dev_cert::{self, DevCert};

/// What `self_signed = true` produced, for the start-up log, `check` and reloads.
#[derive(Clone, Debug)]
pub struct SelfSigned {
    /// SHA-256 of the certificate, `AB:CD:...`.
    pub fingerprint: String,
    /// Base64 SHA-256 of its public key (Chromium's `--ignore-certificate-errors-spki-list`);
    /// `None` when a key read from a file is not one rcgen can parse.
    pub spki_sha256: Option<String>,
    pub source: Source,
}

#[derive(Clone, Debug)]
pub enum Source {
    /// Made at this load; `files`: where to write it at start (`None`: memory only).
    Generated { cert: DevCert, files: Option<Files> },
    /// Read from the files an earlier start wrote.
    Read(Files),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Files {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The lines of `cert` and `key` in sidecar.toml, for a write error.
    pub lines: (usize, usize),
}

/// The listeners' TLS config and, in development mode, what it is; or the problems.
pub fn resolve(
    tls: &Spanned<ServerTls>,
    base: &Path,
    server_name: Option<&str>,
    lines: &Lines<'_>,
    disk: Disk,
) -> Result<(Arc<ServerConfig>, Option<SelfSigned>), Vec<Diagnostic>> {
    let t = tls.get_ref();
    let self_signed = t.self_signed.as_ref().is_some_and(|s| *s.get_ref());
    let at = |v: &Spanned<String>| v.span().start;
    match (&t.cert, &t.key) {
        (None, None) if self_signed => {
            generate(t, server_name, None, lines).map(|(config, s)| (config, Some(s))).map_err(|d| vec![d])
        }
        (None, None) => Err(vec![lines.at(
            tls.span().start,
            "server.tls",
            "needs cert and key (PEM files), or self_signed = true for a development certificate",
        )]),
        (Some(_), None) | (None, Some(_)) => {
            let (missing, given) = if t.key.is_none() { ("key", "cert") } else { ("cert", "key") };
            let why = if self_signed {
                " (with self_signed = true: both, to keep the certificate in files, or neither, to keep it in memory)"
            } else {
                ""
            };
            Err(vec![lines.at(
                tls.span().start,
                format!("server.tls.{missing}"),
                format!("required with server.tls.{given}{why}"),
            )])
        }
        (Some(cert), Some(key)) => {
            let (cert_path, key_path) = (base.join(cert.get_ref()), base.join(key.get_ref()));
            let readable = disk == Disk::Read;
            let (has_cert, has_key) = (readable && cert_path.is_file(), readable && key_path.is_file());
            if self_signed && !has_cert && !has_key {
                let mut errors = Vec::new();
                for (v, p, name) in [(cert, &cert_path, "cert"), (key, &key_path, "key")] {
                    if let Some(dir) = p.parent().filter(|d| !(d.as_os_str().is_empty() || (readable && d.is_dir()))) {
                        errors.push(lines.at(
                            at(v),
                            format!("server.tls.{name}"),
                            format!(
                                "{}: directory {} does not exist (paths are relative to the config file)",
                                v.get_ref(),
                                dir.display()
                            ),
                        ));
                    }
                }
                if !errors.is_empty() {
                    return Err(errors);
                }
                let files =
                    Files { cert: cert_path, key: key_path, lines: (lines.line_of(at(cert)), lines.line_of(at(key))) };
                return generate(t, server_name, Some(files), lines)
                    .map(|(config, s)| (config, Some(s)))
                    .map_err(|d| vec![d]);
            }
            let mut errors = Vec::new();
            for (v, exists, name, other) in [(cert, has_cert, "cert", key), (key, has_key, "key", cert)] {
                if exists {
                    continue;
                }
                let message = if self_signed {
                    format!(
                        "{}: no such file, but {} exists (remove it to have a new pair generated, or supply this one)",
                        v.get_ref(),
                        other.get_ref()
                    )
                } else {
                    format!("{}: no such file (paths are relative to the config file)", v.get_ref())
                };
                errors.push(lines.at(at(v), format!("server.tls.{name}"), message));
            }
            if !errors.is_empty() {
                return Err(errors);
            }
            let config = crate::tls::server_config(&cert_path, &key_path)
                .map_err(|e| vec![lines.at(tls.span().start, "server.tls", e)])?;
            let at_lines = (lines.line_of(at(cert)), lines.line_of(at(key)));
            let read = self_signed.then(|| read_back(&cert_path, &key_path, at_lines));
            Ok((config, read))
        }
    }
}

fn generate(
    t: &ServerTls,
    server_name: Option<&str>,
    files: Option<Files>,
    lines: &Lines<'_>,
) -> Result<(Arc<ServerConfig>, SelfSigned), Diagnostic> {
    let at = t.self_signed.as_ref().map_or(0, |s| s.span().start);
    let fail = |e: String| lines.at(at, "server.tls.self_signed", format!("cannot make a certificate: {e}"));
    let cert = DevCert::generate(&dev_cert::names_for(server_name)).map_err(fail)?;
    let key = PrivateKeyDer::try_from(cert.key_der.clone()).map_err(|e| fail(e.to_string()))?;
    let config = crate::tls::server_config_from(vec![cert.cert_der.clone()], key).map_err(fail)?;
    let info = SelfSigned {
        fingerprint: cert.fingerprint.clone(),
        spki_sha256: Some(cert.spki_sha256.clone()),
        source: Source::Generated { cert, files },
    };
    Ok((config, info))
}

/// The identity of a development certificate an earlier start wrote (the files were
/// already checked and loaded by `tls::server_config`).
fn read_back(cert: &Path, key: &Path, lines: (usize, usize)) -> SelfSigned {
    let der = CertificateDer::pem_file_iter(cert).ok().and_then(|mut it| it.next()).and_then(Result::ok);
    let spki = PrivateKeyDer::from_pem_file(key)
        .ok()
        .and_then(|k| rcgen::KeyPair::try_from(k.secret_der()).ok())
        .map(|k| dev_cert::spki_pin(&rcgen::PublicKeyData::subject_public_key_info(&k)));
    SelfSigned {
        fingerprint: der.map_or_else(String::new, |d| dev_cert::fingerprint(&d)),
        spki_sha256: spki,
        source: Source::Read(Files { cert: cert.to_path_buf(), key: key.to_path_buf(), lines }),
    }
}

impl SelfSigned {
    /// The start-up lines: what the certificate is, and that it is for development.
    pub fn log(&self) {
        let what = match &self.source {
            Source::Generated { cert, files: None } => {
                format!("generated for {} (kept in memory)", cert.names.join(", "))
            }
            Source::Generated { cert, files: Some(f) } => format!(
                "generated for {}, written to {} and {}",
                cert.names.join(", "),
                f.cert.display(),
                f.key.display()
            ),
            Source::Read(f) => format!("read from {} and {}", f.cert.display(), f.key.display()),
        };
        log::info!("self-signed certificate {what}; SHA-256 fingerprint {}", self.fingerprint);
        if let Some(pin) = &self.spki_sha256 {
            log::info!("self-signed certificate: Chromium trusts it with --ignore-certificate-errors-spki-list={pin}");
        }
        let trust = match &self.source {
            Source::Generated { files: None, .. } => {
                "curl -k; give cert and key paths to keep it in files for curl --cacert".to_string()
            }
            Source::Generated { files: Some(f), .. } | Source::Read(f) => {
                format!("curl -k, or curl --cacert {}", f.cert.display())
            }
        };
        log::warn!(
            "self-signed certificate: for development only; clients reject it unless told to trust it ({trust})"
        );
    }
}

impl Config {
    /// Writes a development certificate to the files `[server.tls]` names, when this
    /// load generated one for them (key first, owner-only, never over an existing file).
    pub fn write_self_signed(&self) -> Result<(), Diagnostic> {
        let Some(SelfSigned { source: Source::Generated { cert, files: Some(f) }, .. }) = &self.self_signed else {
            return Ok(());
        };
        let fail = |path: &Path, key: &str, e: std::io::Error| Diagnostic {
            file: self.path.clone(),
            line: if key.ends_with("key") { f.lines.1 } else { f.lines.0 },
            key: key.to_string(),
            message: format!("cannot write {}: {e}", path.display()),
        };
        write_new(&f.key, cert.key_pem().as_bytes(), 0o600).map_err(|e| fail(&f.key, "server.tls.key", e))?;
        write_new(&f.cert, cert.cert_pem().as_bytes(), 0o644).map_err(|e| {
            // A key without its certificate would stop the next start; leave neither.
            let _ = std::fs::remove_file(&f.key);
            fail(&f.cert, "server.tls.cert", e)
        })
    }

    /// After a reload: an in-memory development certificate for the same names is kept,
    /// so a browser that accepted it does not see a new one on every SIGHUP.
    pub(super) fn adopt_self_signed(&mut self, old: &Config) {
        let same = match (&self.self_signed, &old.self_signed) {
            (
                Some(SelfSigned { source: Source::Generated { cert: new, files: None }, .. }),
                Some(SelfSigned { source: Source::Generated { cert: prev, files: None }, .. }),
            ) => new.names == prev.names,
            _ => false,
        };
        if same {
            self.server_tls.clone_from(&old.server_tls);
            self.self_signed.clone_from(&old.self_signed);
        }
    }
}

fn write_new(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(mode).open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scratch directory for one test, removed on drop.
    struct Dir(PathBuf);

    impl Dir {
        fn new(name: &str) -> Dir {
            let p = std::env::temp_dir().join(format!("sidecar-unit-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).expect("temp dir");
            Dir(p)
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    const ROUTE: &str = "\n[[proxy]]\npath = \"/\"\nto = \"http://127.0.0.1:3000/\"\n";

    fn load(dir: &Path, server: &str, tls: &str) -> Result<Config, Vec<String>> {
        let source = format!("[server]\nlisten = \"127.0.0.1:0\"\n{server}\n[server.tls]\n{tls}{ROUTE}");
        super::super::parse(&dir.join("sidecar.toml"), &source)
            .map_err(|e| e.iter().map(|d| d.to_string().replace(&format!("{}/", dir.display()), "")).collect())
    }

    #[test]
    fn bad_tls_tables_are_diagnosed_with_file_line_and_key() {
        let dir = Dir::new("tls-errors");
        let pair = DevCert::generate(&["localhost".to_string()]).expect("generate");
        std::fs::write(dir.0.join("dev.crt"), pair.cert_pem()).expect("write");
        for (server, tls, want) in [
            ("", "", "sidecar.toml:4: server.tls: needs cert and key (PEM files), or self_signed = true for a development certificate"),
            ("", "self_signed = false\n", "sidecar.toml:4: server.tls: needs cert and key (PEM files), or self_signed = true for a development certificate"),
            ("", "cert = \"dev.crt\"\n", "sidecar.toml:4: server.tls.key: required with server.tls.cert"),
            (
                "",
                "self_signed = true\nkey = \"dev.key\"\n",
                "sidecar.toml:4: server.tls.cert: required with server.tls.key (with self_signed = true: both, to keep the certificate in files, or neither, to keep it in memory)",
            ),
            (
                "",
                "self_signed = true\ncert = \"dev.crt\"\nkey = \"dev.key\"\n",
                "sidecar.toml:7: server.tls.key: dev.key: no such file, but dev.crt exists (remove it to have a new pair generated, or supply this one)",
            ),
            (
                "",
                "self_signed = true\ncert = \"certs/dev.crt\"\nkey = \"dev.key\"\n",
                "sidecar.toml:6: server.tls.cert: certs/dev.crt: directory certs does not exist (paths are relative to the config file)",
            ),
            ("", "cert = \"nope.crt\"\nkey = \"dev.crt\"\n", "sidecar.toml:5: server.tls.cert: nope.crt: no such file (paths are relative to the config file)"),
            ("", "self_signed = \"yes\"\n", "sidecar.toml:5: server.tls.self_signed: invalid type: string \"yes\", expected a boolean"),
            (
                "server_name = \"caf\u{e9}.test\"\n",
                "self_signed = true\n",
                "sidecar.toml:6: server.tls.self_signed: cannot make a certificate: ",
            ),
        ] {
            let got = load(&dir.0, server, tls).err().unwrap_or_default();
            assert!(got.iter().any(|e| e.starts_with(want)), "[server.tls] {tls:?}\nwant {want:?}\ngot  {got:?}");
        }
    }

    #[test]
    fn self_signed_in_memory_covers_loopback_and_the_server_name() {
        let dir = Dir::new("tls-memory");
        let c = load(&dir.0, "server_name = \"dev.example.test\"\n", "self_signed = true\n").expect("loads");
        assert!(c.server_tls.is_some());
        let s = c.self_signed.as_ref().expect("self-signed info");
        let Source::Generated { cert, files: None } = &s.source else { panic!("in memory: {:?}", s.source) };
        assert_eq!(cert.names, ["localhost", "127.0.0.1", "::1", "dev.example.test"]);
        assert_eq!(s.fingerprint, dev_cert::fingerprint(&cert.cert_der));
        c.write_self_signed().expect("nothing to write");
        assert_eq!(std::fs::read_dir(&dir.0).expect("dir").count(), 0, "memory only: no file appears");
    }

    #[test]
    fn self_signed_with_paths_is_written_at_start_and_read_back_afterwards() {
        use std::os::unix::fs::PermissionsExt;
        let dir = Dir::new("tls-files");
        let tls = "self_signed = true\ncert = \"dev.crt\"\nkey = \"dev.key\"\n";
        let first = load(&dir.0, "", tls).expect("loads");
        assert!(!dir.0.join("dev.crt").exists(), "loading (and `sidecar check`) writes nothing");
        first.write_self_signed().expect("write");
        let mode = std::fs::metadata(dir.0.join("dev.key")).expect("key file").permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the key is readable by its owner only");
        let again = load(&dir.0, "", tls).expect("loads again");
        let (a, b) = (first.self_signed.as_ref().expect("first"), again.self_signed.as_ref().expect("second"));
        assert!(matches!(b.source, Source::Read(_)), "{:?}", b.source);
        assert_eq!(a.fingerprint, b.fingerprint, "the written certificate is the one used from then on");
        assert_eq!(a.spki_sha256, b.spki_sha256);
        again.write_self_signed().expect("nothing to write when read back");
    }

    #[test]
    fn a_reload_keeps_the_in_memory_certificate_for_the_same_names() {
        let dir = Dir::new("tls-reload");
        let old = load(&dir.0, "", "self_signed = true\n").expect("loads");
        let mut same = load(&dir.0, "", "self_signed = true\n").expect("loads");
        let mut renamed = load(&dir.0, "server_name = \"other.test\"\n", "self_signed = true\n").expect("loads");
        let fp = |c: &Config| c.self_signed.as_ref().map(|s| s.fingerprint.clone());
        assert_ne!(fp(&same), fp(&old));
        same.adopt_state(&old);
        assert_eq!(fp(&same), fp(&old));
        renamed.adopt_state(&old);
        assert_ne!(fp(&renamed), fp(&old), "new names need a new certificate");
    }
}
