//! The control plane's vocabulary: key specs, usages, rotation policies, and the views
//! of keys, versions and aliases that the transports encode.

use std::time::Duration;

use crate::clock::format_date;
use crate::crypto::keygen::KeyPairSpec;
use crate::error::KmsError;
use crate::store::{AliasRecord, KeyRecord, KeyState, VersionRecord};

/// The symmetric key spec: a 256-bit AES key (the default).
pub const KEY_SPEC_AES_256: &str = "Aliyun_AES_256";
/// The usage of AES keys (the default).
pub const KEY_USAGE_ENCRYPT_DECRYPT: &str = "ENCRYPT/DECRYPT";
/// The usage of asymmetric keys.
pub const KEY_USAGE_SIGN_VERIFY: &str = "SIGN/VERIFY";
/// The usage of HMAC keys.
pub const KEY_USAGE_GENERATE_VERIFY_MAC: &str = "GENERATE/VERIFY_MAC";
/// The only protection level.
pub const PROTECTION_LEVEL_SOFTWARE: &str = "SOFTWARE";
/// Shortest automatic rotation interval.
pub const MIN_ROTATION_INTERVAL: Duration = Duration::from_secs(7 * 86_400);
/// Longest automatic rotation interval.
pub const MAX_ROTATION_INTERVAL: Duration = Duration::from_secs(365 * 86_400);
/// The interval used when rotation is turned on without one.
pub const DEFAULT_ROTATION_INTERVAL: Duration = MAX_ROTATION_INTERVAL;
/// Shortest and longest deletion windows, in days.
pub const DELETION_WINDOW_DAYS: std::ops::RangeInclusive<i32> = 7..=366;

/// A master key's spec: what its material is and what it is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeySpec {
    /// `Aliyun_AES_256`: 32 bytes of AES material; `ENCRYPT/DECRYPT`.
    Aes256,
    /// `RSA_2048`: an RSA private key (PKCS#8); `SIGN/VERIFY` or `ENCRYPT/DECRYPT`.
    Rsa2048,
    /// `RSA_3072`: an RSA private key (PKCS#8); `SIGN/VERIFY` or `ENCRYPT/DECRYPT`.
    Rsa3072,
    /// `EC_P256`: a NIST P-256 private key (PKCS#8); `SIGN/VERIFY`.
    EcP256,
    /// `EC_P256K`: a secp256k1 private key (PKCS#8); `SIGN/VERIFY`.
    EcP256k,
    /// `HMAC_SHA256`: a 32-byte secret; `GENERATE/VERIFY_MAC`.
    HmacSha256,
    /// `ML_DSA_44`: an ML-DSA-44 private key (PKCS#8, seed form); `SIGN/VERIFY`.
    MlDsa44,
    /// `ML_DSA_65`: an ML-DSA-65 private key (PKCS#8, seed form); `SIGN/VERIFY`.
    MlDsa65,
    /// `ML_DSA_87`: an ML-DSA-87 private key (PKCS#8, seed form); `SIGN/VERIFY`.
    MlDsa87,
    /// `ED25519`: an Ed25519 private key (PKCS#8 v1, the seed); `SIGN/VERIFY`.
    Ed25519,
}

impl KeySpec {
    /// Every spec, in the order error messages list them.
    pub const ALL: [KeySpec; 10] = [
        Self::Aes256,
        Self::Rsa2048,
        Self::Rsa3072,
        Self::EcP256,
        Self::EcP256k,
        Self::HmacSha256,
        Self::MlDsa44,
        Self::MlDsa65,
        Self::MlDsa87,
        Self::Ed25519,
    ];

