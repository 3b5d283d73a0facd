//! PKCS#11 URIs (RFC 7512) naming the HSM key that wraps the root key:
//! `pkcs11:token=kmsd;object=kmsd-root?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/run/secrets/hsm-pin`.
//!
//! The token is named by `token=` (its label), `serial=` or `slot-id=`; the key by
//! `object=` (its label) and optionally `id=`. The query names the module to load
//! (`module-path=`) and where the PIN is read from (`pin-source=`, a file). A PIN in
//! the URI itself (`pin-value=`) is refused: a URI ends up in process lists, shell
//! histories and logs.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// A parsed PKCS#11 URI naming an AES key on a token. Holds no secret: its
/// `Display` is the URI as given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pkcs11Uri {
    /// The token's label (`token=`).
    pub token: Option<String>,
    /// The token's serial number (`serial=`).
    pub serial: Option<String>,
    /// The slot's ID (`slot-id=`).
    pub slot_id: Option<u64>,
    /// The key's label (`object=`).
    pub object: String,
    /// The key's CKA_ID (`id=`, percent-encoded bytes).
    pub id: Option<Vec<u8>>,
    /// The PKCS#11 module (shared library) to load (`module-path=`).
    pub module_path: PathBuf,
    /// The file holding the user PIN (`pin-source=file:...`).
    pub pin_file: PathBuf,
    text: String,
}

/// Why a PKCS#11 URI was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("PKCS#11 URI: {0}")]
pub struct UriError(String);

impl fmt::Display for Pkcs11Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Pkcs11Uri {
    /// How the token is named, for messages: `token "kmsd"`, `serial ...`.
    pub fn token_description(&self) -> String {
        let mut parts = Vec::new();
        if let Some(token) = &self.token {
            parts.push(format!("token={token:?}"));
        }
        if let Some(serial) = &self.serial {
            parts.push(format!("serial={serial:?}"));
        }
        if let Some(slot) = self.slot_id {
            parts.push(format!("slot-id={slot}"));
        }
        parts.join(" ")
    }
}

impl FromStr for Pkcs11Uri {
    type Err = UriError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let fail = |message: String| UriError(message);
        let rest = text.strip_prefix("pkcs11:").ok_or_else(|| {
            fail("must start with `pkcs11:` (RFC 7512), e.g. pkcs11:token=kmsd;object=kmsd-root?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/run/secrets/hsm-pin".into())
        })?;
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let mut uri = Pkcs11Uri {
            token: None,
            serial: None,
            slot_id: None,
            object: String::new(),
            id: None,
            module_path: PathBuf::new(),
            pin_file: PathBuf::new(),
            text: text.to_owned(),
        };
        for attribute in path.split(';').filter(|part| !part.is_empty()) {
            let (name, value) = split_attribute(attribute)?;
            match name {
                "token" => uri.token = Some(text_value(name, &value)?),
                "serial" => uri.serial = Some(text_value(name, &value)?),
                "slot-id" => {
                    let value = text_value(name, &value)?;
                    uri.slot_id = Some(
                        value
                            .parse()
                            .map_err(|_| fail(format!("slot-id={value} is not a slot number")))?,
                    );
                }
                "object" => uri.object = text_value(name, &value)?,
                "id" => uri.id = Some(value),
                "type" if value == b"secret-key" => {}
                "type" => {
                    return Err(fail(
                        "type= must be secret-key: the root key is wrapped by an AES key".into(),
                    ));
                }
                // Further ways of naming the token or library: they narrow nothing here.
                "manufacturer"
                | "model"
                | "library-manufacturer"
                | "library-description"
                | "library-version" => {}
                "pin-value" | "pin-source" | "module-path" | "module-name" => {
                    return Err(fail(format!(
                        "{name} belongs in the query (after `?`), not the path"
                    )));
                }
                other => return Err(fail(format!("unknown path attribute {other:?}"))),
            }
        }
        for attribute in query.split('&').filter(|part| !part.is_empty()) {
            let (name, value) = split_attribute(attribute)?;
            match name {
                "module-path" => uri.module_path = PathBuf::from(text_value(name, &value)?),
                "pin-source" => uri.pin_file = pin_file(&text_value(name, &value)?)?,
                "pin-value" => {
                    return Err(fail(
                        "pin-value= is refused: a PIN in a URI ends up in process lists and \
                         logs. Put the PIN in a file only the server can read and name it \
                         with pin-source=file:/path"
                            .into(),
                    ));
                }
                "module-name" => {
                    return Err(fail(
                        "module-name= is not supported: name the module's file with \
                         module-path=/path/to/module.so"
                            .into(),
                    ));
                }
                other => return Err(fail(format!("unknown query attribute {other:?}"))),
            }
        }
        if uri.object.is_empty() {
            return Err(fail("name the AES key with object=<label>".into()));
        }
        if uri.token.is_none() && uri.serial.is_none() && uri.slot_id.is_none() {
            return Err(fail(
                "name the token with token=<label> (or serial= or slot-id=)".into(),
            ));
        }
        if uri.module_path.as_os_str().is_empty() {
            return Err(fail(
                "name the PKCS#11 module with module-path=/path/to/module.so (SoftHSM: \
                 /usr/lib/softhsm/libsofthsm2.so)"
                    .into(),
            ));
        }
        if uri.pin_file.as_os_str().is_empty() {
            return Err(fail(
                "name the file holding the user PIN with pin-source=file:/path".into(),
            ));
        }
        Ok(uri)
    }
}

