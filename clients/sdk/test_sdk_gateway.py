"""The official Python instance SDK, unmodified, against kmsd's HTTPS gateway.

Everything here goes through the SDK's own client (`sdk.client.Client` of
alibabacloud-dkms-gcs): it loads the client key file with its password, signs each
request, verifies kmsd's certificate against the CA file, parses the responses and the
`Error` bodies, and retries throttled calls itself. Needs, in the environment:
KMSD_HTTPS_ENDPOINT (host:port), KMSD_CA_FILE, KMSD_CLIENT_KEY_FILE,
KMSD_CLIENT_KEY_PASSWORD, KMSD_KEY_ID (an Enabled key), KMSD_ALIAS (an alias of it),
and KMSD_ADDR (kmsd's gRPC address, to rotate the key between calls).
"""

import os
import subprocess
import sys
import textwrap
import threading
import time

import base64
import grpc
import pytest
import hashlib

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding
from dilithium_py.ml_dsa import ML_DSA_65
from OpenSSL import crypto
from openapi.models import Config
from openapi_util.models import RuntimeOptions
from sdk import models
from sdk.client import Client
from Tea.exceptions import TeaException

ENDPOINT = os.environ["KMSD_HTTPS_ENDPOINT"]
CA_FILE = os.environ["KMSD_CA_FILE"]
CLIENT_KEY_FILE = os.environ["KMSD_CLIENT_KEY_FILE"]
PASSWORD = os.environ["KMSD_CLIENT_KEY_PASSWORD"]
KEY_ID = os.environ["KMSD_KEY_ID"]
ALIAS = os.environ["KMSD_ALIAS"]
GRPC_ADDR = os.environ["KMSD_ADDR"]
# Signing keys (issue 15), made by clients/run-e2e.sh.
EC_KEY_ID = os.environ["KMSD_EC_KEY_ID"]
RSA_KEY_ID = os.environ["KMSD_RSA_KEY_ID"]
# ML-DSA and Ed25519 keys (issue 28), made by clients/run-e2e.sh.
ML_DSA_65_KEY_ID = os.environ["KMSD_ML_DSA_65_KEY_ID"]
ED25519_KEY_ID = os.environ["KMSD_ED25519_KEY_ID"]
# An RSA_2048 key of usage ENCRYPT/DECRYPT (issue 23), made by clients/run-e2e.sh.
RSA_ENCRYPTION_KEY_ID = os.environ["KMSD_RSA_ENCRYPTION_KEY_ID"]

SPECS = ["RSA_2048", "RSA_3072", "RSA_4096", "EC_P256", "EC_P256K"]
FORMATS = ["PEM", "DER"]


def client(password=PASSWORD):
    return Client(Config(protocol="https", endpoint=ENDPOINT, client_key_file=CLIENT_KEY_FILE,
                         password=password, ca_file_path=CA_FILE))


@pytest.fixture(scope="module")
def kms():
    return client()


def load_private(data, key_format):
    if key_format == "PEM":
        return serialization.load_pem_private_key(data, password=None)
    return serialization.load_der_private_key(data, password=None)


