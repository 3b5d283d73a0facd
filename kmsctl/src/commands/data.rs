//! The data plane: key pairs, data keys, encrypt and decrypt, random bytes, hashes.
//! Binary results go to files ([`crate::files`]); what is shown is where they went.

use std::path::Path;

use kmsd_api::pb;
use serde_json::json;
use zeroize::Zeroizing;

use crate::cli::{DatakeyCommand, DecryptArgs, EncryptArgs, HashArgs, KeypairCommand, RandomArgs};
use crate::connect::Connection;
use crate::failure::Failure;
use crate::files::{CiphertextFile, read_input, write_private};
use crate::output::Shown;

fn path_text(path: &Path) -> String {
    path.display().to_string()
}

/// Runs `keypair generate`.
pub async fn keypair(conn: &Connection, cmd: KeypairCommand) -> Result<Shown, Failure> {
    let KeypairCommand::Generate(args) = cmd;
    let mut api = conn.crypto();
    let aad = args.aad.into_bytes();
    // (key ID, version, public key, sealed private key, IV, plaintext private key)
    let (key_id, version, public_key, blob, iv, plaintext) =
        match (args.advance, args.plaintext_private_out.is_some()) {
            (false, false) => {
                let request = pb::GenerateDataKeyPairWithoutPlaintextRequest {
                    key_id: args.key,
                    key_pair_spec: args.spec,
                    key_format: args.format,
                    aad,
                    ..Default::default()
                };
                let r = api
                    .generate_data_key_pair_without_plaintext(conn.request(request))
                    .await?
                    .into_inner();
                (
                    r.key_id,
                    None,
                    r.public_key,
                    r.private_key_ciphertext_blob,
                    r.iv,
                    None,
                )
            }
            (false, true) => {
                let request = pb::GenerateDataKeyPairRequest {
                    key_id: args.key,
                    key_pair_spec: args.spec,
                    key_format: args.format,
                    aad,
                    ..Default::default()
                };
                let mut r = api
                    .generate_data_key_pair(conn.request(request))
                    .await?
                    .into_inner();
                let plaintext = Zeroizing::new(std::mem::take(&mut r.private_key_plaintext));
                (
                    std::mem::take(&mut r.key_id),
                    None,
                    std::mem::take(&mut r.public_key),
                    std::mem::take(&mut r.private_key_ciphertext_blob),
                    std::mem::take(&mut r.iv),
                    Some(plaintext),
                )
            }
            (true, false) => {
                let request = pb::AdvanceGenerateDataKeyPairWithoutPlaintextRequest {
                    key_id: args.key,
                    key_pair_spec: args.spec,
                    key_format: args.format,
                    aad,
                };
                let r = api
                    .advance_generate_data_key_pair_without_plaintext(conn.request(request))
                    .await?
                    .into_inner();
                (
                    r.key_id,
                    Some(r.key_version_id),
                    r.public_key,
                    r.private_key_ciphertext_blob,
                    r.iv,
                    None,
                )
            }
            (true, true) => {
                let request = pb::AdvanceGenerateDataKeyPairRequest {
                    key_id: args.key,
                    key_pair_spec: args.spec,
                    key_format: args.format,
                    aad,
                };
                let mut r = api
                    .advance_generate_data_key_pair(conn.request(request))
                    .await?
                    .into_inner();
                let plaintext = Zeroizing::new(std::mem::take(&mut r.private_key_plaintext));
                (
                    std::mem::take(&mut r.key_id),
                    Some(std::mem::take(&mut r.key_version_id)),
                    std::mem::take(&mut r.public_key),
                    std::mem::take(&mut r.private_key_ciphertext_blob),
                    std::mem::take(&mut r.iv),
                    Some(plaintext),
                )
            }
        };
    // The Advance blob carries its own IV; Decrypt needs the plain form's.
    let sealed = CiphertextFile {
        key_id: key_id.clone(),
        blob,
        iv: if version.is_some() { Vec::new() } else { iv },
        key_version_id: version.clone(),
        algorithm: String::new(),
    };
    write_private(&args.public_out, &public_key, "the public key")?;
    sealed.write(&args.private_out)?;
    if let (Some(path), Some(plaintext)) = (&args.plaintext_private_out, &plaintext) {
        write_private(path, plaintext, "the plaintext private key")?;
    }
    let mut fields = vec![
        ("Key ID", key_id.clone()),
        ("Public key", path_text(&args.public_out)),
        ("Sealed private key", path_text(&args.private_out)),
    ];
    if let Some(path) = &args.plaintext_private_out {
        fields.push(("PLAINTEXT private key", path_text(path)));
    }
    if let Some(version) = &version {
        fields.push(("Key version", version.clone()));
    }
    Ok(Shown::Fields(
        fields,
        json!({
            "KeyId": key_id,
            "KeyVersionId": version,
            "PublicKeyFile": path_text(&args.public_out),
            "PrivateKeyCiphertextFile": path_text(&args.private_out),
            "PrivateKeyPlaintextFile": args.plaintext_private_out.as_deref().map(path_text),
        }),
    ))
}

