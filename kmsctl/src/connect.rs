//! The connection to kmsd: the endpoint, TLS and mTLS, and the bearer token.
//!
//! The token is read from `KMSCTL_TOKEN` or from the file `--token-file` names, never
//! from a flag's value: a command line is visible to every user of the host in `ps`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use kmsd_api::pb::crypto_service_client::CryptoServiceClient;
use kmsd_api::pb::key_management_service_client::KeyManagementServiceClient;
use kmsd_api::pb::secrets_service_client::SecretsServiceClient;
use tonic::metadata::MetadataValue;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use zeroize::Zeroizing;

use crate::failure::Failure;

/// The variable holding the bearer token.
pub const TOKEN_VARIABLE: &str = "KMSCTL_TOKEN";

/// Where and how to connect; global flags of every command.
#[derive(Clone, Debug, Args)]
pub struct ConnectOptions {
    /// The server: HOST:PORT, or a URL (http://HOST:PORT for plaintext, https://HOST:PORT
    /// for TLS).
    #[arg(
        long,
        global = true,
        env = "KMSCTL_ENDPOINT",
        value_name = "ADDR",
        default_value = "127.0.0.1:50051"
    )]
    pub endpoint: String,

    /// PEM CA certificate(s) to verify the server with; turns TLS on.
    #[arg(long, global = true, env = "KMSCTL_CA_CERT", value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,

    /// PEM client certificate for mTLS (needs --client-key and TLS).
    #[arg(
        long,
        global = true,
        env = "KMSCTL_CLIENT_CERT",
        value_name = "FILE",
        requires = "client_key"
    )]
    pub client_cert: Option<PathBuf>,

    /// PEM private key of --client-cert.
    #[arg(
        long,
        global = true,
        env = "KMSCTL_CLIENT_KEY",
        value_name = "FILE",
        requires = "client_cert"
    )]
    pub client_key: Option<PathBuf>,

    /// The name the server's certificate must carry, when it is not the endpoint's host.
    #[arg(
        long,
        global = true,
        env = "KMSCTL_TLS_SERVER_NAME",
        value_name = "NAME"
    )]
    pub tls_server_name: Option<String>,

    /// File holding the bearer token (else the KMSCTL_TOKEN variable; never a flag value).
    #[arg(long, global = true, env = "KMSCTL_TOKEN_FILE", value_name = "FILE")]
    pub token_file: Option<PathBuf>,

    /// Send the bearer token over plaintext to a host that is not loopback: only where a
    /// service mesh sidecar encrypts the connection (without it anyone on the path reads
    /// the token).
    #[arg(long, global = true, env = "KMSCTL_ALLOW_PLAINTEXT_TOKEN")]
    pub allow_plaintext_token: bool,

    /// Longest a call may take.
    #[arg(
        long,
        global = true,
        env = "KMSCTL_TIMEOUT",
        value_name = "DURATION",
        default_value = "60s"
    )]
    pub timeout: humantime::Duration,
}

/// A connection to kmsd: its two services and the token every call carries.
#[derive(Clone, Debug)]
pub struct Connection {
    channel: Channel,
    token: Option<MetadataValue<tonic::metadata::Ascii>>,
    timeout: Duration,
}

impl Connection {
    /// Connects as `options` say (the connection itself is made on the first call).
    ///
    /// # Errors
    ///
    /// [`Failure::Usage`] for a malformed endpoint, an unreadable certificate, key or
    /// token file, or a token that cannot be sent as a header.
    pub async fn open(options: &ConnectOptions) -> Result<Self, Failure> {
        let token = read_token(options.token_file.as_deref())?;
        let (url, tls) = endpoint_url(&options.endpoint, options.ca_cert.is_some())?;
        if token.is_some() && !tls && !options.allow_plaintext_token && !is_loopback(&url) {
            return Err(Failure::Usage(format!(
                "refusing to send the bearer token in plaintext to {}: anyone on the path \
                 could read it. Connect over TLS (--ca-cert), to a loopback address, or pass \
                 --allow-plaintext-token if a service mesh sidecar encrypts the connection",
                options.endpoint
            )));
        }
        let mut endpoint = Endpoint::from_shared(url.clone())
            .map_err(|err| Failure::Usage(format!("--endpoint {}: {err}", options.endpoint)))?
            .connect_timeout(Duration::from_secs(10))
            .tcp_nodelay(true);
        if tls {
            endpoint = endpoint
                .tls_config(tls_config(options)?)
                .map_err(|err| Failure::Usage(format!("TLS settings: {err}")))?;
        } else if options.client_cert.is_some() {
            return Err(Failure::Usage(
                "--client-cert needs TLS: give --ca-cert (or an https:// endpoint)".into(),
            ));
        }
        Ok(Self {
            channel: endpoint.connect_lazy(),
            token,
            timeout: options.timeout.into(),
        })
    }

