//! The request signature of the official SDKs (reference section 6), checked without
//! any private-key operation: the headers it covers, the string it signs, the body
//! digest and the date window.
//!
//! The SDK signs
//!
//! ```text
//! POST\n{content-sha256}\n{content-type}\n{date}\n{x-kms-* headers, sorted, name:value\n}/
//! ```
//!
//! with RSA PKCS#1 v1.5 SHA-256 and sends `authorization: Bearer <base64 signature>`,
//! the client key ID in `x-kms-acccesskeyid` (three c's, as the SDKs spell it), and
//! `content-sha256` as the uppercase hex SHA-256 of the body.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use http::HeaderMap;

use super::errors::Refusal;

/// The header naming the client key, as the SDKs spell it.
pub const ACCESS_KEY_ID_HEADER: &str = "x-kms-acccesskeyid";

/// The header naming the operation.
pub const API_NAME_HEADER: &str = "x-kms-apiname";

/// The content type of every body, request and response.
pub const PROTOBUF: &str = "application/x-protobuf";

/// The prefix of the headers the signature covers.
pub const SIGNED_HEADER_PREFIX: &str = "x-kms-";

/// How far a request's `date` may be from the server's clock.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(15 * 60);

/// The longest signature accepted, base64 (an RSA-8192 signature is 1368 characters).
const MAX_SIGNATURE_LEN: usize = 2048;

/// What a request claims about itself, read from its headers: who signed it, the
/// signature, and the string it must be a signature of.
#[derive(Debug)]
pub struct SignedRequest {
    /// The client key ID.
    pub client_key_id: String,
    /// The decoded signature.
    pub signature: Vec<u8>,
    /// The string-to-sign, rebuilt from the headers as received.
    pub string_to_sign: String,
    /// The body digest the request claims (`content-sha256`).
    pub content_sha256: String,
    /// The request's `date`.
    pub date: SystemTime,
}

/// The single value of header `name`, as text; `Err` if it is sent more than once or
/// is not visible ASCII.
fn single<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, Refusal> {
    let mut values = headers.get_all(name).iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(Refusal::unauthenticated(format!(
            "The header {name} is sent more than once."
        )));
    }
    first
        .to_str()
        .map(|value| Some(value.trim()))
        .map_err(|_| Refusal::unauthenticated(format!("The header {name} is not ASCII text.")))
}

fn required<'a>(headers: &'a HeaderMap, name: &str) -> Result<&'a str, Refusal> {
    single(headers, name)?
        .ok_or_else(|| Refusal::unauthenticated(format!("The header {name} is required.")))
}

/// Reads the signature headers of a request and rebuilds its string-to-sign.
///
/// # Errors
///
/// A 401 [`Refusal`] naming the missing, repeated or malformed header.
pub fn read(headers: &HeaderMap) -> Result<SignedRequest, Refusal> {
    let client_key_id = required(headers, ACCESS_KEY_ID_HEADER)?.to_owned();
    let authorization = required(headers, "authorization")?;
    let token = authorization
        .split_once(' ')
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .filter(|token| !token.is_empty() && token.len() <= MAX_SIGNATURE_LEN)
        .ok_or_else(|| {
            Refusal::unauthenticated("The authorization header must be Bearer <signature>.")
        })?;
    let signature = BASE64
        .decode(token)
        .map_err(|_| Refusal::unauthenticated("The signature is not base64."))?;
    let content_sha256 = required(headers, "content-sha256")?.to_owned();
    let content_type = single(headers, "content-type")?.unwrap_or("");
    let date_text = required(headers, "date")?;
    let date = httpdate::parse_http_date(date_text)
        .map_err(|_| Refusal::unauthenticated("The date header is not an RFC 1123 date."))?;

    let mut signed = Vec::new();
    for name in headers.keys() {
        let name = name.as_str();
        if name.starts_with(SIGNED_HEADER_PREFIX) {
            signed.push((name, single(headers, name)?.unwrap_or("")));
        }
    }
    let string_to_sign = string_to_sign(&content_sha256, content_type, date_text, signed);
    Ok(SignedRequest {
        client_key_id,
        signature,
        string_to_sign,
        content_sha256,
        date,
    })
}

/// The string the SDKs sign for a request with these `content-sha256`,
/// `content-type` and `date` values and these `x-kms-*` headers (names lowercase, in
/// any order): what the gateway verifies and what kmsd's own client
/// ([`super::client`]) signs.
pub fn string_to_sign<'a>(
    content_sha256: &str,
    content_type: &str,
    date: &str,
    signed_headers: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> String {
    let signed: BTreeMap<&str, &str> = signed_headers.into_iter().collect();
    let mut string_to_sign = format!("POST\n{content_sha256}\n{content_type}\n{date}\n");
    for (name, value) in signed {
        string_to_sign.push_str(name);
        string_to_sign.push(':');
        string_to_sign.push_str(value);
        string_to_sign.push('\n');
    }
    string_to_sign.push('/');
    string_to_sign
}

