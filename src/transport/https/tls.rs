//! The gateway's TLS: its own certificate (`--https-tls-cert`/`--https-tls-key`), else
//! gRPC's (`--tls-cert`/`--tls-key`), or on a loopback address without either, a
//! development certificate kept in the data directory.
//!
//! The gateway asks for no client certificate, even with `--tls-client-ca`: the SDKs
//! authenticate each request with a client key signature instead.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::kms::StartError;
use crate::transport::tls::{Served, gateway_settings};

/// The development certificate's file in the data directory: what the SDKs' CA
/// setting points at.
pub const DEV_CERT_FILE: &str = "https-dev-cert.pem";

/// The development certificate's private key in the data directory.
pub const DEV_KEY_FILE: &str = "https-dev-key.pem";

/// The TLS settings of a gateway bound to `addr`: the certificate of
/// [`Config::gateway_tls`] when configured; else, on a loopback address only, the
/// development certificate (made on first use, with a loud warning that names its
/// path).
///
/// # Errors
///
/// [`StartError::Invalid`] on a non-loopback address without a certificate, or when a
/// certificate or key cannot be read or made.
pub fn server_config(config: &Config, addr: SocketAddr) -> Result<Served, StartError> {
    let served = match config.gateway_tls() {
        Some(files) => gateway_settings(&files.cert, &files.key),
        None if addr.ip().is_loopback() => {
            let (cert, key) = development_pair(&config.data_dir)?;
            gateway_settings(&cert, &key)
        }
        None => {
            return Err(StartError::Invalid(format!(
                "refusing to serve the HTTPS gateway on {addr}, which is not a loopback \
                 address, without a certificate: pass --https-tls-cert and --https-tls-key \
                 (a development certificate is made only for 127.0.0.1 or ::1)"
            )));
        }
    };
    served.map_err(|err| StartError::Invalid(format!("HTTPS gateway: {err}")))
}

/// The development certificate of `data_dir`, made if missing: self-signed, ECDSA
/// P-256, for `localhost`, `127.0.0.1` and `::1`.
fn development_pair(data_dir: &Path) -> Result<(PathBuf, PathBuf), StartError> {
    let cert_path = data_dir.join(DEV_CERT_FILE);
    let key_path = data_dir.join(DEV_KEY_FILE);
    if !cert_path.exists() || !key_path.exists() {
        make_development_pair(&cert_path, &key_path)?;
    }
    tracing::warn!(
        certificate = %cert_path.display(),
        "HTTPS gateway: serving a DEVELOPMENT certificate (no --https-tls-cert or --tls-cert), made in the data \
         directory; point the SDK's CA setting (ca_file_path) at this file. For \
         development only: serve a real certificate with --https-tls-cert and --https-tls-key"
    );
    Ok((cert_path, key_path))
}

fn make_development_pair(cert_path: &Path, key_path: &Path) -> Result<(), StartError> {
    let invalid = |err: &dyn std::fmt::Display| {
        StartError::Invalid(format!("cannot make the development certificate: {err}"))
    };
    let mut params =
        rcgen::CertificateParams::new(vec!["localhost".to_owned()]).map_err(|e| invalid(&e))?;
    params
        .subject_alt_names
        .push(rcgen::SanType::IpAddress([127, 0, 0, 1].into()));
    params.subject_alt_names.push(rcgen::SanType::IpAddress(
        std::net::Ipv6Addr::LOCALHOST.into(),
    ));
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "kmsd development certificate");
    let key = rcgen::KeyPair::generate().map_err(|e| invalid(&e))?;
    let cert = params.self_signed(&key).map_err(|e| invalid(&e))?;
    let key_pem = zeroize::Zeroizing::new(key.serialize_pem());
    write_private(key_path, key_pem.as_bytes()).map_err(|e| invalid(&e))?;
    std::fs::write(cert_path, cert.pem()).map_err(|e| invalid(&e))?;
    Ok(())
}

/// Writes a file only its owner can read.
fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_gets_a_development_certificate_and_keeps_it() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            data_dir: dir.path().to_path_buf(),
            ..Config::default()
        };
        server_config(&config, "127.0.0.1:0".parse().unwrap()).unwrap();
        let first = std::fs::read(dir.path().join(DEV_CERT_FILE)).unwrap();
        server_config(&config, "[::1]:0".parse().unwrap()).unwrap();
        assert_eq!(
            std::fs::read(dir.path().join(DEV_CERT_FILE)).unwrap(),
            first
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(DEV_KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "the key is private");
        }
    }

    #[test]
    fn other_addresses_need_a_real_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            data_dir: dir.path().to_path_buf(),
            ..Config::default()
        };
        let err = server_config(&config, "0.0.0.0:0".parse().unwrap()).unwrap_err();
        assert!(err.to_string().contains("--https-tls-cert"), "{err}");
        assert!(!dir.path().join(DEV_CERT_FILE).exists());
    }
}
