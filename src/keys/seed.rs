//! Seed files: keys declared in TOML with fixed IDs, applied at start (`--seed-file`),
//! so every run of a test setup or CI job sees the same key IDs and aliases (as
//! local-kms users seed theirs).
//!
//! ```toml
//! [[keys]]
//! id = "key-payments0001"              # key- and lowercase letters and digits
//! description = "payments"
//! spec = "Aliyun_AES_256"              # optional: the defaults of CreateKey; also
//! usage = "ENCRYPT/DECRYPT"             #   RSA_2048, RSA_3072, EC_P256, EC_P256K, ML_DSA_44,
//!                                       #   ML_DSA_65, ML_DSA_87, ED25519, HMAC_SHA256;
//!                                       #   RSA keys sign by default, or encrypt with
//!                                       #   usage = "ENCRYPT/DECRYPT" (RSAES-OAEP)
//! aliases = ["alias/payments"]
//! rotation_interval = "90d"            # optional: automatic rotation, 7 to 365 days
//! initial_version_id = "6f1c0a8e-2c55-4a3e-9a57-0d3c1f1e9b21"   # optional
//! material = "<64 hex digits>"         # development only: see below
//! ```
//!
//! Applying is idempotent: a key that exists with the same spec and usage (and the same
//! initial version and material, when the file fixes them) is left alone, as is an
//! alias that already names its key; so applying the same file twice changes nothing.
//! Anything that contradicts the store (the ID's key has another spec, an alias names
//! another key, a fixed version ID belongs to another key, fixed material differs) is
//! refused, naming the entry, before anything is written. A description or rotation
//! policy that differs from the store's is kept as the store has it (an operator may
//! have changed it since) and logged.
//!
//! **Secrets** can be declared too, each created once with its first value (a secret
//! that exists is left as it is): the value comes from a file or an environment
//! variable, read at start, never from the seed file itself.
//!
//! ```toml
//! [[secrets]]
//! name = "db/payments/password"         # 1 to 192 of A-Z a-z 0-9 / _ + = . @ -
//! data_file = "/run/secrets/db-password" # or data_env = "DB_PASSWORD"
//! binary = false                        # optional: the value is bytes, not text
//! key = "alias/payments"                # optional: kmsd's default secrets key
//! description = "payments database"     # optional
//! version_id = "v1"                     # optional
//! ```
//!
//! **Fixed material** (`material`, AES keys only: signing and HMAC keys get fresh
//! material) makes ciphertexts of one run open in the next, for test setups only: anyone with the file can decrypt. It is accepted only with
//! `--dev-fixed-seed-material`, and every key that uses it is logged at WARN.

use std::collections::BTreeSet;
use std::path::Path;
#[cfg(test)]
use std::time::Duration;

use serde::Deserialize;
use subtle::ConstantTimeEq;
use zeroize::Zeroize;

use crate::crypto::secret::MasterKeyMaterial;
use crate::error::KmsError;
use crate::store::AliasRecord;

use super::ids;
use super::model::{CreateKeyParams, KeySpec, RotationRequest, parse_key_spec_and_usage};
use super::registry::{KeyRegistry, store_error};

