//! TLS for the streaming server: the certificate and key from PEM files,
//! served with rustls (ring provider).

use crate::StreamingError;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio_rustls::TlsAcceptor;

/// The server's certificate chain and private key, as PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain (leaf first).
    pub cert_file: PathBuf,
    /// The private key of the leaf certificate (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
}

fn tls_error(path: &Path, what: &str, reason: impl std::fmt::Display) -> StreamingError {
    StreamingError::Tls(format!("{what} {}: {reason}", path.display()))
}

/// Reads the files and builds the acceptor; every error names its file.
pub(crate) fn acceptor(files: &TlsFiles) -> Result<TlsAcceptor, StreamingError> {
    let cert_path = &files.cert_file;
    let certs = CertificateDer::pem_file_iter(cert_path)
        .map_err(|e| tls_error(cert_path, "certificate file", e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_error(cert_path, "certificate file", e))?;
    if certs.is_empty() {
        return Err(tls_error(
            cert_path,
            "certificate file",
            "no PEM certificate in it",
        ));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key_file)
        .map_err(|e| tls_error(&files.key_file, "key file", e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StreamingError::Tls(format!("protocol versions: {e}")))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            StreamingError::Tls(format!(
                "certificate {} with key {}: {e}",
                cert_path.display(),
                files.key_file.display()
            ))
        })?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(dir: &Path) -> TlsFiles {
        TlsFiles {
            cert_file: dir.join("cert.pem"),
            key_file: dir.join("key.pem"),
        }
    }

    /// A self-signed certificate and key made by openssl in `dir`.
    fn self_signed(dir: &Path) {
        let f = files(dir);
        let status = std::process::Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            ])
            .args(["-subj", "/CN=127.0.0.1", "-keyout"])
            .arg(&f.key_file)
            .arg("-out")
            .arg(&f.cert_file)
            .stderr(std::process::Stdio::null())
            .status()
            .expect("openssl runs");
        assert!(status.success(), "openssl req failed");
    }

    #[test]
    fn a_self_signed_pair_loads() {
        let dir = tempfile::tempdir().expect("temp dir");
        self_signed(dir.path());
        acceptor(&files(dir.path())).expect("loads");
    }

    #[test]
    fn a_missing_certificate_file_is_named() {
        let dir = tempfile::tempdir().expect("temp dir");
        let msg = acceptor(&files(dir.path()))
            .err()
            .expect("fails")
            .to_string();
        assert!(msg.contains("cert.pem"), "{msg}");
    }

    #[test]
    fn a_file_without_pem_is_refused_by_name() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("cert.pem"), b"not a certificate\n").expect("write");
        let msg = acceptor(&files(dir.path()))
            .err()
            .expect("fails")
            .to_string();
        assert!(msg.contains("cert.pem"), "{msg}");
    }

    #[test]
    fn a_bad_key_file_is_named() {
        let dir = tempfile::tempdir().expect("temp dir");
        self_signed(dir.path());
        std::fs::write(dir.path().join("key.pem"), b"not a key\n").expect("write");
        let msg = acceptor(&files(dir.path()))
            .err()
            .expect("fails")
            .to_string();
        assert!(msg.contains("key.pem"), "{msg}");
    }
}
