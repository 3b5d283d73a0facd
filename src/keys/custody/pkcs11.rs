//! The root key wrapped by an AES-256 key inside an HSM, over PKCS#11 (`cryptoki`).
//!
//! The HSM key is a token object that is sensitive and not extractable: it never
//! leaves the HSM. The root key is sealed with it by AES-GCM inside the HSM
//! (`CKM_AES_GCM`, a fresh 96-bit IV from the host's random source, 128-bit tag, a
//! fixed AAD), and only that sealing is kept on disk (`--root-key-file`).
//! Opening it at start is one login and one `C_Decrypt`; the root key then lives in
//! kmsd's zeroizing memory as with a root key file.
//!
//! Every call here blocks (the module may talk to a device or a network HSM): run
//! them off the async threads.

use std::path::Path;

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;
use zeroize::Zeroizing;

use super::pkcs11_uri::Pkcs11Uri;
use crate::crypto::secret::MasterKeyMaterial;

/// The AAD of the root key's sealing: binds it to this use of the HSM key.
const AAD: &[u8] = b"kmsd/v1/root-key/pkcs11";
/// The GCM tag length, in bits.
const TAG_BITS: u64 = 128;
/// The IV length, in bytes.
pub(super) const IV_LEN: usize = 12;
/// The length of an AES-256 key, in bytes.
const AES_256_LEN: u64 = 32;

/// Why the HSM did not wrap or unwrap the root key. Names what to check; never the
/// PIN.
#[derive(Debug, thiserror::Error)]
pub enum Pkcs11Error {
    /// The module could not be loaded.
    #[error(
        "cannot load the PKCS#11 module {module}: {detail}; check module-path= in the \
         PKCS#11 URI (is the HSM's library installed on this host?)"
    )]
    Module {
        /// The module path.
        module: String,
        /// What the loader said.
        detail: String,
    },
    /// No slot holds the token the URI names.
    #[error(
        "no token with {wanted} in the PKCS#11 module {module} (tokens present: {present}); \
         check token= in the URI and that the token is initialised"
    )]
    NoToken {
        /// How the URI names it.
        wanted: String,
        /// The module.
        module: String,
        /// The labels of the tokens that are there.
        present: String,
    },
    /// The PIN file could not be read, or is unsafe.
    #[error("cannot use the HSM PIN file {path}: {problem}")]
    PinFile {
        /// The file.
        path: String,
        /// What is wrong.
        problem: String,
    },
    /// The token refused the PIN.
    #[error(
        "the HSM token ({token}) refused the user PIN read from {pin_file} ({code}): check \
         that file's contents; repeated failures lock the PIN"
    )]
    Login {
        /// How the URI names the token.
        token: String,
        /// The PIN file.
        pin_file: String,
        /// CKR_PIN_INCORRECT, CKR_PIN_LOCKED, ...
        code: String,
    },
    /// No such key on the token.
    #[error(
        "no AES key labelled {object:?} on the HSM token ({token}): check object= in the \
         PKCS#11 URI, or create it with `kmsd root-key init-pkcs11 --create-key`"
    )]
    NoKey {
        /// The label.
        object: String,
        /// How the URI names the token.
        token: String,
    },
    /// More than one key with the label (and id).
    #[error(
        "{count} AES keys labelled {object:?} on the HSM token ({token}): name one with id= \
         in the PKCS#11 URI"
    )]
    Ambiguous {
        /// The label.
        object: String,
        /// How the URI names the token.
        token: String,
        /// How many.
        count: usize,
    },
    /// The key exists but could leave the HSM, or is not AES-256.
    #[error(
        "the HSM key {object:?} is not an AES-256 key that cannot leave the HSM ({found}); \
         use a key created sensitive and non-extractable, as `kmsd root-key init-pkcs11 \
         --create-key` does"
    )]
    Weak {
        /// The label.
        object: String,
        /// What was found.
        found: String,
    },
    /// `--create-key`, but a key with the label exists already.
    #[error(
        "the HSM token ({token}) already has a key labelled {object:?}: run again without \
         --create-key to wrap a new root key with it, or choose another object="
    )]
    Exists {
        /// The label.
        object: String,
        /// How the URI names the token.
        token: String,
    },
    /// The HSM key does not open the wrapped root key.
    #[error(
        "the HSM key {object:?} does not open the wrapped root key ({code}): it was wrapped \
         by another key or token (check object= and token= in the URI and --root-key-file)"
    )]
    WrongKey {
        /// The label.
        object: String,
        /// What the HSM answered.
        code: String,
    },
    /// Another PKCS#11 failure.
    #[error("the HSM failed during {during}: {detail}")]
    Hsm {
        /// The step.
        during: &'static str,
        /// The module's error.
        detail: String,
        /// Whether the device or token was absent or failing (`is_transient_rv`).
        transient: bool,
    },
}

