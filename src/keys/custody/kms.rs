//! The root key wrapped by a master key of another KMS instance (another kmsd with
//! `--https-listen`, or the cloud's KMS instance), over the official SDKs' HTTPS
//! protocol ([`crate::transport::https::client`]).
//!
//! `AdvanceEncrypt` seals the root key under the remote key (with a fixed AAD) once,
//! by `kmsd root-key init-kms`; only the self-describing blob it returns is kept on
//! disk (`--root-key-file`). At start one `AdvanceDecrypt` opens it into kmsd's
//! zeroizing memory. The remote key never leaves the other KMS; the client key that
//! may use it is a file of its own (the SDKs' client key JSON and its password file).
//!
//! [`KmsTarget`] names it all in one value:
//! `https://kms.example:8443?key-id=alias/kmsd-root&client-key-file=/run/secrets/kms/client-key.json&password-file=/run/secrets/kms/password&ca-file=/run/secrets/kms/ca.pem`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Deserialize;
use zeroize::{Zeroize, Zeroizing};

use super::pkcs11_uri::percent_decode;
use crate::crypto::secret::MasterKeyMaterial;
use crate::transport::https::client::{CallError, ClientKey, SdkClient, read_roots};
use kmsd_api::ops::Operation;
use kmsd_api::pb::{
    AdvanceDecryptRequest, AdvanceDecryptResponse, AdvanceEncryptRequest, AdvanceEncryptResponse,
};

/// The AAD of the root key's sealing: binds it to this use of the remote key.
const AAD: &[u8] = b"kmsd/v1/root-key/kms";

/// The port of an endpoint that names none.
const DEFAULT_PORT: u16 = 443;

/// The other KMS, its master key, and the files that let kmsd use it. Holds no
/// secret: its `Display` is the value as given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KmsTarget {
    /// The host (a DNS name or an IP address).
    pub host: String,
    /// The port.
    pub port: u16,
    /// The master key's ID or alias (`key-id=`).
    pub key_id: String,
    /// The SDKs' client key file: JSON with `KeyId` and `PrivateKeyData`
    /// (`client-key-file=`).
    pub client_key_file: PathBuf,
    /// The file holding the client key's password (`password-file=`).
    pub password_file: PathBuf,
    /// The CA certificates (PEM) the KMS's certificate must chain to; the only roots
    /// trusted (`ca-file=`).
    pub ca_file: PathBuf,
    text: String,
}

impl fmt::Display for KmsTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Why a `--root-key-kms` value was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("KMS endpoint: {0}")]
pub struct TargetError(String);

impl FromStr for KmsTarget {
    type Err = TargetError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let fail = |message: String| TargetError(message);
        let rest = text.strip_prefix("https://").ok_or_else(|| {
            fail(
                "must start with https://, e.g. https://kms.example:8443?key-id=alias/kmsd-root\
                 &client-key-file=/run/secrets/kms/client-key.json\
                 &password-file=/run/secrets/kms/password&ca-file=/run/secrets/kms/ca.pem"
                    .into(),
            )
        })?;
        let (authority, query) = rest.split_once('?').unwrap_or((rest, ""));
        let authority = authority.strip_suffix('/').unwrap_or(authority);
        if authority.contains('/') {
            return Err(fail(format!(
                "{authority:?}: the endpoint is https://HOST[:PORT], without a path"
            )));
        }
        let (host, port) = split_authority(authority)?;
        let mut target = KmsTarget {
            host,
            port,
            key_id: String::new(),
            client_key_file: PathBuf::new(),
            password_file: PathBuf::new(),
            ca_file: PathBuf::new(),
            text: text.to_owned(),
        };
        for attribute in query.split('&').filter(|part| !part.is_empty()) {
            let (name, value) = attribute
                .split_once('=')
                .ok_or_else(|| fail(format!("{attribute:?} is not name=value")))?;
            let value = percent_decode(value)
                .ok()
                .and_then(|value| String::from_utf8(value).ok())
                .ok_or_else(|| fail(format!("{name}=: bad percent-encoding or not UTF-8")))?;
            match name {
                "key-id" => target.key_id = value,
                "client-key-file" => target.client_key_file = absolute(name, value)?,
                "password-file" => target.password_file = absolute(name, value)?,
                "ca-file" => target.ca_file = absolute(name, value)?,
                "password" => {
                    return Err(fail(
                        "password= is refused: a password in a command line ends up in \
                         process lists and logs. Put it in a file only the server can read \
                         and name it with password-file=/path"
                            .into(),
                    ));
                }
                other => return Err(fail(format!("unknown parameter {other:?}"))),
            }
        }
        for (value, name, what) in [
            (
                target.key_id.is_empty(),
                "key-id",
                "the KMS key (ID or alias/NAME) that wraps the root key",
            ),
            (
                target.client_key_file.as_os_str().is_empty(),
                "client-key-file",
                "the client key file (the SDKs' JSON with KeyId and PrivateKeyData)",
            ),
            (
                target.password_file.as_os_str().is_empty(),
                "password-file",
                "the file holding the client key's password",
            ),
            (
                target.ca_file.as_os_str().is_empty(),
                "ca-file",
                "the CA certificate (PEM) of the KMS's TLS certificate",
            ),
        ] {
            if value {
                return Err(fail(format!("name {what} with {name}=")));
            }
        }
        Ok(target)
    }
}