/// Why a seed file was refused. Nothing was written unless it says so.
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    /// The file cannot be read.
    #[error("cannot read the seed file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not a seed file: TOML errors carry their line and column.
    #[error("invalid seed file {path}: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong, naming the entry.
        message: String,
    },
    /// The file fixes key material and users other than the server's may read it
    /// (refused like a root key file others can read).
    #[error(
        "seed file {path} fixes key material and has mode {mode:04o}: it must not be \
         readable by {who}; run `chmod 600 {path}`"
    )]
    TooOpen {
        /// The file.
        path: String,
        /// Its permission bits.
        mode: u32,
        /// `others`, or `its group`.
        who: &'static str,
    },
    /// An entry contradicts the store; nothing was written.
    #[error("seed file {path}: {message}; nothing was changed")]
    Conflict {
        /// The file.
        path: String,
        /// Which entry, and what the store holds instead.
        message: String,
    },
    /// The store failed while the seed was applied.
    #[error("seed file {path}: applying failed: {source}")]
    Apply {
        /// The file.
        path: String,
        /// The cause.
        source: KmsError,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SeedFile {
    #[serde(default)]
    keys: Vec<SeedKey>,
    #[serde(default)]
    secrets: Vec<RawSeedSecret>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSeedSecret {
    name: String,
    data_file: Option<std::path::PathBuf>,
    data_env: Option<String>,
    #[serde(default)]
    binary: bool,
    #[serde(default)]
    key: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    version_id: String,
}

/// A secret of a seed file, its value read (from its file or environment variable).
/// `Debug` leaves out the value.
pub struct SeedSecret {
    /// The secret name.
    pub name: String,
    /// The value: text, or bytes when `binary`.
    pub data: zeroize::Zeroizing<Vec<u8>>,
    /// Whether the value is bytes (stored as SecretDataType binary).
    pub binary: bool,
    /// The master key (key ID or alias); kmsd's default when empty.
    pub key: String,
    /// Free text.
    pub description: String,
    /// The first version's ID; generated when empty.
    pub version_id: String,
}

impl std::fmt::Debug for SeedSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeedSecret")
            .field("name", &self.name)
            .field("data", &"[REDACTED]")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SeedKey {
    id: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    spec: String,
    #[serde(default)]
    usage: String,
    #[serde(default)]
    protection_level: String,
    #[serde(default)]
    aliases: Vec<String>,
    rotation_interval: Option<String>,
    initial_version_id: Option<String>,
    material: Option<FixedMaterial>,
}

/// The hex of fixed material as the file spells it: zeroized on drop, never printed.
#[derive(Deserialize)]
#[serde(transparent)]
struct FixedMaterial(String);

impl std::fmt::Debug for FixedMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[REDACTED]")
    }
}

impl Drop for FixedMaterial {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

/// One key of a checked seed file.
#[derive(Debug)]
struct Entry {
    /// `keys[N] (key-...)`, for messages.
    name: String,
    key_id: String,
    spec: &'static str,
    usage: &'static str,
    params: CreateKeyParams,
    aliases: Vec<String>,
    initial_version_id: Option<String>,
    material: Option<MasterKeyMaterial>,
}

/// A seed file, read and checked; [`Seed::apply`] puts it in the store.
#[derive(Debug)]
pub struct Seed {
    path: String,
    entries: Vec<Entry>,
    secrets: Vec<SeedSecret>,
}

impl Seed {
    /// Reads and checks `path`: well-formed IDs, aliases, specs and intervals, no ID or
    /// alias twice, and fixed material only if `allow_fixed_material` and only in a file
    /// no other user may read.
    ///
    /// # Errors
    ///
    /// [`SeedError::Read`] or [`SeedError::Invalid`], naming the entry at fault;
    /// [`SeedError::TooOpen`] for fixed material in a file others may read.
    pub fn load(path: &Path, allow_fixed_material: bool) -> Result<Self, SeedError> {
        let shown = path.display().to_string();
        let read = |source| SeedError::Read {
            path: shown.clone(),
            source,
        };
        let mut file = std::fs::File::open(path).map_err(read)?;
        // The mode of the file read, not of whatever the path names a moment later.
        let metadata = file.metadata().map_err(read)?;
        let mut text = zeroize::Zeroizing::new(String::new());
        std::io::Read::read_to_string(&mut file, &mut text).map_err(read)?;
        let seed = Self::parse(&shown, &text, allow_fixed_material)?;
        if seed.entries.iter().any(|entry| entry.material.is_some())
            && let Some((mode, who)) = super::root_key::readable_by_others(&metadata)
        {
            return Err(SeedError::TooOpen {
                path: shown,
                mode,
                who,
            });
        }
        Ok(seed)
    }

