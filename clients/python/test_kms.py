"""kmsd through a Python client generated from proto/ with grpcio-tools.

Covers the four operations of the tour (CreateKey, CreateAlias,
GenerateDataKeyPairWithoutPlaintext, Decrypt), checks with the openssl CLI that each
opened private key belongs to the returned public key, and reads the public error
code (google.rpc.ErrorInfo reason) from failed calls, a throttled one included.
"""

from __future__ import annotations

import subprocess
import threading
import uuid

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

# Generous: RSA-4096 generation without the pool runs on a shared 2-core machine.
CALL_TIMEOUT = 120.0


# === helpers ===


def openssl(*args: str, data: bytes) -> bytes:
    """Runs the openssl CLI on ``data`` (stdin) and returns stdout; fails the test loudly."""
    proc = subprocess.run(["openssl", *args], input=data, capture_output=True, check=False)
    if proc.returncode != 0:
        pytest.fail(f"openssl {' '.join(args)} failed: {proc.stderr.decode(errors='replace')}")
    return proc.stdout


def public_der_of_private(private_key: bytes, fmt: str) -> bytes:
    """The SubjectPublicKeyInfo (DER) that openssl derives from a PKCS#8 private key."""
    return openssl("pkey", "-inform", fmt, "-pubout", "-outform", "DER", data=private_key)


def public_der(public_key: bytes, fmt: str) -> bytes:
    """A SubjectPublicKeyInfo in ``fmt`` re-encoded as DER by openssl (which also parses it)."""
    return openssl("pkey", "-pubin", "-inform", fmt, "-outform", "DER", data=public_key)


def status_details(err: grpc.RpcError):
    """(ErrorInfo, RetryInfo or None) from the call's grpc-status-details-bin trailer."""
    status = rpc_status.from_call(err)
    assert status is not None, f"no google.rpc.Status in the trailers of {err!r}"
    assert status.code == err.code().value[0]
    info, retry = None, None
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
        elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry = error_details_pb2.RetryInfo()
            detail.Unpack(retry)
    assert info is not None, f"no google.rpc.ErrorInfo in {status}"
    return info, retry


@pytest.fixture(scope="module")
def alias(pb, management):
    """A fresh key and an alias naming it: (key_id, alias_name)."""
    created = management.CreateKey(
        pb.management_pb2.CreateKeyRequest(description="python client e2e"),
        timeout=CALL_TIMEOUT,
    )
    key_id = created.key_metadata.key_id
    assert key_id.startswith("key-")
    assert created.key_metadata.key_state == "Enabled"
    name = f"alias/python-e2e-{uuid.uuid4().hex[:12]}"
    management.CreateAlias(
        pb.management_pb2.CreateAliasRequest(key_id=key_id, alias_name=name),
        timeout=CALL_TIMEOUT,
    )
    described = management.DescribeKey(
        pb.management_pb2.DescribeKeyRequest(key_id=name), timeout=CALL_TIMEOUT
    )
    assert described.key_metadata.key_id == key_id
    return key_id, name


# === the data key pair round trip ===

OPENSSL_TYPE = {
    "RSA_2048": "Private-Key: (2048 bit",
    "RSA_3072": "Private-Key: (3072 bit",
    "EC_P256": "prime256v1",
    "EC_P256K": "secp256k1",
}


@pytest.mark.parametrize(
    "spec,fmt",
    [("EC_P256", "PEM"), ("EC_P256K", "DER"), ("RSA_2048", "DER"), ("RSA_3072", "PEM")],
)
def test_generated_private_key_opens_and_matches_its_public_key(pb, crypto, alias, spec, fmt):
    key_id, alias_name = alias
    aad = f"python-e2e {spec}".encode()
    generated = crypto.GenerateDataKeyPairWithoutPlaintext(
        pb.crypto_pb2.GenerateDataKeyPairWithoutPlaintextRequest(
            key_id=alias_name, key_pair_spec=spec, key_format=fmt, aad=aad
        ),
        timeout=CALL_TIMEOUT,
    )
    assert generated.key_id == key_id
    assert generated.key_pair_spec == spec
    assert len(generated.iv) == 12
    assert generated.request_id
    # The response has no plaintext field at all: only the sealed private key.
    assert "private_key_plaintext" not in generated.DESCRIPTOR.fields_by_name

    opened = crypto.Decrypt(
        pb.crypto_pb2.DecryptRequest(
            key_id=alias_name,
            ciphertext_blob=generated.private_key_ciphertext_blob,
            iv=generated.iv,
            aad=aad,
        ),
        timeout=CALL_TIMEOUT,
    )
    assert opened.key_id == key_id
    private_key = opened.plaintext
    if fmt == "PEM":
        assert private_key.startswith(b"-----BEGIN PRIVATE KEY-----")
    text = openssl("pkey", "-inform", fmt, "-text", "-noout", data=private_key).decode()
    assert OPENSSL_TYPE[spec] in text
    assert public_der_of_private(private_key, fmt) == public_der(generated.public_key, fmt)