def public_bytes(key, key_format):
    encoding = serialization.Encoding.PEM if key_format == "PEM" else serialization.Encoding.DER
    return key.public_key().public_bytes(encoding,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


def same_public_key(a, b, key_format):
    if key_format == "PEM":
        a = serialization.load_pem_public_key(a)
        b = serialization.load_pem_public_key(b)
    else:
        a = serialization.load_der_public_key(a)
        b = serialization.load_der_public_key(b)
    der = serialization.Encoding.DER
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    return a.public_bytes(der, spki) == b.public_bytes(der, spki)


def rotate(key_id):
    """CreateKeyVersion over gRPC (the SDK has no control plane): its request is one
    string field, KeyId = 1, encoded by hand."""
    raw = key_id.encode()
    body = b"\x0a" + bytes([len(raw)]) + raw
    with grpc.insecure_channel(GRPC_ADDR) as channel:
        channel.unary_unary("/kms.v1.KeyManagementService/CreateKeyVersion")(body, timeout=30)


def key_ref(i):
    """Alternates the key's ID and its alias, so each spec is asked for both ways."""
    return KEY_ID if i % 2 == 0 else ALIAS


@pytest.mark.parametrize("spec", SPECS)
def test_data_key_pairs_in_every_spec_and_format(kms, spec):
    for i, key_format in enumerate(FORMATS):
        aad = f"ctx-{spec}-{key_format}".encode()

        pair = kms.generate_data_key_pair(models.GenerateDataKeyPairRequest(
            key_id=key_ref(i), key_pair_spec=spec, key_format=key_format, aad=aad))
        assert pair.key_id == KEY_ID and pair.key_pair_spec == spec
        assert pair.algorithm == "AES_GCM" and len(pair.iv) == 12 and len(pair.request_id) == 36
        private = load_private(pair.private_key_plaintext, key_format)
        assert public_bytes(private, key_format) == pair.public_key
        opened = kms.decrypt(models.DecryptRequest(
            key_id=key_ref(i + 1), ciphertext_blob=pair.private_key_ciphertext_blob,
            iv=pair.iv, aad=aad))
        assert opened.plaintext == pair.private_key_plaintext

        sealed = kms.generate_data_key_pair_without_plaintext(
            models.GenerateDataKeyPairWithoutPlaintextRequest(
                key_id=key_ref(i + 1), key_pair_spec=spec, key_format=key_format, aad=aad))
        assert sealed.key_id == KEY_ID
        opened = kms.decrypt(models.DecryptRequest(
            key_id=key_ref(i), ciphertext_blob=sealed.private_key_ciphertext_blob,
            iv=sealed.iv, aad=aad))
        assert public_bytes(load_private(opened.plaintext, key_format), key_format) \
            == sealed.public_key

        advanced = kms.advance_generate_data_key_pair(models.AdvanceGenerateDataKeyPairRequest(
            key_id=key_ref(i), key_pair_spec=spec, key_format=key_format, aad=aad))
        assert advanced.key_id == KEY_ID and len(advanced.key_version_id) == 36
        opened = kms.advance_decrypt(models.AdvanceDecryptRequest(
            ciphertext_blob=advanced.private_key_ciphertext_blob, aad=aad))
        assert opened.plaintext == advanced.private_key_plaintext
        assert opened.key_version_id == advanced.key_version_id

        advanced = kms.advance_generate_data_key_pair_without_plaintext(
            models.AdvanceGenerateDataKeyPairWithoutPlaintextRequest(
                key_id=key_ref(i + 1), key_pair_spec=spec, key_format=key_format, aad=aad))
        opened = kms.advance_decrypt(models.AdvanceDecryptRequest(
            key_id=key_ref(i), ciphertext_blob=advanced.private_key_ciphertext_blob, aad=aad))
        assert same_public_key(
            public_bytes(load_private(opened.plaintext, key_format), key_format),
            advanced.public_key, key_format)


def test_symmetric_operations(kms):
    for ref in (KEY_ID, ALIAS):
        sealed = kms.encrypt(models.EncryptRequest(key_id=ref, plaintext=b"hello", aad=b"a"))
        assert sealed.key_id == KEY_ID
        opened = kms.decrypt(models.DecryptRequest(key_id=ref, ciphertext_blob=sealed.ciphertext_blob,
                                                   iv=sealed.iv, aad=b"a"))
        assert opened.plaintext == b"hello"

        sealed = kms.advance_encrypt(models.AdvanceEncryptRequest(key_id=ref, plaintext=b"adv"))
        opened = kms.advance_decrypt(models.AdvanceDecryptRequest(
            ciphertext_blob=sealed.ciphertext_blob))
        assert opened.plaintext == b"adv" and opened.key_version_id == sealed.key_version_id

        data_key = kms.generate_data_key(models.GenerateDataKeyRequest(key_id=ref,
                                                                       number_of_bytes=24))
        assert len(data_key.plaintext) == 24
        opened = kms.decrypt(models.DecryptRequest(
            key_id=ref, ciphertext_blob=data_key.ciphertext_blob, iv=data_key.iv))
        assert opened.plaintext == data_key.plaintext

        data_key = kms.advance_generate_data_key(models.AdvanceGenerateDataKeyRequest(
            key_id=ref, number_of_bytes=16))
        opened = kms.advance_decrypt(models.AdvanceDecryptRequest(
            ciphertext_blob=data_key.ciphertext_blob))
        assert opened.plaintext == data_key.plaintext

    random = kms.generate_random(models.GenerateRandomRequest(length=33))
    assert len(random.random) == 33 and len(random.request_id) == 36


def test_rotation_then_advance_decrypt_of_old_and_new_blobs(kms):
    old = kms.advance_generate_data_key_pair_without_plaintext(
        models.AdvanceGenerateDataKeyPairWithoutPlaintextRequest(
            key_id=ALIAS, key_pair_spec="EC_P256", key_format="DER", aad=b"rot"))
    rotate(KEY_ID)
    new = kms.advance_generate_data_key_pair_without_plaintext(
        models.AdvanceGenerateDataKeyPairWithoutPlaintextRequest(
            key_id=ALIAS, key_pair_spec="EC_P256", key_format="DER", aad=b"rot"))
    assert new.key_version_id != old.key_version_id
    for pair in (old, new):
        opened = kms.advance_decrypt(models.AdvanceDecryptRequest(
            ciphertext_blob=pair.private_key_ciphertext_blob, aad=b"rot"))
        assert opened.key_version_id == pair.key_version_id
        assert public_bytes(load_private(opened.plaintext, "DER"), "DER") == pair.public_key
    # The plain form stays on the initial version whatever the rotations.
    plain = kms.generate_data_key_pair_without_plaintext(
        models.GenerateDataKeyPairWithoutPlaintextRequest(
            key_id=KEY_ID, key_pair_spec="EC_P256", key_format="DER"))
    opened = kms.decrypt(models.DecryptRequest(
        key_id=KEY_ID, ciphertext_blob=plain.private_key_ciphertext_blob, iv=plain.iv))
    assert public_bytes(load_private(opened.plaintext, "DER"), "DER") == plain.public_key


@pytest.mark.parametrize("key_id,algorithm", [
    (EC_KEY_ID, "ECDSA_SHA_256"), (RSA_KEY_ID, "RSA_PSS_SHA_256"),
    (RSA_KEY_ID, "RSA_PKCS1_SHA_256")])
def test_sign_verify_and_public_key_through_the_gateway(kms, key_id, algorithm):
    """Sign, Verify and GetPublicKey reach the gateway through the catalogue alone;
    the signature is checked outside kmsd against the key GetPublicKey returns."""
    message = b"signed through the SDK's HTTPS protocol"
    public = serialization.load_pem_public_key(
        kms.get_public_key(models.GetPublicKeyRequest(key_id=key_id)).public_key.encode())
    for message_type, payload in (("RAW", message), ("DIGEST", hashlib.sha256(message).digest())):
        signed = kms.sign(models.SignRequest(key_id=key_id, algorithm=algorithm,
                                             message=payload, message_type=message_type))
        assert signed.key_id == key_id and signed.algorithm == algorithm
        if algorithm == "ECDSA_SHA_256":
            public.verify(signed.signature, message, ec.ECDSA(hashes.SHA256()))
        elif algorithm == "RSA_PSS_SHA_256":
            public.verify(signed.signature, message,
                          padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32),
                          hashes.SHA256())
        else:
            public.verify(signed.signature, message, padding.PKCS1v15(), hashes.SHA256())
        verified = kms.verify(models.VerifyRequest(
            key_id=key_id, algorithm=algorithm, message=payload, message_type=message_type,
            signature=signed.signature))
        assert verified.value is True
        forged = bytearray(signed.signature)
        forged[-1] ^= 1
        refused = kms.verify(models.VerifyRequest(
            key_id=key_id, algorithm=algorithm, message=payload, message_type=message_type,
            signature=bytes(forged)))
        assert refused.value is False