/// `HOST`, `HOST:PORT`, `[V6]` or `[V6]:PORT`.
fn split_authority(authority: &str) -> Result<(String, u16), TargetError> {
    let port = |text: &str| {
        text.parse::<u16>()
            .ok()
            .filter(|port| *port != 0)
            .ok_or_else(|| TargetError(format!("{text:?} is not a port")))
    };
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, rest) = v6
            .split_once(']')
            .ok_or_else(|| TargetError(format!("{authority:?}: unclosed [")))?;
        match rest.strip_prefix(':') {
            Some(text) => (host, port(text)?),
            None if rest.is_empty() => (host, DEFAULT_PORT),
            None => return Err(TargetError(format!("{authority:?} is not HOST:PORT"))),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((host, text)) => (host, port(text)?),
            None => (authority, DEFAULT_PORT),
        }
    };
    if host.is_empty() {
        return Err(TargetError(
            "name the KMS's host: https://HOST[:PORT]".into(),
        ));
    }
    Ok((host.to_owned(), port))
}

fn absolute(name: &str, value: String) -> Result<PathBuf, TargetError> {
    if !value.starts_with('/') {
        return Err(TargetError(format!(
            "{name}={value}: name the file by its absolute path"
        )));
    }
    Ok(PathBuf::from(value))
}

/// Why the other KMS did not wrap or unwrap the root key. Names what to check; never
/// a password or key material.
#[derive(Debug, thiserror::Error)]
pub enum KmsCustodyError {
    /// A file of the target (client key, password, CA) is unusable.
    #[error("cannot use the {what} {path}: {problem}")]
    File {
        /// `client key file`, `password file`, `CA file`.
        what: &'static str,
        /// The file.
        path: String,
        /// What is wrong.
        problem: String,
    },
    /// The client key file does not open with the password file's password.
    #[error(
        "the client key {path} does not open with the password in {password_file}: {problem}; \
         check both files (a client key file is the JSON CreateClientKey's answer was saved as)"
    )]
    ClientKey {
        /// The client key file.
        path: String,
        /// The password file.
        password_file: String,
        /// What did not open.
        problem: String,
    },
    /// The KMS did not answer: not reachable, or too slow. Worth trying again.
    #[error(
        "cannot reach the KMS: {source}; check the endpoint in --root-key-kms, the \
         network, and that the KMS is up"
    )]
    Unreachable {
        /// The cause (naming `host:port`).
        source: CallError,
    },
    /// TLS with the KMS failed.
    #[error(
        "TLS with the KMS at {endpoint} failed ({detail}): check that ca-file={ca_file} holds \
         the CA of the KMS's certificate and that the certificate names the host in \
         --root-key-kms"
    )]
    Tls {
        /// `host:port`.
        endpoint: String,
        /// rustls's reason.
        detail: String,
        /// The CA file.
        ca_file: String,
    },
    /// The KMS refused the client key (401).
    #[error(
        "the KMS at {endpoint} rejected the client key {client_key_id} from {client_key_file} \
         ({answer}): it may have been deleted (revoked) or have expired, or this \
         host's clock is off; mint a new client key"
    )]
    ClientKeyRejected {
        /// `host:port`.
        endpoint: String,
        /// The client key ID.
        client_key_id: String,
        /// The client key file.
        client_key_file: String,
        /// The public error code and the KMS's message.
        answer: String,
    },
    /// The KMS has no such key (404).
    #[error("the KMS at {endpoint} has no key {key_id} ({code}): check key-id= in --root-key-kms")]
    NoKey {
        /// `host:port`.
        endpoint: String,
        /// The key ID or alias.
        key_id: String,
        /// The public error code.
        code: String,
    },
    /// The KMS refused the operation (403, 400, ...): access, the key's state, or a
    /// blob it does not open.
    #[error(
        "the KMS at {endpoint} refused {} with key {key_id} for client key \
         {client_key_id} ({answer}): {hint}", .operation.name()
    )]
    Refused {
        /// `host:port`.
        endpoint: String,
        /// `AdvanceEncrypt`, `AdvanceDecrypt`.
        operation: Operation,
        /// The key ID or alias.
        key_id: String,
        /// The client key ID.
        client_key_id: String,
        /// The HTTP status, the public error code and the KMS's message.
        answer: String,
        /// What to check.
        hint: &'static str,
    },
    /// The KMS answered, and not with a root key.
    #[error("the KMS at {endpoint} answered {operation} unexpectedly: {detail}")]
    Answer {
        /// `host:port`.
        endpoint: String,
        /// The operation.
        operation: &'static str,
        /// What was wrong.
        detail: String,
    },
}