    /// The public name, e.g. `EC_P256`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Aes256 => KEY_SPEC_AES_256,
            Self::Rsa2048 => "RSA_2048",
            Self::Rsa3072 => "RSA_3072",
            Self::EcP256 => "EC_P256",
            Self::EcP256k => "EC_P256K",
            Self::HmacSha256 => "HMAC_SHA256",
            Self::MlDsa44 => "ML_DSA_44",
            Self::MlDsa65 => "ML_DSA_65",
            Self::MlDsa87 => "ML_DSA_87",
            Self::Ed25519 => "ED25519",
        }
    }

    /// The spec with this public name.
    pub fn from_name(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw)
    }

    /// The spec a stored key record names. A record naming no known spec is an
    /// internal error (the store was written by something else).
    pub fn of(key: &KeyRecord) -> Result<Self, KmsError> {
        Self::from_name(&key.key_spec).ok_or_else(|| {
            KmsError::internal(format!(
                "{} has an unknown key spec {:?}",
                key.key_id, key.key_spec
            ))
        })
    }

    /// The usage keys of this spec have when none is given (the first of
    /// [`usages`](Self::usages)).
    pub fn usage(self) -> &'static str {
        self.usages()[0].as_str()
    }

    /// The usages a key of this spec may have, the default first. RSA keys sign or
    /// encrypt (RSAES-OAEP), never both: one key, one purpose.
    pub fn usages(self) -> &'static [KeyUsage] {
        match self {
            Self::Aes256 => &[KeyUsage::EncryptDecrypt],
            Self::HmacSha256 => &[KeyUsage::GenerateVerifyMac],
            Self::Rsa2048 | Self::Rsa3072 => &[KeyUsage::SignVerify, KeyUsage::EncryptDecrypt],
            _ => &[KeyUsage::SignVerify],
        }
    }

    /// The key pair type of an asymmetric spec; `None` for AES and HMAC.
    pub fn key_pair_spec(self) -> Option<KeyPairSpec> {
        match self {
            Self::Rsa2048 => Some(KeyPairSpec::Rsa2048),
            Self::Rsa3072 => Some(KeyPairSpec::Rsa3072),
            Self::EcP256 => Some(KeyPairSpec::EcP256),
            Self::EcP256k => Some(KeyPairSpec::EcP256k),
            Self::MlDsa44 => Some(KeyPairSpec::MlDsa44),
            Self::MlDsa65 => Some(KeyPairSpec::MlDsa65),
            Self::MlDsa87 => Some(KeyPairSpec::MlDsa87),
            Self::Ed25519 => Some(KeyPairSpec::Ed25519),
            Self::Aes256 | Self::HmacSha256 => None,
        }
    }

    /// Whether keys of this spec get new versions (CreateKeyVersion, automatic
    /// rotation). Only AES keys do: the public service does not rotate asymmetric keys
    /// (their public key is what verifiers hold), and Hmac names no version, so a new
    /// version would make every earlier MAC unverifiable.
    pub fn rotates(self) -> bool {
        self == Self::Aes256
    }

    /// `Rejected.UnsupportedOperation` for rotating a key of this spec.
    pub fn no_rotation(self, key_id: &str) -> KmsError {
        KmsError::UnsupportedOperation(format!(
            "The key {key_id} is a {} key, which cannot be rotated: only {KEY_SPEC_AES_256} \
             keys have versions and rotation policies.",
            self.as_str()
        ))
    }
}

/// A master key's usage: what its material is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyUsage {
    /// `ENCRYPT/DECRYPT`: AES keys (AES-GCM) and RSA encryption keys (RSAES-OAEP).
    EncryptDecrypt,
    /// `SIGN/VERIFY`: asymmetric signing keys.
    SignVerify,
    /// `GENERATE/VERIFY_MAC`: HMAC keys.
    GenerateVerifyMac,
}

impl KeyUsage {
    /// The public name, e.g. `SIGN/VERIFY`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::EncryptDecrypt => KEY_USAGE_ENCRYPT_DECRYPT,
            Self::SignVerify => KEY_USAGE_SIGN_VERIFY,
            Self::GenerateVerifyMac => KEY_USAGE_GENERATE_VERIFY_MAC,
        }
    }

    /// The usage a stored key record names; one that names no usage of its spec is
    /// an internal error (the store was written by something else).
    pub fn of(key: &KeyRecord) -> Result<Self, KmsError> {
        KeySpec::of(key)?
            .usages()
            .iter()
            .copied()
            .find(|usage| usage.as_str() == key.key_usage)
            .ok_or_else(|| {
                KmsError::internal(format!(
                    "{} has the key usage {:?}, which its spec {} does not have",
                    key.key_id, key.key_usage, key.key_spec
                ))
            })
    }
}

