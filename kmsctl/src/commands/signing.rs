//! Signing keys and HMAC keys: sign, verify, public-key, hmac. Signatures, public keys
//! and MACs are not secret: they are shown or written as they are.

use std::path::Path;

use kmsd_api::pb;
use serde_json::json;

use crate::cli::{HmacArgs, PublicKeyArgs, SignArgs, VerifyArgs};
use crate::connect::Connection;
use crate::failure::Failure;
use crate::files::{read_input, write_private};
use crate::output::Shown;

/// `MessageType` from the flags (clap refuses both at once).
fn message_type(digest: bool, external_mu: bool) -> String {
    match (digest, external_mu) {
        (true, _) => "DIGEST",
        (false, true) => "EXTERNAL_MU",
        (false, false) => "RAW",
    }
    .to_owned()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs `sign`.
pub async fn sign(conn: &Connection, args: SignArgs) -> Result<Shown, Failure> {
    let message = read_input(&args.input, "the message")?;
    let request = pb::SignRequest {
        key_id: args.key,
        algorithm: args.algorithm,
        message: message.to_vec(),
        message_type: message_type(args.digest, args.external_mu),
        ..Default::default()
    };
    let r = conn
        .crypto()
        .sign(conn.request(request))
        .await?
        .into_inner();
    write_private(&args.out, &r.signature, "the signature")?;
    if args.out == Path::new("-") {
        return Ok(Shown::Nothing);
    }
    Ok(Shown::Fields(
        vec![
            ("Key ID", r.key_id.clone()),
            ("Algorithm", r.algorithm.clone()),
            ("MessageType", r.message_type.clone()),
            ("SIGNATURE", args.out.display().to_string()),
        ],
        json!({
            "KeyId": r.key_id,
            "Algorithm": r.algorithm,
            "MessageType": r.message_type,
            "SignatureFile": args.out.display().to_string(),
        }),
    ))
}

/// Runs `verify`: a signature that does not verify is a result, not a failure.
pub async fn verify(conn: &Connection, args: VerifyArgs) -> Result<Shown, Failure> {
    let message = read_input(&args.input, "the message")?;
    let signature = read_input(&args.signature, "the signature")?;
    let request = pb::VerifyRequest {
        key_id: args.key,
        algorithm: args.algorithm,
        message: message.to_vec(),
        message_type: message_type(args.digest, args.external_mu),
        signature: signature.to_vec(),
        ..Default::default()
    };
    let r = conn
        .crypto()
        .verify(conn.request(request))
        .await?
        .into_inner();
    Ok(Shown::Line(
        if r.value {
            "the signature is valid".to_owned()
        } else {
            "the signature is NOT valid".to_owned()
        },
        json!({ "KeyId": r.key_id, "Value": r.value, "Algorithm": r.algorithm }),
    ))
}

/// Runs `public-key`: the PEM, as it is.
pub async fn public_key(conn: &Connection, args: PublicKeyArgs) -> Result<Shown, Failure> {
    let request = pb::GetPublicKeyRequest { key_id: args.key };
    let r = conn
        .crypto()
        .get_public_key(conn.request(request))
        .await?
        .into_inner();
    Ok(Shown::Line(
        r.public_key.trim_end().to_owned(),
        json!({ "KeyId": r.key_id, "PublicKey": r.public_key }),
    ))
}

/// Runs `hmac`: the MAC, as hex.
pub async fn hmac(conn: &Connection, args: HmacArgs) -> Result<Shown, Failure> {
    let message = read_input(&args.input, "the message")?;
    let request = pb::HmacRequest {
        key_id: args.key,
        message: message.to_vec(),
    };
    let r = conn
        .crypto()
        .hmac(conn.request(request))
        .await?
        .into_inner();
    let mac = hex(&r.signature);
    Ok(Shown::Line(
        format!("{mac}  {}", args.input.display()),
        json!({ "KeyId": r.key_id, "MacHex": mac }),
    ))
}