impl KmsCustodyError {
    /// Whether trying again later may succeed (the KMS unreachable, slow, or
    /// answering a server error): a start then waits, NOT_SERVING, instead of failing.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unreachable { .. })
    }

    /// The kind of failure, for a log that shows each kind once.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::File { .. } => "file",
            Self::ClientKey { .. } => "client key file",
            Self::Unreachable { source, .. } => match source {
                CallError::TimedOut { .. } => "KMS timed out",
                CallError::Refused { .. } => "KMS server error",
                _ => "KMS unreachable",
            },
            Self::Tls { .. } => "TLS",
            Self::ClientKeyRejected { .. } => "client key rejected",
            Self::NoKey { .. } => "no such key",
            Self::Refused { .. } => "refused",
            Self::Answer { .. } => "answer",
        }
    }
}

/// The root key sealed by the remote key: what is kept on disk.
pub(super) struct Sealed {
    /// The self-describing blob of `AdvanceEncrypt` (key version, IV, ciphertext).
    pub(super) ciphertext_blob: Vec<u8>,
    /// The remote key's ID, as the KMS answered.
    pub(super) key_id: String,
    /// The remote key version that sealed it.
    pub(super) key_version_id: String,
}

/// A client of the target's KMS with its client key opened (off the async threads:
/// the PKCS#12's key derivations are CPU-heavy).
async fn client(target: &KmsTarget) -> Result<SdkClient, KmsCustodyError> {
    let owned = target.clone();
    let key = tokio::task::spawn_blocking(move || open_client_key(&owned))
        .await
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic.into_panic()))?;
    let roots = read_roots(&target.ca_file).map_err(|problem| KmsCustodyError::File {
        what: "CA file",
        path: target.ca_file.display().to_string(),
        problem,
    })?;
    SdkClient::new(&target.host, target.port, roots, key).map_err(|problem| KmsCustodyError::File {
        what: "CA file",
        path: target.ca_file.display().to_string(),
        problem,
    })
}

/// The SDKs' client key file.
#[derive(Deserialize)]
struct ClientKeyFile {
    #[serde(rename = "KeyId")]
    key_id: String,
    #[serde(rename = "PrivateKeyData")]
    private_key_data: String,
}

