//! The root key: the 32-byte AES-256 key that seals every key version's material at
//! rest. It lives outside the store: in a file (or a mounted Secret), or sealed by a
//! key the server cannot read (`keys::custody`).
//!
//! A store remembers which root key it was made with by a check value: a known
//! plaintext sealed under the key ([`seal_check`]), recorded in the store's metadata
//! as [`CHECK_ENTRY`] and verified ([`check_matches`]) before the store is opened for
//! writing. The store itself knows nothing of crypto; sealing and verifying live here.

use std::io::Write;
use std::path::Path;

use base64::Engine;
use zeroize::Zeroizing;

use crate::crypto::CryptoError;
use crate::crypto::sealer::{self, SealPurpose};
use crate::crypto::secret::MasterKeyMaterial;
use crate::store::SealedMaterial;

use super::record_mac::RecordMac;

/// The store metadata entry that holds the root key check value.
pub const CHECK_ENTRY: &str = "root_key_check";
/// What the check value seals, and the AAD it seals it with.
const CHECK_PLAINTEXT: &[u8] = b"kmsd root key check v1";
const CHECK_AAD: &[u8] = b"kmsd/v1/root-key-check";

/// Why the root key could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum RootKeyError {
    /// The file could not be read or created.
    #[error("cannot use the root key file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The file holds neither 32 raw bytes nor 32 bytes in hex or base64.
    #[error(
        "the root key file {path} must hold exactly 32 bytes: raw, or as 64 hex digits, or base64"
    )]
    Malformed {
        /// The file.
        path: String,
    },
    /// The random source failed while creating a key.
    #[error("cannot generate a root key: the system random source failed")]
    Random,
    /// The file may be read by users other than the server's (as ssh refuses a
    /// private key file others can read).
    #[error(
        "the root key file {path} has mode {mode:04o}: it must not be readable by {who}; \
         run `chmod 600 {path}`"
    )]
    TooOpen {
        /// The file.
        path: String,
        /// Its permission bits.
        mode: u32,
        /// `others`, or `its group`.
        who: &'static str,
    },
}

/// Refuses a root key file that others may read (see [`readable_by_others`]).
fn check_private(path: &Path, metadata: &std::fs::Metadata) -> Result<(), RootKeyError> {
    match readable_by_others(metadata) {
        None => Ok(()),
        Some((mode, who)) => Err(RootKeyError::TooOpen {
            path: path.display().to_string(),
            mode,
            who,
        }),
    }
}

/// Whether users other than the server's may read a file holding a secret: its mode
/// and `others` or `its group` if so (the root key file, a seed file that fixes
/// material).
///
/// Any permission for others (`o+rwx`) counts. Group permissions count on a file the
/// server's own user owns (the usual `umask 022` file is 0644), and not on a file
/// owned by another user, which the server can only read through its group: that is
/// how Kubernetes mounts a Secret for a non-root pod (owner root, group the pod's
/// `fsGroup`, mode 0440 whatever `defaultMode` says). ssh checks only files the user
/// owns; this is stricter for others.
#[cfg(unix)]
pub(super) fn readable_by_others(metadata: &std::fs::Metadata) -> Option<(u32, &'static str)> {
    use std::os::unix::fs::MetadataExt;
    let mode = metadata.mode() & 0o7777;
    if mode & 0o007 != 0 {
        return Some((mode, "others"));
    }
    if mode & 0o070 != 0 && metadata.uid() == process_uid().unwrap_or(metadata.uid()) {
        return Some((mode, "its group"));
    }
    None
}

#[cfg(not(unix))]
pub(super) fn readable_by_others(_metadata: &std::fs::Metadata) -> Option<(u32, &'static str)> {
    None
}

/// The server's real user ID; `None` where it is not known (then every file counts as
/// the server's own, the strict reading).
#[cfg(unix)]
fn process_uid() -> Option<u32> {
    #[cfg(target_os = "linux")]
    {
        Some(rustix::process::getuid().as_raw())
    }
    #[cfg(not(target_os = "linux"))]
    {
        None
    }
}