    /// The control plane.
    pub fn management(&self) -> KeyManagementServiceClient<Channel> {
        KeyManagementServiceClient::new(self.channel.clone())
    }

    /// The data plane.
    pub fn crypto(&self) -> CryptoServiceClient<Channel> {
        CryptoServiceClient::new(self.channel.clone())
    }

    /// Secrets (GetSecretValue is the data plane's).
    pub fn secrets(&self) -> SecretsServiceClient<Channel> {
        SecretsServiceClient::new(self.channel.clone())
    }

    /// The channel, for services beyond the three above.
    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    /// `message` as a request carrying the token and the timeout.
    pub fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request.set_timeout(self.timeout);
        if let Some(token) = &self.token {
            request
                .metadata_mut()
                .insert("authorization", token.clone());
        }
        request
    }
}

/// The endpoint as a URL, and whether it is served over TLS.
fn endpoint_url(raw: &str, have_ca: bool) -> Result<(String, bool), Failure> {
    if let Some(rest) = raw.strip_prefix("https://") {
        if !have_ca {
            return Err(Failure::Usage(format!(
                "{raw}: TLS needs --ca-cert (the CA that signed the server's certificate; \
                 for a public CA, the system bundle such as /etc/ssl/certs/ca-certificates.crt)"
            )));
        }
        return Ok((format!("https://{rest}"), true));
    }
    if raw.starts_with("http://") {
        if have_ca {
            return Err(Failure::Usage(format!(
                "{raw} is a plaintext endpoint but --ca-cert asks for TLS"
            )));
        }
        return Ok((raw.to_owned(), false));
    }
    if raw.contains("://") {
        return Err(Failure::Usage(format!(
            "--endpoint {raw}: give HOST:PORT, http://HOST:PORT or https://HOST:PORT"
        )));
    }
    let scheme = if have_ca { "https" } else { "http" };
    Ok((format!("{scheme}://{raw}"), have_ca))
}

fn read_file(path: &Path, what: &str) -> Result<Zeroizing<Vec<u8>>, Failure> {
    std::fs::read(path)
        .map(Zeroizing::new)
        .map_err(|err| Failure::Usage(format!("cannot read {what} {}: {err}", path.display())))
}

fn tls_config(options: &ConnectOptions) -> Result<ClientTlsConfig, Failure> {
    let mut tls = ClientTlsConfig::new();
    if let Some(ca) = &options.ca_cert {
        tls = tls.ca_certificate(Certificate::from_pem(
            read_file(ca, "--ca-cert")?.as_slice(),
        ));
    }
    if let (Some(cert), Some(key)) = (&options.client_cert, &options.client_key) {
        let cert = read_file(cert, "--client-cert")?;
        let key = read_file(key, "--client-key")?;
        tls = tls.identity(Identity::from_pem(cert.as_slice(), key.as_slice()));
    }
    if let Some(name) = &options.tls_server_name {
        tls = tls.domain_name(name.clone());
    }
    Ok(tls)
}

