//! The auth file (`--auth-config`): principals, how they are recognised, what they may do.
//!
//! ```toml
//! [[principals]]
//! name = "payments"
//! token_sha256 = "<64 hex digits: SHA-256 of the bearer token>"
//! spiffe_id = "spiffe://cluster.local/ns/payments/sa/api"   # URI SAN or subject of a client certificate
//! operations = ["GenerateDataKeyPairWithoutPlaintext", "AdvanceDecrypt"]  # or ["*"]
//! keys = ["alias/payments-*"]                                # or ["*"]
//! secrets = ["db/payments/*"]                                # secret names; or ["*"]
//! ```
//!
//! Only token hashes live in the file. Every mistake (unknown field, bad hex, unknown
//! operation, duplicate name or identity) stops the start with the line and the field.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use ring::digest;
use serde::Deserialize;
use subtle::{Choice, ConditionallySelectable, ConstantTimeEq};
use toml::Spanned;

use super::glob;
use kmsd_api::ops::Operation;

/// Why the auth file is unusable.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The file could not be read.
    #[error("cannot read the auth file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not TOML of the expected shape; the message has line and column.
    #[error("invalid auth file {path}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// The parser's message.
        message: String,
    },
    /// A value is wrong.
    #[error("invalid auth file {path}, line {line}, field `{field}`: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// 1-based line of the offending value.
        line: usize,
        /// The field.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    principals: Vec<Spanned<RawPrincipal>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPrincipal {
    name: Spanned<String>,
    token_sha256: Option<Spanned<String>>,
    spiffe_id: Option<Spanned<String>>,
    operations: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    keys: Vec<Spanned<String>>,
    #[serde(default)]
    secrets: Vec<Spanned<String>>,
}

// === impl Principal ===

/// One caller of the auth file and its grants. `Debug` leaves out the token hash.
pub struct Principal {
    name: String,
    token_sha256: Option<[u8; 32]>,
    spiffe_id: Option<String>,
    all_operations: bool,
    operations: Vec<Operation>,
    keys: Vec<String>,
    secrets: Vec<String>,
}

impl fmt::Debug for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Principal")
            .field("name", &self.name)
            .field(
                "token_sha256",
                &self.token_sha256.as_ref().map(|_| "[REDACTED]"),
            )
            .field("spiffe_id", &self.spiffe_id)
            .field("all_operations", &self.all_operations)
            .field("operations", &self.operations)
            .field("keys", &self.keys)
            .field("secrets", &self.secrets)
            .finish()
    }
}

impl Principal {
    /// The principal's name, as in the file (used in the audit log).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the principal may run `operation`.
    pub fn allows_operation(&self, operation: Operation) -> bool {
        self.all_operations || self.operations.contains(&operation)
    }

    /// Whether one of the principal's key globs matches `name`.
    pub fn allows_key(&self, name: &str) -> bool {
        self.keys.iter().any(|pattern| glob::matches(pattern, name))
    }

    /// Whether one of the principal's secret globs matches the secret name `name`.
    pub fn allows_secret(&self, name: &str) -> bool {
        self.secrets
            .iter()
            .any(|pattern| glob::matches(pattern, name))
    }

    /// Whether the principal is granted every operation on every key (`"*"` for both):
    /// who may act for other principals, e.g. create client keys for them.
    pub fn is_unrestricted(&self) -> bool {
        self.all_operations && self.has_every_key()
    }

    /// Whether a key grant is `"*"`: every key, present and future (who may take a
    /// Backup, which holds them all).
    pub fn has_every_key(&self) -> bool {
        self.keys.iter().any(|pattern| pattern == "*")
    }

    /// The client certificate identity (URI SAN or subject) the principal is known by.
    pub fn spiffe_id(&self) -> Option<&str> {
        self.spiffe_id.as_deref()
    }
}

