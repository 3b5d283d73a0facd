//! The transfer clients' `x-kms-migrationkeyversionid` over real gRPC (metadata): the
//! version a call used comes back in the header, a Decrypt naming a version opens with
//! it (no `KeyId` needed), and a version of another key fails like any ciphertext that
//! does not open. The official transfer client itself runs against the gateway in
//! `clients/transfer`.

use tonic::Code;
use tonic::metadata::MetadataValue;

use crate::support::pb::*;
use crate::support::*;

const HEADER: &str = "x-kms-migrationkeyversionid";
const DECRYPTION_FAILED: &str = "The ciphertext could not be decrypted.";

/// `message` as a request naming `version` in the header.
fn naming<T>(message: T, version: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert(HEADER, MetadataValue::try_from(version).unwrap());
    request
}

fn header_of<T>(response: &tonic::Response<T>) -> Option<String> {
    response
        .metadata()
        .get(HEADER)
        .map(|value| value.to_str().unwrap().to_owned())
}

fn encrypt_req(key_id: &str, plaintext: &[u8]) -> EncryptRequest {
    EncryptRequest {
        key_id: key_id.to_owned(),
        plaintext: plaintext.to_vec(),
        ..Default::default()
    }
}

fn decrypt_req(key_id: &str, sealed: &EncryptResponse) -> DecryptRequest {
    DecryptRequest {
        key_id: key_id.to_owned(),
        ciphertext_blob: sealed.ciphertext_blob.clone(),
        iv: sealed.iv.clone(),
        ..Default::default()
    }
}

#[tokio::test]
async fn the_version_used_is_answered_and_a_named_version_opens() {
    let server = start().await;
    let key_id = create_key(&server).await;
    let initial = describe(&server, &key_id).await.initial_key_version;
    let mut crypto = server.crypto();
    let mut kms = server.management();

    let response = crypto
        .encrypt(encrypt_req(&key_id, b"plain"))
        .await
        .unwrap();
    assert_eq!(header_of(&response).as_deref(), Some(initial.as_str()));
    let sealed = response.into_inner();

    kms.create_key_version(CreateKeyVersionRequest {
        key_id: key_id.clone(),
        ..Default::default()
    })
    .await
    .unwrap();
    let later = describe(&server, &key_id).await.primary_key_version;
    assert_ne!(later, initial);

    // Sealing under a named version, then opening with it, without a KeyId.
    let response = crypto
        .encrypt(naming(encrypt_req(&key_id, b"later"), &later))
        .await
        .unwrap();
    assert_eq!(header_of(&response).as_deref(), Some(later.as_str()));
    let sealed_later = response.into_inner();
    let opened = crypto
        .decrypt(naming(decrypt_req("", &sealed_later), &later))
        .await
        .unwrap();
    assert_eq!(header_of(&opened).as_deref(), Some(later.as_str()));
    assert_eq!(opened.get_ref().plaintext, b"later");
    assert_eq!(opened.get_ref().key_id, key_id);

    // Without the header Decrypt opens with the initial version only.
    let plain = crypto.decrypt(decrypt_req(&key_id, &sealed)).await.unwrap();
    assert_eq!(header_of(&plain).as_deref(), Some(initial.as_str()));
    let result = crypto.decrypt(decrypt_req(&key_id, &sealed_later)).await;
    assert_eq!(
        assert_error(result, Code::InvalidArgument, "InvalidParameter").message(),
        DECRYPTION_FAILED
    );

    // The same ciphertext named with the initial version does not open either.
    let result = crypto
        .decrypt(naming(decrypt_req(&key_id, &sealed_later), &initial))
        .await;
    assert_eq!(
        assert_error(result, Code::InvalidArgument, "InvalidParameter").message(),
        DECRYPTION_FAILED
    );
}

#[tokio::test]
async fn a_version_of_another_key_or_of_none_fails_as_undecryptable() {
    let server = start().await;
    let key_id = create_key(&server).await;
    let other = create_key(&server).await;
    let other_version = describe(&server, &other).await.initial_key_version;
    let mut crypto = server.crypto();
    let sealed = crypto
        .encrypt(encrypt_req(&key_id, b"mine"))
        .await
        .unwrap()
        .into_inner();
    let unknown = "0b9c3a55-3c55-4d2c-9a5e-3f3a0f6a8e11";
    let cases = [
        (
            "another key's version, KeyId named",
            key_id.as_str(),
            other_version.as_str(),
        ),
        (
            "another key's version, no KeyId",
            "",
            other_version.as_str(),
        ),
        ("no key's version", "", unknown),
        ("no key's version, KeyId named", key_id.as_str(), unknown),
    ];
    for (case, named_key, version) in cases {
        let result = crypto
            .decrypt(naming(decrypt_req(named_key, &sealed), version))
            .await;
        let status = assert_error(result, Code::InvalidArgument, "InvalidParameter");
        assert_eq!(status.message(), DECRYPTION_FAILED, "{case}");
        assert!(status.metadata().get(HEADER).is_none(), "{case}");
    }

    // Sealing under another key's version is refused, naming the header.
    let result = crypto
        .encrypt(naming(encrypt_req(&key_id, b"x"), &other_version))
        .await;
    let status = assert_error(result, Code::InvalidArgument, "InvalidParameter");
    assert!(
        status.message().contains("not a version of the key"),
        "{status:?}"
    );

    // A header that is no version ID at all.
    let result = crypto
        .decrypt(naming(decrypt_req("", &sealed), "not-a-version"))
        .await;
    let status = assert_error(result, Code::InvalidArgument, "InvalidParameter");
    assert!(status.message().contains(HEADER), "{status:?}");
}

#[tokio::test]
async fn signing_calls_answer_their_version_and_refuse_another_keys() {
    let server = start().await;
    let ec_key = create_key_with(
        &server,
        CreateKeyRequest {
            key_spec: "EC_P256".into(),
            key_usage: "SIGN/VERIFY".into(),
            ..Default::default()
        },
    )
    .await;
    let version = describe(&server, &ec_key).await.initial_key_version;
    let aes_key = create_key(&server).await;
    let aes_version = describe(&server, &aes_key).await.initial_key_version;
    let mut crypto = server.crypto();

    let public = crypto
        .get_public_key(naming(
            GetPublicKeyRequest {
                key_id: ec_key.clone(),
            },
            &version,
        ))
        .await
        .unwrap();
    assert_eq!(header_of(&public).as_deref(), Some(version.as_str()));

    let sign = SignRequest {
        key_id: ec_key.clone(),
        algorithm: "ECDSA_SHA_256".into(),
        message: b"signed".to_vec(),
        ..Default::default()
    };
    let signed = crypto.sign(naming(sign.clone(), &version)).await.unwrap();
    assert_eq!(header_of(&signed).as_deref(), Some(version.as_str()));
    let result = crypto.sign(naming(sign, &aes_version)).await;
    let status = assert_error(result, Code::InvalidArgument, "InvalidParameter");
    assert!(
        status.message().contains("not a version of the key"),
        "{status:?}"
    );
}
