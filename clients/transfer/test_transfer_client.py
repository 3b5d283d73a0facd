"""The official transfer client, unmodified, against kmsd's HTTPS gateway.

Applications written for the classic KMS API move to a KMS instance with
`KmsTransferAcsClient` (alibabacloud-dkms-transfer-python): they keep their classic
requests (`aliyunsdkkms`), and the client turns each into an instance SDK call. It
builds a classic ciphertext as key version ID (36 bytes) || IV (12) || blob from the
`x-kms-migrationkeyversionid` response header, and sends that version back in the same
header on Decrypt, without a KeyId. Needs, in the environment: KMSD_HTTPS_ENDPOINT,
KMSD_CA_FILE, KMSD_CLIENT_KEY_FILE, KMSD_CLIENT_KEY_PASSWORD, KMSD_ADDR (gRPC, for
kmsctl), KMSCTL, KMSD_KEY_ID (an AES key), KMSD_EC_KEY_ID (an EC_P256 signing key), KMSD_RSA_ENCRYPTION_KEY_ID (an RSA
ENCRYPT/DECRYPT key),
KMSD_SECRET_NAME and KMSD_SECRET_VALUE (a text secret kmsctl created).
"""

import base64
import hashlib
import json
import os
import subprocess
import uuid

import pytest
from aliyunsdkcore.acs_exception.exceptions import ClientException, ServerException
from aliyunsdkkms.request.v20160120 import (AsymmetricDecryptRequest, AsymmetricEncryptRequest,
                                            AsymmetricSignRequest, AsymmetricVerifyRequest,
                                            DecryptRequest, EncryptRequest,
                                            GenerateDataKeyRequest,
                                            GenerateDataKeyWithoutPlaintextRequest,
                                            GetPublicKeyRequest, GetSecretValueRequest)
from alibabacloud_dkms_transfer.kms_transfer_acs_client import KmsTransferAcsClient
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding
from openapi.models import Config
from openapi_util.models import RuntimeOptions
from sdk import models
from sdk.client import Client

ENDPOINT = os.environ["KMSD_HTTPS_ENDPOINT"]
CA_FILE = os.environ["KMSD_CA_FILE"]
CLIENT_KEY_FILE = os.environ["KMSD_CLIENT_KEY_FILE"]
PASSWORD = os.environ["KMSD_CLIENT_KEY_PASSWORD"]
GRPC_ADDR = os.environ["KMSD_ADDR"]
KMSCTL = os.environ["KMSCTL"]
KEY_ID = os.environ["KMSD_KEY_ID"]
EC_KEY_ID = os.environ["KMSD_EC_KEY_ID"]
RSA_ENCRYPTION_KEY_ID = os.environ["KMSD_RSA_ENCRYPTION_KEY_ID"]
SECRET_NAME = os.environ["KMSD_SECRET_NAME"]
SECRET_VALUE = os.environ["KMSD_SECRET_VALUE"]

HEADER = "x-kms-migrationkeyversionid"
CONTEXT = json.dumps({"tenant": "acme", "purpose": "transfer-e2e"})


def config():
    return Config(protocol="https", endpoint=ENDPOINT, client_key_file=CLIENT_KEY_FILE,
                  password=PASSWORD, ca_file_path=CA_FILE)


@pytest.fixture(scope="module")
def classic():
    """The classic client as an application builds it for an instance: the instance's
    client key and kmsd's CA (verified); the AccessKey pair it also takes serves only
    the classic calls it does not transfer, none of which this test makes."""
    return KmsTransferAcsClient(config=config(), ak="unused-for-instance-calls",
                                secret="unused-for-instance-calls", verify=CA_FILE)


@pytest.fixture(scope="module")
def instance():
    """The instance SDK itself, to seal under a chosen version."""
    return Client(config())


def call(client, request):
    return json.loads(client.do_action_with_exception(request))


def kmsctl_json(*args):
    out = subprocess.run([KMSCTL, "--endpoint", GRPC_ADDR, "--output", "json", *args],
                         check=True, capture_output=True)
    return json.loads(out.stdout)


def versions(key_id):
    listed = kmsctl_json("version", "list", key_id)
    return [v["KeyVersionId"] for v in listed["KeyVersions"]]


def encrypt(classic, plaintext, context=CONTEXT, key_id=KEY_ID):
    request = EncryptRequest.EncryptRequest()
    request.set_KeyId(key_id)
    request.set_Plaintext(plaintext)
    if context is not None:
        request.set_EncryptionContext(context)
    return call(classic, request)


def decrypt(classic, blob, context=CONTEXT):
    request = DecryptRequest.DecryptRequest()
    request.set_CiphertextBlob(blob)
    if context is not None:
        request.set_EncryptionContext(context)
    return call(classic, request)


