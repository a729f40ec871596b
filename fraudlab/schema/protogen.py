"""Generate the Python protobuf and gRPC modules, and a descriptor set, from ``proto/fraud/v1/*.proto``.

Run it as ``make proto`` (or ``python -m fraudlab.schema.protogen``). The generated
files are committed under ``fraudlab/schema/proto/`` and never edited by hand; a test
regenerates them into a temporary folder and fails when they differ, so the
contract and the code cannot drift apart.

The generated modules check for the protobuf runtime they were generated for, so
they do not import where an older protobuf is pinned (the Flink venv). The
descriptor set ``fraud.desc`` (a serialized ``FileDescriptorSet``) carries the same
contract as data: :mod:`fraudlab.schema.wire` builds its message classes from it
with any protobuf runtime.

The include path maps ``proto/fraud/v1`` onto ``fraudlab/schema/proto`` so the
generated gRPC module imports its messages as ``fraudlab.schema.proto.fraud_pb2``.
"""

from __future__ import annotations

import sys
from pathlib import Path

__all__ = ["DESCRIPTOR_SET", "PROTO_SOURCE_DIR", "generate"]

REPO_ROOT = Path(__file__).resolve().parents[2]
PROTO_SOURCE_DIR = REPO_ROOT / "proto" / "fraud" / "v1"
PACKAGE_PREFIX = "fraudlab/schema/proto"
#: The descriptor set's file name, next to the generated modules.
DESCRIPTOR_SET = "fraud.desc"


def generate(output_root: Path = REPO_ROOT, source_dir: Path = PROTO_SOURCE_DIR) -> list[Path]:
    """Compile every ``.proto`` in ``source_dir`` into ``output_root/fraudlab/schema/proto``; return the new files.

    They are the ``*_pb2*`` modules and one descriptor set of all the protos (``--include_imports``, without
    source info, so its bytes depend on the contract and protoc's version only).
    """
    from grpc_tools import protoc

    protos = sorted(source_dir.glob("*.proto"))
    if not protos:
        raise FileNotFoundError(f"No .proto files in {source_dir}")
    out_dir = output_root / PACKAGE_PREFIX
    out_dir.mkdir(parents=True, exist_ok=True)
    args = [
        "grpc_tools.protoc",
        f"--proto_path={PACKAGE_PREFIX}={source_dir}",
        f"--python_out={output_root}",
        f"--pyi_out={output_root}",
        f"--grpc_python_out={output_root}",
        f"--descriptor_set_out={out_dir / DESCRIPTOR_SET}",
        "--include_imports",
        *(f"{PACKAGE_PREFIX}/{proto.name}" for proto in protos),
    ]
    status = protoc.main(args)
    if status != 0:
        raise RuntimeError(f"protoc failed with exit status {status} for {', '.join(p.name for p in protos)}")
    return sorted([*out_dir.glob("*_pb2*"), out_dir / DESCRIPTOR_SET])


if __name__ == "__main__":
    for path in generate():
        print(path.relative_to(REPO_ROOT))
    sys.exit(0)