def raw_public_key(spki_der, length):
    """The raw key of an SPKI whose key is the last `length` bytes (ML-DSA, Ed25519)."""
    return spki_der[-length:]


def test_ml_dsa_65_sign_verify_and_public_key_through_the_gateway(kms):
    """ML-DSA-65 (issue 28) through the SDK: RAW and EXTERNAL_MU, checked outside kmsd
    with dilithium-py (pure Python FIPS 204; the SDK pins a cryptography too old for
    ML-DSA)."""
    message = b"a post-quantum signature through the SDK's HTTPS protocol"
    pem = kms.get_public_key(models.GetPublicKeyRequest(key_id=ML_DSA_65_KEY_ID)).public_key
    der = b"".join(base64.b64decode(line) for line in pem.strip().splitlines()[1:-1])
    # SEQUENCE { SEQUENCE { id-ml-dsa-65 (2.16.840.1.101.3.4.3.18) }, BIT STRING }.
    assert der[4:17] == bytes.fromhex("300b0609608648016503040312")
    public = raw_public_key(der, 1952)
    mu = ML_DSA_65.prehash_external_mu(public, message)
    for message_type, payload in (("RAW", message), ("EXTERNAL_MU", mu)):
        signed = kms.sign(models.SignRequest(key_id=ML_DSA_65_KEY_ID, algorithm="ML_DSA",
                                             message=payload, message_type=message_type))
        assert signed.algorithm == "ML_DSA" and len(signed.signature) == 3309
        assert ML_DSA_65.verify(public, message, signed.signature)
        verified = kms.verify(models.VerifyRequest(
            key_id=ML_DSA_65_KEY_ID, algorithm="ML_DSA", message=payload,
            message_type=message_type, signature=signed.signature))
        assert verified.value is True
        forged = bytearray(signed.signature)
        forged[17] ^= 1
        refused = kms.verify(models.VerifyRequest(
            key_id=ML_DSA_65_KEY_ID, algorithm="ML_DSA", message=payload,
            message_type=message_type, signature=bytes(forged)))
        assert refused.value is False


