"""kmsd speaks the official instance SDK's messages, byte for byte.

Every request here is built and serialized by the SDK's own generated protobuf module
(`openapi_util.protobuf.api_pb2` of alibabacloud-dkms-gcs), sent to kmsd's gRPC method
of the same name as raw bytes, and every response is parsed by the SDK's class: so a
field number or type that differed from the SDK's would show up as a wrong or missing
value. Needs KMSD_ADDR and KMSD_KEY_ID (an Enabled key) in the environment.
"""

import hashlib
import os

import grpc
import pytest
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