/// The `authorization` header value: `Bearer <token>` from the file, else from
/// `KMSCTL_TOKEN`; `None` when neither is set. Surrounding whitespace (a file's final
/// newline) is not part of the token.
fn read_token(
    file: Option<&Path>,
) -> Result<Option<MetadataValue<tonic::metadata::Ascii>>, Failure> {
    let token = match file {
        Some(path) => {
            let bytes = read_file(path, "--token-file")?;
            let text = std::str::from_utf8(&bytes).map_err(|_| {
                Failure::Usage(format!("--token-file {}: not UTF-8 text", path.display()))
            })?;
            Zeroizing::new(text.trim().to_owned())
        }
        None => match std::env::var(TOKEN_VARIABLE) {
            Ok(token) => Zeroizing::new(token.trim().to_owned()),
            Err(_) => return Ok(None),
        },
    };
    if token.is_empty() {
        return Ok(None);
    }
    let header = Zeroizing::new(format!("Bearer {}", token.as_str()));
    let mut value = MetadataValue::try_from(header.as_str()).map_err(|_| {
        Failure::Usage("the bearer token holds characters a header cannot carry".into())
    })?;
    value.set_sensitive(true);
    Ok(Some(value))
}

/// Whether the host of `url` (`scheme://HOST:PORT`) is a loopback address.
fn is_loopback(url: &str) -> bool {
    let authority = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = authority.split('/').next().unwrap_or("");
    let host = match authority.strip_prefix('[') {
        Some(bracketed) => bracketed.split(']').next().unwrap_or(""),
        None => authority
            .rsplit_once(':')
            .map_or(authority, |(host, _)| host),
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts_are_told_apart() {
        for url in [
            "http://127.0.0.1:50051",
            "http://127.8.9.1:1",
            "http://localhost:50051",
            "http://[::1]:50051",
        ] {
            assert!(is_loopback(url), "{url}");
        }
        for url in [
            "http://10.0.0.1:50051",
            "http://kms.internal:50051",
            "http://[2001:db8::1]:1",
            "http://127.0.0.1.evil.example:1",
        ] {
            assert!(!is_loopback(url), "{url}");
        }
    }

    #[tokio::test]
    async fn a_token_is_not_sent_in_plaintext_off_loopback() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "s3cret\n").unwrap();
        let options = |endpoint: &str, allow: bool| ConnectOptions {
            endpoint: endpoint.into(),
            ca_cert: None,
            client_cert: None,
            client_key: None,
            tls_server_name: None,
            token_file: Some(file.clone()),
            allow_plaintext_token: allow,
            timeout: "1s".parse().unwrap(),
        };
        let refused = Connection::open(&options("10.1.2.3:50051", false)).await;
        assert!(
            matches!(&refused, Err(Failure::Usage(msg)) if msg.contains("--allow-plaintext-token")),
            "{refused:?}"
        );
        assert!(
            Connection::open(&options("127.0.0.1:50051", false))
                .await
                .is_ok()
        );
        assert!(
            Connection::open(&options("10.1.2.3:50051", true))
                .await
                .is_ok()
        );
    }

    #[test]
    fn endpoints_pick_plaintext_or_tls() {
        assert_eq!(
            endpoint_url("127.0.0.1:50051", false).unwrap(),
            ("http://127.0.0.1:50051".to_owned(), false)
        );
        assert_eq!(
            endpoint_url("kms.internal:443", true).unwrap(),
            ("https://kms.internal:443".to_owned(), true)
        );
        assert_eq!(
            endpoint_url("https://kms:1", true).unwrap(),
            ("https://kms:1".to_owned(), true)
        );
        assert!(endpoint_url("https://kms:1", false).is_err());
        assert!(endpoint_url("http://kms:1", true).is_err());
        assert!(endpoint_url("ftp://kms:1", false).is_err());
    }

    #[test]
    fn a_token_file_is_trimmed_and_sent_as_bearer() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "s3cret\n").unwrap();
        let value = read_token(Some(&file)).unwrap().unwrap();
        assert_eq!(value.to_str().unwrap(), "Bearer s3cret");
        assert!(value.is_sensitive());
        std::fs::write(&file, "bad\ntoken").unwrap();
        assert!(read_token(Some(&file)).is_err());
    }
}