impl Pkcs11Error {
    /// Whether trying again later may succeed: no token in any slot yet (a network
    /// HSM not connected, a device not plugged in), or the device failing or absent
    /// mid-call. A wrong PIN, a missing key or token label, a key that does not open
    /// the file are not.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::NoToken { present, .. } => present == NO_TOKENS,
            Self::Hsm { transient, .. } => *transient,
            _ => false,
        }
    }

    /// The kind of failure, for a log that shows each kind once.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Module { .. } => "PKCS#11 module",
            Self::NoToken { .. } => "no token",
            Self::PinFile { .. } => "PIN file",
            Self::Login { .. } => "login",
            Self::NoKey { .. } | Self::Ambiguous { .. } | Self::Weak { .. } => "HSM key",
            Self::Exists { .. } => "HSM key exists",
            Self::WrongKey { .. } => "wrong HSM key",
            Self::Hsm { .. } => "HSM failure",
        }
    }
}

/// What [`Pkcs11Error::NoToken`] lists when no slot holds a token at all.
const NO_TOKENS: &str = "none";

/// The return values of a device or token that is absent or failing for now, rather
/// than of a refusal.
fn is_transient_rv(code: RvError) -> bool {
    matches!(
        code,
        RvError::DeviceError
            | RvError::DeviceRemoved
            | RvError::DeviceMemory
            | RvError::TokenNotPresent
            | RvError::SessionCount
    )
}

/// The root key sealed by an HSM key: what is kept on disk.
pub(super) struct Sealed {
    pub(super) iv: [u8; IV_LEN],
    pub(super) ciphertext: Vec<u8>,
}

/// A logged-in session on the token the URI names. Finalizes the module when dropped.
struct Token<'u> {
    uri: &'u Pkcs11Uri,
    context: Option<Pkcs11>,
    session: Option<Session>,
}

impl Drop for Token<'_> {
    fn drop(&mut self) {
        // The session first: closing it needs the module.
        drop(self.session.take());
        if let Some(context) = self.context.take() {
            let _ = context.finalize();
        }
    }
}

