//! kmsd's own client of the official SDKs' HTTPS protocol (the other side of
//! [`super::gateway`]): a call to another KMS instance (another kmsd's gateway, or
//! the cloud's KMS instance), signed with a client key as the SDKs sign
//! ([`request_signature::string_to_sign`], the same code the gateway verifies with).
//!
//! One connection per call (HTTP/1.1 over TLS, hyper and rustls), trusting only the CA
//! certificates handed in: it serves calls made once, at start or by an offline
//! subcommand, not a stream of them. Connecting (TCP and TLS) is bounded by
//! [`CONNECT_TIMEOUT`], the whole call by [`CALL_TIMEOUT`].

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use http::{Request, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use prost::Message;
use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use rustls_pki_types::{CertificateDer, ServerName};
use tokio_rustls::{TlsConnector, rustls};
use zeroize::Zeroizing;

use super::errors::ErrorBody;
use super::request_signature::{self, ACCESS_KEY_ID_HEADER, API_NAME_HEADER, PROTOBUF};
use kmsd_api::ops::Operation;

/// How long connecting (TCP, then the TLS handshake) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a whole call may take, connecting included.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(15);

/// The largest response body read.
const MAX_RESPONSE_SIZE: usize = 1 << 20;

/// The protocol version the SDKs send.
const API_VERSION: &str = "dkms-gcs-0.2";

/// The signature method the SDKs name.
const SIGNATURE_METHOD: &str = "RSA_PKCS1_SHA_256";

/// A client key's private half, opened from its PKCS#12: what signs the requests.
/// Its `Debug` shows the ID only.
pub struct ClientKey {
    id: String,
    signer: RsaKeyPair,
}

impl std::fmt::Debug for ClientKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientKey")
            .field("id", &self.id)
            .field("private_key", &"[REDACTED]")
            .finish()
    }
}

impl ClientKey {
    /// Opens client key `id` from its PKCS#12 (`PrivateKeyData` of the SDKs' client
    /// key file, decoded) with `password`. CPU-heavy (the PKCS#12's key derivations):
    /// call it off the async threads.
    ///
    /// # Errors
    ///
    /// A description of what did not open (the password, the PKCS#12, the key);
    /// never the password.
    pub fn open(id: String, pkcs12: &[u8], password: &str) -> Result<Self, String> {
        let store = p12_keystore::KeyStore::from_pkcs12(pkcs12, password)
            .map_err(|err| format!("the PKCS#12 does not open with the password ({err})"))?;
        let (_, chain) = store
            .private_key_chain()
            .ok_or("the PKCS#12 holds no private key")?;
        let pkcs8 = Zeroizing::new(chain.key().to_vec());
        let signer = RsaKeyPair::from_pkcs8(&pkcs8)
            .map_err(|err| format!("the PKCS#12's key is not an RSA key ({err})"))?;
        Ok(Self { id, signer })
    }

    /// The client key ID (`KAAP.…`).
    pub fn id(&self) -> &str {
        &self.id
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, CallError> {
        let mut signature = vec![0; self.signer.public().modulus_len()];
        self.signer
            .sign(
                &RSA_PKCS1_SHA256,
                &ring::rand::SystemRandom::new(),
                message,
                &mut signature,
            )
            .map_err(|_| CallError::Sign)?;
        Ok(signature)
    }
}

/// Why a call did not return its response.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// No TCP connection (refused, unreachable, the name does not resolve).
    #[error("cannot connect to {authority}: {detail}")]
    Connect {
        /// `host:port`.
        authority: String,
        /// The cause.
        detail: String,
    },
    /// Connecting or the call took too long.
    #[error("{authority} did not answer in time ({during} took over {}s)", .after.as_secs())]
    TimedOut {
        /// `host:port`.
        authority: String,
        /// `connecting`, `the call`.
        during: &'static str,
        /// The bound that passed.
        after: Duration,
    },
    /// The TLS handshake failed: the certificate does not chain to the CA, names
    /// another host, or the peer speaks no TLS.
    #[error("TLS with {authority} failed: {detail}")]
    Tls {
        /// `host:port`.
        authority: String,
        /// rustls's reason.
        detail: String,
    },
    /// The server answered with an error status (and, from a KMS, an `Error` body).
    #[error("{authority} answered HTTP {status} {code}: {message} (request {request_id})")]
    Refused {
        /// `host:port`.
        authority: String,
        /// The HTTP status.
        status: u16,
        /// The public error code (`Forbidden.KeyNotFound`), empty without a body.
        code: String,
        /// The server's message.
        message: String,
        /// The server's request ID.
        request_id: String,
    },
    /// The answer is not the protocol's (a proxy's page, a cut connection, a body
    /// that does not decode).
    #[error("{authority} did not answer in the SDK protocol: {detail}")]
    Protocol {
        /// `host:port`.
        authority: String,
        /// What was wrong.
        detail: String,
    },
    /// The client key did not sign (the system random source failed).
    #[error("the client key did not sign the request")]
    Sign,
}

