"""Fixtures: generated stubs and a channel to the kmsd named by ``KMSD_ADDR``.

The server is started outside pytest (``clients/run-e2e.sh`` starts the real binary
with ``--pool-depth 0 --keypair-concurrency 1``), so these tests exercise exactly
what a Python user gets over the wire.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import grpc
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import kms_stubs  # noqa: E402


@pytest.fixture(scope="session")
def pb(tmp_path_factory):
    """The generated modules (see kms_stubs.generate)."""
    return kms_stubs.generate(tmp_path_factory.mktemp("kms-stubs"))


@pytest.fixture(scope="session")
def channel():
    """An insecure channel to the server, ready before the first test uses it."""
    addr = os.environ.get("KMSD_ADDR")
    if not addr:
        pytest.fail("KMSD_ADDR is not set: start kmsd and export KMSD_ADDR=host:port "
                    "(clients/run-e2e.sh does both)")
    ch = grpc.insecure_channel(addr)
    grpc.channel_ready_future(ch).result(timeout=30)
    yield ch
    ch.close()


@pytest.fixture(scope="session")
def crypto(pb, channel):
    """A kms.v1.CryptoService stub."""
    return pb.crypto_pb2_grpc.CryptoServiceStub(channel)


@pytest.fixture(scope="session")
def management(pb, channel):
    """A kms.v1.KeyManagementService stub."""
    return pb.management_pb2_grpc.KeyManagementServiceStub(channel)