impl<'u> Token<'u> {
    /// Loads the module, finds the token, opens a session (read-write if `rw`) and
    /// logs in with the PIN from the URI's pin-source.
    fn open(uri: &'u Pkcs11Uri, rw: bool) -> Result<Self, Pkcs11Error> {
        let module = uri.module_path.display().to_string();
        if !uri.module_path.exists() {
            return Err(Pkcs11Error::Module {
                module,
                detail: "no such file".into(),
            });
        }
        let pin = read_pin(&uri.pin_file)?;
        let context = Pkcs11::new(&uri.module_path).map_err(|err| Pkcs11Error::Module {
            module: module.clone(),
            detail: err.to_string(),
        })?;
        let mut token = Token {
            uri,
            context: Some(context.clone()),
            session: None,
        };
        match context.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
            Err(err) => return Err(hsm("initialising the module", err)),
        }
        let slots = context
            .get_slots_with_token()
            .map_err(|err| hsm("listing the slots", err))?;
        let mut present = Vec::new();
        let mut found = None;
        for slot in slots {
            let info = context
                .get_token_info(slot)
                .map_err(|err| hsm("reading a token's info", err))?;
            let label = info.label().trim_end().to_owned();
            let serial = info.serial_number().trim_end().to_owned();
            let matches = uri.token.as_ref().is_none_or(|want| *want == label)
                && uri.serial.as_ref().is_none_or(|want| *want == serial)
                && uri.slot_id.is_none_or(|want| want == slot.id());
            if matches && info.token_initialized() {
                found = Some(slot);
                break;
            }
            present.push(format!("{label:?}"));
        }
        let Some(slot) = found else {
            return Err(Pkcs11Error::NoToken {
                wanted: uri.token_description(),
                module,
                present: if present.is_empty() {
                    NO_TOKENS.into()
                } else {
                    present.join(", ")
                },
            });
        };
        let session = if rw {
            context.open_rw_session(slot)
        } else {
            context.open_ro_session(slot)
        }
        .map_err(|err| hsm("opening a session", err))?;
        match session.login(UserType::User, Some(&pin)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
            Err(CkError::Pkcs11(code, _)) => {
                return Err(Pkcs11Error::Login {
                    token: uri.token_description(),
                    pin_file: uri.pin_file.display().to_string(),
                    code: rv_name(code),
                });
            }
            Err(err) => return Err(hsm("logging in", err)),
        }
        token.session = Some(session);
        Ok(token)
    }

    fn session(&self) -> &Session {
        self.session.as_ref().expect("open leaves a session")
    }

    /// The AES keys with the URI's label (and id).
    fn find_keys(&self) -> Result<Vec<ObjectHandle>, Pkcs11Error> {
        let mut template = vec![
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::AES),
            Attribute::Label(self.uri.object.as_bytes().to_vec()),
        ];
        if let Some(id) = &self.uri.id {
            template.push(Attribute::Id(id.clone()));
        }
        self.session()
            .find_objects(&template)
            .map_err(|err| hsm("finding the key", err))
    }

    /// The one AES-256 key the URI names, checked to be sensitive and non-extractable.
    fn wrapping_key(&self) -> Result<ObjectHandle, Pkcs11Error> {
        let keys = self.find_keys()?;
        let key = match keys.as_slice() {
            [] => {
                return Err(Pkcs11Error::NoKey {
                    object: self.uri.object.clone(),
                    token: self.uri.token_description(),
                });
            }
            [key] => *key,
            more => {
                return Err(Pkcs11Error::Ambiguous {
                    object: self.uri.object.clone(),
                    token: self.uri.token_description(),
                    count: more.len(),
                });
            }
        };
        let attributes = self
            .session()
            .get_attributes(
                key,
                &[
                    AttributeType::ValueLen,
                    AttributeType::Sensitive,
                    AttributeType::Extractable,
                ],
            )
            .map_err(|err| hsm("reading the key's attributes", err))?;
        let (mut length, mut sensitive, mut extractable) = (None, None, None);
        for attribute in attributes {
            match attribute {
                Attribute::ValueLen(len) => length = Some(u64::from(len)),
                Attribute::Sensitive(value) => sensitive = Some(value),
                Attribute::Extractable(value) => extractable = Some(value),
                _ => {}
            }
        }
        if length != Some(AES_256_LEN) || sensitive != Some(true) || extractable != Some(false) {
            return Err(Pkcs11Error::Weak {
                object: self.uri.object.clone(),
                found: format!(
                    "value length {}, sensitive {}, extractable {}",
                    shown(length),
                    shown(sensitive),
                    shown(extractable)
                ),
            });
        }
        Ok(key)
    }

    /// Creates the AES-256 token key the URI names: sensitive, non-extractable, for
    /// encryption and decryption only.
    fn create_key(&self) -> Result<(), Pkcs11Error> {
        if !self.find_keys()?.is_empty() {
            return Err(Pkcs11Error::Exists {
                object: self.uri.object.clone(),
                token: self.uri.token_description(),
            });
        }
        let mut template = vec![
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Encrypt(true),
            Attribute::Decrypt(true),
            Attribute::Wrap(false),
            Attribute::Unwrap(false),
            Attribute::Sign(false),
            Attribute::Verify(false),
            Attribute::Derive(false),
            Attribute::ValueLen(AES_256_LEN.into()),
            Attribute::Label(self.uri.object.as_bytes().to_vec()),
        ];
        if let Some(id) = &self.uri.id {
            template.push(Attribute::Id(id.clone()));
        }
        self.session()
            .generate_key(&Mechanism::AesKeyGen, &template)
            .map_err(|err| hsm("creating the key", err))?;
        Ok(())
    }
}

/// Seals `root_key` with the HSM key the URI names, creating that key first if
/// `create_key`. The IV comes from the host's random source.
pub(super) fn seal(
    uri: &Pkcs11Uri,
    root_key: &MasterKeyMaterial,
    create_key: bool,
) -> Result<Sealed, Pkcs11Error> {
    let token = Token::open(uri, create_key)?;
    if create_key {
        token.create_key()?;
    }
    let key = token.wrapping_key()?;
    let mut iv = [0u8; IV_LEN];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut iv).map_err(|_| {
        Pkcs11Error::Hsm {
            during: "drawing an IV",
            detail: "the system random source failed".into(),
            transient: false,
        }
    })?;
    let mut iv_param = iv;
    let params = GcmParams::new(&mut iv_param, AAD, TAG_BITS.into())
        .map_err(|err| hsm("preparing AES-GCM", err))?;
    let ciphertext = token
        .session()
        .encrypt(&Mechanism::AesGcm(params), key, root_key.expose_secret())
        .map_err(|err| hsm("sealing the root key", err))?;
    Ok(Sealed { iv, ciphertext })
}