    fn parse(path: &str, text: &str, allow_fixed_material: bool) -> Result<Self, SeedError> {
        let invalid = |message: String| SeedError::Invalid {
            path: path.to_owned(),
            message,
        };
        let file: SeedFile = toml::from_str(text).map_err(|err| invalid(err.to_string()))?;
        let mut key_ids = BTreeSet::new();
        let mut aliases = BTreeSet::new();
        let mut versions = BTreeSet::new();
        let mut entries = Vec::new();
        for (index, key) in file.keys.into_iter().enumerate() {
            let name = format!("keys[{index}] ({})", key.id);
            let bad = |what: String| invalid(format!("{name}: {what}"));
            if !ids::is_key_id(&key.id) {
                return Err(bad(
                    "id must be key- followed by up to 64 lowercase letters and digits".into(),
                ));
            }
            if !key_ids.insert(key.id.clone()) {
                return Err(bad("the key ID appears twice".into()));
            }
            let (parsed, usage) =
                parse_key_spec_and_usage(&key.spec, &key.usage).map_err(|e| bad(e.to_string()))?;
            let (spec, usage) = (parsed.as_str(), usage.as_str());
            for alias in &key.aliases {
                ids::validate_alias_name(alias).map_err(|e| bad(e.to_string()))?;
                if !aliases.insert(alias.clone()) {
                    return Err(bad(format!("the alias {alias} appears twice")));
                }
            }
            let interval = key
                .rotation_interval
                .as_deref()
                .map(|raw| {
                    humantime::parse_duration(raw).map_err(|err| {
                        bad(format!("rotation_interval {raw:?}: {err} (e.g. \"90d\")"))
                    })
                })
                .transpose()?;
            let rotation = RotationRequest {
                enabled: interval.is_some(),
                interval,
            };
            rotation
                .stored_interval_secs()
                .map_err(|e| bad(e.to_string()))?;
            let initial_version_id = match &key.initial_version_id {
                Some(raw) => {
                    let parsed = uuid::Uuid::parse_str(raw)
                        .map_err(|_| bad(format!("initial_version_id {raw:?} is not a UUID")))?;
                    let canonical = parsed.as_hyphenated().to_string();
                    if !versions.insert(canonical.clone()) {
                        return Err(bad("the initial_version_id appears twice".into()));
                    }
                    Some(canonical)
                }
                None => None,
            };
            let material = match &key.material {
                None => None,
                Some(_) if !allow_fixed_material => {
                    return Err(bad(
                        "material fixes key material, for test setups only (anyone with the \
                         file can decrypt); it needs --dev-fixed-seed-material"
                            .into(),
                    ));
                }
                Some(FixedMaterial(hex)) => {
                    let mut bytes = decode_hex(hex.trim())
                        .ok_or_else(|| bad("material must be 64 hex digits (32 bytes)".into()))?;
                    let material = MasterKeyMaterial::from_bytes(&bytes);
                    bytes.zeroize();
                    Some(
                        material
                            .map_err(|_| bad("material must be 64 hex digits (32 bytes)".into()))?,
                    )
                }
            };
            if material.is_some() && parsed != KeySpec::Aes256 {
                return Err(bad(format!(
                    "material fixes AES key material; a {} key's material is generated",
                    parsed.as_str()
                )));
            }
            if material.is_some() && initial_version_id.is_none() {
                return Err(bad(
                    "material needs initial_version_id too, so that Advance ciphertexts \
                     (which name their version) open in the next run"
                        .into(),
                ));
            }
            entries.push(Entry {
                name,
                key_id: key.id.clone(),
                spec,
                usage,
                params: CreateKeyParams {
                    key_spec: key.spec.clone(),
                    key_usage: key.usage.clone(),
                    protection_level: key.protection_level.clone(),
                    description: key.description.clone(),
                    rotation,
                },
                aliases: key.aliases.clone(),
                initial_version_id,
                material,
            });
        }
        let mut secrets: Vec<SeedSecret> = Vec::new();
        for (index, raw) in file.secrets.into_iter().enumerate() {
            let bad = |what: String| invalid(format!("secrets[{index}] ({}): {what}", raw.name));
            if secrets.iter().any(|s| s.name == raw.name) {
                return Err(bad("the secret name appears twice".into()));
            }
            let data = match (&raw.data_file, &raw.data_env) {
                (Some(file), None) => {
                    zeroize::Zeroizing::new(std::fs::read(file).map_err(|err| {
                        bad(format!("cannot read data_file {}: {err}", file.display()))
                    })?)
                }
                (None, Some(var)) => zeroize::Zeroizing::new(
                    std::env::var(var)
                        .map_err(|_| bad(format!("the environment variable {var} is not set")))?
                        .into_bytes(),
                ),
                _ => {
                    return Err(bad(
                        "give the value as exactly one of data_file and data_env (never \
                         inline)"
                            .into(),
                    ));
                }
            };
            secrets.push(SeedSecret {
                name: raw.name,
                data,
                binary: raw.binary,
                key: raw.key,
                description: raw.description,
                version_id: raw.version_id,
            });
        }
        Ok(Self {
            path: path.to_owned(),
            entries,
            secrets,
        })
    }