/// Reads a root key file: 32 raw bytes, or 64 hex digits, or base64 of 32 bytes
/// (surrounding whitespace ignored). [`RootKeyError::TooOpen`] if users other than
/// the server's may read it (see `readable_by_others`).
pub fn load(path: &Path) -> Result<MasterKeyMaterial, RootKeyError> {
    let io = |source| RootKeyError::Io {
        path: path.display().to_string(),
        source,
    };
    let malformed = || RootKeyError::Malformed {
        path: path.display().to_string(),
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    // The mode of the file opened, not of whatever the path names a moment later.
    check_private(path, &file.metadata().map_err(io)?)?;
    let mut contents = Zeroizing::new(Vec::with_capacity(128));
    std::io::Read::read_to_end(&mut file, &mut contents).map_err(io)?;
    if contents.len() == 32 {
        return MasterKeyMaterial::from_bytes(&contents).map_err(|_| malformed());
    }
    let text = std::str::from_utf8(&contents)
        .map_err(|_| malformed())?
        .trim();
    let decoded = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        Zeroizing::new(decode_hex(text))
    } else {
        Zeroizing::new(
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .map_err(|_| malformed())?,
        )
    };
    MasterKeyMaterial::from_bytes(&decoded).map_err(|_| malformed())
}

fn decode_hex(text: &str) -> Vec<u8> {
    text.as_bytes()
        .chunks(2)
        .filter_map(|pair| {
            let pair = std::str::from_utf8(pair).ok()?;
            u8::from_str_radix(pair, 16).ok()
        })
        .collect()
}

/// Loads `path`, or creates it with a fresh random key (mode 0600) if it does not
/// exist, syncing the file and then its directory so the new key survives a crash.
/// Returns the key and whether it was created.
pub fn load_or_create(path: &Path) -> Result<(MasterKeyMaterial, bool), RootKeyError> {
    if path.exists() {
        return load(path).map(|key| (key, false));
    }
    let key = MasterKeyMaterial::generate().map_err(|_| RootKeyError::Random)?;
    let io = |source| RootKeyError::Io {
        path: path.display().to_string(),
        source,
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(io)?;
    file.write_all(key.expose_secret()).map_err(io)?;
    file.sync_all().map_err(io)?;
    sync_parent(path).map_err(io)?;
    Ok((key, true))
}

/// Fsyncs the directory holding `path`, so a file just created in it stays there
/// after a crash.
pub fn sync_parent(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        let parent = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        std::fs::File::open(parent)?.sync_all()?;
    }
    Ok(())
}

// === rotation ===

/// Why `kmsd rotate-root-key` changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum RotateError {
    /// The two files hold the same key.
    #[error("the new root key is the old one: nothing to do")]
    SameKey,
    /// No store in the data directory.
    #[error("no key store in the data directory: nothing to reseal")]
    NoStore,
    /// The store was made with neither key.
    #[error(
        "the old root key does not match this data directory (check --root-key-file); \
         nothing was changed"
    )]
    WrongOldKey,
    /// The store already is under the new key (a rotation that already committed).
    #[error("the data directory is already under the new root key; nothing was changed")]
    AlreadyRotated,
    /// The store failed; e.g. a running server holds it.
    #[error(
        "the key store failed (is a server running on this data directory? stop it \
         first): {}; nothing was changed", .0.chain()
    )]
    Store(#[from] crate::store::StoreError),
    /// The check value for the new key could not be sealed.
    #[error("cannot seal the root key check: {0}")]
    Check(#[source] CryptoError),
}

/// What a rotation did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rotated {
    /// Versions resealed under the new key.
    pub versions: u64,
    /// Client keys signed again under the new key.
    pub client_keys: u64,
    /// Client-key rows left as they were because they did not verify under the old key
    /// (refused before, refused after).
    pub client_keys_unverified: u64,
    /// The store's size before and after compaction, in bytes.
    pub size_before: u64,
    /// See `size_before`.
    pub size_after: u64,
}