def test_ed25519_sign_verify_and_public_key_through_the_gateway(kms):
    message = b"an Ed25519 signature through the SDK's HTTPS protocol"
    public = serialization.load_pem_public_key(
        kms.get_public_key(models.GetPublicKeyRequest(key_id=ED25519_KEY_ID)).public_key.encode())
    assert isinstance(public, ed25519.Ed25519PublicKey)
    signed = kms.sign(models.SignRequest(key_id=ED25519_KEY_ID, algorithm="ED25519",
                                         message=message, message_type="RAW"))
    public.verify(signed.signature, message)
    assert kms.verify(models.VerifyRequest(
        key_id=ED25519_KEY_ID, algorithm="ED25519", message=message, message_type="RAW",
        signature=signed.signature)).value is True
    assert kms.verify(models.VerifyRequest(
        key_id=ED25519_KEY_ID, algorithm="ED25519", message=message + b".",
        message_type="RAW", signature=signed.signature)).value is False
    # DIGEST is not an Ed25519 message type: the SDK sees the public error code.
    with pytest.raises(TeaException) as refused:
        kms.sign(models.SignRequest(key_id=ED25519_KEY_ID, algorithm="ED25519",
                                    message=hashlib.sha256(message).digest(),
                                    message_type="DIGEST"))
    assert refused.value.code == "InvalidParameter", refused.value


