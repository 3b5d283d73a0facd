//! Binary data goes through files, never the terminal.
//!
//! Files holding a secret (a plaintext private key, a data key, decrypted data, random
//! bytes) are created with mode 0600, and so is every ciphertext file: nothing kmsctl
//! writes is for other users. A file is written to a temporary name beside its target
//! and renamed into place, so a failure never leaves half a key behind. `-` as an
//! output means stdout, refused when stdout is a terminal.
//!
//! A ciphertext file is a JSON document with the public API's field names:
//! `{"KeyId": "key-...", "CiphertextBlob": "<base64>", "Iv": "<base64>",
//! "KeyVersionId": "..."}`. `KeyVersionId` is present for the Advance forms
//! (opened with AdvanceDecrypt), absent for the plain form (opened with Decrypt). An
//! RSA encryption key's ciphertext has no `Iv` and names its `Algorithm`
//! (`RSAES_OAEP_SHA_256` or `RSAES_OAEP_SHA_1`), which Decrypt needs. An Encrypt or
//! GenerateDataKey response printed by grpcurl is such a file as it is.

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};
use zeroize::Zeroizing;

use crate::failure::Failure;

/// The largest input kmsctl reads (the server refuses more anyway).
const MAX_INPUT: u64 = 1024 * 1024;

/// Writes `bytes` to `path` (mode 0600, atomically), or to stdout for `-` when stdout
/// is not a terminal.
///
/// # Errors
///
/// [`Failure::Usage`] for `-` on a terminal; [`Failure::File`] if the file cannot be
/// written.
pub fn write_private(path: &Path, bytes: &[u8], what: &str) -> Result<(), Failure> {
    if path == Path::new("-") {
        let stdout = std::io::stdout();
        if stdout.is_terminal() {
            return Err(Failure::Usage(format!(
                "refusing to write {what} to a terminal: name a file, or redirect stdout"
            )));
        }
        let mut out = stdout.lock();
        return out
            .write_all(bytes)
            .and_then(|()| out.flush())
            .map_err(|err| Failure::file(format!("writing {what} to"), path, err));
    }
    let doing = format!("writing {what} to");
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut file = tempfile::Builder::new()
        .prefix(".kmsctl-")
        .permissions(private_permissions())
        .tempfile_in(&dir)
        .map_err(|err| Failure::file(&doing, path, err))?;
    file.write_all(bytes)
        .and_then(|()| file.as_file().sync_all())
        .map_err(|err| Failure::file(&doing, path, err))?;
    file.persist(path)
        .map_err(|err| Failure::file(&doing, path, err.error))?;
    Ok(())
}

#[cfg(unix)]
fn private_permissions() -> std::fs::Permissions {
    use std::os::unix::fs::PermissionsExt;
    std::fs::Permissions::from_mode(0o600)
}

#[cfg(not(unix))]
fn private_permissions() -> std::fs::Permissions {
    std::fs::metadata(".").map(|m| m.permissions()).unwrap()
}

/// Reads an input file, or stdin for `-`.
///
/// # Errors
///
/// [`Failure::File`] if it cannot be read; [`Failure::Usage`] if it is over 1 MiB.
pub fn read_input(path: &Path, what: &str) -> Result<Zeroizing<Vec<u8>>, Failure> {
    let mut bytes = Zeroizing::new(Vec::new());
    let doing = format!("reading {what} from");
    let read = if path == Path::new("-") {
        std::io::stdin()
            .lock()
            .take(MAX_INPUT + 1)
            .read_to_end(&mut bytes)
    } else {
        std::fs::File::open(path).and_then(|f| f.take(MAX_INPUT + 1).read_to_end(&mut bytes))
    };
    read.map_err(|err| Failure::file(&doing, path, err))?;
    if bytes.len() as u64 > MAX_INPUT {
        return Err(Failure::Usage(format!(
            "{}: {what} is over {MAX_INPUT} bytes",
            path.display()
        )));
    }
    Ok(bytes)
}

