"""Generate the Python and Go protobuf and gRPC code, and a descriptor set, from ``proto/fraud/v1/*.proto``.

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

The Go gateway's package ``gateway/internal/fraudpb`` comes from the same
protoc (grpcio-tools', pinned by constraints.txt) with the plugins
protoc-gen-go and protoc-gen-go-grpc at the versions ``gateway/go.mod`` pins
as tools; the proto file names its Go package nowhere (``M`` options map it),
so adding Go changed no byte of the Python stubs.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

__all__ = ["DESCRIPTOR_SET", "GO_PACKAGE_DIR", "PROTO_SOURCE_DIR", "generate", "generate_go"]

REPO_ROOT = Path(__file__).resolve().parents[2]
PROTO_SOURCE_DIR = REPO_ROOT / "proto" / "fraud" / "v1"
PACKAGE_PREFIX = "fraudlab/schema/proto"
#: The descriptor set's file name, next to the generated modules.
DESCRIPTOR_SET = "fraud.desc"
GO_MODULE = "fraudlab/gateway"
#: Where the Go package lands, relative to the repository root.
GO_PACKAGE_DIR = "gateway/internal/fraudpb"
_GO_PLUGINS = {"protoc-gen-go": "google.golang.org/protobuf/cmd/protoc-gen-go",
               "protoc-gen-go-grpc": "google.golang.org/grpc/cmd/protoc-gen-go-grpc"}


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


def generate_go(output_root: Path = REPO_ROOT, source_dir: Path = PROTO_SOURCE_DIR) -> list[Path]:
    """Compile the protos into ``output_root/gateway/internal/fraudpb`` (messages, gRPC service); return the files.

    The two protoc plugins are built from ``gateway/go.mod``'s tool dependencies into a temporary folder first.
    """
    from grpc_tools import protoc

    go = shutil.which("go")
    if go is None:
        raise RuntimeError("Generating the Go gateway's stubs needs the Go toolchain on PATH (go 1.26 or newer).")
    protos = sorted(source_dir.glob("*.proto"))
    out_root = output_root / "gateway"
    with tempfile.TemporaryDirectory(prefix="fraudlab-protoc-go-") as plugins:
        subprocess.run([go, "build", "-o", plugins, *_GO_PLUGINS.values()], cwd=REPO_ROOT / "gateway", check=True)
        mappings = [f"M{PACKAGE_PREFIX}/{proto.name}={GO_MODULE}/internal/fraudpb" for proto in protos]
        (out_root / "internal" / "fraudpb").mkdir(parents=True, exist_ok=True)
        args = [
            "grpc_tools.protoc",
            f"--proto_path={PACKAGE_PREFIX}={source_dir}",
            *(f"--plugin={name}={Path(plugins) / name}" for name in _GO_PLUGINS),
            f"--go_out={out_root}", f"--go_opt=module={GO_MODULE}",
            f"--go-grpc_out={out_root}", f"--go-grpc_opt=module={GO_MODULE}",
            *(f"--go_opt={m}" for m in mappings), *(f"--go-grpc_opt={m}" for m in mappings),
            *(f"{PACKAGE_PREFIX}/{proto.name}" for proto in protos),
        ]
        if protoc.main(args) != 0:
            raise RuntimeError(f"protoc (Go) failed for {', '.join(p.name for p in protos)}")
    return sorted((output_root / GO_PACKAGE_DIR).glob("*.go"))


if __name__ == "__main__":
    for path in [*generate(), *generate_go()]:
        print(path.relative_to(REPO_ROOT))
    sys.exit(0)