OAEP = {"RSAES_OAEP_SHA_256": hashes.SHA256, "RSAES_OAEP_SHA_1": hashes.SHA1}


@pytest.mark.parametrize("algorithm", sorted(OAEP))
def test_rsa_encryption_key_encrypts_and_decrypts_through_the_gateway(kms, algorithm):
    """Encrypt / Decrypt with an RSAES-OAEP Algorithm under an RSA encryption key, as the
    SDK (and the transfer client's AsymmetricEncrypt / AsymmetricDecrypt) send them; a
    ciphertext made locally by pyca/cryptography with GetPublicKey's key opens too, and
    every ciphertext that does not open gets the same error."""
    key_id = RSA_ENCRYPTION_KEY_ID
    oaep = padding.OAEP(mgf=padding.MGF1(OAEP[algorithm]()), algorithm=OAEP[algorithm](),
                        label=None)
    limit = 256 - 2 * OAEP[algorithm].digest_size - 2
    for plaintext in (b"an RSA-sealed secret", b"\x5a" * limit):
        sealed = kms.encrypt(models.EncryptRequest(key_id=key_id, plaintext=plaintext,
                                                   algorithm=algorithm))
        assert sealed.key_id == key_id and sealed.algorithm == algorithm
        assert len(sealed.ciphertext_blob) == 256 and not sealed.iv
        opened = kms.decrypt(models.DecryptRequest(
            key_id=key_id, ciphertext_blob=sealed.ciphertext_blob, algorithm=algorithm))
        assert opened.plaintext == plaintext and opened.algorithm == algorithm
    with pytest.raises(TeaException) as too_long:
        kms.encrypt(models.EncryptRequest(key_id=key_id, plaintext=b"x" * (limit + 1),
                                          algorithm=algorithm))
    assert too_long.value.code == "InvalidParameter" and str(limit) in too_long.value.message

    public = serialization.load_pem_public_key(
        kms.get_public_key(models.GetPublicKeyRequest(key_id=key_id)).public_key.encode())
    assert public.key_size == 2048
    local = public.encrypt(b"sealed outside kmsd", oaep)
    opened = kms.decrypt(models.DecryptRequest(key_id=key_id, ciphertext_blob=local,
                                               algorithm=algorithm))
    assert opened.plaintext == b"sealed outside kmsd"

    failures = []
    flipped = bytearray(local)
    flipped[40] ^= 1
    labelled = public.encrypt(b"x", padding.OAEP(mgf=padding.MGF1(OAEP[algorithm]()),
                                                 algorithm=OAEP[algorithm](), label=b"label"))
    for damaged in (local[:-1], bytes(flipped), labelled):
        with pytest.raises(TeaException) as refused:
            kms.decrypt(models.DecryptRequest(key_id=key_id, ciphertext_blob=damaged,
                                              algorithm=algorithm))
        failures.append((refused.value.code, refused.value.message,
                         refused.value.data["httpCode"]))
    assert failures[0][0] == "InvalidParameter" and failures[0][2] == 400
    assert failures.count(failures[0]) == len(failures), failures


def test_errors_carry_the_public_code(kms):
    with pytest.raises(TeaException) as raised:
        kms.encrypt(models.EncryptRequest(key_id="alias/no-such-alias", plaintext=b"x"))
    assert raised.value.code == "Forbidden.AliasNotFound"
    assert raised.value.data["httpCode"] == 404
    assert len(raised.value.data["requestId"]) == 36
    with pytest.raises(TeaException) as raised:
        kms.generate_data_key_pair(models.GenerateDataKeyPairRequest(
            key_id=KEY_ID, key_pair_spec="RSA_1024", key_format="PEM"))
    assert raised.value.code == "InvalidParameter"
    assert raised.value.data["httpCode"] == 400