    /// The secrets the file declares, values read; the secrets domain creates them
    /// after [`Seed::apply`] made the keys (`crate::secrets::apply_seed`).
    pub fn secrets(&self) -> &[SeedSecret] {
        &self.secrets
    }

    /// The seed file's path, for messages.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Puts the seed in the store through `registry` (full access): first every entry
    /// is checked against the store, then the missing keys and aliases are created.
    /// Returns how many keys and aliases were created.
    ///
    /// # Errors
    ///
    /// [`SeedError::Conflict`] naming the entry, with nothing written;
    /// [`SeedError::Apply`] if the store fails.
    pub async fn apply(&self, registry: &KeyRegistry) -> Result<(usize, usize), SeedError> {
        let apply_error = |source: KmsError| SeedError::Apply {
            path: self.path.clone(),
            source,
        };
        let conflict = |message: String| SeedError::Conflict {
            path: self.path.clone(),
            message,
        };
        // Check everything first, so a conflict leaves the store as it was.
        let mut new_keys = Vec::new();
        let mut new_aliases = Vec::new();
        for entry in &self.entries {
            if entry.material.is_some() {
                tracing::warn!(
                    key_id = %entry.key_id,
                    "DEVELOPMENT SEED: key {} uses FIXED key material from the seed file {} \
                     (--dev-fixed-seed-material): anyone with the file can decrypt its \
                     ciphertexts; never use this outside test setups",
                    entry.key_id,
                    self.path
                );
            }
            let store = &registry.store;
            match store
                .get_key(&entry.key_id)
                .await
                .map_err(store_error)
                .map_err(apply_error)?
            {
                None => {
                    if let Some(version_id) = &entry.initial_version_id
                        && let Some(owner) = registry
                            .version_owner(version_id)
                            .await
                            .map_err(apply_error)?
                    {
                        return Err(conflict(format!(
                            "{}: initial_version_id {version_id} is a version of {owner}",
                            entry.name
                        )));
                    }
                    new_keys.push(entry);
                }
                Some(existing) => {
                    if existing.key_spec != entry.spec || existing.key_usage != entry.usage {
                        return Err(conflict(format!(
                            "{}: the store's key has spec {} and usage {}, the file says {} \
                             and {}",
                            entry.name,
                            existing.key_spec,
                            existing.key_usage,
                            entry.spec,
                            entry.usage
                        )));
                    }
                    if let Some(version_id) = &entry.initial_version_id
                        && *version_id != existing.initial_version_id
                    {
                        return Err(conflict(format!(
                            "{}: the store's key has initial version {}, the file says {version_id}",
                            entry.name, existing.initial_version_id
                        )));
                    }
                    if let Some(material) = &entry.material {
                        let stored = registry
                            .version_material(&existing.key_id, &existing.initial_version_id)
                            .await
                            .map_err(apply_error)?;
                        let same = stored.is_some_and(|stored| {
                            bool::from(stored.expose_secret().ct_eq(material.expose_secret()))
                        });
                        if !same {
                            return Err(conflict(format!(
                                "{}: the store's key has other material than the file's",
                                entry.name
                            )));
                        }
                    }
                    let stored_rotation = existing.rotation_interval_secs;
                    let wanted = entry
                        .params
                        .rotation
                        .stored_interval_secs()
                        .map_err(apply_error)?;
                    if existing.description != entry.params.description || stored_rotation != wanted
                    {
                        tracing::info!(
                            key_id = %entry.key_id,
                            "seed: the key exists with another description or rotation policy \
                             than the seed file's; the store's is kept"
                        );
                    }
                }
            }
            for alias in &entry.aliases {
                match store
                    .get_alias(alias)
                    .await
                    .map_err(store_error)
                    .map_err(apply_error)?
                {
                    None => new_aliases.push((alias, &entry.key_id)),
                    Some(AliasRecord { key_id, .. }) if key_id == entry.key_id => {}
                    Some(AliasRecord { key_id, .. }) => {
                        return Err(conflict(format!(
                            "{}: the alias {alias} names {key_id} in the store",
                            entry.name
                        )));
                    }
                }
            }
        }
        for entry in &new_keys {
            let created = registry
                .create_key_as(
                    entry.key_id.clone(),
                    entry.params.clone(),
                    entry.initial_version_id.clone(),
                    entry.material.as_ref(),
                )
                .await;
            created.map_err(apply_error)?;
            tracing::info!(key_id = %entry.key_id, "seed: key created");
        }
        for (alias, key_id) in &new_aliases {
            registry
                .create_alias(key_id, alias)
                .await
                .map_err(apply_error)?;
            tracing::info!(%key_id, alias = %alias, "seed: alias created");
        }
        Ok((new_keys.len(), new_aliases.len()))
    }
}

/// Lowercase or uppercase hex to bytes; `None` if it is not hex.
fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::testing::{Fixture, create};

