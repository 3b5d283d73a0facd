//! Access control: who is calling, and what they may do.
//!
//! With `--auth-config` the server loads an [`AuthPolicy`]: a list of [`Principal`]s,
//! each identified by the SHA-256 of a bearer token and/or a client certificate
//! identity (URI SAN such as a SPIFFE ID, or the subject), and granted a set of
//! operations and a set of key globs.
//!
//! Two checks, in two places, neither tied to a transport:
//!
//! - **Who, and which operation**: [`identify`] finds the principal from the
//!   [`Credentials`] a transport extracted ([`identify_principal`] names the principal
//!   of a gateway client key), refusing calls without one (`UNAUTHENTICATED`), and
//!   [`authorize`] refuses operations outside its grants (`PERMISSION_DENIED`,
//!   `Forbidden.NoPermission`). The admission pipeline ([`crate::pipeline`]) calls both
//!   for every transport; health and reflection are not catalogue operations and need
//!   no principal.
//! - **Which key**: the key registry ([`crate::keys::KeyRegistry::scoped`]) checks the
//!   [`Access`] when it resolves a `KeyId`, before it reads or changes the key: the key
//!   is allowed if a glob matches the `KeyId` as sent, the resolved key ID, or one of
//!   the key's aliases.
//!
//! Without `--auth-config` every call gets [`Access::Open`].

pub mod glob;
pub mod policy;

use std::fmt;
use std::sync::Arc;

pub use policy::{AuthPolicy, PolicyError, Principal};

use crate::error::KmsError;
use kmsd_api::ops::Operation;

/// What a caller presented, as its transport found it.
#[derive(Clone, Copy, Debug, Default)]
pub struct Credentials<'a> {
    /// The `authorization` header, if exactly one was sent; `Err(())` if several were.
    pub authorization: Option<Result<&'a [u8], ()>>,
    /// The leaf client certificate (DER) the TLS layer verified, on an mTLS connection.
    pub client_certificate: Option<&'a [u8]>,
}

/// The token of an `authorization` header value `Bearer <token>` (scheme in any case).
fn bearer_token(value: &[u8]) -> Option<&[u8]> {
    let split = value.iter().position(|&b| b == b' ')?;
    let (scheme, rest) = value.split_at(split);
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return None;
    }
    let token = rest.trim_ascii();
    (!token.is_empty()).then_some(token)
}

/// The identities a client certificate (DER) offers, in the order they are tried:
///
/// - its SPIFFE ID: the URI SAN, when the certificate has exactly one URI SAN and it is a
///   `spiffe://` URI (a certificate with several URI SANs is no SPIFFE identity: which
///   one would it be?);
/// - its subject in the canonical escaped form of [`canonical_subject`].
///
/// Empty if it does not parse (it was verified by rustls, so that would be a
/// certificate we cannot read, not one we should trust by another route).
pub fn certificate_identities(der: &[u8]) -> Vec<String> {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return Vec::new();
    };
    let mut identities = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        let uris: Vec<&str> = san
            .value
            .general_names
            .iter()
            .filter_map(|name| match name {
                x509_parser::extensions::GeneralName::URI(uri) => Some(*uri),
                _ => None,
            })
            .collect();
        if let [uri] = uris.as_slice()
            && uri.starts_with("spiffe://")
        {
            identities.push((*uri).to_owned());
        }
    }
    if let Some(subject) = canonical_subject(cert.subject()) {
        identities.push(subject);
    }
    identities
}

/// A subject as `CN=payments, O=Acme`: RDNs in certificate order joined by `, `,
/// multi-valued RDNs joined by ` + `, attribute values escaped as RFC 4514 says (so a
/// value holding `, O=Acme` cannot pose as a second attribute), and values that are
/// not strings as `#` and the hex of their DER. `None` if an attribute does not parse.
pub fn canonical_subject(name: &x509_parser::x509::X509Name<'_>) -> Option<String> {
    let registry = x509_parser::objects::oid_registry();
    let mut rdns = Vec::new();
    for rdn in name.iter() {
        let mut attributes = Vec::new();
        for attribute in rdn.iter() {
            let oid = attribute.attr_type();
            let kind = x509_parser::objects::oid2abbrev(oid, registry)
                .map(str::to_owned)
                .unwrap_or_else(|_| oid.to_id_string());
            let value = match attribute.as_str() {
                Ok(text) => escape_rfc4514(text),
                Err(_) => {
                    let der =
                        x509_parser::asn1_rs::ToDer::to_der_vec(attribute.attr_value()).ok()?;
                    format!("#{}", hex_upper(&der))
                }
            };
            attributes.push(format!("{kind}={value}"));
        }
        rdns.push(attributes.join(" + "));
    }
    Some(rdns.join(", "))
}

