//! Root key custody: where the root key is kept and what opens it at start.
//!
//! - [`RootKeyCustody::File`]: `--root-key-file` holds the key itself
//!   ([`super::root_key::load`]); whoever reads the file has it.
//! - [`RootKeyCustody::Pkcs11`]: `--root-key-file` holds the key sealed by an AES-256
//!   key inside an HSM (`--root-key-pkcs11 URI`, [`pkcs11`]); the file alone opens
//!   nothing.
//! - [`RootKeyCustody::Kms`]: `--root-key-file` holds the key sealed by a master key
//!   of another KMS instance (`--root-key-kms`, [`kms`]), opened with one
//!   `AdvanceDecrypt` over the SDKs' HTTPS protocol; the file alone opens nothing.
//!
//! Either way the key is opened once, at start (or by an offline subcommand), into
//! zeroizing memory, and used as before: the store's root key check
//! ([`super::root_key::check_matches`]) still ties the store to it.

pub mod kms;
pub mod pkcs11;
pub mod pkcs11_uri;

use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};

use self::kms::{KmsCustodyError, KmsTarget};
use self::pkcs11::Pkcs11Error;
use self::pkcs11_uri::Pkcs11Uri;
use super::root_key::{self, RootKeyError};
use crate::crypto::secret::MasterKeyMaterial;

/// Why a custody did not open (or seal) the root key. Names what to check; never a
/// PIN.
#[derive(Debug, thiserror::Error)]
pub enum CustodyError {
    /// The root key file itself (missing, open to others, malformed).
    #[error(transparent)]
    File(#[from] RootKeyError),
    /// The file holds a wrapped root key, and was given as a plain one.
    #[error(
        "the root key file {path} holds a root key wrapped by another custody: pass {custody} \
         with it"
    )]
    Wrapped {
        /// The file.
        path: String,
        /// The setting that opens it.
        custody: &'static str,
    },
    /// A custody was named, and the file is not a wrapped root key.
    #[error(
        "the file {path} is not a wrapped root key (one written by `kmsd root-key \
         init-pkcs11` or `kmsd root-key init-kms`); check --root-key-file"
    )]
    NotWrapped {
        /// The file.
        path: String,
    },
    /// A wrapped root key file's field does not decode.
    #[error("the wrapped root key file {path} is damaged: its {field} does not decode")]
    Corrupt {
        /// The file.
        path: String,
        /// The field.
        field: String,
    },
    /// The HSM did not open (or seal) the root key.
    #[error(transparent)]
    Hsm(#[from] Pkcs11Error),
    /// The other KMS did not open (or seal) the root key (boxed: it names much, and
    /// a `Result` of this error should stay small).
    #[error(transparent)]
    Kms(Box<KmsCustodyError>),
    /// The wrapped root key file names another custody than the one given.
    #[error(
        "the root key file {path} is wrapped by {found}, not by what {given} names: pass \
         the custody it was written for"
    )]
    OtherCustody {
        /// The file.
        path: String,
        /// The custody the file names.
        found: &'static str,
        /// The setting given.
        given: &'static str,
    },
}

impl From<KmsCustodyError> for CustodyError {
    fn from(err: KmsCustodyError) -> Self {
        Self::Kms(Box::new(err))
    }
}

impl CustodyError {
    /// Whether trying again later may succeed: the custody could not be reached (the
    /// other KMS down or slow, the HSM's token not present), as opposed to refusing
    /// (a wrong PIN, a missing key, a rejected client key) or a file being wrong.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Hsm(err) => err.is_transient(),
            Self::Kms(err) => err.is_transient(),
            _ => false,
        }
    }

    /// The kind of failure, for a log that shows each kind once while waiting.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Hsm(err) => err.kind(),
            Self::Kms(err) => err.kind(),
            _ => "root key file",
        }
    }
}

/// Where the root key is and what opens it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RootKeyCustody {
    /// The file holds the key.
    File(PathBuf),
    /// The file holds the key sealed by the HSM key the URI names.
    Pkcs11 {
        /// The wrapped root key's file.
        wrapped: PathBuf,
        /// The HSM key that seals it.
        uri: Pkcs11Uri,
    },
    /// The file holds the key sealed by another KMS's key.
    Kms {
        /// The wrapped root key's file.
        wrapped: PathBuf,
        /// The KMS, its key, and the files to use it with.
        target: KmsTarget,
    },
}