    const FILE: &str = r#"
[[keys]]
id = "key-payments0001"
description = "payments"
aliases = ["alias/payments", "alias/payments-v1"]
rotation_interval = "90d"

[[keys]]
id = "key-ci0000000002"
initial_version_id = "6F1C0A8E-2C55-4A3E-9A57-0D3C1F1E9B21"
"#;

    fn parse(text: &str) -> Result<Seed, SeedError> {
        Seed::parse("keys.toml", text, false)
    }

    #[tokio::test]
    async fn applying_twice_creates_once_and_changes_nothing_the_second_time() {
        let fixture = Fixture::new().await;
        let seed = parse(FILE).unwrap();
        assert_eq!(seed.apply(&fixture.registry).await.unwrap(), (2, 2));
        let key = fixture
            .registry
            .describe_key("alias/payments")
            .await
            .unwrap();
        assert_eq!(key.key_id, "key-payments0001");
        assert_eq!(key.description, "payments");
        assert_eq!(
            key.rotation_interval,
            Some(Duration::from_secs(90 * 86_400))
        );
        let other = fixture
            .registry
            .describe_key("key-ci0000000002")
            .await
            .unwrap();
        assert_eq!(
            other.initial_key_version,
            "6f1c0a8e-2c55-4a3e-9a57-0d3c1f1e9b21"
        );
        let before = fixture.registry.counts().await.unwrap();
        fixture.clock.advance(Duration::from_secs(60));
        assert_eq!(seed.apply(&fixture.registry).await.unwrap(), (0, 0));
        assert_eq!(fixture.registry.counts().await.unwrap(), before);
        let again = fixture
            .registry
            .describe_key("alias/payments")
            .await
            .unwrap();
        assert_eq!(again, key, "nothing changed, not even a date");
    }

    #[tokio::test]
    async fn a_conflict_with_the_store_is_refused_naming_the_entry_and_writes_nothing() {
        let fixture = Fixture::new().await;
        parse(FILE).unwrap().apply(&fixture.registry).await.unwrap();
        let stranger = create(&fixture.registry).await;
        fixture
            .registry
            .create_alias(&stranger, "alias/taken")
            .await
            .unwrap();
        let before = fixture.registry.counts().await.unwrap();
        for (text, expected) in [
            (
                // A new key first: it must not be created when a later entry conflicts.
                "[[keys]]\nid = \"key-new0000000001\"\n\n[[keys]]\nid = \"key-payments0001\"\nspec = \"EC_P256\"\n",
                "keys[1] (key-payments0001): the store's key has spec Aliyun_AES_256",
            ),
            (
                "[[keys]]\nid = \"key-new0000000001\"\naliases = [\"alias/taken\"]\n",
                "keys[0] (key-new0000000001): the alias alias/taken names",
            ),
            (
                "[[keys]]\nid = \"key-ci0000000002\"\ninitial_version_id = \"00000000-0000-4000-8000-000000000000\"\n",
                "keys[0] (key-ci0000000002): the store's key has initial version",
            ),
            (
                "[[keys]]\nid = \"key-new0000000001\"\ninitial_version_id = \"6f1c0a8e-2c55-4a3e-9a57-0d3c1f1e9b21\"\n",
                "is a version of key-ci0000000002",
            ),
        ] {
            let err = parse(text)
                .unwrap()
                .apply(&fixture.registry)
                .await
                .unwrap_err();
            assert!(matches!(err, SeedError::Conflict { .. }), "{err}");
            assert!(err.to_string().contains(expected), "{err}");
            assert!(err.to_string().ends_with("nothing was changed"), "{err}");
            assert_eq!(fixture.registry.counts().await.unwrap(), before, "{text}");
        }
    }