def test_encrypt_then_decrypt_with_an_encryption_context(classic):
    sealed = encrypt(classic, "classic plaintext")
    assert sealed["KeyId"] == KEY_ID
    version = sealed["KeyVersionId"]
    assert version in versions(KEY_ID)
    raw = base64.b64decode(sealed["CiphertextBlob"])
    # version ID (36) || IV (12) || kmsd's plain blob: salt (16), ciphertext, tag (16)
    assert raw[:36] == version.encode()
    assert len(raw) == 36 + 12 + 16 + len("classic plaintext") + 16
    opened = decrypt(classic, sealed["CiphertextBlob"])
    assert opened["Plaintext"] == "classic plaintext"
    assert opened["KeyId"] == KEY_ID and opened["KeyVersionId"] == version


def test_the_context_is_the_aad_the_sha256_of_its_canonical_form(classic, instance):
    """The transfer client sends the context as SHA-256 of `k=v&…` (keys sorted) in
    Aad: the instance SDK's Decrypt with that Aad opens the classic ciphertext."""
    sealed = encrypt(classic, "bound to its context")
    raw = base64.b64decode(sealed["CiphertextBlob"])
    aad = hashlib.sha256(b"purpose=transfer-e2e&tenant=acme").digest()
    opened = instance.decrypt(models.DecryptRequest(
        key_id=KEY_ID, iv=raw[36:48], ciphertext_blob=raw[48:], aad=aad))
    assert opened.plaintext == b"bound to its context"


def refused(excinfo):
    return excinfo.value.get_error_code()


def test_a_wrong_or_missing_context_is_refused(classic):
    sealed = encrypt(classic, "context matters")
    with pytest.raises(ServerException) as wrong:
        decrypt(classic, sealed["CiphertextBlob"], context=json.dumps({"tenant": "other"}))
    with pytest.raises(ServerException) as missing:
        decrypt(classic, sealed["CiphertextBlob"], context=None)
    assert refused(wrong) == refused(missing) == "InvalidParameter"
    assert wrong.value.get_error_msg() == missing.value.get_error_msg()


def test_generate_data_key_and_without_plaintext_then_decrypt(classic):
    request = GenerateDataKeyRequest.GenerateDataKeyRequest()
    request.set_KeyId(KEY_ID)
    request.set_EncryptionContext(CONTEXT)
    generated = call(classic, request)
    assert len(base64.b64decode(generated["Plaintext"])) == 32
    opened = decrypt(classic, generated["CiphertextBlob"])
    # The transfer client seals the data key's base64 text; Decrypt gives that text back.
    assert opened["Plaintext"] == generated["Plaintext"]

    request = GenerateDataKeyWithoutPlaintextRequest.GenerateDataKeyWithoutPlaintextRequest()
    request.set_KeyId(KEY_ID)
    request.set_NumberOfBytes(16)
    request.set_EncryptionContext(CONTEXT)
    sealed = call(classic, request)
    assert "Plaintext" not in sealed
    opened = decrypt(classic, sealed["CiphertextBlob"])
    assert len(base64.b64decode(opened["Plaintext"])) == 16


def test_decrypt_opens_with_the_version_the_ciphertext_names(classic, instance):
    """A ciphertext sealed under a later version (the instance SDK names it in the
    header) opens through the classic client, which sends that version back."""
    subprocess.run([KMSCTL, "--endpoint", GRPC_ADDR, "key", "rotate", KEY_ID], check=True,
                   capture_output=True)
    later = [v for v in versions(KEY_ID) if v != encrypt(classic, "x")["KeyVersionId"]][0]
    options = RuntimeOptions(response_headers=[HEADER])
    request = models.EncryptRequest(key_id=KEY_ID, plaintext=b"under a later version",
                                    aad=hashlib.sha256(b"purpose=transfer-e2e&tenant=acme").digest())
    request.request_headers = {HEADER: later}
    sealed = instance.encrypt_with_options(request, options)
    assert sealed.response_headers.get(HEADER) == later
    blob = base64.b64encode(later.encode() + sealed.iv + sealed.ciphertext_blob).decode()
    opened = decrypt(classic, blob)
    assert opened["Plaintext"] == "under a later version" and opened["KeyVersionId"] == later


def test_a_version_of_another_key_is_refused_like_any_undecryptable_ciphertext(classic):
    sealed = encrypt(classic, "mine")
    raw = base64.b64decode(sealed["CiphertextBlob"])
    other_key = kmsctl_json("key", "create", "--description", "transfer other")
    other_key_id = other_key["KeyMetadata"]["KeyId"]
    other_version = versions(other_key_id)[0]
    foreign = base64.b64encode(other_version.encode() + raw[36:]).decode()
    unknown = base64.b64encode(str(uuid.uuid4()).encode() + raw[36:]).decode()
    flipped = bytearray(raw)
    flipped[-1] ^= 1
    answers = []
    for blob in (foreign, unknown, base64.b64encode(bytes(flipped)).decode()):
        with pytest.raises(ServerException) as excinfo:
            decrypt(classic, blob)
        answers.append((refused(excinfo), excinfo.value.get_error_msg()))
    assert answers[0][0] == "InvalidParameter"
    assert answers[0] == answers[1] == answers[2]


