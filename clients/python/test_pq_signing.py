"""ML-DSA and Ed25519 master keys, checked by implementations other than kmsd's.

kmsd signs ML-DSA messages with AWS-LC (aws-lc-rs) and a caller's mu with RustCrypto's
ml-dsa; here pyca/cryptography (OpenSSL's ML-DSA) and dilithium-py (a pure Python
FIPS 204) verify both, parse the public key (the IETF LAMPS SubjectPublicKeyInfo) and
compute mu themselves for EXTERNAL_MU. Ed25519 signatures are checked with
cryptography. Tampered messages, signatures and mu must give ``Value: false``.
"""

from __future__ import annotations

import hashlib

import grpc
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, mldsa
from dilithium_py.ml_dsa import ML_DSA_44, ML_DSA_65, ML_DSA_87

MESSAGE = b"kmsd python client: a release manifest signed for the post-quantum era"

ML_DSA = {
    "ML_DSA_44": (ML_DSA_44, mldsa.MLDSA44PublicKey),
    "ML_DSA_65": (ML_DSA_65, mldsa.MLDSA65PublicKey),
    "ML_DSA_87": (ML_DSA_87, mldsa.MLDSA87PublicKey),
}


def create(pb, management, spec: str) -> str:
    meta = management.CreateKey(pb.management_pb2.CreateKeyRequest(key_spec=spec)).key_metadata
    assert (meta.key_spec, meta.key_usage) == (spec, "SIGN/VERIFY")
    described = management.DescribeKey(
        pb.management_pb2.DescribeKeyRequest(key_id=meta.key_id)).key_metadata
    assert described.key_spec == spec
    return meta.key_id


def public_key(pb, crypto, key_id: str):
    pem = crypto.GetPublicKey(pb.crypto_pb2.GetPublicKeyRequest(key_id=key_id)).public_key
    return serialization.load_pem_public_key(pem.encode())


def sign(pb, crypto, key_id: str, algorithm: str, message_type: str, message: bytes) -> bytes:
    response = crypto.Sign(pb.crypto_pb2.SignRequest(
        key_id=key_id, algorithm=algorithm, message_type=message_type, message=message))
    assert (response.algorithm, response.message_type) == (algorithm, message_type)
    return response.signature


def verify(pb, crypto, key_id: str, algorithm: str, message_type: str, message: bytes,
           signature: bytes) -> bool:
    return crypto.Verify(pb.crypto_pb2.VerifyRequest(
        key_id=key_id, algorithm=algorithm, message_type=message_type, message=message,
        signature=signature)).value


def mu_of(raw_public_key: bytes, message: bytes) -> bytes:
    """FIPS 204 section 6.2 with the empty context, written out with hashlib."""
    tr = hashlib.shake_256(raw_public_key).digest(64)
    return hashlib.shake_256(tr + b"\x00\x00" + message).digest(64)


@pytest.mark.parametrize("spec", sorted(ML_DSA))
def test_ml_dsa_signatures_verify_outside_kmsd_raw_and_external_mu(pb, crypto, management,
                                                                     spec):
    reference, public_type = ML_DSA[spec]
    key_id = create(pb, management, spec)
    public = public_key(pb, crypto, key_id)
    # OpenSSL (in cryptography) parsed the SPKI as this parameter set: the LAMPS OID.
    assert isinstance(public, public_type), type(public)
    raw_public = public.public_bytes_raw()

    # Three ways to compute mu agree: hashlib by hand, dilithium-py, cryptography.
    mu = mu_of(raw_public, MESSAGE)
    assert reference.prehash_external_mu(raw_public, MESSAGE) == mu
    hasher = mldsa.MLDSAMuHasher(public)
    hasher.update(MESSAGE)
    assert hasher.finalize() == mu

    for message_type, data in (("RAW", MESSAGE), ("EXTERNAL_MU", mu)):
        signature = sign(pb, crypto, key_id, "ML_DSA", message_type, data)
        # Either way it is a signature of the message, for both other implementations.
        public.verify(signature, MESSAGE)
        assert reference.verify(raw_public, MESSAGE, signature)
        for check_type, check_data in (("RAW", MESSAGE), ("EXTERNAL_MU", mu)):
            assert verify(pb, crypto, key_id, "ML_DSA", check_type, check_data, signature)

        # Tampered: message, signature, mu. Value false, not an error.
        flipped = bytearray(signature)
        flipped[len(flipped) // 2] ^= 0x04
        other_mu = bytearray(mu)
        other_mu[5] ^= 0x01
        assert not verify(pb, crypto, key_id, "ML_DSA", "RAW", MESSAGE + b"!", signature)
        assert not verify(pb, crypto, key_id, "ML_DSA", "RAW", MESSAGE, bytes(flipped))
        assert not verify(pb, crypto, key_id, "ML_DSA", "EXTERNAL_MU", bytes(other_mu),
                          signature)
        with pytest.raises(InvalidSignature):
            public.verify(bytes(flipped), MESSAGE)
        assert not reference.verify(raw_public, MESSAGE, bytes(flipped))


def test_ed25519_signatures_verify_with_cryptography(pb, crypto, management):
    key_id = create(pb, management, "ED25519")
    public = public_key(pb, crypto, key_id)
    assert isinstance(public, ed25519.Ed25519PublicKey), type(public)
    signature = sign(pb, crypto, key_id, "ED25519", "RAW", MESSAGE)
    public.verify(signature, MESSAGE)
    assert verify(pb, crypto, key_id, "ED25519", "RAW", MESSAGE, signature)
    flipped = bytearray(signature)
    flipped[40] ^= 0x80
    assert not verify(pb, crypto, key_id, "ED25519", "RAW", MESSAGE, bytes(flipped))
    assert not verify(pb, crypto, key_id, "ED25519", "RAW", MESSAGE[1:], signature)
    with pytest.raises(InvalidSignature):
        public.verify(bytes(flipped), MESSAGE)


def test_message_types_an_algorithm_does_not_take_are_invalid_parameters(pb, crypto,
                                                                         management):
    key_id = create(pb, management, "ED25519")
    with pytest.raises(grpc.RpcError) as refused:
        sign(pb, crypto, key_id, "ED25519", "DIGEST", hashlib.sha256(MESSAGE).digest())
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "valid values: RAW." in refused.value.details()