fn open_client_key(target: &KmsTarget) -> Result<ClientKey, KmsCustodyError> {
    let key_path = target.client_key_file.display().to_string();
    let file_problem = |problem: String| KmsCustodyError::File {
        what: "client key file",
        path: key_path.clone(),
        problem,
    };
    let contents = read_private(&target.client_key_file).map_err(&file_problem)?;
    let parsed: ClientKeyFile = serde_json::from_slice(&contents).map_err(|_| {
        file_problem(
            "it is not the SDKs' client key JSON ({\"KeyId\": …, \"PrivateKeyData\": …})".into(),
        )
    })?;
    let data = Zeroizing::new(parsed.private_key_data);
    let pkcs12 = Zeroizing::new(
        BASE64
            .decode(data.trim())
            .map_err(|_| file_problem("its PrivateKeyData is not base64".into()))?,
    );
    let password =
        read_private(&target.password_file).map_err(|problem| KmsCustodyError::File {
            what: "password file",
            path: target.password_file.display().to_string(),
            problem,
        })?;
    let password = std::str::from_utf8(&password).map_err(|_| KmsCustodyError::File {
        what: "password file",
        path: target.password_file.display().to_string(),
        problem: "it is not text".into(),
    })?;
    let password = password
        .strip_suffix('\n')
        .map(|text| text.strip_suffix('\r').unwrap_or(text))
        .unwrap_or(password);
    ClientKey::open(parsed.key_id, &pkcs12, password).map_err(|problem| {
        KmsCustodyError::ClientKey {
            path: key_path.clone(),
            password_file: target.password_file.display().to_string(),
            problem,
        }
    })
}

/// A secret file's contents; refused if others may read it, as the root key file is.
fn read_private(path: &Path) -> Result<Zeroizing<Vec<u8>>, String> {
    let mut file = std::fs::File::open(path).map_err(|err| err.to_string())?;
    let metadata = file.metadata().map_err(|err| err.to_string())?;
    if let Some((mode, who)) = super::super::root_key::readable_by_others(&metadata) {
        return Err(format!(
            "it has mode {mode:04o} and must not be readable by {who}; run `chmod 600 {}`",
            path.display()
        ));
    }
    let mut contents = Zeroizing::new(Vec::new());
    std::io::Read::read_to_end(&mut file, &mut contents).map_err(|err| err.to_string())?;
    if contents.is_empty() {
        return Err("it is empty".into());
    }
    Ok(contents)
}

/// What a call's failure means for the custody: which setting to check.
fn failed(
    target: &KmsTarget,
    client: &SdkClient,
    operation: Operation,
    err: CallError,
) -> KmsCustodyError {
    let endpoint = client.authority().to_owned();
    if err.is_transient() {
        return KmsCustodyError::Unreachable { source: err };
    }
    match err {
        CallError::Tls { detail, .. } => KmsCustodyError::Tls {
            endpoint,
            detail,
            ca_file: target.ca_file.display().to_string(),
        },
        CallError::Refused {
            status: 401,
            code,
            message,
            ..
        } => KmsCustodyError::ClientKeyRejected {
            endpoint,
            client_key_id: client.client_key_id().to_owned(),
            client_key_file: target.client_key_file.display().to_string(),
            answer: format!("{code}: {message}"),
        },
        CallError::Refused {
            status: 404, code, ..
        } => KmsCustodyError::NoKey {
            endpoint,
            key_id: target.key_id.clone(),
            code,
        },
        CallError::Refused {
            status,
            code,
            message,
            ..
        } => KmsCustodyError::Refused {
            endpoint,
            operation,
            key_id: target.key_id.clone(),
            client_key_id: client.client_key_id().to_owned(),
            answer: format!("HTTP {status} {code}: {message}"),
            hint: match (operation, status) {
                (_, 403) => {
                    "check that the client key's principal may use this key (the KMS's \
                     access policy) and that the key is enabled"
                }
                (Operation::AdvanceDecrypt, 400) => {
                    "the wrapped root key was not sealed by this KMS's key, or is damaged: \
                     check --root-key-file and key-id="
                }
                _ => "check key-id= and the key's state on the KMS",
            },
        },
        other => KmsCustodyError::Answer {
            endpoint,
            operation: operation.name(),
            detail: other.to_string(),
        },
    }
}

/// Seals `root_key` with the target's key (`AdvanceEncrypt`).
pub(super) async fn seal(
    target: &KmsTarget,
    root_key: &MasterKeyMaterial,
) -> Result<Sealed, KmsCustodyError> {
    let client = client(target).await?;
    let mut request = AdvanceEncryptRequest {
        key_id: target.key_id.clone(),
        plaintext: root_key.expose_secret().to_vec(),
        aad: AAD.to_vec(),
        ..Default::default()
    };
    let answer: Result<AdvanceEncryptResponse, _> =
        client.call(Operation::AdvanceEncrypt, &request).await;
    request.plaintext.zeroize();
    let answer = answer.map_err(|err| failed(target, &client, Operation::AdvanceEncrypt, err))?;
    if answer.ciphertext_blob.is_empty() {
        return Err(KmsCustodyError::Answer {
            endpoint: client.authority().to_owned(),
            operation: Operation::AdvanceEncrypt.name(),
            detail: "no CiphertextBlob".into(),
        });
    }
    Ok(Sealed {
        ciphertext_blob: answer.ciphertext_blob,
        key_id: answer.key_id,
        key_version_id: answer.key_version_id,
    })
}