impl RootKeyCustody {
    /// The custody of `file`: wrapped by the HSM key `pkcs11` names, or by the other
    /// KMS's key `kms` names, if either (callers refuse both: the configuration's
    /// validation, the subcommands' flags).
    pub fn new(file: PathBuf, pkcs11: Option<Pkcs11Uri>, kms: Option<KmsTarget>) -> Self {
        match (pkcs11, kms) {
            (Some(uri), _) => Self::Pkcs11 { wrapped: file, uri },
            (None, Some(target)) => Self::Kms {
                wrapped: file,
                target,
            },
            (None, None) => Self::File(file),
        }
    }

    /// The file the key, or its wrapped form, is kept in.
    pub fn file(&self) -> &Path {
        match self {
            Self::File(path)
            | Self::Pkcs11 { wrapped: path, .. }
            | Self::Kms { wrapped: path, .. } => path,
        }
    }

    /// Opens the root key, trying again with a capped backoff ([`RETRY_FIRST`] doubling
    /// up to [`RETRY_MAX`]) while the failure is transient
    /// ([`CustodyError::is_transient`]); the first failure of each kind is logged, the
    /// others counted. `first` is the failure of an attempt made already.
    ///
    /// # Errors
    ///
    /// The first failure that is not transient.
    pub async fn load_patiently(
        &self,
        first: CustodyError,
    ) -> Result<MasterKeyMaterial, CustodyError> {
        let mut failure = first;
        let mut delay = RETRY_FIRST;
        let mut attempts = 1u64;
        let mut logged = std::collections::HashSet::new();
        loop {
            if !failure.is_transient() {
                return Err(failure);
            }
            if logged.insert(failure.kind()) {
                tracing::warn!(
                    error = %failure,
                    attempts,
                    "the root key's custody cannot be reached: NOT_SERVING, trying again \
                     (each kind of failure is logged once)"
                );
            } else {
                tracing::debug!(error = %failure, attempts, "the root key's custody: still unreachable");
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(RETRY_MAX);
            attempts += 1;
            match self.load().await {
                Ok(key) => {
                    tracing::info!(attempts, "the root key's custody answered: root key opened");
                    return Ok(key);
                }
                Err(err) => failure = err,
            }
        }
    }

    /// Opens the root key, off the async threads (an HSM may block).
    ///
    /// # Errors
    ///
    /// [`CustodyError`] naming the file, the module, the token, the key or the PIN
    /// file to check; never the PIN.
    pub async fn load(&self) -> Result<MasterKeyMaterial, CustodyError> {
        if let Self::Kms { wrapped, target } = self {
            let path = wrapped.clone();
            let wrapped_key = tokio::task::spawn_blocking(move || WrappedRootKey::read(&path))
                .await
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic.into_panic()))?;
            let blob = match wrapped_key {
                WrappedRootKey::Kms {
                    ciphertext_blob, ..
                } => decode(wrapped, "ciphertext_blob", &ciphertext_blob)?,
                other => return Err(other.mismatch(wrapped, "--root-key-kms")),
            };
            return Ok(kms::open(target, &blob).await?);
        }
        let custody = self.clone();
        tokio::task::spawn_blocking(move || custody.load_blocking())
            .await
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic.into_panic()))
    }

    fn load_blocking(&self) -> Result<MasterKeyMaterial, CustodyError> {
        match self {
            Self::File(path) => root_key::load(path).map_err(|err| match err {
                // A wrapped root key passed as a plain one: say what opens it.
                RootKeyError::Malformed { .. } => std::fs::read(path)
                    .ok()
                    .and_then(|contents| WrappedRootKey::custody_of(&contents))
                    .map_or(err.into(), |custody| CustodyError::Wrapped {
                        path: path.display().to_string(),
                        custody,
                    }),
                other => other.into(),
            }),
            Self::Pkcs11 { wrapped, uri } => {
                let sealed = match WrappedRootKey::read(wrapped)? {
                    WrappedRootKey::Pkcs11 { iv, ciphertext, .. } => pkcs11::Sealed {
                        iv: decode_iv(wrapped, &iv)?,
                        ciphertext: decode(wrapped, "ciphertext", &ciphertext)?,
                    },
                    other => return Err(other.mismatch(wrapped, "--root-key-pkcs11")),
                };
                Ok(pkcs11::open(uri, &sealed)?)
            }
            Self::Kms { .. } => unreachable!("opened by load"),
        }
    }
}