def test_asymmetric_sign_verify_and_get_public_key(classic):
    request = GetPublicKeyRequest.GetPublicKeyRequest()
    request.set_KeyId(EC_KEY_ID)
    public = call(classic, request)
    version = public["KeyVersionId"]
    assert version in versions(EC_KEY_ID)
    key = serialization.load_pem_public_key(public["PublicKey"].encode())
    assert isinstance(key.curve, ec.SECP256R1)

    digest = hashlib.sha256(b"signed through the transfer client").digest()
    request = AsymmetricSignRequest.AsymmetricSignRequest()
    request.set_KeyId(EC_KEY_ID)
    request.set_KeyVersionId(version)
    request.set_Algorithm("ECDSA_SHA_256")
    request.set_Digest(base64.b64encode(digest).decode())
    signed = call(classic, request)
    assert signed["KeyVersionId"] == version
    signature = base64.b64decode(signed["Value"])
    key.verify(signature, b"signed through the transfer client", ec.ECDSA(hashes.SHA256()))

    request = AsymmetricVerifyRequest.AsymmetricVerifyRequest()
    request.set_KeyId(EC_KEY_ID)
    request.set_KeyVersionId(version)
    request.set_Algorithm("ECDSA_SHA_256")
    request.set_Digest(base64.b64encode(digest).decode())
    request.set_Value(signed["Value"])
    assert call(classic, request)["Value"] is True
    request.set_Digest(base64.b64encode(hashlib.sha256(b"something else").digest()).decode())
    assert call(classic, request)["Value"] is False


def test_a_key_version_of_another_key_is_refused_on_sign(classic):
    request = AsymmetricSignRequest.AsymmetricSignRequest()
    request.set_KeyId(EC_KEY_ID)
    request.set_KeyVersionId(versions(KEY_ID)[0])
    request.set_Algorithm("ECDSA_SHA_256")
    request.set_Digest(base64.b64encode(hashlib.sha256(b"m").digest()).decode())
    with pytest.raises(ServerException) as excinfo:
        call(classic, request)
    assert refused(excinfo) == "InvalidParameter"
    assert "not a version of the key" in excinfo.value.get_error_msg()


def test_get_secret_value(classic):
    request = GetSecretValueRequest.GetSecretValueRequest()
    request.set_SecretName(SECRET_NAME)
    secret = call(classic, request)
    assert secret["SecretName"] == SECRET_NAME
    assert secret["SecretData"] == SECRET_VALUE
    assert "ACSCurrent" in secret["VersionStages"]["VersionStage"]


@pytest.mark.parametrize("algorithm,hash_algorithm",
                         [("RSAES_OAEP_SHA_256", hashes.SHA256), ("RSAES_OAEP_SHA_1", hashes.SHA1)])
def test_asymmetric_encrypt_and_decrypt_with_both_oaep_algorithms(classic, algorithm,
                                                                  hash_algorithm):
    request = GetPublicKeyRequest.GetPublicKeyRequest()
    request.set_KeyId(RSA_ENCRYPTION_KEY_ID)
    public = call(classic, request)
    version = public["KeyVersionId"]
    key = serialization.load_pem_public_key(public["PublicKey"].encode())

    request = AsymmetricEncryptRequest.AsymmetricEncryptRequest()
    request.set_KeyId(RSA_ENCRYPTION_KEY_ID)
    request.set_KeyVersionId(version)
    request.set_Algorithm(algorithm)
    request.set_Plaintext(base64.b64encode(b"sealed by kmsd").decode())
    sealed = call(classic, request)
    assert sealed["KeyVersionId"] == version

    # Sealed locally with the public key, as the classic API's users do.
    local = key.encrypt(b"sealed locally", padding.OAEP(
        mgf=padding.MGF1(algorithm=hash_algorithm()), algorithm=hash_algorithm(), label=None))
    for blob, plaintext in ((sealed["CiphertextBlob"], b"sealed by kmsd"),
                            (base64.b64encode(local).decode(), b"sealed locally")):
        request = AsymmetricDecryptRequest.AsymmetricDecryptRequest()
        request.set_KeyId(RSA_ENCRYPTION_KEY_ID)
        request.set_KeyVersionId(version)
        request.set_Algorithm(algorithm)
        request.set_CiphertextBlob(blob)
        opened = call(classic, request)
        assert base64.b64decode(opened["Plaintext"]) == plaintext
        assert opened["KeyVersionId"] == version

    # The wrong OAEP hash fails as any ciphertext that does not open.
    other = "RSAES_OAEP_SHA_1" if algorithm == "RSAES_OAEP_SHA_256" else "RSAES_OAEP_SHA_256"
    request = AsymmetricDecryptRequest.AsymmetricDecryptRequest()
    request.set_KeyId(RSA_ENCRYPTION_KEY_ID)
    request.set_Algorithm(other)
    request.set_CiphertextBlob(sealed["CiphertextBlob"])
    with pytest.raises(ServerException) as excinfo:
        call(classic, request)
    assert refused(excinfo) == "InvalidParameter"