/// Reseals every version's material and the root key check of the store `settings`
/// names from `old` to `new`, in one store transaction (all or nothing), then compacts
/// the store so the pages that held the old sealing are dropped where redb can.
/// Afterwards `old` opens nothing in the store and a server given it refuses to start.
/// No server may hold the store ([`RotateError::Store`] otherwise).
pub async fn rotate(
    settings: &crate::store::StoreSettings,
    old: MasterKeyMaterial,
    new: MasterKeyMaterial,
) -> Result<Rotated, RotateError> {
    use crate::store;
    if old.expose_secret() == new.expose_secret() {
        return Err(RotateError::SameKey);
    }
    match store::peek_meta(settings, CHECK_ENTRY).await? {
        None => return Err(RotateError::NoStore),
        Some(check) if check_matches(&check, &old) => {}
        Some(check) if check_matches(&check, &new) => return Err(RotateError::AlreadyRotated),
        Some(_) => return Err(RotateError::WrongOldKey),
    }
    let check = seal_check(&new).map_err(RotateError::Check)?;
    let (old_mac, new_mac) = (RecordMac::new(&old), RecordMac::new(&new));
    let store = store::open(settings).await?;
    let reseal: store::Resealer = Box::new(move |version| {
        super::material_at_rest::reseal(&old, &new, version).map_err(Into::into)
    });
    let versions = store
        .reseal_all(reseal, vec![(CHECK_ENTRY.to_owned(), check)])
        .await?;
    // The client keys' MACs follow, row by row: an interrupted run leaves rows that no
    // longer verify, so they are refused (never accepted) until `kmsd
    // readmit-client-key` signs them under the new key.
    let (mut client_keys, mut client_keys_unverified) = (0, 0);
    let mut after: Option<String> = None;
    loop {
        let page = store.list_client_keys(after.as_deref(), 100).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.client_key_id.clone());
        for record in page {
            if old_mac.verifies(&record) {
                store.replace_client_key(&new_mac.signed(record)).await?;
                client_keys += 1;
            } else {
                client_keys_unverified += 1;
            }
        }
    }
    drop(store);
    let (size_before, size_after) = store::compact(settings).await?;
    Ok(Rotated {
        versions,
        client_keys,
        client_keys_unverified,
        size_before,
        size_after,
    })
}

// === the root key check ===

/// A fresh check value for `root_key`, to record as [`CHECK_ENTRY`] in a new store.
/// Fails only if the random source fails.
pub fn seal_check(root_key: &MasterKeyMaterial) -> Result<Vec<u8>, CryptoError> {
    let sealed = sealer::seal(
        root_key,
        SealPurpose::KeyMaterialAtRest,
        CHECK_AAD,
        CHECK_PLAINTEXT,
    )?;
    let record = SealedMaterial {
        iv: sealed.iv.to_vec(),
        ciphertext: sealed.ciphertext,
    };
    Ok(serde_json::to_vec(&record).expect("a SealedMaterial always encodes"))
}