def test_decrypt_with_other_aad_fails_with_one_fixed_message(pb, crypto, alias):
    _, alias_name = alias
    generated = crypto.GenerateDataKeyPairWithoutPlaintext(
        pb.crypto_pb2.GenerateDataKeyPairWithoutPlaintextRequest(
            key_id=alias_name, key_pair_spec="EC_P256", key_format="DER", aad=b"right"
        ),
        timeout=CALL_TIMEOUT,
    )
    with pytest.raises(grpc.RpcError) as caught:
        crypto.Decrypt(
            pb.crypto_pb2.DecryptRequest(
                key_id=alias_name,
                ciphertext_blob=generated.private_key_ciphertext_blob,
                iv=generated.iv,
                aad=b"wrong",
            ),
            timeout=CALL_TIMEOUT,
        )
    err = caught.value
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.details() == "The ciphertext could not be decrypted."
    info, _ = status_details(err)
    assert (info.reason, info.domain) == ("InvalidParameter", "kms")


def test_unknown_key_is_not_found_with_its_public_error_code(pb, crypto):
    with pytest.raises(grpc.RpcError) as caught:
        crypto.GenerateDataKeyPairWithoutPlaintext(
            pb.crypto_pb2.GenerateDataKeyPairWithoutPlaintextRequest(
                key_id="key-doesnotexist0000000000", key_pair_spec="EC_P256", key_format="PEM"
            ),
            timeout=CALL_TIMEOUT,
        )
    err = caught.value
    assert err.code() == grpc.StatusCode.NOT_FOUND
    info, _ = status_details(err)
    assert (info.reason, info.domain) == ("Forbidden.KeyNotFound", "kms")
    # The request ID travels in ErrorInfo metadata and in the x-kms-request-id header.
    headers = dict(err.initial_metadata() or ()) | dict(err.trailing_metadata() or ())
    assert info.metadata["RequestId"] == headers["x-kms-request-id"]


# === the per-instance throttle ===

CALLERS = 4


def test_concurrent_key_pair_calls_over_the_limit_are_throttled(pb, crypto, alias):
    """With --keypair-concurrency 1 and the pool off, concurrent RSA_4096 calls: one
    wins, the rest are rejected at once with Rejected.Throttling and a retry hint."""
    _, alias_name = alias
    request = pb.crypto_pb2.GenerateDataKeyPairWithoutPlaintextRequest(
        key_id=alias_name, key_pair_spec="RSA_4096", key_format="DER"
    )
    start = threading.Barrier(CALLERS)
    results: list[object] = [None] * CALLERS

    def call(i: int) -> None:
        start.wait()
        try:
            results[i] = crypto.GenerateDataKeyPairWithoutPlaintext(request, timeout=CALL_TIMEOUT)
        except grpc.RpcError as err:
            results[i] = err

    threads = [threading.Thread(target=call, args=(i,)) for i in range(CALLERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=CALL_TIMEOUT + 10)
    assert not any(t.is_alive() for t in threads), "a call did not return"

    successes = [r for r in results if not isinstance(r, grpc.RpcError)]
    failures = [r for r in results if isinstance(r, grpc.RpcError)]
    assert len(successes) == 1, f"expected exactly one success, got {results}"
    assert successes[0].key_pair_spec == "RSA_4096"
    assert len(failures) == CALLERS - 1
    for err in failures:
        assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, err
        info, retry = status_details(err)
        assert (info.reason, info.domain) == ("Rejected.Throttling", "kms")
        assert info.metadata["RequestId"]
        assert retry is not None and retry.retry_delay.ToTimedelta().total_seconds() > 0
