//! Section 4d: the HTTPS gateway against gRPC. A minimal client of the official SDKs'
//! protocol (HTTP/1.1 keep-alive over TLS, each request signed with a client key as
//! the SDKs sign), and the cost of the gateway's signature verification.
//!
//! The client re-signs when the `date` header's second changes (a body and a date
//! sign to the same string), so the measured rate is the server's, not the client's
//! RSA signing; the signing cost is reported apart.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use prost::Message;
use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls;
use tonic::transport::Channel;

use crate::report::{GatewayFloor, median};
use kmsd_api::pb::crypto_service_client::CryptoServiceClient;
use kmsd_api::pb::key_management_service_client::KeyManagementServiceClient;
use kmsd_api::pb::*;

/// The client key's PKCS#12 password (kmsd asks for at least 12 characters).
const CLIENT_KEY_PASSWORD: &str = "kmsd-bench-client-key";

const API_NAME: &str = "GenerateDataKeyPairWithoutPlaintext";

/// A signed keep-alive connection to the gateway.
struct GatewayClient {
    stream: TlsStream<tokio::net::TcpStream>,
    host: String,
    key_id: String,
    signer: RsaKeyPair,
    signed: Option<(String, String)>,
    buffer: Vec<u8>,
}

fn upper_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

fn sign(signer: &RsaKeyPair, message: &[u8]) -> Result<Vec<u8>, String> {
    let mut signature = vec![0; signer.public().modulus_len()];
    signer
        .sign(
            &RSA_PKCS1_SHA256,
            &ring::rand::SystemRandom::new(),
            message,
            &mut signature,
        )
        .map_err(|_| "signing failed".to_owned())?;
    Ok(signature)
}

impl GatewayClient {
    async fn connect(
        addr: &str,
        ca: &std::path::Path,
        key_id: String,
        signer: RsaKeyPair,
    ) -> Result<Self, String> {
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls::pki_types::CertificateDer::pem_file_iter(ca)
            .map_err(|e| format!("{}: {e}", ca.display()))?
        {
            roots
                .add(cert.map_err(|e| e.to_string())?)
                .map_err(|e| e.to_string())?;
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("{addr}: {e}"))?;
        tcp.set_nodelay(true).map_err(|e| e.to_string())?;
        let name =
            rustls::pki_types::ServerName::try_from("127.0.0.1").map_err(|e| e.to_string())?;
        let stream = tokio_rustls::TlsConnector::from(Arc::new(tls))
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS: {e}"))?;
        Ok(Self {
            stream,
            host: addr.to_owned(),
            key_id,
            signer,
            signed: None,
            buffer: Vec::new(),
        })
    }

    /// One call; the response body, or the status and body of a failure.
    async fn call(&mut self, body: &[u8]) -> Result<Vec<u8>, String> {
        let sha = upper_hex(ring::digest::digest(&ring::digest::SHA256, body).as_ref());
        let date = httpdate::fmt_http_date(SystemTime::now());
        let fresh = matches!(&self.signed, Some((d, _)) if *d == date);
        if !fresh {
            let to_sign = format!(
                "POST\n{sha}\napplication/x-protobuf\n{date}\nx-kms-acccesskeyid:{}\n\
                 x-kms-apiname:{API_NAME}\nx-kms-apiversion:dkms-gcs-0.2\n\
                 x-kms-signaturemethod:RSA_PKCS1_SHA_256\n/",
                self.key_id
            );
            let signature = BASE64.encode(sign(&self.signer, to_sign.as_bytes())?);
            self.signed = Some((date.clone(), signature));
        }
        let signature = &self
            .signed
            .as_ref()
            .map(|(_, s)| s.clone())
            .unwrap_or_default();
        let head = format!(
            "POST / HTTP/1.1\r\nhost: {}\r\ncontent-length: {}\r\naccept: application/x-protobuf\r\n\
             content-type: application/x-protobuf\r\ncontent-sha256: {sha}\r\ndate: {date}\r\n\
             x-kms-apiversion: dkms-gcs-0.2\r\nx-kms-apiname: {API_NAME}\r\n\
             x-kms-signaturemethod: RSA_PKCS1_SHA_256\r\nx-kms-acccesskeyid: {}\r\n\
             authorization: Bearer {signature}\r\n\r\n",
            self.host,
            body.len(),
            self.key_id
        );
        let mut request = head.into_bytes();
        request.extend_from_slice(body);
        self.stream
            .write_all(&request)
            .await
            .map_err(|e| e.to_string())?;
        // Read the head, then content-length bytes of body.
        loop {
            if let Some(end) = self.buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buffer[..end]).to_ascii_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .ok_or("a response without content-length")?;
                while self.buffer.len() < end + 4 + length {
                    self.read_more().await?;
                }
                let body = self.buffer[end + 4..end + 4 + length].to_vec();
                self.buffer.drain(..end + 4 + length);
                if !head.starts_with("http/1.1 200") {
                    return Err(format!("{}: {body:?}", head.lines().next().unwrap_or("")));
                }
                return Ok(body);
            }
            self.read_more().await?;
        }
    }

    async fn read_more(&mut self) -> Result<(), String> {
        let mut chunk = [0u8; 16 * 1024];
        let n = self
            .stream
            .read(&mut chunk)
            .await
            .map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("the gateway closed the connection".into());
        }
        self.buffer.extend_from_slice(&chunk[..n]);
        Ok(())
    }
}