/// Runs `datakey generate`.
pub async fn datakey(conn: &Connection, cmd: DatakeyCommand) -> Result<Shown, Failure> {
    let DatakeyCommand::Generate(args) = cmd;
    let mut api = conn.crypto();
    let aad = args.aad.into_bytes();
    let (sealed, plaintext) = if args.advance {
        let request = pb::AdvanceGenerateDataKeyRequest {
            key_id: args.key,
            number_of_bytes: args.bytes,
            aad,
        };
        let mut r = api
            .advance_generate_data_key(conn.request(request))
            .await?
            .into_inner();
        let plaintext = Zeroizing::new(std::mem::take(&mut r.plaintext));
        let sealed = CiphertextFile {
            key_id: std::mem::take(&mut r.key_id),
            blob: std::mem::take(&mut r.ciphertext_blob),
            iv: Vec::new(),
            key_version_id: Some(std::mem::take(&mut r.key_version_id)),
            algorithm: String::new(),
        };
        (sealed, plaintext)
    } else {
        let request = pb::GenerateDataKeyRequest {
            key_id: args.key,
            number_of_bytes: args.bytes,
            aad,
            ..Default::default()
        };
        let mut r = api
            .generate_data_key(conn.request(request))
            .await?
            .into_inner();
        let plaintext = Zeroizing::new(std::mem::take(&mut r.plaintext));
        let sealed = CiphertextFile {
            key_id: std::mem::take(&mut r.key_id),
            blob: std::mem::take(&mut r.ciphertext_blob),
            iv: std::mem::take(&mut r.iv),
            key_version_id: None,
            algorithm: String::new(),
        };
        (sealed, plaintext)
    };
    write_private(&args.plaintext_out, &plaintext, "the plaintext data key")?;
    sealed.write(&args.out)?;
    Ok(Shown::Fields(
        vec![
            ("Key ID", sealed.key_id.clone()),
            ("PLAINTEXT data key", path_text(&args.plaintext_out)),
            ("Ciphertext", path_text(&args.out)),
        ],
        json!({
            "KeyId": sealed.key_id,
            "KeyVersionId": sealed.key_version_id,
            "PlaintextFile": path_text(&args.plaintext_out),
            "CiphertextFile": path_text(&args.out),
        }),
    ))
}

/// Runs `encrypt`.
pub async fn encrypt(conn: &Connection, args: EncryptArgs) -> Result<Shown, Failure> {
    let plaintext = read_input(&args.input, "the plaintext")?;
    let mut api = conn.crypto();
    let aad = args.aad.into_bytes();
    let sealed = if args.advance {
        let request = pb::AdvanceEncryptRequest {
            key_id: args.key,
            plaintext: plaintext.to_vec(),
            aad,
            ..Default::default()
        };
        let r = api
            .advance_encrypt(conn.request(request))
            .await?
            .into_inner();
        CiphertextFile {
            key_id: r.key_id,
            blob: r.ciphertext_blob,
            iv: Vec::new(),
            key_version_id: Some(r.key_version_id),
            algorithm: String::new(),
        }
    } else {
        let request = pb::EncryptRequest {
            key_id: args.key,
            plaintext: plaintext.to_vec(),
            aad,
            algorithm: args.algorithm,
            ..Default::default()
        };
        let r = api.encrypt(conn.request(request)).await?.into_inner();
        CiphertextFile {
            key_id: r.key_id,
            blob: r.ciphertext_blob,
            iv: r.iv,
            key_version_id: None,
            // Decrypt needs an RSAES algorithm again; AES_GCM is the default.
            algorithm: match r.algorithm.as_str() {
                "AES_GCM" => String::new(),
                _ => r.algorithm,
            },
        }
    };
    sealed.write(&args.out)?;
    Ok(Shown::Fields(
        vec![
            ("Key ID", sealed.key_id.clone()),
            ("Ciphertext", path_text(&args.out)),
        ],
        json!({
            "KeyId": sealed.key_id,
            "KeyVersionId": sealed.key_version_id,
            "CiphertextFile": path_text(&args.out),
        }),
    ))
}