/// Refuses a request whose date is more than [`MAX_CLOCK_SKEW`] from `now`.
///
/// # Errors
///
/// A `RequestTimeTooSkewed` [`Refusal`].
pub fn check_date(date: SystemTime, now: SystemTime) -> Result<(), Refusal> {
    let skew = now
        .duration_since(date)
        .or_else(|_| date.duration_since(now))
        .unwrap_or(Duration::MAX);
    if skew > MAX_CLOCK_SKEW {
        return Err(Refusal::skewed(format!(
            "The request date is {}s from the server's clock; at most {}s is allowed.",
            skew.as_secs(),
            MAX_CLOCK_SKEW.as_secs()
        )));
    }
    Ok(())
}

/// Refuses a body whose SHA-256 is not the `content-sha256` the request signed.
///
/// # Errors
///
/// A 401 [`Refusal`].
pub fn check_body(claimed: &str, body: &[u8]) -> Result<(), Refusal> {
    let digest = ring::digest::digest(&ring::digest::SHA256, body);
    let actual = upper_hex(digest.as_ref());
    if !claimed.eq_ignore_ascii_case(&actual) {
        return Err(Refusal::unauthenticated(
            "The body does not match its content-sha256 header.",
        ));
    }
    Ok(())
}

/// Uppercase hex, as the SDKs write `content-sha256`.
pub fn upper_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    fn sdk_headers() -> Vec<(&'static str, &'static str)> {
        vec![
            ("accept", "application/x-protobuf"),
            ("host", "127.0.0.1:1"),
            ("date", "Mon, 30 Nov 2026 17:50:02 GMT"),
            ("x-kms-apiversion", "dkms-gcs-0.2"),
            ("x-kms-apiname", "Decrypt"),
            ("x-kms-signaturemethod", "RSA_PKCS1_SHA_256"),
            ("x-kms-acccesskeyid", "KAAP.abc"),
            ("content-type", "application/x-protobuf"),
            (
                "content-sha256",
                "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
            ),
            ("authorization", "Bearer AAEC"),
        ]
    }

    /// The string the Python SDK's `get_string_to_sign` builds for these headers.
    #[test]
    fn the_string_to_sign_is_the_sdks() {
        let read = read(&headers(&sdk_headers())).unwrap();
        assert_eq!(
            read.string_to_sign,
            "POST\nE3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855\n\
             application/x-protobuf\nMon, 30 Nov 2026 17:50:02 GMT\n\
             x-kms-acccesskeyid:KAAP.abc\nx-kms-apiname:Decrypt\n\
             x-kms-apiversion:dkms-gcs-0.2\nx-kms-signaturemethod:RSA_PKCS1_SHA_256\n/"
        );
        assert_eq!(read.client_key_id, "KAAP.abc");
        assert_eq!(read.signature, [0, 1, 2]);
        check_body(&read.content_sha256, b"").unwrap();
        assert!(check_body(&read.content_sha256, b"x").is_err());
    }

    #[test]
    fn missing_repeated_and_malformed_headers_are_refused() {
        for drop in [
            "date",
            "authorization",
            "x-kms-acccesskeyid",
            "content-sha256",
        ] {
            let pairs: Vec<_> = sdk_headers()
                .into_iter()
                .filter(|(n, _)| *n != drop)
                .collect();
            let err = read(&headers(&pairs)).unwrap_err();
            assert!(err.message.contains(drop), "{drop}: {err:?}");
        }
        for (name, value) in [
            ("authorization", "Basic AAEC"),
            ("authorization", "Bearer !!!"),
            ("date", "yesterday"),
        ] {
            let mut pairs: Vec<_> = sdk_headers()
                .into_iter()
                .filter(|(n, _)| *n != name)
                .collect();
            pairs.push((name, value));
            assert!(read(&headers(&pairs)).is_err(), "{name}: {value}");
        }
        let mut pairs = sdk_headers();
        pairs.push(("x-kms-apiname", "Encrypt"));
        assert!(read(&headers(&pairs)).is_err());
    }

    #[test]
    fn dates_within_fifteen_minutes_pass() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        check_date(now - MAX_CLOCK_SKEW, now).unwrap();
        check_date(now + MAX_CLOCK_SKEW, now).unwrap();
        let late = check_date(now - MAX_CLOCK_SKEW - Duration::from_secs(1), now).unwrap_err();
        assert_eq!(late.error_code.as_str(), "RequestTimeTooSkewed");
        assert!(check_date(now + MAX_CLOCK_SKEW + Duration::from_secs(1), now).is_err());
    }
}
