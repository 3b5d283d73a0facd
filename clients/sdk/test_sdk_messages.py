"""kmsd speaks the official instance SDK's messages, byte for byte.

Every request here is built and serialized by the SDK's own generated protobuf module
(`openapi_util.protobuf.api_pb2` of alibabacloud-dkms-gcs), sent to kmsd's gRPC method
of the same name as raw bytes, and every response is parsed by the SDK's class: so a
field number or type that differed from the SDK's would show up as a wrong or missing
value. Needs KMSD_ADDR and KMSD_KEY_ID (an Enabled key) in the environment, and for
Sign, Verify, GetPublicKey and Hmac: KMSD_EC_KEY_ID (an EC_P256 key), KMSD_RSA_KEY_ID
(an RSA_2048 key) and KMSD_HMAC_KEY_ID (an HMAC_SHA256 key).
"""

import hashlib
import os

import grpc
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, utils
from openapi_util.protobuf import api_pb2 as sdk

ADDR = os.environ["KMSD_ADDR"]
KEY_ID = os.environ["KMSD_KEY_ID"]


@pytest.fixture(scope="module")
def channel():
    with grpc.insecure_channel(ADDR) as channel:
        yield channel


def call(channel, method, request, response_class):
    """Sends the SDK's serialized `request` to kms.v1.CryptoService/`method`."""
    rpc = channel.unary_unary(
        f"/kms.v1.CryptoService/{method}",
        request_serializer=lambda message: message.SerializeToString(),
        response_deserializer=response_class.FromString,
    )
    return rpc(request, timeout=30)


def assert_request_id(response):
    assert len(response.RequestId) == 36, response.RequestId


def test_encrypt_then_decrypt(channel):
    sealed = call(channel, "Encrypt",
                  sdk.EncryptRequest(KeyId=KEY_ID, Plaintext=b"hello sdk", Aad=b"ctx"),
                  sdk.EncryptResponse)
    assert sealed.KeyId == KEY_ID
    assert sealed.Algorithm == "AES_GCM"
    assert len(sealed.Iv) == 12
    assert sealed.CiphertextBlob and b"hello sdk" not in sealed.CiphertextBlob
    assert_request_id(sealed)
    opened = call(channel, "Decrypt",
                  sdk.DecryptRequest(KeyId=KEY_ID, CiphertextBlob=sealed.CiphertextBlob,
                                     Iv=sealed.Iv, Aad=b"ctx"),
                  sdk.DecryptResponse)
    assert opened.Plaintext == b"hello sdk"
    assert opened.KeyId == KEY_ID
    assert_request_id(opened)


def test_advance_encrypt_blob_names_its_version(channel):
    sealed = call(channel, "AdvanceEncrypt",
                  sdk.AdvanceEncryptRequest(KeyId=KEY_ID, Plaintext=b"advance"),
                  sdk.AdvanceEncryptResponse)
    blob = sealed.CiphertextBlob
    assert blob[:3] == b"$\x00\x02"
    assert blob[3:39].decode() == sealed.KeyVersionId
    assert blob[39:51] == sealed.Iv
    opened = call(channel, "AdvanceDecrypt",
                  sdk.AdvanceDecryptRequest(CiphertextBlob=blob),
                  sdk.AdvanceDecryptResponse)
    assert opened.Plaintext == b"advance"
    assert opened.KeyVersionId == sealed.KeyVersionId


def test_data_keys_in_both_forms(channel):
    plain = call(channel, "GenerateDataKey",
                 sdk.GenerateDataKeyRequest(KeyId=KEY_ID, NumberOfBytes=24),
                 sdk.GenerateDataKeyResponse)
    assert len(plain.Plaintext) == 24
    opened = call(channel, "Decrypt",
                  sdk.DecryptRequest(KeyId=KEY_ID, CiphertextBlob=plain.CiphertextBlob,
                                     Iv=plain.Iv),
                  sdk.DecryptResponse)
    assert opened.Plaintext == plain.Plaintext
    advance = call(channel, "AdvanceGenerateDataKey",
                   sdk.AdvanceGenerateDataKeyRequest(KeyId=KEY_ID),
                   sdk.AdvanceGenerateDataKeyResponse)
    assert len(advance.Plaintext) == 32, "NumberOfBytes defaults to 32"
    assert advance.KeyVersionId
    opened = call(channel, "AdvanceDecrypt",
                  sdk.AdvanceDecryptRequest(CiphertextBlob=advance.CiphertextBlob),
                  sdk.AdvanceDecryptResponse)
    assert opened.Plaintext == advance.Plaintext