/// Escapes an attribute value as RFC 4514 section 2.4 requires.
fn escape_rfc4514(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        match c {
            '"' | '+' | ',' | ';' | '<' | '>' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '#' if i == 0 => out.push_str("\\#"),
            ' ' if i == 0 || i == last => out.push_str("\\ "),
            '\0' => out.push_str("\\00"),
            c => out.push(c),
        }
    }
    out
}

fn hex_upper(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

/// The principal the credentials identify, or [`KmsError::Unauthenticated`].
///
/// A call that sends an `authorization` header is judged by it alone (a caller that
/// sends a token means it): the token is hashed and compared in constant time with
/// every principal's. Otherwise the client certificate's URI SANs, then its subject,
/// are matched against the principals' `spiffe_id`.
pub fn authenticate(
    policy: &AuthPolicy,
    credentials: &Credentials<'_>,
) -> Result<Arc<Principal>, KmsError> {
    if let Some(header) = credentials.authorization {
        let token = header
            .ok()
            .and_then(bearer_token)
            .ok_or(KmsError::Unauthenticated)?;
        return policy.by_token(token).ok_or(KmsError::Unauthenticated);
    }
    let der = credentials
        .client_certificate
        .ok_or(KmsError::Unauthenticated)?;
    let identities = certificate_identities(der);
    policy
        .by_certificate_identity(identities.iter().map(String::as_str))
        .ok_or(KmsError::Unauthenticated)
}

/// How a caller proved who it is: the audit record's `auth`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AuthMethod {
    /// Nothing was asked: access control is off.
    None,
    /// A bearer token.
    Token,
    /// A client certificate verified by mTLS.
    Mtls,
    /// A gateway request signed with a client key.
    ClientKey,
}

impl AuthMethod {
    /// The audit record's value: `none`, `token`, `mtls` or `client_key`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Token => "token",
            Self::Mtls => "mtls",
            Self::ClientKey => "client_key",
        }
    }
}

/// Who is calling, once authenticated: what the call may touch, and the name its
/// records carry.
#[derive(Clone, Debug)]
pub struct Identity {
    /// The caller's access: a principal's grants, or [`Access::Open`] without a policy.
    pub access: Access,
    /// The principal's name, when one is known (also without a policy, for a gateway
    /// client key, so the audit log says who called).
    pub name: Option<String>,
    /// How the caller proved it.
    pub method: AuthMethod,
}

/// Identifies a caller by the credentials its transport extracted: `Open` without a
/// policy, else the principal they prove ([`authenticate`]).
///
/// # Errors
///
/// [`KmsError::Unauthenticated`] for credentials that prove no principal.
pub fn identify(
    policy: Option<&AuthPolicy>,
    credentials: &Credentials<'_>,
) -> Result<Identity, KmsError> {
    let Some(policy) = policy else {
        return Ok(Identity {
            access: Access::Open,
            name: None,
            method: AuthMethod::None,
        });
    };
    let principal = authenticate(policy, credentials)?;
    // `authenticate` judges a call that sent a token by the token alone.
    let method = if credentials.authorization.is_some() {
        AuthMethod::Token
    } else {
        AuthMethod::Mtls
    };
    Ok(Identity {
        name: Some(principal.name().to_owned()),
        access: Access::Principal(principal),
        method,
    })
}

/// Identifies a caller already authenticated as the principal named `principal` (an
/// HTTPS gateway client key acts as its principal). Without a policy the call is
/// open, but named.
///
/// # Errors
///
/// With a policy, [`KmsError::Unauthenticated`] for a name it does not list.
pub fn identify_principal(
    policy: Option<&AuthPolicy>,
    principal: &str,
) -> Result<Identity, KmsError> {
    let access = match policy {
        None => Access::Open,
        Some(policy) => {
            let found = policy
                .principals()
                .iter()
                .find(|p| p.name() == principal)
                .cloned();
            let Some(found) = found else {
                tracing::info!(
                    principal,
                    "client key of a principal the auth file does not list"
                );
                return Err(KmsError::Unauthenticated);
            };
            Access::Principal(found)
        }
    };
    Ok(Identity {
        access,
        name: Some(principal.to_owned()),
        method: AuthMethod::ClientKey,
    })
}