/// Opens a root key sealed by [`seal`] (`AdvanceDecrypt`).
pub(super) async fn open(
    target: &KmsTarget,
    ciphertext_blob: &[u8],
) -> Result<MasterKeyMaterial, KmsCustodyError> {
    let client = client(target).await?;
    let request = AdvanceDecryptRequest {
        ciphertext_blob: ciphertext_blob.to_vec(),
        key_id: target.key_id.clone(),
        aad: AAD.to_vec(),
        ..Default::default()
    };
    let answer: AdvanceDecryptResponse = client
        .call(Operation::AdvanceDecrypt, &request)
        .await
        .map_err(|err| failed(target, &client, Operation::AdvanceDecrypt, err))?;
    MasterKeyMaterial::from_bytes(&answer.plaintext).map_err(|_| KmsCustodyError::Answer {
        endpoint: client.authority().to_owned(),
        operation: Operation::AdvanceDecrypt.name(),
        detail: format!("{} bytes, not a root key", answer.plaintext.len()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILES: &str = "client-key-file=/s/ck.json&password-file=/s/pw&ca-file=/s/ca.pem";

    #[test]
    fn a_target_parses_and_displays_as_given() {
        let text = format!("https://kms.example:8443/?key-id=alias/kmsd-root&{FILES}");
        let target: KmsTarget = text.parse().unwrap();
        assert_eq!(target.host, "kms.example");
        assert_eq!(target.port, 8443);
        assert_eq!(target.key_id, "alias/kmsd-root");
        assert_eq!(target.client_key_file, PathBuf::from("/s/ck.json"));
        assert_eq!(target.password_file, PathBuf::from("/s/pw"));
        assert_eq!(target.ca_file, PathBuf::from("/s/ca.pem"));
        assert_eq!(target.to_string(), text);
        let v6: KmsTarget = format!("https://[::1]?key-id=k%2F1&{FILES}")
            .parse()
            .unwrap();
        assert_eq!((v6.host.as_str(), v6.port), ("::1", 443));
        assert_eq!(v6.key_id, "k/1");
    }

    #[test]
    fn bad_targets_say_what_to_fix() {
        for (text, expected) in [
            (format!("http://h?key-id=k&{FILES}"), "https://"),
            (format!("https://h/v1?key-id=k&{FILES}"), "without a path"),
            (format!("https://h:0?key-id=k&{FILES}"), "not a port"),
            (format!("https://h?{FILES}"), "key-id="),
            (
                "https://h?key-id=k&client-key-file=/a&ca-file=/c".into(),
                "password-file=",
            ),
            (
                format!("https://h?key-id=k&{FILES}&password=hunter2"),
                "password= is refused",
            ),
            (
                format!("https://h?key-id=k&{FILES}&x=1"),
                "unknown parameter",
            ),
            (
                "https://h?key-id=k&client-key-file=ck.json&password-file=/p&ca-file=/c".into(),
                "absolute path",
            ),
        ] {
            let err = text.parse::<KmsTarget>().unwrap_err().to_string();
            assert!(err.contains(expected), "{text}: {err}");
            assert!(!err.contains("hunter2"), "{err}");
        }
    }

    #[test]
    fn only_an_unreachable_kms_is_worth_waiting_for() {
        let unreachable = KmsCustodyError::Unreachable {
            source: CallError::Connect {
                authority: "h:1".into(),
                detail: "refused".into(),
            },
        };
        assert!(unreachable.is_transient());
        let tls = KmsCustodyError::Tls {
            endpoint: "h:1".into(),
            detail: "UnknownIssuer".into(),
            ca_file: "/c".into(),
        };
        assert!(!tls.is_transient());
        assert_ne!(unreachable.kind(), tls.kind());
    }
}