/// Whether `check`, a value recorded by [`seal_check`], was made with `root_key`.
/// Anything that is not such a value (corrupt, or made with another key) is false.
pub fn check_matches(check: &[u8], root_key: &MasterKeyMaterial) -> bool {
    let Ok(sealed) = serde_json::from_slice::<SealedMaterial>(check) else {
        return false;
    };
    sealer::open(
        root_key,
        SealPurpose::KeyMaterialAtRest,
        &sealed.iv,
        CHECK_AAD,
        &sealed.ciphertext,
    )
    .is_ok_and(|opened| opened.as_slice() == CHECK_PLAINTEXT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_check_matches_its_own_root_key_only() {
        let key = MasterKeyMaterial::generate().unwrap();
        let other = MasterKeyMaterial::generate().unwrap();
        let check = seal_check(&key).unwrap();
        assert!(check_matches(&check, &key));
        assert!(!check_matches(&check, &other));
        // Fresh IVs: two checks of one key differ, and both match.
        let again = seal_check(&key).unwrap();
        assert_ne!(check, again);
        assert!(check_matches(&again, &key));
        assert!(!check_matches(b"not a check", &key));
        assert!(!check_matches(b"", &key));
    }

    #[test]
    fn created_keys_load_back_and_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("root.key");
        let (created, was_created) = load_or_create(&path).unwrap();
        assert!(was_created);
        let (loaded, was_created) = load_or_create(&path).unwrap();
        assert!(!was_created);
        assert_eq!(created.expose_secret(), loaded.expose_secret());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    /// Writes `contents` to `path` with `mode`.
    fn write_with_mode(path: &Path, contents: &[u8], mode: u32) {
        std::fs::write(path, contents).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
        }
    }

    #[cfg(unix)]
    #[test]
    fn files_others_or_the_group_may_read_are_refused_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        for mode in [0o644, 0o604, 0o640, 0o660, 0o602, 0o610] {
            let path = dir.path().join(format!("root-{mode:o}.key"));
            write_with_mode(&path, &[9u8; 32], mode);
            let err = load(&path).unwrap_err();
            assert!(
                matches!(err, RootKeyError::TooOpen { .. }),
                "{mode:o}: {err:?}"
            );
            let message = err.to_string();
            let fix = format!("chmod 600 {}", path.display());
            assert!(message.contains(&fix), "{message}");
            assert!(message.contains(&format!("{mode:04o}")), "{message}");
            // The fix works.
            write_with_mode(&path, &[9u8; 32], 0o600);
            assert_eq!(load(&path).unwrap().expose_secret(), &[9u8; 32]);
        }
        for mode in [0o600, 0o400] {
            let path = dir.path().join(format!("ok-{mode:o}.key"));
            write_with_mode(&path, &[9u8; 32], mode);
            assert!(load(&path).is_ok(), "{mode:o}");
        }
        // A file the server's user owns counts as its own; checked against the rule
        // for files of other users (Kubernetes: root-owned, group fsGroup, 0440).
        let path = dir.path().join("group.key");
        write_with_mode(&path, &[9u8; 32], 0o440);
        let metadata = std::fs::metadata(&path).unwrap();
        assert!(check_private(&path, &metadata).is_err());
    }

    #[test]
    fn hex_and_base64_files_load() {
        let dir = tempfile::tempdir().unwrap();
        let bytes: Vec<u8> = (0u8..32).collect();
        let hex_path = dir.path().join("hex.key");
        write_with_mode(
            &hex_path,
            format!("{}\n", hex::encode(&bytes)).as_bytes(),
            0o600,
        );
        assert_eq!(load(&hex_path).unwrap().expose_secret()[..], bytes[..]);
        let b64_path = dir.path().join("b64.key");
        let b64 = base64::engine::general_purpose::STANDARD.encode(&bytes);
        write_with_mode(&b64_path, format!("  {b64}\n").as_bytes(), 0o600);
        assert_eq!(load(&b64_path).unwrap().expose_secret()[..], bytes[..]);
    }

    #[test]
    fn malformed_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        for (name, contents) in [
            ("short", b"too short".to_vec()),
            ("long", vec![7u8; 33]),
            ("b64-16", b"AAAAAAAAAAAAAAAAAAAAAA==".to_vec()),
        ] {
            let path = dir.path().join(name);
            write_with_mode(&path, &contents, 0o600);
            assert!(
                matches!(load(&path), Err(RootKeyError::Malformed { .. })),
                "{name}"
            );
        }
        assert!(matches!(
            load(&dir.path().join("missing")),
            Err(RootKeyError::Io { .. })
        ));
    }
}