/// Decides whether `access` may run `operation`.
///
/// # Errors
///
/// [`KmsError::PermissionDenied`] (`Forbidden.NoPermission`) for an operation outside
/// the principal's grants.
pub fn authorize(access: &Access, operation: Operation) -> Result<(), KmsError> {
    if access.allows_operation(operation) {
        return Ok(());
    }
    tracing::info!(
        principal = access.principal_name().unwrap_or_default(),
        %operation,
        "operation not granted"
    );
    Err(KmsError::PermissionDenied)
}

// === impl Access ===

/// What one call may touch: everything (no access control), or one principal's grants.
/// Cheap to clone.
#[derive(Clone, Default)]
pub enum Access {
    /// Access control is off (no `--auth-config`), or an internal caller such as the
    /// maintenance task.
    #[default]
    Open,
    /// A principal from the auth file.
    Principal(Arc<Principal>),
}

impl fmt::Debug for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Open => f.write_str("Access::Open"),
            Self::Principal(principal) => write!(f, "Access::Principal({:?})", principal.name()),
        }
    }
}

impl Access {
    /// The principal's name, or `None` when access control is off.
    pub fn principal_name(&self) -> Option<&str> {
        match self {
            Self::Open => None,
            Self::Principal(principal) => Some(principal.name()),
        }
    }

    /// Whether this caller may run `operation`.
    pub fn allows_operation(&self, operation: Operation) -> bool {
        match self {
            Self::Open => true,
            Self::Principal(principal) => principal.allows_operation(operation),
        }
    }

    /// Whether a key grant matches `name` (a key ID, an alias, or a `KeyId` as sent).
    pub fn allows_key(&self, name: &str) -> bool {
        match self {
            Self::Open => true,
            Self::Principal(principal) => principal.allows_key(name),
        }
    }

    /// Whether the caller's key grants cover every key (`"*"`, or no access control).
    pub fn has_every_key(&self) -> bool {
        match self {
            Self::Open => true,
            Self::Principal(principal) => principal.has_every_key(),
        }
    }

    /// Whether a secret grant matches the secret name `name`.
    pub fn allows_secret(&self, name: &str) -> bool {
        match self {
            Self::Open => true,
            Self::Principal(principal) => principal.allows_secret(name),
        }
    }

    /// [`KmsError::PermissionDenied`] unless a secret grant matches `name`.
    pub fn check_secret(&self, name: &str) -> Result<(), KmsError> {
        if self.allows_secret(name) {
            Ok(())
        } else {
            Err(KmsError::PermissionDenied)
        }
    }

    /// Whether the caller may use the key it named `sent` (as sent) and which resolved
    /// to `key_id`: a grant must match either.
    pub fn allows_resolved_key(&self, sent: &str, key_id: &str) -> bool {
        self.allows_key(sent) || self.allows_key(key_id)
    }