fn ec_request(key_id: &str) -> GenerateDataKeyPairWithoutPlaintextRequest {
    GenerateDataKeyPairWithoutPlaintextRequest {
        key_id: key_id.to_owned(),
        key_pair_spec: "EC_P256".into(),
        key_format: "DER".into(),
        ..Default::default()
    }
}

/// The median of `batches` timings of `per_batch` runs of `work`, µs per run.
fn per_run_us(batches: usize, per_batch: usize, mut work: impl FnMut()) -> f64 {
    let mut samples = Vec::new();
    for _ in 0..batches {
        let started = Instant::now();
        for _ in 0..per_batch {
            work();
        }
        samples.push(started.elapsed().as_secs_f64() * 1e6 / per_batch as f64);
    }
    median(&samples)
}

/// Alternating rounds of back-to-back EC_P256 GenerateDataKeyPairWithoutPlaintext over
/// gRPC (on `channel`) and through the gateway at `https_addr`; then the cost of one
/// signature verification, as the gateway runs it, and of one client signature.
pub async fn gateway_floor(
    channel: &Channel,
    https_addr: &str,
    ca: &std::path::Path,
    key_id: &str,
    round: Duration,
) -> Result<GatewayFloor, String> {
    let created = KeyManagementServiceClient::new(channel.clone())
        .create_client_key(CreateClientKeyRequest {
            principal: "kmsd-bench".into(),
            password: CLIENT_KEY_PASSWORD.into(),
            ..Default::default()
        })
        .await
        .map_err(|s| format!("CreateClientKey: {s:?}"))?
        .into_inner();
    let p12 = BASE64
        .decode(&created.private_key_data)
        .map_err(|e| e.to_string())?;
    let store = p12_keystore::KeyStore::from_pkcs12(&p12, CLIENT_KEY_PASSWORD)
        .map_err(|e| format!("PKCS#12: {e}"))?;
    let (_, chain) = store.private_key_chain().ok_or("a PKCS#12 without a key")?;
    let pkcs8 = chain.key().to_vec();
    let signer = RsaKeyPair::from_pkcs8(&pkcs8).map_err(|e| e.to_string())?;
    let public = signer.public().as_ref().to_vec();

    let mut client = GatewayClient::connect(
        https_addr,
        ca,
        created.client_key_id.clone(),
        RsaKeyPair::from_pkcs8(&pkcs8).map_err(|e| e.to_string())?,
    )
    .await?;
    let mut crypto = CryptoServiceClient::new(channel.clone());
    let body = ec_request(key_id).encode_to_vec();
    // Warm both paths (connections, the key cache).
    for _ in 0..20 {
        client.call(&body).await?;
        crypto
            .generate_data_key_pair_without_plaintext(ec_request(key_id))
            .await
            .map_err(|s| format!("gRPC: {s:?}"))?;
    }
    let (mut grpc, mut https, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..6 {
        let started = Instant::now();
        let mut n = 0u32;
        while started.elapsed() < round {
            crypto
                .generate_data_key_pair_without_plaintext(ec_request(key_id))
                .await
                .map_err(|s| format!("gRPC: {s:?}"))?;
            n += 1;
        }
        let g = f64::from(n) / started.elapsed().as_secs_f64();
        let started = Instant::now();
        let mut n = 0u32;
        while started.elapsed() < round {
            let answer = client.call(&body).await?;
            GenerateDataKeyPairWithoutPlaintextResponse::decode(answer.as_slice())
                .map_err(|e| e.to_string())?;
            n += 1;
        }
        let h = f64::from(n) / started.elapsed().as_secs_f64();
        grpc.push(g);
        https.push(h);
        ratios.push(h / g);
    }

    let message = b"POST\nE3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855\n...";
    let signature = sign(&signer, message)?;
    let verify_us = per_run_us(9, 200, || {
        assert!(kmsd::crypto::client_key::verify(
            &public, message, &signature
        ));
    });
    let client_sign_us = per_run_us(5, 20, || {
        let _ = sign(&signer, message);
    });
    let https_per_s = median(&https);
    Ok(GatewayFloor {
        grpc_per_s: median(&grpc),
        https_per_s,
        ratio: median(&ratios),
        round_ratios: ratios,
        verify_us,
        verify_share: verify_us * https_per_s / 1e6,
        client_sign_us,
    })
}