/// The glob patterns of a grant list (`keys` or `secrets`), trimmed; an empty one is
/// refused through `invalid`, which knows the file and its lines.
fn patterns(
    raw: &[Spanned<String>],
    field: &'static str,
    invalid: &dyn Fn(usize, &'static str, String) -> PolicyError,
) -> Result<Vec<String>, PolicyError> {
    raw.iter()
        .map(|pattern| {
            let value = pattern.get_ref().trim();
            if value.is_empty() {
                return Err(invalid(
                    pattern.span().start,
                    field,
                    format!("an empty pattern matches nothing; use \"*\" for all {field}"),
                ));
            }
            Ok(value.to_owned())
        })
        .collect()
}

// === impl AuthPolicy ===

/// Every principal of the auth file.
#[derive(Debug)]
pub struct AuthPolicy {
    principals: Vec<Arc<Principal>>,
}

/// The SHA-256 of a bearer token, as the auth file holds it.
pub fn token_sha256(token: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest::digest(&digest::SHA256, token).as_ref());
    out
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

fn parse_hex_32(raw: &str) -> Option<[u8; 32]> {
    let raw = raw.trim();
    if raw.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in raw.as_bytes().chunks(2).enumerate() {
        let hi = (pair[0] as char).to_digit(16)?;
        let lo = (pair[1] as char).to_digit(16)?;
        out[i] = u8::try_from(hi * 16 + lo).ok()?;
    }
    Some(out)
}

impl AuthPolicy {
    /// Reads and checks the auth file at `path`.
    ///
    /// # Errors
    ///
    /// [`PolicyError::Read`] if the file cannot be read, [`PolicyError::Parse`] for
    /// TOML or shape errors, [`PolicyError::Invalid`] for a wrong value (with its line
    /// and field).
    pub fn load(path: &Path) -> Result<Self, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Checks the auth file `text`; `origin` names it in errors.
    ///
    /// # Errors
    ///
    /// As [`Self::load`], without [`PolicyError::Read`].
    pub fn parse(text: &str, origin: &str) -> Result<Self, PolicyError> {
        let raw: RawFile = toml::from_str(text).map_err(|err| PolicyError::Parse {
            path: origin.to_owned(),
            message: err.to_string(),
        })?;
        let invalid = |offset: usize, field: &'static str, message: String| PolicyError::Invalid {
            path: origin.to_owned(),
            line: line_of(text, offset),
            field,
            message,
        };
        if raw.principals.is_empty() {
            return Err(invalid(
                0,
                "principals",
                "no [[principals]]: nobody could call the server".into(),
            ));
        }
        let mut principals: Vec<Arc<Principal>> = Vec::with_capacity(raw.principals.len());
        for spanned in raw.principals {
            let entry_start = spanned.span().start;
            let entry = spanned.into_inner();
            let name = entry.name.get_ref().trim().to_owned();
            if name.is_empty() {
                return Err(invalid(
                    entry.name.span().start,
                    "name",
                    "must not be empty".into(),
                ));
            }
            if principals.iter().any(|p| p.name == name) {
                return Err(invalid(
                    entry.name.span().start,
                    "name",
                    format!("{name:?} is used by another principal"),
                ));
            }
            let token_sha256 = match &entry.token_sha256 {
                None => None,
                Some(raw_hash) => {
                    let hash = parse_hex_32(raw_hash.get_ref()).ok_or_else(|| {
                        invalid(
                            raw_hash.span().start,
                            "token_sha256",
                            "must be 64 hex digits: the SHA-256 of the token, never the token \
                             itself (e.g. `printf %s \"$TOKEN\" | sha256sum`)"
                                .into(),
                        )
                    })?;
                    if principals
                        .iter()
                        .any(|p| p.token_sha256.as_ref() == Some(&hash))
                    {
                        return Err(invalid(
                            raw_hash.span().start,
                            "token_sha256",
                            "the same token hash is given to another principal".into(),
                        ));
                    }
                    Some(hash)
                }
            };
            let spiffe_id = match &entry.spiffe_id {
                None => None,
                Some(id) => {
                    let value = id.get_ref().trim().to_owned();
                    if value.is_empty() {
                        return Err(invalid(
                            id.span().start,
                            "spiffe_id",
                            "must not be empty".into(),
                        ));
                    }
                    if principals
                        .iter()
                        .any(|p| p.spiffe_id.as_deref() == Some(value.as_str()))
                    {
                        return Err(invalid(
                            id.span().start,
                            "spiffe_id",
                            format!("{value:?} is given to another principal"),
                        ));
                    }
                    Some(value)
                }
            };
            if token_sha256.is_none() && spiffe_id.is_none() {
                return Err(invalid(
                    entry_start,
                    "token_sha256",
                    format!(
                        "principal {name:?} has neither token_sha256 nor spiffe_id: nobody \
                         could be it"
                    ),
                ));
            }
            if entry.operations.get_ref().is_empty() {
                return Err(invalid(
                    entry.operations.span().start,
                    "operations",
                    "must list at least one operation, or \"*\"".into(),
                ));
            }
            let mut all_operations = false;
            let mut operations = Vec::new();
            for op in entry.operations.get_ref() {
                let value = op.get_ref().as_str();
                if value == "*" {
                    all_operations = true;
                } else if let Some(operation) = Operation::from_name(value) {
                    operations.push(operation);
                } else {
                    let valid: Vec<&str> = Operation::ALL.iter().map(|op| op.name()).collect();
                    return Err(invalid(
                        op.span().start,
                        "operations",
                        format!(
                            "unknown operation {value:?}; valid: \"*\", {}",
                            valid.join(", ")
                        ),
                    ));
                }
            }
            let keys = patterns(&entry.keys, "keys", &invalid)?;
            let secrets = patterns(&entry.secrets, "secrets", &invalid)?;
            principals.push(Arc::new(Principal {
                name,
                token_sha256,
                spiffe_id,
                all_operations,
                operations,
                keys,
                secrets,
            }));
        }
        Ok(Self { principals })
    }

    /// The principals, in file order.
    pub fn principals(&self) -> &[Arc<Principal>] {
        &self.principals
    }

    /// The principal whose token hash is the SHA-256 of `token`. Compares with every
    /// principal's hash in constant time and does not stop at a match, so timing says
    /// nothing about which hash, or how much of it, matched.
    pub fn by_token(&self, token: &[u8]) -> Option<Arc<Principal>> {
        let hash = token_sha256(token);
        let mut found = Choice::from(0);
        let mut index = 0u64;
        for (i, principal) in self.principals.iter().enumerate() {
            // Which principals have tokens is in the file, not a secret.
            let Some(expected) = &principal.token_sha256 else {
                continue;
            };
            let equal = expected.ct_eq(&hash);
            index.conditional_assign(&(i as u64), equal);
            found |= equal;
        }
        if bool::from(found) {
            usize::try_from(index)
                .ok()
                .and_then(|i| self.principals.get(i))
                .cloned()
        } else {
            None
        }
    }

    /// The principal whose `spiffe_id` is one of a client certificate's identities
    /// (its URI SANs, then its subject).
    pub fn by_certificate_identity<'a>(
        &self,
        identities: impl IntoIterator<Item = &'a str>,
    ) -> Option<Arc<Principal>> {
        identities.into_iter().find_map(|identity| {
            self.principals
                .iter()
                .find(|p| p.spiffe_id.as_deref() == Some(identity))
                .cloned()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn sample() -> String {
        format!(
            r#"
[[principals]]
name = "payments"
token_sha256 = "{}"
operations = ["GenerateDataKeyPairWithoutPlaintext", "AdvanceDecrypt"]
keys = ["alias/payments-*"]
secrets = ["db/payments/*"]

[[principals]]
name = "operator"
spiffe_id = "spiffe://cluster.local/ns/ops/sa/admin"
token_sha256 = "{}"
operations = ["*"]
keys = ["*"]
"#,
            hex(&token_sha256(b"payments-token")),
            hex(&token_sha256(b"operator-token"))
        )
    }

    #[test]
    fn a_valid_file_loads_and_identifies_callers() {
        let policy = AuthPolicy::parse(&sample(), "auth.toml").unwrap();
        assert_eq!(policy.principals().len(), 2);
        let payments = policy.by_token(b"payments-token").unwrap();
        assert_eq!(payments.name(), "payments");
        assert!(payments.allows_operation(Operation::AdvanceDecrypt));
        assert!(!payments.allows_operation(Operation::Decrypt));
        assert!(payments.allows_key("alias/payments-eu"));
        assert!(!payments.allows_key("key-123"));
        assert!(payments.allows_secret("db/payments/primary"));
        assert!(!payments.allows_secret("db/orders/primary"));
        assert!(
            !policy
                .by_token(b"operator-token")
                .unwrap()
                .allows_secret("db/x")
        );
        assert_eq!(
            policy.by_token(b"operator-token").unwrap().name(),
            "operator"
        );
        assert!(policy.by_token(b"payments-token2").is_none());
        assert!(policy.by_token(b"").is_none());
        let operator = policy
            .by_certificate_identity(["CN=x", "spiffe://cluster.local/ns/ops/sa/admin"])
            .unwrap();
        assert_eq!(operator.name(), "operator");
        assert!(operator.allows_operation(Operation::DisableKey));
        assert!(operator.allows_key("anything"));
        assert!(
            policy
                .by_certificate_identity(["spiffe://cluster.local/ns/ops/sa/other"])
                .is_none()
        );
    }

    #[test]
    fn debug_leaves_out_the_token_hash() {
        let policy = AuthPolicy::parse(&sample(), "auth.toml").unwrap();
        let printed = format!("{policy:?}");
        let hash = hex(&token_sha256(b"payments-token"));
        assert!(!printed.contains(&hash), "{printed}");
        assert!(!printed.contains(&hash[..16]), "{printed}");
        assert!(printed.contains("[REDACTED]") && printed.contains("payments"));
    }

    fn error_of(text: &str) -> String {
        AuthPolicy::parse(text, "auth.toml")
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn mistakes_name_the_line_and_field() {
        let good_hash = hex(&token_sha256(b"t"));
        let cases: Vec<(String, &str, &str)> = vec![
            (
                "[[principals]]\nname = \"a\"\ntoken_sha256 = \"abc\"\noperations = [\"*\"]\n"
                    .into(),
                "line 3",
                "token_sha256",
            ),
            (
                format!(
                    "[[principals]]\nname = \"a\"\ntoken_sha256 = \"{good_hash}\"\n\
                     operations = [\"Decrypt\",\n  \"Dcrypt\"]\n"
                ),
                "line 5",
                "operations",
            ),
            (
                "[[principals]]\nname = \"a\"\noperations = [\"*\"]\n".into(),
                "line 1",
                "neither token_sha256 nor spiffe_id",
            ),
            (
                format!(
                    "[[principals]]\nname = \"a\"\ntoken_sha256 = \"{good_hash}\"\noperations = [\"*\"]\n\
                     [[principals]]\nname = \"a\"\nspiffe_id = \"x\"\noperations = [\"*\"]\n"
                ),
                "line 6",
                "name",
            ),
            (
                format!(
                    "[[principals]]\nname = \"a\"\ntoken_sha256 = \"{good_hash}\"\noperations = [\"*\"]\n\
                     [[principals]]\nname = \"b\"\ntoken_sha256 = \"{good_hash}\"\noperations = [\"*\"]\n"
                ),
                "line 7",
                "another principal",
            ),
            (
                format!(
                    "[[principals]]\nname = \"a\"\ntoken_sha256 = \"{good_hash}\"\noperations = []\n"
                ),
                "line 4",
                "operations",
            ),
            (
                format!(
                    "[[principals]]\nname = \"a\"\ntoken = \"{good_hash}\"\noperations = [\"*\"]\n"
                ),
                "line 3",
                "token",
            ),
            (
                "[[principals]]\nname = \"a\"\nspiffe_id = \"x\"\n".into(),
                "line 1",
                "operations",
            ),
            ("principals = 3\n".into(), "line 1", "principals"),
            ("".into(), "line 1", "no [[principals]]"),
            (
                format!(
                    "[[principals]]\nname = \"a\"\ntoken_sha256 = \"{good_hash}\"\noperations = [\"*\"]\nkeys = [\"\"]\n"
                ),
                "line 5",
                "keys",
            ),
            (
                format!(
                    "[[principals]]\nname = \"a\"\ntoken_sha256 = \"{good_hash}\"\noperations = [\"*\"]\nsecrets = [\" \"]\n"
                ),
                "line 5",
                "secrets",
            ),
        ];
        for (text, line, needle) in cases {
            let message = error_of(&text);
            assert!(
                message.contains(line) && message.contains(needle) && message.contains("auth.toml"),
                "expected {line} and {needle:?} in: {message}\n--- file:\n{text}"
            );
        }
    }

    #[test]
    fn hex_parsing_accepts_both_cases_and_nothing_else() {
        let hash = token_sha256(b"x");
        assert_eq!(parse_hex_32(&hex(&hash)), Some(hash));
        assert_eq!(parse_hex_32(&hex(&hash).to_uppercase()), Some(hash));
        assert_eq!(parse_hex_32(&format!("{}g", &hex(&hash)[..63])), None);
        assert_eq!(parse_hex_32("é".repeat(32).as_str()), None);
        assert_eq!(parse_hex_32(""), None);
    }
}