    /// [`KmsError::PermissionDenied`] unless a key grant matches `name`.
    pub fn check_key(&self, name: &str) -> Result<(), KmsError> {
        if self.allows_key(name) {
            Ok(())
        } else {
            Err(KmsError::PermissionDenied)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &[u8] = b"payments-token";

    fn policy() -> AuthPolicy {
        let hash = hex::encode(policy::token_sha256(TOKEN));
        AuthPolicy::parse(
            &format!(
                "[[principals]]\nname = \"payments\"\ntoken_sha256 = \"{hash}\"\n\
                 operations = [\"Decrypt\"]\nkeys = [\"*\"]\n"
            ),
            "auth.toml",
        )
        .unwrap()
    }

    fn bearer(value: &[u8]) -> Credentials<'_> {
        Credentials {
            authorization: Some(Ok(value)),
            client_certificate: None,
        }
    }

    #[test]
    fn bearer_tokens_parse_strictly() {
        assert_eq!(bearer_token(b"Bearer abc"), Some(&b"abc"[..]));
        assert_eq!(bearer_token(b"bearer  abc "), Some(&b"abc"[..]));
        assert_eq!(bearer_token(b"BEARER abc"), Some(&b"abc"[..]));
        assert_eq!(bearer_token(b"Basic abc"), None);
        assert_eq!(bearer_token(b"Bearer"), None);
        assert_eq!(bearer_token(b"Bearer "), None);
        assert_eq!(bearer_token(b"Bearerabc"), None);
        assert_eq!(bearer_token(b""), None);
    }

    #[test]
    fn identify_finds_the_principal_and_authorize_checks_its_operations() {
        let policy = policy();
        let identity = identify(Some(&policy), &bearer(b"Bearer payments-token")).unwrap();
        assert_eq!(identity.name.as_deref(), Some("payments"));
        assert_eq!(identity.access.principal_name(), Some("payments"));
        assert!(authorize(&identity.access, Operation::Decrypt).is_ok());
        assert!(matches!(
            authorize(&identity.access, Operation::DisableKey),
            Err(KmsError::PermissionDenied)
        ));

        for credentials in [
            Credentials::default(),
            bearer(b"Bearer wrong-token"),
            bearer(b"Basic payments-token"),
            Credentials {
                authorization: Some(Err(())),
                client_certificate: None,
            },
            Credentials {
                authorization: None,
                client_certificate: Some(b"not a certificate"),
            },
        ] {
            let refused = identify(Some(&policy), &credentials);
            assert!(
                matches!(refused, Err(KmsError::Unauthenticated)),
                "{credentials:?}"
            );
        }
        let open = identify(None, &Credentials::default()).unwrap();
        assert!(matches!(open.access, Access::Open));
        assert_eq!(open.name, None);
        assert!(authorize(&open.access, Operation::DisableKey).is_ok());
    }

    fn certificate(uris: &[&str], subject: &[(rcgen::DnType, &str)]) -> Vec<u8> {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.subject_alt_names = uris
            .iter()
            .map(|uri| rcgen::SanType::URI(rcgen::string::Ia5String::try_from(*uri).unwrap()))
            .collect();
        params.distinguished_name = rcgen::DistinguishedName::new();
        for (kind, value) in subject {
            params.distinguished_name.push(kind.clone(), *value);
        }
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn a_value_cannot_pose_as_another_attribute() {
        let forged = certificate(&[], &[(rcgen::DnType::CommonName, "payments, O=Acme")]);
        let real = certificate(
            &[],
            &[
                (rcgen::DnType::CommonName, "payments"),
                (rcgen::DnType::OrganizationName, "Acme"),
            ],
        );
        assert_eq!(
            certificate_identities(&forged),
            vec![r"CN=payments\, O=Acme".to_owned()]
        );
        assert_eq!(
            certificate_identities(&real),
            vec!["CN=payments, O=Acme".to_owned()]
        );
        assert_eq!(escape_rfc4514(" #a+b "), r"\ #a\+b\ ");
        assert_eq!(escape_rfc4514("#x;\"<>\\"), r#"\#x\;\"\<\>\\"#);
    }

    #[test]
    fn only_a_single_spiffe_uri_is_a_spiffe_identity() {
        let subject = [(rcgen::DnType::CommonName, "svc")];
        let two = certificate(
            &[
                "spiffe://cluster.local/ns/a/sa/b",
                "spiffe://cluster.local/ns/x/sa/y",
            ],
            &subject,
        );
        assert_eq!(certificate_identities(&two), vec!["CN=svc".to_owned()]);
        let not_spiffe = certificate(&["https://example.com/a"], &subject);
        assert_eq!(
            certificate_identities(&not_spiffe),
            vec!["CN=svc".to_owned()]
        );
    }

    #[test]
    fn certificate_identities_are_uri_sans_then_subject() {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.subject_alt_names = vec![rcgen::SanType::URI(
            rcgen::string::Ia5String::try_from("spiffe://cluster.local/ns/a/sa/b").unwrap(),
        )];
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "payments");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(
            certificate_identities(cert.der()),
            vec![
                "spiffe://cluster.local/ns/a/sa/b".to_owned(),
                "CN=payments".to_owned()
            ]
        );
        assert!(certificate_identities(b"not a certificate").is_empty());
    }

    #[test]
    fn a_named_principal_gets_its_grants() {
        let policy = policy();
        let identity = identify_principal(Some(&policy), "payments").unwrap();
        assert_eq!(identity.access.principal_name(), Some("payments"));
        assert!(matches!(
            authorize(&identity.access, Operation::DisableKey),
            Err(KmsError::PermissionDenied)
        ));
        assert!(matches!(
            identify_principal(Some(&policy), "nobody"),
            Err(KmsError::Unauthenticated)
        ));
        let open = identify_principal(None, "ci").unwrap();
        assert!(matches!(open.access, Access::Open));
        assert_eq!(open.name.as_deref(), Some("ci"));
    }

    #[test]
    fn open_access_allows_everything() {
        let access = Access::Open;
        assert!(access.allows_operation(Operation::DisableKey));
        assert!(access.allows_key("key-anything"));
        assert!(access.check_key("alias/x").is_ok());
        assert_eq!(access.principal_name(), None);
    }
}