/// Runs `decrypt`: AdvanceDecrypt for a file that names its version, else Decrypt.
pub async fn decrypt(conn: &Connection, args: DecryptArgs) -> Result<Shown, Failure> {
    let sealed = CiphertextFile::read(&args.input)?;
    let key_id = args.key.unwrap_or(sealed.key_id);
    let algorithm = args.algorithm.unwrap_or(sealed.algorithm);
    let mut api = conn.crypto();
    let aad = args.aad.into_bytes();
    let (key_id, plaintext) = if sealed.key_version_id.is_some() {
        let request = pb::AdvanceDecryptRequest {
            ciphertext_blob: sealed.blob,
            key_id,
            aad,
            algorithm,
            ..Default::default()
        };
        let mut r = api
            .advance_decrypt(conn.request(request))
            .await?
            .into_inner();
        (
            std::mem::take(&mut r.key_id),
            Zeroizing::new(std::mem::take(&mut r.plaintext)),
        )
    } else {
        if key_id.is_empty() {
            return Err(Failure::Usage(format!(
                "{} names no KeyId: give --key",
                args.input.display()
            )));
        }
        let request = pb::DecryptRequest {
            ciphertext_blob: sealed.blob,
            key_id,
            aad,
            iv: sealed.iv,
            algorithm,
            ..Default::default()
        };
        let mut r = api.decrypt(conn.request(request)).await?.into_inner();
        (
            std::mem::take(&mut r.key_id),
            Zeroizing::new(std::mem::take(&mut r.plaintext)),
        )
    };
    write_private(&args.out, &plaintext, "the plaintext")?;
    let to_stdout = args.out == Path::new("-");
    let shown = Shown::Fields(
        vec![
            ("Key ID", key_id.clone()),
            ("PLAINTEXT", path_text(&args.out)),
        ],
        json!({ "KeyId": key_id, "PlaintextFile": path_text(&args.out) }),
    );
    // The plaintext went to stdout: nothing else may.
    Ok(if to_stdout { Shown::Nothing } else { shown })
}

/// Runs `random`.
pub async fn random(conn: &Connection, args: RandomArgs) -> Result<Shown, Failure> {
    let request = pb::GenerateRandomRequest {
        length: args.length,
    };
    let mut r = conn
        .crypto()
        .generate_random(conn.request(request))
        .await?
        .into_inner();
    let bytes = Zeroizing::new(std::mem::take(&mut r.random));
    write_private(&args.out, &bytes, "the random bytes")?;
    if args.out == Path::new("-") {
        return Ok(Shown::Nothing);
    }
    Ok(Shown::Line(
        format!("{} random bytes in {}", bytes.len(), args.out.display()),
        json!({ "Length": bytes.len(), "File": path_text(&args.out) }),
    ))
}

/// Runs `hash`: the digest is not secret, so it is shown (as hex).
pub async fn hash(conn: &Connection, args: HashArgs) -> Result<Shown, Failure> {
    let message = read_input(&args.input, "the message")?;
    let request = pb::HashRequest {
        message: message.to_vec(),
        algorithm: args.algorithm.clone(),
    };
    let r = conn
        .crypto()
        .hash(conn.request(request))
        .await?
        .into_inner();
    let hex: String = r.digest.iter().map(|b| format!("{b:02x}")).collect();
    Ok(Shown::Line(
        format!("{hex}  {}", args.input.display()),
        json!({ "Algorithm": args.algorithm, "DigestHex": hex }),
    ))
}
