//! Test helpers for TLS, mTLS, tokens and the audit log. Certificates and keys are made
//! fresh per test with rcgen; nothing secret is checked in.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use kmsd::audit::AuditRecord;
use kmsd::config::Config;
use kmsd::server::{RunningServer, StartError};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, SanType};
use tokio::net::TcpListener;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

/// A certificate and its private key, PEM.
pub struct Pem {
    pub cert: String,
    pub key: String,
}

/// A CA that issues server and client certificates.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl TestCa {
    pub fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Self { issuer }
    }

    pub fn cert_pem(&self) -> String {
        self.issuer.pem()
    }

    /// A server certificate for `localhost` and 127.0.0.1.
    pub fn server(&self) -> Pem {
        let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params
            .subject_alt_names
            .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
        params.distinguished_name.push(DnType::CommonName, "kmsd");
        self.issue(params)
    }

    /// A client certificate with `uri` as its URI SAN and `cn` as its subject CN.
    pub fn client(&self, uri: &str, cn: &str) -> Pem {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.subject_alt_names = vec![SanType::URI(uri.try_into().unwrap())];
        params.distinguished_name.push(DnType::CommonName, cn);
        self.issue(params)
    }

    fn issue(&self, params: CertificateParams) -> Pem {
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Pem {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }
}

/// Writes `contents` to `dir/name` and returns the path.
pub fn write(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

/// Hex SHA-256 of a token, as the auth file wants it.
pub fn token_hash(token: &str) -> String {
    kmsd::auth::policy::token_sha256(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `message` with `authorization: Bearer <token>`.
pub fn with_token<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

/// Starts a server on 127.0.0.1:0 without connecting to it.
pub async fn start_raw(config: Config) -> Result<(RunningServer, SocketAddr), StartError> {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let clock = super::start_clock();
    let server = kmsd::server::start_with_clock(config, listener, Arc::new(clock)).await?;
    let addr = server.local_addr();
    Ok((server, addr))
}

/// A TLS channel to `addr` trusting `ca`, presenting `identity` if given.
pub async fn tls_channel(
    addr: SocketAddr,
    ca: &str,
    identity: Option<&Pem>,
) -> Result<Channel, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca))
        .domain_name("localhost");
    if let Some(pem) = identity {
        tls = tls.identity(Identity::from_pem(&pem.cert, &pem.key));
    }
    Channel::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(tls)?
        .connect()
        .await
}

/// A plaintext channel to `addr`.
pub async fn plain_channel(addr: SocketAddr) -> Result<Channel, tonic::transport::Error> {
    Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
}

/// Every record of an audit log.
pub fn audit_records(path: &Path) -> Vec<AuditRecord> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect()
}