/// Checks the `KeySpec` and `KeyUsage` parameters of CreateKey together. An empty
/// spec means `Aliyun_AES_256`; an empty usage means the spec's default usage
/// ([`KeySpec::usage`]).
///
/// # Errors
/// `InvalidParameter` for an unknown spec or usage (listing the valid values), or a
/// usage that does not fit the spec (naming the valid pairs).
pub fn parse_key_spec_and_usage(spec: &str, usage: &str) -> Result<(KeySpec, KeyUsage), KmsError> {
    let pairs = || {
        KeySpec::ALL
            .iter()
            .map(|s| {
                let usages: Vec<&str> = s.usages().iter().map(|u| u.as_str()).collect();
                format!("{} with {}", s.as_str(), usages.join(" or "))
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let spec = match spec {
        "" => KeySpec::Aes256,
        raw => KeySpec::from_name(raw).ok_or_else(|| {
            let valid: Vec<&str> = KeySpec::ALL.iter().map(|s| s.as_str()).collect();
            KmsError::InvalidParameter(format!(
                "KeySpec {:?} is not supported; supported values: {}.",
                raw.chars().take(40).collect::<String>(),
                valid.join(", ")
            ))
        })?,
    };
    if usage.is_empty() {
        return Ok((spec, spec.usages()[0]));
    }
    match spec.usages().iter().find(|u| u.as_str() == usage) {
        Some(usage) => Ok((spec, *usage)),
        None => Err(KmsError::InvalidParameter(format!(
            "KeyUsage {:?} does not fit KeySpec {}; valid pairs: {}.",
            usage.chars().take(40).collect::<String>(),
            spec.as_str(),
            pairs()
        ))),
    }
}

/// Checks a `ProtectionLevel` parameter; empty means the default, `SOFTWARE`.
pub fn parse_protection_level(raw: &str) -> Result<&'static str, KmsError> {
    match raw {
        "" | PROTECTION_LEVEL_SOFTWARE => Ok(PROTECTION_LEVEL_SOFTWARE),
        other => Err(KmsError::InvalidParameter(format!(
            "ProtectionLevel {other:?} is not supported; supported values: {PROTECTION_LEVEL_SOFTWARE}."
        ))),
    }
}

/// A rotation policy as asked for: on or off, and an optional interval.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RotationRequest {
    /// Whether automatic rotation should be on.
    pub enabled: bool,
    /// The interval, if the caller gave one.
    pub interval: Option<Duration>,
}

impl RotationRequest {
    /// The interval in seconds to store: `None` when rotation is off. An interval
    /// outside 7 to 365 days, or one given while turning rotation off, is
    /// `InvalidParameter`.
    pub fn stored_interval_secs(self) -> Result<Option<u64>, KmsError> {
        match (self.enabled, self.interval) {
            (false, None) => Ok(None),
            (false, Some(_)) => Err(KmsError::InvalidParameter(
                "RotationInterval applies only when EnableAutomaticRotation is true.".into(),
            )),
            (true, interval) => {
                let interval = interval.unwrap_or(DEFAULT_ROTATION_INTERVAL);
                if (MIN_ROTATION_INTERVAL..=MAX_ROTATION_INTERVAL).contains(&interval) {
                    Ok(Some(interval.as_secs()))
                } else {
                    Err(KmsError::InvalidParameter(
                        "RotationInterval must be from 7 days (604800s) to 365 days (31536000s)."
                            .into(),
                    ))
                }
            }
        }
    }
}

/// What a caller sees of a key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyMetadata {
    /// `key-...`.
    pub key_id: String,
    /// `Aliyun_AES_256`.
    pub key_spec: String,
    /// `ENCRYPT/DECRYPT`.
    pub key_usage: String,
    /// The state.
    pub key_state: KeyState,
    /// Free text.
    pub description: String,
    /// RFC 3339.
    pub creation_date: String,
    /// The version Advance* operations seal under.
    pub primary_key_version: String,
    /// The version the plain operations seal under.
    pub initial_key_version: String,
    /// Whether automatic rotation is on.
    pub automatic_rotation: bool,
    /// The interval, when rotation is on.
    pub rotation_interval: Option<Duration>,
    /// RFC 3339: when the primary version was made.
    pub last_rotation_date: String,
    /// RFC 3339, when rotation is on and the key is enabled.
    pub next_rotation_date: Option<String>,
    /// RFC 3339, while pending deletion.
    pub delete_date: Option<String>,
    /// `SOFTWARE`.
    pub protection_level: String,
}