/// `name=value`, the value percent-decoded.
fn split_attribute(attribute: &str) -> Result<(&str, Vec<u8>), UriError> {
    let (name, value) = attribute
        .split_once('=')
        .ok_or_else(|| UriError(format!("{attribute:?} is not name=value")))?;
    Ok((name, percent_decode(value)?))
}

fn text_value(name: &str, value: &[u8]) -> Result<String, UriError> {
    String::from_utf8(value.to_vec()).map_err(|_| UriError(format!("{name}= is not UTF-8")))
}

/// `value` with its `%XX` escapes decoded.
pub(super) fn percent_decode(value: &str) -> Result<Vec<u8>, UriError> {
    let bytes = value.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        if bytes[at] == b'%' {
            let pair = bytes
                .get(at + 1..at + 3)
                .and_then(|pair| std::str::from_utf8(pair).ok())
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())
                .ok_or_else(|| UriError(format!("bad percent-encoding in {value:?}")))?;
            decoded.push(pair);
            at += 3;
        } else {
            decoded.push(bytes[at]);
            at += 1;
        }
    }
    Ok(decoded)
}

/// The file of `pin-source=`: `file:/path`, `file:///path` or an absolute path.
fn pin_file(source: &str) -> Result<PathBuf, UriError> {
    let path = source
        .strip_prefix("file://")
        .or_else(|| source.strip_prefix("file:"))
        .unwrap_or(source);
    if !path.starts_with('/') {
        return Err(UriError(format!(
            "pin-source={source}: name a file by its absolute path, as file:/path"
        )));
    }
    Ok(PathBuf::from(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MODULE: &str = "module-path=/usr/lib/softhsm/libsofthsm2.so";

    #[test]
    fn a_full_uri_parses_and_displays_as_given() {
        let text = format!(
            "pkcs11:token=kmsd%20prod;object=root-wrap;id=%01%02;type=secret-key?{MODULE}&pin-source=file:/run/secrets/pin"
        );
        let uri: Pkcs11Uri = text.parse().unwrap();
        assert_eq!(uri.token.as_deref(), Some("kmsd prod"));
        assert_eq!(uri.object, "root-wrap");
        assert_eq!(uri.id, Some(vec![1, 2]));
        assert_eq!(
            uri.module_path,
            PathBuf::from("/usr/lib/softhsm/libsofthsm2.so")
        );
        assert_eq!(uri.pin_file, PathBuf::from("/run/secrets/pin"));
        assert_eq!(uri.to_string(), text);
        let by_serial: Pkcs11Uri =
            format!("pkcs11:serial=78c7f19d;slot-id=3;object=k?{MODULE}&pin-source=file:///pin")
                .parse()
                .unwrap();
        assert_eq!(by_serial.serial.as_deref(), Some("78c7f19d"));
        assert_eq!(by_serial.slot_id, Some(3));
        assert_eq!(by_serial.pin_file, PathBuf::from("/pin"));
    }

    #[test]
    fn incomplete_or_unsafe_uris_are_refused_with_what_to_add() {
        let pin = "pin-source=file:/pin";
        for (text, expected) in [
            (format!("token=t;object=k?{MODULE}&{pin}"), "pkcs11:"),
            (format!("pkcs11:token=t?{MODULE}&{pin}"), "object="),
            (format!("pkcs11:object=k?{MODULE}&{pin}"), "token="),
            (format!("pkcs11:token=t;object=k?{pin}"), "module-path="),
            (format!("pkcs11:token=t;object=k?{MODULE}"), "pin-source="),
            (
                format!("pkcs11:token=t;object=k?{MODULE}&pin-value=1234"),
                "pin-value= is refused",
            ),
            (
                format!("pkcs11:token=t;object=k;pin-value=1234?{MODULE}&{pin}"),
                "belongs in the query",
            ),
            (
                format!("pkcs11:token=t;object=k?{MODULE}&pin-source=pin.txt"),
                "absolute path",
            ),
            (
                format!("pkcs11:token=t;object=k;type=private?{MODULE}&{pin}"),
                "secret-key",
            ),
            (
                format!("pkcs11:token=t;object=k%zz?{MODULE}&{pin}"),
                "percent",
            ),
            (
                format!("pkcs11:token=t;object=k;colour=red?{MODULE}&{pin}"),
                "colour",
            ),
            (
                format!("pkcs11:slot-id=x;object=k?{MODULE}&{pin}"),
                "slot number",
            ),
        ] {
            let err = text.parse::<Pkcs11Uri>().unwrap_err().to_string();
            assert!(err.contains(expected), "{text}: {err}");
            assert!(!err.contains("1234"), "a PIN is never repeated: {err}");
        }
    }
}