def test_data_key_pairs_in_all_four_operations(channel):
    common = dict(KeyId=KEY_ID, KeyPairSpec="EC_P256", KeyFormat="DER")
    pair = call(channel, "GenerateDataKeyPair", sdk.GenerateDataKeyPairRequest(**common),
                sdk.GenerateDataKeyPairResponse)
    assert pair.KeyPairSpec == "EC_P256" and pair.PublicKey and pair.PrivateKeyPlaintext
    opened = call(channel, "Decrypt",
                  sdk.DecryptRequest(KeyId=KEY_ID, CiphertextBlob=pair.PrivateKeyCiphertextBlob,
                                     Iv=pair.Iv),
                  sdk.DecryptResponse)
    assert opened.Plaintext == pair.PrivateKeyPlaintext
    sealed_only = call(channel, "GenerateDataKeyPairWithoutPlaintext",
                       sdk.GenerateDataKeyPairWithoutPlaintextRequest(**common),
                       sdk.GenerateDataKeyPairWithoutPlaintextResponse)
    assert sealed_only.PrivateKeyCiphertextBlob and sealed_only.PublicKey
    advance = call(channel, "AdvanceGenerateDataKeyPair",
                   sdk.AdvanceGenerateDataKeyPairRequest(**common),
                   sdk.AdvanceGenerateDataKeyPairResponse)
    opened = call(channel, "AdvanceDecrypt",
                  sdk.AdvanceDecryptRequest(CiphertextBlob=advance.PrivateKeyCiphertextBlob),
                  sdk.AdvanceDecryptResponse)
    assert opened.Plaintext == advance.PrivateKeyPlaintext
    assert opened.KeyVersionId == advance.KeyVersionId
    advance_sealed = call(channel, "AdvanceGenerateDataKeyPairWithoutPlaintext",
                          sdk.AdvanceGenerateDataKeyPairWithoutPlaintextRequest(**common),
                          sdk.AdvanceGenerateDataKeyPairWithoutPlaintextResponse)
    assert advance_sealed.KeyVersionId and advance_sealed.PrivateKeyCiphertextBlob


def test_random_and_hash(channel):
    random = call(channel, "GenerateRandom", sdk.GenerateRandomRequest(Length=16),
                  sdk.GenerateRandomResponse)
    assert len(random.Random) == 16
    assert_request_id(random)
    digest = call(channel, "Hash", sdk.HashRequest(Message=b"abc", Algorithm="SHA-256"),
                  sdk.HashResponse)
    assert digest.Digest == hashlib.sha256(b"abc").digest()
    assert_request_id(digest)


def test_errors_carry_the_public_code(channel):
    with pytest.raises(grpc.RpcError) as refused:
        call(channel, "Encrypt",
             sdk.EncryptRequest(KeyId=KEY_ID, Plaintext=b"x", Iv=b"\x00" * 12),
             sdk.EncryptResponse)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT


SIGNING_KEYS = [
    ("EC_P256", "KMSD_EC_KEY_ID", "ECDSA_SHA_256"),
    ("RSA_2048", "KMSD_RSA_KEY_ID", "RSA_PSS_SHA_256"),
    ("RSA_2048", "KMSD_RSA_KEY_ID", "RSA_PKCS1_SHA_256"),
]