impl From<&KeyRecord> for KeyMetadata {
    fn from(key: &KeyRecord) -> Self {
        let next_rotation = match (key.rotation_interval_secs, key.state) {
            (Some(secs), KeyState::Enabled) => {
                Some(format_date(next_rotation_ms(key.last_rotation_ms, secs)))
            }
            _ => None,
        };
        Self {
            key_id: key.key_id.clone(),
            key_spec: key.key_spec.clone(),
            key_usage: key.key_usage.clone(),
            key_state: key.state,
            description: key.description.clone(),
            creation_date: format_date(key.created_at_ms),
            primary_key_version: key.primary_version_id.clone(),
            initial_key_version: key.initial_version_id.clone(),
            automatic_rotation: key.rotation_interval_secs.is_some(),
            rotation_interval: key.rotation_interval_secs.map(Duration::from_secs),
            last_rotation_date: format_date(key.last_rotation_ms),
            next_rotation_date: next_rotation,
            delete_date: key.delete_at_ms.map(format_date),
            protection_level: PROTECTION_LEVEL_SOFTWARE.to_owned(),
        }
    }
}

/// When a key last rotated at `last_ms` with an interval of `interval_secs` is due.
pub fn next_rotation_ms(last_ms: u64, interval_secs: u64) -> u64 {
    last_ms.saturating_add(interval_secs.saturating_mul(1000))
}

/// What a caller sees of a key version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyVersionInfo {
    /// The key.
    pub key_id: String,
    /// The version's UUID.
    pub key_version_id: String,
    /// RFC 3339.
    pub creation_date: String,
}

impl From<&VersionRecord> for KeyVersionInfo {
    fn from(version: &VersionRecord) -> Self {
        Self {
            key_id: version.key_id.clone(),
            key_version_id: version.version_id.clone(),
            creation_date: format_date(version.created_at_ms),
        }
    }
}

/// What a caller sees of an alias.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AliasInfo {
    /// `alias/...`.
    pub alias_name: String,
    /// The key it points at.
    pub key_id: String,
    /// RFC 3339.
    pub creation_date: String,
    /// RFC 3339.
    pub update_date: String,
}

impl From<&AliasRecord> for AliasInfo {
    fn from(alias: &AliasRecord) -> Self {
        Self {
            alias_name: alias.alias_name.clone(),
            key_id: alias.key_id.clone(),
            creation_date: format_date(alias.created_at_ms),
            update_date: format_date(alias.updated_at_ms),
        }
    }
}

/// One page of a list, and the token of the next page (`None` on the last page).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page<T> {
    /// The items.
    pub items: Vec<T>,
    /// Pass as `PageToken` to get the next page.
    pub next_page_token: Option<String>,
}

/// Which page a caller asks for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PageRequest {
    /// 1 to 100; 0 means the default of 20.
    pub page_size: i32,
    /// Empty for the first page.
    pub page_token: String,
}

/// Default and largest page sizes.
pub const DEFAULT_PAGE_SIZE: usize = 20;
/// Largest page size.
pub const MAX_PAGE_SIZE: usize = 100;

impl PageRequest {
    /// The page size to use. Negative or over 100 → `InvalidParameter`.
    pub fn size(&self) -> Result<usize, KmsError> {
        match usize::try_from(self.page_size) {
            Ok(0) => Ok(DEFAULT_PAGE_SIZE),
            Ok(size) if size <= MAX_PAGE_SIZE => Ok(size),
            _ => Err(KmsError::InvalidParameter(format!(
                "PageSize must be from 1 to {MAX_PAGE_SIZE}, got {}.",
                self.page_size
            ))),
        }
    }
}

/// `InvalidParameter` for a page token no list returned.
pub(super) fn bad_page_token() -> KmsError {
    KmsError::InvalidParameter("PageToken is not a token this list returned.".into())
}