/// The first wait between attempts to reach a custody that could not be reached.
pub const RETRY_FIRST: std::time::Duration = std::time::Duration::from_secs(1);

/// The longest wait between attempts.
pub const RETRY_MAX: std::time::Duration = std::time::Duration::from_secs(30);

/// `kmsd root-key init-kms`: the root key in `from` (a plain root key file), or a
/// fresh random one, sealed by the other KMS's key, written to `file`, which must not
/// exist. Returns the key ID and version the KMS sealed it with.
///
/// # Errors
///
/// [`CustodyError`]; when it fails, `file` was not created.
pub async fn init_kms(
    target: KmsTarget,
    file: PathBuf,
    from: Option<PathBuf>,
) -> Result<(String, String), CustodyError> {
    refuse_existing(&file)?;
    let root_key = match &from {
        Some(path) => RootKeyCustody::File(path.clone()).load().await?,
        None => MasterKeyMaterial::generate().map_err(|_| RootKeyError::Random)?,
    };
    let sealed = kms::seal(&target, &root_key).await?;
    drop(root_key);
    let written = WrappedRootKey::Kms {
        endpoint: format!("{}:{}", target.host, target.port),
        key_id: sealed.key_id.clone(),
        key_version_id: sealed.key_version_id.clone(),
        ciphertext_blob: BASE64.encode(&sealed.ciphertext_blob),
    };
    tokio::task::spawn_blocking(move || written.write_new(&file))
        .await
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic.into_panic()))?;
    Ok((sealed.key_id, sealed.key_version_id))
}

/// Refuses to write over `file`.
fn refuse_existing(file: &Path) -> Result<(), CustodyError> {
    if file.exists() {
        return Err(CustodyError::File(RootKeyError::Io {
            path: file.display().to_string(),
            source: std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "it exists already; name a new file (it is never overwritten)",
            ),
        }));
    }
    Ok(())
}

/// `kmsd root-key init-pkcs11`: a fresh random root key, sealed by the HSM key `uri`
/// names (created first if `create_key`), written to `file`, which must not exist.
/// Returns nothing of the key: it is opened from the file at start.
///
/// # Errors
///
/// [`CustodyError`]; when it fails, `file` was not created.
pub async fn init_pkcs11(
    uri: Pkcs11Uri,
    file: PathBuf,
    create_key: bool,
) -> Result<(), CustodyError> {
    tokio::task::spawn_blocking(move || {
        refuse_existing(&file)?;
        let root_key = MasterKeyMaterial::generate().map_err(|_| RootKeyError::Random)?;
        let sealed = pkcs11::seal(&uri, &root_key, create_key)?;
        WrappedRootKey::Pkcs11 {
            object: uri.object.clone(),
            mechanism: "CKM_AES_GCM".into(),
            iv: BASE64.encode(sealed.iv),
            ciphertext: BASE64.encode(&sealed.ciphertext),
        }
        .write_new(&file)
    })
    .await
    .unwrap_or_else(|panic| std::panic::resume_unwind(panic.into_panic()))
}

/// The file of a wrapped root key: JSON, tagged with the custody that opens it.
/// Nothing in it is secret without that custody.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "custody", rename_all = "lowercase", deny_unknown_fields)]
enum WrappedRootKey {
    /// Sealed by an HSM key with AES-GCM ([`pkcs11`]).
    Pkcs11 {
        /// The HSM key's label when it was sealed (for the operator; the URI decides).
        object: String,
        /// `CKM_AES_GCM`.
        mechanism: String,
        /// The IV, base64.
        iv: String,
        /// Ciphertext and tag, base64.
        ciphertext: String,
    },
    /// Sealed by another KMS's key with `AdvanceEncrypt` ([`kms`]).
    Kms {
        /// The KMS it was sealed by, `host:port` (for the operator; the setting decides).
        endpoint: String,
        /// The KMS key's ID, as the KMS answered.
        key_id: String,
        /// The key version that sealed it.
        key_version_id: String,
        /// The `AdvanceEncrypt` blob, base64.
        ciphertext_blob: String,
    },
}

