"""Generate Python stubs for kmsd from ``proto/`` with grpcio-tools and import them.

Nothing generated is committed: the stubs are written to a directory the caller
chooses (the tests use a pytest temporary directory) and put on ``sys.path``. The
same command works by hand::

    python -m grpc_tools.protoc -I proto -I "$(python -c 'import grpc_tools, os; \
print(os.path.join(os.path.dirname(grpc_tools.__file__), "_proto"))')" \
        --python_out=OUT --grpc_python_out=OUT proto/kms/v1/*.proto
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from types import SimpleNamespace

REPO = Path(__file__).resolve().parents[2]
PROTO_DIR = REPO / "proto"


def generate(out_dir: Path) -> SimpleNamespace:
    """Compile every ``proto/kms/v1/*.proto`` into ``out_dir`` and import the modules.

    Returns a namespace with ``crypto_pb2``, ``crypto_pb2_grpc``, ``management_pb2``
    and ``management_pb2_grpc``. Raises ``RuntimeError`` when protoc fails.
    """
    import grpc_tools
    from grpc_tools import protoc

    # grpc_tools bundles the well-known types (google/protobuf/duration.proto).
    well_known = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    protos = sorted(str(p) for p in (PROTO_DIR / "kms" / "v1").glob("*.proto"))
    if not protos:
        raise RuntimeError(f"no .proto files under {PROTO_DIR}")
    out_dir.mkdir(parents=True, exist_ok=True)
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_DIR}",
        f"-I{well_known}",
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *protos,
    ]
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed: {' '.join(args)}")
    if str(out_dir) not in sys.path:
        sys.path.insert(0, str(out_dir))
    importlib.invalidate_caches()
    return SimpleNamespace(
        crypto_pb2=importlib.import_module("kms.v1.crypto_pb2"),
        crypto_pb2_grpc=importlib.import_module("kms.v1.crypto_pb2_grpc"),
        management_pb2=importlib.import_module("kms.v1.management_pb2"),
        management_pb2_grpc=importlib.import_module("kms.v1.management_pb2_grpc"),
    )
