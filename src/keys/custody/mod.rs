//! Root key custody: where the root key is kept and what opens it at start.
//!
//! - [`RootKeyCustody::File`]: `--root-key-file` holds the key itself
//!   ([`super::root_key::load`]); whoever reads the file has it.
//! - [`RootKeyCustody::Pkcs11`]: `--root-key-file` holds the key sealed by an AES-256
//!   key inside an HSM (`--root-key-pkcs11 URI`, [`pkcs11`]); the file alone opens
//!   nothing.
//!
//! Either way the key is opened once, at start (or by an offline subcommand), into
//! zeroizing memory, and used as before: the store's root key check
//! ([`super::root_key::check_matches`]) still ties the store to it.

pub mod pkcs11;
pub mod pkcs11_uri;

use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};

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
         init-pkcs11`); check --root-key-file"
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
}

impl RootKeyCustody {
    /// The custody of `file`: wrapped by the HSM key `pkcs11` names, if any.
    pub fn new(file: PathBuf, pkcs11: Option<Pkcs11Uri>) -> Self {
        match pkcs11 {
            Some(uri) => Self::Pkcs11 { wrapped: file, uri },
            None => Self::File(file),
        }
    }

    /// The file the key, or its wrapped form, is kept in.
    pub fn file(&self) -> &Path {
        match self {
            Self::File(path) | Self::Pkcs11 { wrapped: path, .. } => path,
        }
    }

    /// Opens the root key, off the async threads (an HSM may block).
    ///
    /// # Errors
    ///
    /// [`CustodyError`] naming the file, the module, the token, the key or the PIN
    /// file to check; never the PIN.
    pub async fn load(&self) -> Result<MasterKeyMaterial, CustodyError> {
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
                };
                Ok(pkcs11::open(uri, &sealed)?)
            }
        }
    }
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
        if file.exists() {
            return Err(CustodyError::File(RootKeyError::Io {
                path: file.display().to_string(),
                source: std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    "it exists already; name a new file (it is never overwritten)",
                ),
            }));
        }
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
}

impl WrappedRootKey {
    /// The custody a wrapped root key file needs, if `contents` is one: what an
    /// operator who passed it as a plain key file is told.
    fn custody_of(contents: &[u8]) -> Option<&'static str> {
        match serde_json::from_slice::<WrappedRootKey>(contents).ok()? {
            WrappedRootKey::Pkcs11 { .. } => Some("--root-key-pkcs11 URI"),
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
        let WrappedRootKey::Pkcs11 { iv, .. } = WrappedRootKey::read(&path).unwrap();
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
