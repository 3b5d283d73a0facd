//! Client keys of the official SDKs' HTTPS protocol: issuing one (a PKCS#12 the SDK
//! opens with a password) and verifying a request signature made with it.
//!
//! kmsd does one RSA private-key operation per client key, at issue time, and never
//! on input: the self-signature of the certificate the PKCS#12 must carry (the SDKs'
//! loader, OpenSSL's `PKCS12_parse`, expects a key with its certificate). Requests are
//! only ever verified, with the public key.

use ring::signature::{RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey};
use zeroize::Zeroizing;

use super::CryptoError;
use super::keygen::{KeyFormat, KeyPair, KeyPairSpec};

/// The key pair spec of every client key: what the SDKs sign with.
pub const CLIENT_KEY_SPEC: KeyPairSpec = KeyPairSpec::Rsa2048;

/// The PBKDF2-HMAC-SHA-256 iterations of the PKCS#12's two PBES2 encryptions, and of
/// its MAC's key derivation: OWASP's 2023 figure for PBKDF2-HMAC-SHA-256, 60 times
/// p12-keystore's default of 10,000. The official SDKs open the file with OpenSSL
/// (pyOpenSSL's `load_pkcs12`), which takes any count; opening costs the SDK about
/// the same as issuing costs kmsd (three derivations).
pub const PKCS12_ITERATIONS: u32 = 600_000;

/// What issuing a client key gives: the public key kmsd keeps, and the private key
/// for the caller, once, in a PKCS#12 under their password.
pub struct IssuedClientKey {
    /// The RSA public key, PKCS#1 `RSAPublicKey` DER: what [`verify`] takes.
    pub public_key_pkcs1_der: Vec<u8>,
    /// The PKCS#12 (key and self-signed certificate, PBES2 AES-256-CBC, HMAC-SHA-256
    /// MAC), zeroized on drop.
    pub pkcs12: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for IssuedClientKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedClientKey")
            .field("public_key_len", &self.public_key_pkcs1_der.len())
            .field("pkcs12", &"[REDACTED]")
            .finish()
    }
}

/// Packs `pair` (an [`CLIENT_KEY_SPEC`] pair) as client key `client_key_id` under
/// `password`. CPU-heavy (an RSA signature, the PKCS#12 key derivations): call it off
/// the async threads.
///
/// # Errors
///
/// [`CryptoError::KeyGeneration`] for a pair of another spec, [`CryptoError::Encoding`]
/// if the certificate or the PKCS#12 cannot be built.
pub fn issue(
    pair: &KeyPair,
    client_key_id: &str,
    password: &str,
) -> Result<IssuedClientKey, CryptoError> {
    if pair.spec() != CLIENT_KEY_SPEC {
        return Err(CryptoError::KeyGeneration(format!(
            "a client key is {CLIENT_KEY_SPEC}, not {}",
            pair.spec()
        )));
    }
    let encoding = |step: &str| {
        let step = step.to_owned();
        move |err: &dyn std::fmt::Display| CryptoError::Encoding(format!("{step}: {err}"))
    };
    let private = pair.private_key_pkcs8(KeyFormat::Der);
    let der = rustls_pki_types::PrivatePkcs8KeyDer::from(private.as_slice());
    let signer = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&der, &rcgen::PKCS_RSA_SHA256)
        .map_err(|e| encoding("client key certificate")(&e))?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())
        .map_err(|e| encoding("client key certificate")(&e))?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, client_key_id);
    let now = std::time::SystemTime::now();
    params.not_before = now.into();
    params.not_after = (now + std::time::Duration::from_secs(100 * 365 * 24 * 3600)).into();
    let certificate = params
        .self_signed(&signer)
        .map_err(|e| encoding("client key certificate")(&e))?;
    let certificate = p12_keystore::Certificate::from_der(certificate.der())
        .map_err(|e| encoding("client key certificate")(&e))?;

    let chain = p12_keystore::PrivateKeyChain::new(
        private.as_slice(),
        client_key_id.as_bytes(),
        [certificate],
    );
    let mut store = p12_keystore::KeyStore::new();
    store.add_entry(
        client_key_id,
        p12_keystore::KeyStoreEntry::PrivateKeyChain(chain),
    );
    let pkcs12 = store
        .writer(password)
        .encryption_iterations(PKCS12_ITERATIONS.into())
        .mac_iterations(PKCS12_ITERATIONS.into())
        .write()
        .map_err(|e| encoding("client key PKCS#12")(&e))?;
    Ok(IssuedClientKey {
        public_key_pkcs1_der: rsa_public_key(pair.public_key_der())?,
        pkcs12: Zeroizing::new(pkcs12),
    })
}