def verify_locally(public_pem, algorithm, signature, message=None, digest=None):
    """Checks a kmsd signature with the `cryptography` package (OpenSSL), outside kmsd."""
    public = serialization.load_pem_public_key(public_pem.encode())
    hashed = utils.Prehashed(hashes.SHA256()) if digest is not None else hashes.SHA256()
    data = digest if digest is not None else message
    if algorithm == "ECDSA_SHA_256":
        public.verify(signature, data, ec.ECDSA(hashed))
    elif algorithm == "RSA_PSS_SHA_256":
        public.verify(signature, data,
                      padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32), hashed)
    else:
        public.verify(signature, data, padding.PKCS1v15(), hashed)


@pytest.mark.parametrize("spec,env,algorithm", SIGNING_KEYS)
def test_sign_verify_and_get_public_key(channel, spec, env, algorithm):
    key_id = os.environ[env]
    public = call(channel, "GetPublicKey", sdk.GetPublicKeyRequest(KeyId=key_id),
                  sdk.GetPublicKeyResponse)
    assert public.KeyId == key_id
    assert public.PublicKey.startswith("-----BEGIN PUBLIC KEY-----")
    assert_request_id(public)
    message = b"signed through the official SDK's messages"
    digest = hashlib.sha256(message).digest()

    raw = call(channel, "Sign",
               sdk.SignRequest(KeyId=key_id, Algorithm=algorithm, Message=message,
                               MessageType="RAW"),
               sdk.SignResponse)
    assert (raw.KeyId, raw.Algorithm, raw.MessageType) == (key_id, algorithm, "RAW")
    assert_request_id(raw)
    verify_locally(public.PublicKey, algorithm, raw.Signature, message=message)

    by_digest = call(channel, "Sign",
                     sdk.SignRequest(KeyId=key_id, Algorithm=algorithm, Message=digest,
                                     MessageType="DIGEST"),
                     sdk.SignResponse)
    assert by_digest.MessageType == "DIGEST"
    verify_locally(public.PublicKey, algorithm, by_digest.Signature, digest=digest)
    # Older clients put the digest in the Digest field.
    old_form = call(channel, "Sign",
                    sdk.SignRequest(KeyId=key_id, Algorithm=algorithm, Digest=digest),
                    sdk.SignResponse)
    verify_locally(public.PublicKey, algorithm, old_form.Signature, message=message)

    verified = call(channel, "Verify",
                    sdk.VerifyRequest(KeyId=key_id, Algorithm=algorithm, Message=message,
                                      MessageType="RAW", Signature=raw.Signature),
                    sdk.VerifyResponse)
    assert verified.Value is True
    assert (verified.Algorithm, verified.MessageType) == (algorithm, "RAW")
    assert_request_id(verified)
    old_verify = call(channel, "Verify",
                      sdk.VerifyRequest(KeyId=key_id, Algorithm=algorithm, Digest=digest,
                                        Signature=by_digest.Signature),
                      sdk.VerifyResponse)
    assert old_verify.Value is True
    tampered = bytes([raw.Signature[0] ^ 1]) + raw.Signature[1:]
    refused = call(channel, "Verify",
                   sdk.VerifyRequest(KeyId=key_id, Algorithm=algorithm, Message=message,
                                     MessageType="RAW", Signature=tampered),
                   sdk.VerifyResponse)
    assert refused.Value is False


def test_hmac(channel):
    key_id = os.environ["KMSD_HMAC_KEY_ID"]
    first = call(channel, "Hmac", sdk.HmacRequest(KeyId=key_id, Message=b"mac me"),
                 sdk.HmacResponse)
    assert first.KeyId == key_id
    assert len(first.Signature) == 32
    assert_request_id(first)
    again = call(channel, "Hmac", sdk.HmacRequest(KeyId=key_id, Message=b"mac me"),
                 sdk.HmacResponse)
    assert again.Signature == first.Signature
    other = call(channel, "Hmac", sdk.HmacRequest(KeyId=key_id, Message=b"mac me too"),
                 sdk.HmacResponse)
    assert other.Signature != first.Signature


def test_signing_with_a_symmetric_key_is_unsupported(channel):
    with pytest.raises(grpc.RpcError) as refused:
        call(channel, "Sign",
             sdk.SignRequest(KeyId=KEY_ID, Algorithm="ECDSA_SHA_256", Message=b"x"),
             sdk.SignResponse)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