impl WrappedRootKey {
    /// The custody a wrapped root key file needs, if `contents` is one: what an
    /// operator who passed it as a plain key file is told.
    fn custody_of(contents: &[u8]) -> Option<&'static str> {
        Some(
            serde_json::from_slice::<WrappedRootKey>(contents)
                .ok()?
                .setting(),
        )
    }

    /// The setting that opens this file.
    fn setting(&self) -> &'static str {
        match self {
            WrappedRootKey::Pkcs11 { .. } => "--root-key-pkcs11 URI",
            WrappedRootKey::Kms { .. } => "--root-key-kms ENDPOINT",
        }
    }

    /// The error for a file of this custody opened with `given`.
    fn mismatch(&self, path: &Path, given: &'static str) -> CustodyError {
        CustodyError::OtherCustody {
            path: path.display().to_string(),
            found: self.setting(),
            given,
        }
    }

    fn read(path: &Path) -> Result<Self, CustodyError> {
        let contents = std::fs::read(path).map_err(|source| RootKeyError::Io {
            path: path.display().to_string(),
            source,
        })?;
        serde_json::from_slice(&contents).map_err(|_| CustodyError::NotWrapped {
            path: path.display().to_string(),
        })
    }

    /// Writes a new file (mode 0600), synced with its directory.
    fn write_new(&self, path: &Path) -> Result<(), CustodyError> {
        let io = |source| RootKeyError::Io {
            path: path.display().to_string(),
            source,
        };
        let mut text = serde_json::to_vec_pretty(self).expect("a wrapped root key encodes");
        text.push(b'\n');
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(path).map_err(io)?;
        file.write_all(&text).map_err(io)?;
        file.sync_all().map_err(io)?;
        Ok(root_key::sync_parent(path).map_err(io)?)
    }
}

fn decode(path: &Path, field: &str, value: &str) -> Result<Vec<u8>, CustodyError> {
    BASE64.decode(value).map_err(|_| CustodyError::Corrupt {
        path: path.display().to_string(),
        field: field.to_owned(),
    })
}

fn decode_iv(path: &Path, value: &str) -> Result<[u8; pkcs11::IV_LEN], CustodyError> {
    decode(path, "iv", value)?
        .try_into()
        .map_err(|_| CustodyError::Corrupt {
            path: path.display().to_string(),
            field: "iv".into(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wrapped_file_is_recognised_and_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("root.wrapped");
        let wrapped = WrappedRootKey::Pkcs11 {
            object: "kmsd-root".into(),
            mechanism: "CKM_AES_GCM".into(),
            iv: BASE64.encode([1u8; 12]),
            ciphertext: BASE64.encode([2u8; 48]),
        };
        wrapped.write_new(&path).unwrap();
        let contents = std::fs::read(&path).unwrap();
        assert_eq!(
            WrappedRootKey::custody_of(&contents),
            Some("--root-key-pkcs11 URI")
        );
        assert_eq!(WrappedRootKey::custody_of(&[7u8; 32]), None);
        assert!(matches!(
            wrapped.write_new(&path),
            Err(CustodyError::File(RootKeyError::Io { .. }))
        ));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let WrappedRootKey::Pkcs11 { iv, .. } = WrappedRootKey::read(&path).unwrap() else {
            panic!("a PKCS#11 file reads back as one");
        };
        assert_eq!(decode_iv(&path, &iv).unwrap(), [1u8; 12]);
        assert!(matches!(
            decode_iv(&path, "AAAA"),
            Err(CustodyError::Corrupt { .. })
        ));
        std::fs::write(&path, [7u8; 32]).unwrap();
        assert!(matches!(
            WrappedRootKey::read(&path),
            Err(CustodyError::NotWrapped { .. })
        ));
    }
}