/// The PKCS#1 `RSAPublicKey` inside a SubjectPublicKeyInfo.
fn rsa_public_key(spki_der: &[u8]) -> Result<Vec<u8>, CryptoError> {
    use x509_parser::prelude::FromDer;
    let (_, spki) = x509_parser::x509::SubjectPublicKeyInfo::from_der(spki_der)
        .map_err(|e| CryptoError::Encoding(format!("client key SPKI: {e}")))?;
    Ok(spki.subject_public_key.data.to_vec())
}

/// Whether `signature` is an RSA PKCS#1 v1.5 SHA-256 signature of `message` by the
/// key `public_key_pkcs1_der` (2048 to 8192 bits).
pub fn verify(public_key_pkcs1_der: &[u8], message: &[u8], signature: &[u8]) -> bool {
    UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, public_key_pkcs1_der)
        .verify(message, signature)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::keygen;

    #[test]
    fn an_issued_key_opens_with_its_password_and_its_signatures_verify() {
        let pair = keygen::generate(CLIENT_KEY_SPEC).unwrap();
        let issued = issue(&pair, "KAAP.test", "correct horse").unwrap();
        assert!(format!("{issued:?}").contains("[REDACTED]"));

        let opened = p12_keystore::KeyStore::from_pkcs12(&issued.pkcs12, "correct horse").unwrap();
        let (_, chain) = opened.private_key_chain().unwrap();
        assert_eq!(chain.key(), pair.private_key_der());
        assert_eq!(chain.chain().len(), 1);
        assert!(p12_keystore::KeyStore::from_pkcs12(&issued.pkcs12, "wrong").is_err());

        // A signature made with the private key, as the SDK makes it.
        let signer = ring::signature::RsaKeyPair::from_pkcs8(pair.private_key_der()).unwrap();
        let mut signature = vec![0; signer.public().modulus_len()];
        signer
            .sign(
                &ring::signature::RSA_PKCS1_SHA256,
                &ring::rand::SystemRandom::new(),
                b"POST\n...",
                &mut signature,
            )
            .unwrap();
        assert!(verify(
            &issued.public_key_pkcs1_der,
            b"POST\n...",
            &signature
        ));
        assert!(!verify(
            &issued.public_key_pkcs1_der,
            b"POST\n..,",
            &signature
        ));
        signature[10] ^= 1;
        assert!(!verify(
            &issued.public_key_pkcs1_der,
            b"POST\n...",
            &signature
        ));
    }

    #[test]
    fn the_pkcs12_derives_its_keys_with_the_stronger_iteration_count() {
        let pair = keygen::generate(CLIENT_KEY_SPEC).unwrap();
        let issued = issue(&pair, "KAAP.test", "correct horse battery").unwrap();
        // The DER INTEGER of the count: in the two PBES2 parameters (certificate bag
        // and shrouded key bag) and the MacData.
        let count = |n: u32| {
            let mut der = vec![0x02, 0x03];
            der.extend_from_slice(&n.to_be_bytes()[1..]);
            issued
                .pkcs12
                .windows(der.len())
                .filter(|w| *w == der)
                .count()
        };
        assert_eq!(PKCS12_ITERATIONS, 600_000);
        assert_eq!(count(PKCS12_ITERATIONS), 3);
        let old = [0x02, 0x02, 0x27, 0x10]; // 10,000: p12-keystore's default
        assert_eq!(issued.pkcs12.windows(4).filter(|w| *w == old).count(), 0);
    }

    #[test]
    fn only_rsa_2048_pairs_become_client_keys() {
        let pair = keygen::generate(KeyPairSpec::EcP256).unwrap();
        assert!(issue(&pair, "KAAP.x", "pw").is_err());
    }
}
