//! kmsd's certificates as rustls settings, for both listeners, and the switch that
//! lets a reload replace them while serving.
//!
//! Every reading checks what a start checks: the files parse, the key matches the
//! certificate (rustls's `with_single_cert`), the client CA holds a usable
//! certificate. So a reload refuses exactly what a start refuses, and the old
//! settings stay ([`crate::reload`]).

use std::path::Path;
use std::sync::{Arc, PoisonError, RwLock};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls;

use crate::config::TlsFiles;

/// A certificate, key or client CA that cannot be served; the message names the file.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TlsFileError(String);

/// TLS settings that a reload can replace: each new handshake takes the current
/// ones; connections already made keep theirs.
#[derive(Debug)]
pub struct TlsSwitch {
    current: RwLock<Arc<rustls::ServerConfig>>,
    /// The certificate's notAfter, Unix seconds.
    not_after: std::sync::atomic::AtomicI64,
}

impl TlsSwitch {
    /// A switch serving `settings` first.
    pub fn new(settings: Served) -> Self {
        Self {
            current: RwLock::new(settings.config),
            not_after: settings.not_after.into(),
        }
    }

    /// The settings for a handshake starting now.
    pub fn current(&self) -> Arc<rustls::ServerConfig> {
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Serves `settings` to every handshake from now on.
    pub fn replace(&self, settings: Served) {
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = settings.config;
        self.not_after
            .store(settings.not_after, std::sync::atomic::Ordering::Relaxed);
    }

    /// The served certificate's notAfter, in Unix seconds.
    pub fn not_after(&self) -> i64 {
        self.not_after.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Settings read from files, checked, with the certificate's expiry.
#[derive(Debug)]
pub struct Served {
    /// What rustls serves.
    pub config: Arc<rustls::ServerConfig>,
    /// The leaf certificate's notAfter, Unix seconds.
    pub not_after: i64,
}

/// The gRPC listener's settings: `files`' certificate and key, HTTP/2 only, and with
/// a client CA, a client certificate that chains to it required (mTLS).
///
/// # Errors
///
/// [`TlsFileError`] when a file cannot be read or parsed, the key does not match the
/// certificate, or the client CA holds no usable certificate.
pub fn grpc_settings(files: &TlsFiles) -> Result<Served, TlsFileError> {
    let (certs, key) = read_pair(&files.cert, &files.key)?;
    let not_after = not_after(&certs[0], &files.cert)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|err| TlsFileError(format!("gRPC TLS: {err}")))?;
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let mut roots = rustls::RootCertStore::empty();
            let (added, _) = roots.add_parsable_certificates(read_certs(path)?);
            if added == 0 {
                return Err(TlsFileError(format!(
                    "no usable CA certificate in the client CA {}",
                    path.display()
                )));
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .map_err(|err| TlsFileError(format!("the client CA {}: {err}", path.display())))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|err| mismatch(&files.cert, &files.key, &err))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Served {
        config: Arc::new(config),
        not_after,
    })
}

/// The gateway's settings: the certificate and key of `cert` and `key`, HTTP/1.1, no
/// client certificate (the SDKs sign each request instead).
///
/// # Errors
///
/// [`TlsFileError`] when a file cannot be read or parsed, or the key does not match.
pub fn gateway_settings(cert: &Path, key: &Path) -> Result<Served, TlsFileError> {
    let (certs, private) = read_pair(cert, key)?;
    let not_after = not_after(&certs[0], cert)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|err| TlsFileError(format!("HTTPS gateway TLS: {err}")))?
        .with_no_client_auth()
        .with_single_cert(certs, private)
        .map_err(|err| mismatch(cert, key, &err))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Served {
        config: Arc::new(config),
        not_after,
    })
}

fn mismatch(cert: &Path, key: &Path, err: &rustls::Error) -> TlsFileError {
    TlsFileError(format!(
        "the private key {} cannot serve the certificate {}: {err}",
        key.display(),
        cert.display()
    ))
}

type Pair = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsFileError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|err| {
            TlsFileError(format!(
                "cannot read the certificate {}: {err}",
                path.display()
            ))
        })?;
    if certs.is_empty() {
        return Err(TlsFileError(format!(
            "no certificate in {}",
            path.display()
        )));
    }
    Ok(certs)
}

fn read_pair(cert: &Path, key: &Path) -> Result<Pair, TlsFileError> {
    let certs = read_certs(cert)?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|err| {
        TlsFileError(format!(
            "cannot read the private key {}: {err}",
            key.display()
        ))
    })?;
    Ok((certs, key))
}

/// The notAfter of `cert` (read from `path`), Unix seconds.
fn not_after(cert: &CertificateDer<'_>, path: &Path) -> Result<i64, TlsFileError> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert).map_err(|err| {
        TlsFileError(format!(
            "cannot parse the certificate {}: {err}",
            path.display()
        ))
    })?;
    Ok(parsed.validity().not_after.timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(dir: &Path, name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let cert_path = dir.join(format!("{name}.crt"));
        let key_path = dir.join(format!("{name}.key"));
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        (cert_path, key_path)
    }

    #[test]
    fn a_key_of_another_certificate_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = pair(dir.path(), "a");
        let (_, other_key) = pair(dir.path(), "b");
        let served = gateway_settings(&cert, &key).unwrap();
        assert!(served.not_after > 0);
        let err = gateway_settings(&cert, &other_key).unwrap_err().to_string();
        assert!(err.contains("cannot serve the certificate"), "{err}");
        let files = TlsFiles {
            cert,
            key: other_key,
            client_ca: None,
        };
        assert!(grpc_settings(&files).is_err());
    }

    #[test]
    fn a_client_ca_without_a_certificate_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = pair(dir.path(), "a");
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "not a certificate").unwrap();
        let files = TlsFiles {
            cert,
            key,
            client_ca: Some(ca),
        };
        let err = grpc_settings(&files).unwrap_err().to_string();
        assert!(err.contains("ca.pem"), "{err}");
    }
}