/// A ciphertext as a file holds it; see the module docs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CiphertextFile {
    /// The key that sealed it.
    pub key_id: String,
    /// The ciphertext blob.
    pub blob: Vec<u8>,
    /// The IV (plain form only; empty for the Advance form).
    pub iv: Vec<u8>,
    /// The key version (Advance form only).
    pub key_version_id: Option<String>,
    /// The algorithm for Decrypt: empty for AES-GCM, else an RSAES-OAEP name.
    pub algorithm: String,
}

impl CiphertextFile {
    /// The JSON document.
    pub fn to_json(&self) -> Value {
        let mut doc = json!({
            "KeyId": self.key_id,
            "CiphertextBlob": BASE64.encode(&self.blob),
        });
        if !self.iv.is_empty() {
            doc["Iv"] = json!(BASE64.encode(&self.iv));
        }
        if let Some(version) = &self.key_version_id {
            doc["KeyVersionId"] = json!(version);
        }
        if !self.algorithm.is_empty() {
            doc["Algorithm"] = json!(self.algorithm);
        }
        doc
    }

    /// Writes the file (mode 0600, atomically).
    pub fn write(&self, path: &Path) -> Result<(), Failure> {
        let mut text = serde_json::to_string_pretty(&self.to_json()).unwrap_or_default();
        text.push('\n');
        write_private(path, text.as_bytes(), "the ciphertext")
    }

    /// Reads a ciphertext file.
    ///
    /// # Errors
    ///
    /// [`Failure::File`] if it cannot be read; [`Failure::Usage`] if it is not a
    /// ciphertext file.
    pub fn read(path: &Path) -> Result<Self, Failure> {
        let bytes = read_input(path, "the ciphertext")?;
        let bad = |why: &str| {
            Failure::Usage(format!(
                "{} is not a ciphertext file ({why}); kmsctl encrypt, datakey generate and \
                 keypair generate write them",
                path.display()
            ))
        };
        let doc: Value = serde_json::from_slice(&bytes).map_err(|_| bad("not JSON"))?;
        let text = |name: &str| doc.get(name).and_then(Value::as_str);
        let bytes_of = |name: &str| -> Result<Vec<u8>, Failure> {
            match text(name) {
                None | Some("") => Ok(Vec::new()),
                Some(b64) => BASE64
                    .decode(b64)
                    .map_err(|_| bad(&format!("{name} is not base64"))),
            }
        };
        let blob = bytes_of("CiphertextBlob")?;
        if blob.is_empty() {
            return Err(bad("no CiphertextBlob"));
        }
        Ok(Self {
            key_id: text("KeyId").unwrap_or_default().to_owned(),
            blob,
            iv: bytes_of("Iv")?,
            key_version_id: text("KeyVersionId")
                .filter(|v| !v.is_empty())
                .map(str::to_owned),
            // AES_GCM is what an empty Algorithm means: kept empty.
            algorithm: text("Algorithm")
                .filter(|a| *a != "AES_GCM")
                .unwrap_or_default()
                .to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ciphertext_files_round_trip_and_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.json");
        for file in [
            CiphertextFile {
                key_id: "key-1".into(),
                blob: vec![1, 2, 3],
                iv: vec![4; 12],
                key_version_id: None,
                algorithm: String::new(),
            },
            CiphertextFile {
                key_id: "key-1".into(),
                blob: vec![9; 40],
                iv: Vec::new(),
                key_version_id: Some("v-1".into()),
                algorithm: String::new(),
            },
            CiphertextFile {
                key_id: "key-rsa".into(),
                blob: vec![7; 256],
                iv: Vec::new(),
                key_version_id: None,
                algorithm: "RSAES_OAEP_SHA_256".into(),
            },
        ] {
            file.write(&path).unwrap();
            assert_eq!(CiphertextFile::read(&path).unwrap(), file);
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let mode = std::fs::metadata(&path).unwrap().permissions().mode();
                assert_eq!(mode & 0o777, 0o600);
            }
        }
        std::fs::write(&path, "{\"KeyId\": \"k\"}").unwrap();
        assert!(matches!(
            CiphertextFile::read(&path),
            Err(Failure::Usage(_))
        ));
        std::fs::write(&path, "not json").unwrap();
        assert!(matches!(
            CiphertextFile::read(&path),
            Err(Failure::Usage(_))
        ));
    }
}