/// How many stored items one list call reads at most while filling a page with items
/// the caller may see: the bound on the work a caller with narrow grants can cause.
/// A page cut short by it still has a next-page token.
pub(super) const MAX_SCANNED_PER_PAGE: usize = 1000;
/// How many stored items one store read of a list call fetches.
pub(super) const SCAN_BATCH: usize = 128;

/// Fills a page from items read in store order: see [`Self::offer`].
pub(super) struct PageFiller<T> {
    size: usize,
    items: Vec<T>,
    /// Where the next page starts: the last item taken, or the last item skipped
    /// before the page filled.
    position: Option<String>,
    scanned: usize,
    more: bool,
}

impl<T> PageFiller<T> {
    /// An empty page of `size` items, starting after `position`.
    pub(super) fn new(size: usize, position: Option<String>) -> Self {
        Self {
            size,
            items: Vec::with_capacity(size),
            position,
            scanned: 0,
            more: false,
        }
    }

    /// The position the page starts after (as given to [`Self::new`]) until items are
    /// offered; then where the next page starts.
    pub(super) fn position(&self) -> Option<&str> {
        self.position.as_deref()
    }

    /// Whether the page is done before the store ran out: full with a visible item
    /// beyond it, or the scan budget spent.
    pub(super) fn done(&self) -> bool {
        self.more
    }

    /// How many items the next store read may fetch (0: stop, the budget is spent,
    /// and the page gets a token).
    pub(super) fn next_batch(&mut self) -> usize {
        let left = MAX_SCANNED_PER_PAGE.saturating_sub(self.scanned);
        if left == 0 {
            self.more = true;
        }
        left.min(SCAN_BATCH)
    }

    /// Offers the next stored item, named `name`; `item` is `Some` if the caller may
    /// see it. Once the page is full, one more visible item ends the scan with a
    /// next page; hidden items after a full page never do, so the last page of a
    /// caller's list has no token whatever it may not see beyond it.
    pub(super) fn offer(&mut self, name: &str, item: Option<T>) {
        self.scanned += 1;
        match item {
            Some(_) if self.items.len() == self.size => self.more = true,
            Some(item) => {
                self.items.push(item);
                self.position = Some(name.to_owned());
            }
            None if self.items.len() < self.size => self.position = Some(name.to_owned()),
            None => {}
        }
    }

    /// Fills the page from a store listing read `SCAN_BATCH` records at a time, until
    /// the page is done or the listing ends. `read(after, limit)` lists at most `limit`
    /// records after the name `after`, in name order; `entry` gives a record's name and,
    /// if the caller may see it, its item. (Plain closures returning futures, not async
    /// closures: those make the callers' futures lose `Send`.)
    pub(super) async fn fill<R, Read, Entry>(
        &mut self,
        mut read: impl FnMut(Option<String>, usize) -> Read,
        mut entry: impl FnMut(R) -> Entry,
    ) -> Result<(), KmsError>
    where
        Read: Future<Output = Result<Vec<R>, KmsError>>,
        Entry: Future<Output = Result<(String, Option<T>), KmsError>>,
    {
        let mut cursor = self.position.clone();
        while !self.done() {
            let batch = self.next_batch();
            if batch == 0 {
                break;
            }
            let records = read(cursor.clone(), batch).await?;
            let exhausted = records.len() < batch;
            for record in records {
                let (name, item) = entry(record).await?;
                self.offer(&name, item);
                cursor = Some(name);
                if self.done() {
                    break;
                }
            }
            if exhausted {
                break;
            }
        }
        Ok(())
    }

    /// The page, with a token sealed by `seal` when there is more.
    pub(super) fn finish(
        self,
        seal: impl FnOnce(&str) -> Result<String, KmsError>,
    ) -> Result<Page<T>, KmsError> {
        let next_page_token = match (&self.position, self.more) {
            (Some(position), true) => Some(seal(position)?),
            _ => None,
        };
        Ok(Page {
            items: self.items,
            next_page_token,
        })
    }
}