    #[tokio::test]
    async fn signing_and_hmac_keys_are_seeded_with_their_fixed_ids_once() {
        let text = "[[keys]]\nid = \"key-jwt0000000001\"\nspec = \"EC_P256\"\n\
                    aliases = [\"alias/jwt\"]\n\
                    initial_version_id = \"11111111-2222-4333-8444-555555555555\"\n\n\
                    [[keys]]\nid = \"key-mac0000000001\"\nspec = \"HMAC_SHA256\"\n";
        let fixture = Fixture::new().await;
        let seed = parse(text).unwrap();
        assert_eq!(seed.apply(&fixture.registry).await.unwrap(), (2, 1));
        let jwt = fixture.registry.describe_key("alias/jwt").await.unwrap();
        assert_eq!(
            (
                jwt.key_id.as_str(),
                jwt.key_spec.as_str(),
                jwt.key_usage.as_str()
            ),
            ("key-jwt0000000001", "EC_P256", "SIGN/VERIFY")
        );
        assert_eq!(
            jwt.initial_key_version,
            "11111111-2222-4333-8444-555555555555"
        );
        let mac = fixture
            .registry
            .describe_key("key-mac0000000001")
            .await
            .unwrap();
        assert_eq!(
            (mac.key_spec.as_str(), mac.key_usage.as_str()),
            ("HMAC_SHA256", "GENERATE/VERIFY_MAC")
        );
        let before = fixture.registry.counts().await.unwrap();
        assert_eq!(seed.apply(&fixture.registry).await.unwrap(), (0, 0));
        assert_eq!(fixture.registry.counts().await.unwrap(), before);

        // Fixed material is AES material: refused for a signing key, even with the flag.
        let fixed = "[[keys]]\nid = \"key-jwt0000000002\"\nspec = \"EC_P256\"\n\
                     initial_version_id = \"11111111-2222-4333-8444-666666666666\"\n\
                     material = \"0000000000000000000000000000000000000000000000000000000000000000\"\n";
        let err = Seed::parse("keys.toml", fixed, true).unwrap_err();
        assert!(
            err.to_string().contains("keys[0] (key-jwt0000000002)")
                && err
                    .to_string()
                    .contains("EC_P256 key's material is generated"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn ml_dsa_and_ed25519_keys_are_seeded_as_signing_keys() {
        let text = "[[keys]]\nid = \"key-firmware00001\"\nspec = \"ML_DSA_65\"\n\
                    aliases = [\"alias/firmware\"]\n\n\
                    [[keys]]\nid = \"key-firmware00002\"\nspec = \"ML_DSA_87\"\n\
                    usage = \"SIGN/VERIFY\"\n\n\
                    [[keys]]\nid = \"key-tokens0000001\"\nspec = \"ED25519\"\n";
        let fixture = Fixture::new().await;
        let seed = parse(text).unwrap();
        assert_eq!(seed.apply(&fixture.registry).await.unwrap(), (3, 1));
        for (id, spec) in [
            ("alias/firmware", "ML_DSA_65"),
            ("key-firmware00002", "ML_DSA_87"),
            ("key-tokens0000001", "ED25519"),
        ] {
            let meta = fixture.registry.describe_key(id).await.unwrap();
            assert_eq!(
                (meta.key_spec.as_str(), meta.key_usage.as_str()),
                (spec, "SIGN/VERIFY"),
                "{id}"
            );
        }
        assert_eq!(seed.apply(&fixture.registry).await.unwrap(), (0, 0));
        // Only SIGN/VERIFY applies to them.
        let wrong = "[[keys]]\nid = \"key-firmware00003\"\nspec = \"ML_DSA_44\"\n\
                     usage = \"ENCRYPT/DECRYPT\"\n";
        let err = parse(wrong).unwrap_err();
        assert!(
            err.to_string().contains("keys[0] (key-firmware00003)"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn rsa_encryption_keys_are_seeded_with_their_usage() {
        let text = "[[keys]]\nid = \"key-wrap000000001\"\nspec = \"RSA_2048\"\n\
                    usage = \"ENCRYPT/DECRYPT\"\naliases = [\"alias/wrap\"]\n\n\
                    [[keys]]\nid = \"key-wrap000000002\"\nspec = \"RSA_3072\"\n\
                    usage = \"ENCRYPT/DECRYPT\"\n\n\
                    [[keys]]\nid = \"key-sign000000001\"\nspec = \"RSA_2048\"\n";
        let fixture = Fixture::new().await;
        let seed = parse(text).unwrap();
        assert_eq!(seed.apply(&fixture.registry).await.unwrap(), (3, 1));
        for (id, spec, usage) in [
            ("alias/wrap", "RSA_2048", "ENCRYPT/DECRYPT"),
            ("key-wrap000000002", "RSA_3072", "ENCRYPT/DECRYPT"),
            ("key-sign000000001", "RSA_2048", "SIGN/VERIFY"),
        ] {
            let meta = fixture.registry.describe_key(id).await.unwrap();
            assert_eq!(
                (meta.key_spec.as_str(), meta.key_usage.as_str()),
                (spec, usage),
                "{id}"
            );
        }
        // The key's material is an RSA key that encrypts and decrypts.
        let meta = fixture.registry.describe_key("alias/wrap").await.unwrap();
        let key = fixture
            .registry
            .oaep_key(
                &meta.key_id,
                &meta.initial_key_version,
                crate::crypto::keygen::KeyPairSpec::Rsa2048,
            )
            .await
            .unwrap()
            .unwrap();
        let algorithm = crate::crypto::rsa_oaep::OaepAlgorithm::Sha256;
        let sealed = key.encrypt(algorithm, b"seeded").unwrap();
        assert_eq!(
            key.decrypt(algorithm, &sealed).unwrap().as_slice(),
            b"seeded"
        );
        assert_eq!(seed.apply(&fixture.registry).await.unwrap(), (0, 0));
        // The same ID with the other usage contradicts the store.
        let other = "[[keys]]\nid = \"key-sign000000001\"\nspec = \"RSA_2048\"\n\
                     usage = \"ENCRYPT/DECRYPT\"\n";
        let err = parse(other)
            .unwrap()
            .apply(&fixture.registry)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("usage SIGN/VERIFY"), "{err}");
    }

    #[tokio::test]
    async fn fixed_material_needs_the_development_flag_and_must_match_the_store() {
        let text = "[[keys]]\nid = \"key-fixed00000001\"\n\
             initial_version_id = \"11111111-1111-4111-8111-111111111111\"\n\
             material = \"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\"\n";
        let err = parse(text).unwrap_err();
        assert!(
            err.to_string().contains("--dev-fixed-seed-material"),
            "{err}"
        );
        assert!(!format!("{err:?}").contains("0001020304"), "{err:?}");

        let fixture = Fixture::new().await;
        let seed = Seed::parse("keys.toml", text, true).unwrap();
        assert!(!format!("{seed:?}").contains("0001020304"), "{seed:?}");
        seed.apply(&fixture.registry).await.unwrap();
        let material = fixture
            .registry
            .version_material("key-fixed00000001", "11111111-1111-4111-8111-111111111111")
            .await
            .unwrap()
            .unwrap();
        let expected: Vec<u8> = (0..32).collect();
        assert_eq!(material.expose_secret().as_slice(), expected.as_slice());
        assert_eq!(seed.apply(&fixture.registry).await.unwrap(), (0, 0));

        let other = text.replace("1e1f\"", "1e1e\"");
        let err = Seed::parse("keys.toml", &other, true)
            .unwrap()
            .apply(&fixture.registry)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("other material"), "{err}");

        let without_version = "[[keys]]\nid = \"key-fixed00000002\"\n\
             material = \"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\"\n";
        let err = Seed::parse("keys.toml", without_version, true).unwrap_err();
        assert!(err.to_string().contains("initial_version_id"), "{err}");
    }

    #[cfg(unix)]
    #[test]
    fn a_seed_file_with_material_others_can_read_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seed.toml");
        let with_material = "[[keys]]\nid = \"key-fixed00000001\"\n\
             initial_version_id = \"11111111-1111-4111-8111-111111111111\"\n\
             material = \"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\"\n";
        std::fs::write(&path, with_material).unwrap();
        for mode in [0o644, 0o640, 0o604] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let err = Seed::load(&path, true).unwrap_err().to_string();
            assert!(err.contains("chmod 600"), "{mode:o}: {err}");
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        Seed::load(&path, true).unwrap();
        // Without material the file holds no secret: any mode.
        std::fs::write(&path, "[[keys]]\nid = \"key-seeded0000000001\"\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        Seed::load(&path, false).unwrap();
    }

    #[test]
    fn seeded_secret_values_come_from_a_file_or_the_environment_never_inline() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("value");
        std::fs::write(&file, "from-a-file").unwrap();
        // A variable every test process has (setting one needs unsafe code).
        let var = "PATH";
        let path = std::env::var(var).unwrap();
        let text = format!(
            "[[secrets]]\nname = \"a\"\ndata_file = {:?}\n\n\
             [[secrets]]\nname = \"b\"\ndata_env = \"{var}\"\nbinary = true\n",
            file.display().to_string()
        );
        let seed = parse(&text).unwrap();
        let values: Vec<(&str, &[u8], bool)> = seed
            .secrets()
            .iter()
            .map(|s| (s.name.as_str(), &s.data[..], s.binary))
            .collect();
        assert_eq!(
            values,
            [
                ("a", &b"from-a-file"[..], false),
                ("b", path.as_bytes(), true)
            ]
        );
        assert!(!format!("{seed:?}").contains("from-a-file"));
        for (bad, expected) in [
            (
                "[[secrets]]\nname = \"a\"\ndata = \"inline\"\n",
                "unknown field",
            ),
            (
                "[[secrets]]\nname = \"a\"\n",
                "exactly one of data_file and data_env",
            ),
            (
                "[[secrets]]\nname = \"a\"\ndata_env = \"KMSD_TEST_UNSET_VAR_9E1B\"\n",
                "is not set",
            ),
        ] {
            let err = parse(bad).unwrap_err().to_string();
            assert!(err.contains(expected), "{bad}: {err}");
        }
    }

    #[tokio::test]
    async fn the_readme_example_is_a_seed_file_that_applies() {
        let readme = include_str!("../../README.md");
        let section = readme
            .split("## Seeding")
            .nth(1)
            .expect("README.md has a Seeding section");
        let example = section
            .split("```toml\n")
            .nth(1)
            .and_then(|rest| rest.split("```").next())
            .expect("the Seeding section has a TOML example");
        let seed = parse(example).unwrap();
        let fixture = Fixture::new().await;
        assert_eq!(seed.apply(&fixture.registry).await.unwrap(), (2, 2));
    }

    #[test]
    fn malformed_entries_are_refused_naming_the_entry() {
        for (text, expected) in [
            ("[[keys]]\nid = \"KEY-1\"\n", "keys[0] (KEY-1): id must be"),
            (
                "[[keys]]\nid = \"key-a\"\n[[keys]]\nid = \"key-a\"\n",
                "keys[1] (key-a): the key ID appears twice",
            ),
            (
                "[[keys]]\nid = \"key-a\"\naliases = [\"payments\"]\n",
                "keys[0] (key-a)",
            ),
            (
                "[[keys]]\nid = \"key-a\"\nrotation_interval = \"3d\"\n",
                "keys[0] (key-a)",
            ),
            (
                "[[keys]]\nid = \"key-a\"\nrotation_interval = \"often\"\n",
                "rotation_interval \"often\"",
            ),
            (
                "[[keys]]\nid = \"key-a\"\nspec = \"EC_P256\"\nusage = \"ENCRYPT/DECRYPT\"\n",
                "keys[0] (key-a)",
            ),
            ("[[keys]]\nid = \"key-a\"\nidd = 1\n", "unknown field `idd`"),
            (
                "[[keys]]\nid = \"key-a\"\ninitial_version_id = \"v1\"\n",
                "is not a UUID",
            ),
        ] {
            let err = parse(text).unwrap_err();
            assert!(err.to_string().contains(expected), "{text:?}: {err}");
        }
        assert_eq!(parse("").unwrap().entries.len(), 0);
    }
}