impl CallError {
    /// Whether trying again later may succeed: the server unreachable, slow, or
    /// answering a server error or throttling. A TLS failure, a refused client key or
    /// key, and a bad answer are not.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Connect { .. } | Self::TimedOut { .. } => true,
            Self::Refused { status, code, .. } => {
                *status >= 500 || *status == 429 || code == "Rejected.Throttling"
            }
            Self::Tls { .. } | Self::Protocol { .. } | Self::Sign => false,
        }
    }
}

/// The CA certificates of a PEM file (at least one): what [`SdkClient::new`] trusts.
///
/// # Errors
///
/// A description when the file cannot be read or holds no certificate.
pub fn read_roots(path: &std::path::Path) -> Result<Vec<CertificateDer<'static>>, String> {
    use rustls_pki_types::pem::PemObject;
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|err| err.to_string())?;
    if certs.is_empty() {
        return Err("it holds no PEM certificate".into());
    }
    Ok(certs)
}

/// A client of one KMS endpoint, signing with one client key.
pub struct SdkClient {
    host: String,
    port: u16,
    authority: String,
    server_name: ServerName<'static>,
    tls: TlsConnector,
    key: ClientKey,
}

impl std::fmt::Debug for SdkClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SdkClient")
            .field("authority", &self.authority)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl SdkClient {
    /// A client of `host:port`, trusting only `roots` (the CA file's certificates),
    /// signing with `key`.
    ///
    /// # Errors
    ///
    /// A description when `host` is no DNS name or IP address, or no root is usable.
    pub fn new(
        host: &str,
        port: u16,
        roots: Vec<CertificateDer<'static>>,
        key: ClientKey,
    ) -> Result<Self, String> {
        let server_name = ServerName::try_from(host.to_owned())
            .map_err(|_| format!("{host:?} is neither a DNS name nor an IP address"))?;
        let mut store = rustls::RootCertStore::empty();
        for cert in roots {
            store
                .add(cert)
                .map_err(|err| format!("a CA certificate is not usable: {err}"))?;
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|err| err.to_string())?
        .with_root_certificates(store)
        .with_no_client_auth();
        let authority = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        Ok(Self {
            host: host.to_owned(),
            port,
            authority,
            server_name,
            tls: TlsConnector::from(Arc::new(config)),
            key,
        })
    }

    /// `host:port`.
    pub fn authority(&self) -> &str {
        &self.authority
    }

    /// The client key the calls are signed with.
    pub fn client_key_id(&self) -> &str {
        self.key.id()
    }

    /// Calls `op` with `request` and decodes its response.
    ///
    /// # Errors
    ///
    /// [`CallError`]: what failed, and whether trying again may help
    /// ([`CallError::is_transient`]).
    pub async fn call<Resp: Message + Default>(
        &self,
        op: Operation,
        request: &impl Message,
    ) -> Result<Resp, CallError> {
        let body = request.encode_to_vec();
        let (status, answer) = tokio::time::timeout(CALL_TIMEOUT, self.exchange(op, body))
            .await
            .map_err(|_| CallError::TimedOut {
                authority: self.authority.clone(),
                during: "the call",
                after: CALL_TIMEOUT,
            })??;
        let protocol = |detail: String| CallError::Protocol {
            authority: self.authority.clone(),
            detail,
        };
        if status == http::StatusCode::OK {
            return Resp::decode(answer.as_ref())
                .map_err(|err| protocol(format!("the {} response: {err}", op.name())));
        }
        let error = ErrorBody::decode(answer.as_ref()).unwrap_or_default();
        Err(CallError::Refused {
            authority: self.authority.clone(),
            status: status.as_u16(),
            code: error.error_code,
            message: if error.error_message.is_empty() {
                "(no Error body)".into()
            } else {
                error.error_message
            },
            request_id: error.request_id,
        })
    }

    /// Connects, sends the signed request, and reads the status and body.
    async fn exchange(
        &self,
        op: Operation,
        body: Vec<u8>,
    ) -> Result<(http::StatusCode, Bytes), CallError> {
        let request = self.signed_request(op, body)?;
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, self.connect())
            .await
            .map_err(|_| CallError::TimedOut {
                authority: self.authority.clone(),
                during: "connecting",
                after: CONNECT_TIMEOUT,
            })??;
        let cut = |err: hyper::Error| CallError::Protocol {
            authority: self.authority.clone(),
            detail: err.to_string(),
        };
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(cut)?;
        let driver = tokio::spawn(async move {
            let _ = connection.await;
        });
        let answered = async {
            let response = sender.send_request(request).await.map_err(cut)?;
            let status = response.status();
            let body = Limited::new(response.into_body(), MAX_RESPONSE_SIZE)
                .collect()
                .await
                .map_err(|err| CallError::Protocol {
                    authority: self.authority.clone(),
                    detail: format!("the response body: {err}"),
                })?
                .to_bytes();
            Ok((status, body))
        }
        .await;
        driver.abort();
        answered
    }

    /// TCP, then TLS with the CA file's roots.
    async fn connect(
        &self,
    ) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, CallError> {
        let tcp = tokio::net::TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|err| CallError::Connect {
                authority: self.authority.clone(),
                detail: err.to_string(),
            })?;
        let _ = tcp.set_nodelay(true);
        self.tls
            .connect(self.server_name.clone(), tcp)
            .await
            .map_err(|err| {
                let detail = err.to_string();
                // A reset or a close mid-handshake is the network's; rustls's own
                // errors (the certificate, the protocol) are the configuration's.
                if err
                    .get_ref()
                    .is_some_and(|inner| inner.is::<rustls::Error>())
                {
                    CallError::Tls {
                        authority: self.authority.clone(),
                        detail,
                    }
                } else {
                    CallError::Connect {
                        authority: self.authority.clone(),
                        detail: format!("during the TLS handshake: {detail}"),
                    }
                }
            })
    }

    /// The request the SDKs send for `op` with `body`, signed now.
    fn signed_request(
        &self,
        op: Operation,
        body: Vec<u8>,
    ) -> Result<Request<Full<Bytes>>, CallError> {
        let content_sha256 = request_signature::upper_hex(
            ring::digest::digest(&ring::digest::SHA256, &body).as_ref(),
        );
        let date = httpdate::fmt_http_date(SystemTime::now());
        let signed = [
            (ACCESS_KEY_ID_HEADER, self.key.id()),
            (API_NAME_HEADER, op.name()),
            ("x-kms-apiversion", API_VERSION),
            ("x-kms-signaturemethod", SIGNATURE_METHOD),
        ];
        let string_to_sign =
            request_signature::string_to_sign(&content_sha256, PROTOBUF, &date, signed);
        let signature = BASE64.encode(self.key.sign(string_to_sign.as_bytes())?);
        let mut builder = Request::post("/")
            .header(header::HOST, &self.authority)
            .header(header::CONTENT_TYPE, PROTOBUF)
            .header(header::ACCEPT, PROTOBUF)
            .header(header::CONTENT_LENGTH, body.len())
            .header("content-sha256", &content_sha256)
            .header(header::DATE, &date)
            .header(header::AUTHORIZATION, format!("Bearer {signature}"));
        for (name, value) in signed {
            builder = builder.header(name, value);
        }
        builder
            .body(Full::new(Bytes::from(body)))
            .map_err(|err| CallError::Protocol {
                authority: self.authority.clone(),
                detail: format!("the request does not build: {err}"),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{client_key, keygen};

    /// What the client sends is what the gateway verifies: the same headers, the
    /// string-to-sign, the signature under the client key, the body digest.
    #[test]
    fn a_signed_request_verifies_as_the_gateway_checks_it() {
        let pair = keygen::generate(client_key::CLIENT_KEY_SPEC).unwrap();
        let password = "a-long-enough-password";
        let issued = client_key::issue(&pair, "KAAP.test", password).unwrap();
        assert!(ClientKey::open("KAAP.test".into(), &issued.pkcs12, "not-the-password").is_err());
        let key = ClientKey::open("KAAP.test".into(), &issued.pkcs12, password).unwrap();
        assert_eq!(
            format!("{key:?}"),
            "ClientKey { id: \"KAAP.test\", private_key: \"[REDACTED]\" }"
        );
        let client = SdkClient::new("127.0.0.1", 8443, Vec::new(), key).unwrap();
        assert_eq!(client.authority(), "127.0.0.1:8443");
        let request = client
            .signed_request(Operation::AdvanceDecrypt, b"body".to_vec())
            .unwrap();
        let signed = request_signature::read(request.headers()).unwrap();
        assert_eq!(signed.client_key_id, "KAAP.test");
        assert!(
            signed
                .string_to_sign
                .contains("x-kms-apiname:AdvanceDecrypt\n")
        );
        assert!(client_key::verify(
            &issued.public_key_pkcs1_der,
            signed.string_to_sign.as_bytes(),
            &signed.signature
        ));
        request_signature::check_body(&signed.content_sha256, b"body").unwrap();
        request_signature::check_date(signed.date, SystemTime::now()).unwrap();
    }

    #[test]
    fn only_the_network_and_server_errors_are_worth_retrying() {
        let refused = |status: u16, code: &str| CallError::Refused {
            authority: "h:1".into(),
            status,
            code: code.into(),
            message: String::new(),
            request_id: String::new(),
        };
        assert!(refused(503, "").is_transient());
        assert!(refused(400, "Rejected.Throttling").is_transient());
        assert!(!refused(401, "Unauthenticated").is_transient());
        assert!(!refused(404, "Forbidden.KeyNotFound").is_transient());
        let tls = CallError::Tls {
            authority: "h:1".into(),
            detail: "invalid peer certificate: UnknownIssuer".into(),
        };
        assert!(!tls.is_transient());
        let down = CallError::Connect {
            authority: "h:1".into(),
            detail: "Connection refused".into(),
        };
        assert!(down.is_transient());
    }
}