/// Opens a root key sealed by [`seal`] with the HSM key the URI names.
pub(super) fn open(uri: &Pkcs11Uri, sealed: &Sealed) -> Result<MasterKeyMaterial, Pkcs11Error> {
    let token = Token::open(uri, false)?;
    let key = token.wrapping_key()?;
    let mut iv = sealed.iv;
    let params = GcmParams::new(&mut iv, AAD, TAG_BITS.into())
        .map_err(|err| hsm("preparing AES-GCM", err))?;
    let opened = token
        .session()
        .decrypt(&Mechanism::AesGcm(params), key, &sealed.ciphertext)
        .map(Zeroizing::new);
    let wrong_key = |code: String| Pkcs11Error::WrongKey {
        object: uri.object.clone(),
        code,
    };
    match opened {
        Ok(bytes) => MasterKeyMaterial::from_bytes(&bytes)
            .map_err(|_| wrong_key(format!("{} bytes, not a root key", bytes.len()))),
        // A GCM tag that does not verify: the specification's codes, and
        // CKR_GENERAL_ERROR, which SoftHSM2 (and other modules) answer instead. The key
        // was found, usable and logged in to, so the sealing is what fails.
        Err(CkError::Pkcs11(
            code @ (RvError::EncryptedDataInvalid
            | RvError::EncryptedDataLenRange
            | RvError::GeneralError),
            _,
        )) => Err(wrong_key(rv_name(code))),
        Err(err) => Err(hsm("opening the root key", err)),
    }
}

/// Reads the user PIN: the file's contents less one trailing newline. Refuses a file
/// others may read, as the root key file is.
fn read_pin(path: &Path) -> Result<AuthPin, Pkcs11Error> {
    let problem = |problem: String| Pkcs11Error::PinFile {
        path: path.display().to_string(),
        problem,
    };
    let mut file = std::fs::File::open(path).map_err(|err| problem(err.to_string()))?;
    let metadata = file.metadata().map_err(|err| problem(err.to_string()))?;
    if let Some((mode, who)) = super::super::root_key::readable_by_others(&metadata) {
        return Err(problem(format!(
            "it has mode {mode:04o} and must not be readable by {who}; run `chmod 600 {}`",
            path.display()
        )));
    }
    let mut contents = Zeroizing::new(String::new());
    std::io::Read::read_to_string(&mut file, &mut contents)
        .map_err(|err| problem(format!("{err} (a PIN file holds the PIN as text)")))?;
    let pin = contents
        .strip_suffix('\n')
        .map(|pin| pin.strip_suffix('\r').unwrap_or(pin))
        .unwrap_or(&contents);
    if pin.is_empty() {
        return Err(problem("it is empty".into()));
    }
    Ok(AuthPin::from(pin.to_owned()))
}

fn hsm(during: &'static str, err: CkError) -> Pkcs11Error {
    let (detail, transient) = match err {
        CkError::Pkcs11(code, _) => (rv_name(code), is_transient_rv(code)),
        other => (other.to_string(), false),
    };
    Pkcs11Error::Hsm {
        during,
        detail,
        transient,
    }
}

/// The specification's name of a return value (`CKR_PIN_INCORRECT`): short, where the
/// crate's `Display` is a paragraph.
fn rv_name(code: RvError) -> String {
    let mut name = String::from("CKR");
    for c in format!("{code:?}").chars() {
        if c.is_ascii_uppercase() {
            name.push('_');
        }
        name.push(c.to_ascii_uppercase());
    }
    name
}

fn shown<T: std::fmt::Display>(value: Option<T>) -> String {
    value.map_or_else(|| "unknown".into(), |value| value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_absent_token_or_failing_device_is_waited_for_a_refusal_is_not() {
        let no_token = |present: &str| Pkcs11Error::NoToken {
            wanted: "token=\"kmsd\"".into(),
            module: "/m.so".into(),
            present: present.into(),
        };
        assert!(no_token(NO_TOKENS).is_transient());
        assert!(!no_token("\"other\"").is_transient());
        assert!(
            hsm(
                "opening a session",
                CkError::Pkcs11(
                    RvError::DeviceError,
                    cryptoki::context::Function::OpenSession
                )
            )
            .is_transient()
        );
        assert!(
            !hsm(
                "logging in",
                CkError::Pkcs11(RvError::PinIncorrect, cryptoki::context::Function::Login)
            )
            .is_transient()
        );
        let login = Pkcs11Error::Login {
            token: "token=\"kmsd\"".into(),
            pin_file: "/pin".into(),
            code: "CKR_PIN_INCORRECT".into(),
        };
        assert!(!login.is_transient());
    }

    #[test]
    fn return_values_are_named_as_the_specification_does() {
        assert_eq!(rv_name(RvError::PinIncorrect), "CKR_PIN_INCORRECT");
        assert_eq!(rv_name(RvError::TokenNotPresent), "CKR_TOKEN_NOT_PRESENT");
    }
}