/// Parameters of CreateKey.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CreateKeyParams {
    /// Empty for the default.
    pub key_spec: String,
    /// Empty for the default.
    pub key_usage: String,
    /// Empty for the default.
    pub protection_level: String,
    /// Free text, at most 8192 bytes.
    pub description: String,
    /// The rotation policy.
    pub rotation: RotationRequest,
}

/// Longest key description.
pub const MAX_DESCRIPTION_LEN: usize = 8192;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_intervals_are_bounded() {
        let day = Duration::from_secs(86_400);
        let on = |interval| RotationRequest {
            enabled: true,
            interval,
        };
        assert_eq!(on(None).stored_interval_secs().unwrap(), Some(365 * 86_400));
        assert_eq!(
            on(Some(7 * day)).stored_interval_secs().unwrap(),
            Some(7 * 86_400)
        );
        assert!(
            on(Some(7 * day - Duration::from_secs(1)))
                .stored_interval_secs()
                .is_err()
        );
        assert!(on(Some(366 * day)).stored_interval_secs().is_err());
        let off_with_interval = RotationRequest {
            enabled: false,
            interval: Some(30 * day),
        };
        assert!(off_with_interval.stored_interval_secs().is_err());
        assert_eq!(
            RotationRequest::default().stored_interval_secs().unwrap(),
            None
        );
    }

    #[test]
    fn page_sizes_are_bounded() {
        let page = |page_size| PageRequest {
            page_size,
            page_token: String::new(),
        };
        assert_eq!(page(0).size().unwrap(), 20);
        assert_eq!(page(100).size().unwrap(), 100);
        assert!(page(101).size().is_err());
        assert!(page(-1).size().is_err());
    }

    #[test]
    fn specs_default_and_reject_unknown_values_naming_the_supported_ones() {
        assert_eq!(
            parse_key_spec_and_usage("", "").unwrap(),
            (KeySpec::Aes256, KeyUsage::EncryptDecrypt)
        );
        let err = parse_key_spec_and_usage("RSA_4096", "").unwrap_err();
        assert!(err.to_string().contains(KEY_SPEC_AES_256), "{err}");
        assert!(err.to_string().contains("EC_P256K"), "{err}");
        assert!(parse_protection_level("HSM").is_err());
    }

    #[test]
    fn each_spec_takes_its_own_usage_and_defaults_to_it() {
        for spec in KeySpec::ALL {
            assert_eq!(KeySpec::from_name(spec.as_str()), Some(spec));
            assert_eq!(parse_key_spec_and_usage(spec.as_str(), "").unwrap().0, spec);
            assert_eq!(
                parse_key_spec_and_usage(spec.as_str(), spec.usage()).unwrap(),
                (spec, spec.usages()[0])
            );
            assert_eq!(
                spec.key_pair_spec().is_some(),
                spec.usage() == KEY_USAGE_SIGN_VERIFY
            );
            assert_eq!(spec.rotates(), spec == KeySpec::Aes256);
        }
        // RSA keys also encrypt (RSAES-OAEP); nothing else takes a second usage.
        for spec in [KeySpec::Rsa2048, KeySpec::Rsa3072] {
            assert_eq!(
                parse_key_spec_and_usage(spec.as_str(), KEY_USAGE_ENCRYPT_DECRYPT).unwrap(),
                (spec, KeyUsage::EncryptDecrypt)
            );
        }
        for (spec, usage) in [
            ("EC_P256", KEY_USAGE_ENCRYPT_DECRYPT),
            ("ML_DSA_65", KEY_USAGE_ENCRYPT_DECRYPT),
            ("", KEY_USAGE_SIGN_VERIFY),
            ("HMAC_SHA256", KEY_USAGE_SIGN_VERIFY),
            ("EC_P256", "sign/verify"),
        ] {
            match parse_key_spec_and_usage(spec, usage) {
                Err(KmsError::InvalidParameter(message)) => {
                    assert!(
                        message.contains("RSA_2048 with SIGN/VERIFY or ENCRYPT/DECRYPT"),
                        "{message}"
                    );
                    assert!(
                        message.contains("HMAC_SHA256 with GENERATE/VERIFY_MAC"),
                        "{message}"
                    );
                }
                other => panic!("{spec} {usage}: {other:?}"),
            }
        }
    }
}