def test_a_wrong_password_fails_in_the_sdk():
    # The SDK opens the PKCS#12 with OpenSSL, which refuses the wrong password.
    with pytest.raises(crypto.Error):
        client(password=PASSWORD + "-wrong")


def test_throttled_calls_are_retried_by_the_sdk(kms):
    """With one key pair call allowed at once and no pool (run-e2e.sh), an RSA_4096
    generation holds the slot for a while: a call without retries is refused with
    429 Rejected.Throttling, and the same call with the SDK's retries gets through."""
    no_retry = RuntimeOptions(autoretry=False)
    with_retry = RuntimeOptions(autoretry=True, max_attempts=30, backoff_policy="yes",
                                backoff_period=1)
    request = models.GenerateDataKeyPairWithoutPlaintextRequest(
        key_id=KEY_ID, key_pair_spec="EC_P256", key_format="DER")
    for _ in range(10):
        done = threading.Event()

        def slow():
            try:
                kms.generate_data_key_pair_without_plaintext(
                    models.GenerateDataKeyPairWithoutPlaintextRequest(
                        key_id=KEY_ID, key_pair_spec="RSA_4096", key_format="DER"))
            finally:
                done.set()

        worker = threading.Thread(target=slow)
        worker.start()
        time.sleep(0.05)
        throttled = False
        try:
            kms.generate_data_key_pair_without_plaintext_with_options(request, no_retry)
        except TeaException as err:
            assert err.code == "Rejected.Throttling", err
            assert err.data["httpCode"] == 429
            throttled = True
        if throttled and not done.is_set():
            started = time.monotonic()
            pair = kms.generate_data_key_pair_without_plaintext_with_options(request, with_retry)
            waited = time.monotonic() - started
            assert pair.key_pair_spec == "EC_P256"
            worker.join()
            if waited >= 0.9:
                return  # refused at least once, then retried after the SDK's backoff
        worker.join()
    pytest.fail("never saw a throttled call retried (the RSA_4096 calls were too quick)")


def test_the_readme_example_runs_as_written():
    """README's "Using the official SDKs" example, run from the client key file's
    directory with the settings it reads from the environment."""
    readme = open(os.path.join(os.path.dirname(__file__), "..", "..", "README.md")).read()
    after = readme.split("<!-- sdk-example -->", 1)[1]
    block = after.split("```python\n", 1)[1].split("```", 1)[0]
    code = textwrap.dedent(block)
    env = dict(os.environ, CLIENT_KEY_PASSWORD=PASSWORD, KEY_ID=KEY_ID)
    result = subprocess.run([sys.executable, "-c", code], cwd=os.path.dirname(CLIENT_KEY_FILE),
                            env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "-----BEGIN PUBLIC KEY-----" in result.stdout


def test_get_secret_value_reads_a_secret_kmsctl_created(kms):
    """GetSecretValue, the SDK's 15th operation: a secret made with kmsctl (by
    clients/run-e2e.sh, KMSD_SECRET_NAME and its value KMSD_SECRET_VALUE)."""
    name = os.environ["KMSD_SECRET_NAME"]
    got = kms.get_secret_value(models.GetSecretValueRequest(
        secret_name=name, fetch_extended_config=True))
    assert got.secret_name == name and got.secret_type == "Generic"
    assert got.secret_data == os.environ["KMSD_SECRET_VALUE"]
    assert got.secret_data_type == "text" and got.version_stages == ["ACSCurrent"]
    assert got.extended_config == '{"Owner":"sdk-e2e"}'
    assert len(got.request_id) == 36
    by_id = kms.get_secret_value(models.GetSecretValueRequest(
        secret_name=name, version_id=got.version_id))
    assert by_id.secret_data == got.secret_data and by_id.extended_config == ""
    with pytest.raises(TeaException) as missing:
        kms.get_secret_value(models.GetSecretValueRequest(secret_name="sdk/no-such-secret"))
    assert missing.value.code == "Forbidden.ResourceNotFound"
