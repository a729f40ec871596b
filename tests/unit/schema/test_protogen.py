"""The committed gRPC/protobuf modules are exactly what `make proto` generates from proto/."""

from __future__ import annotations

from fraudlab.schema.protogen import generate


def test_committed_stubs_match_a_fresh_generation(tmp_path, repo_root):
    fresh = generate(output_root=tmp_path)
    names = sorted(p.name for p in fresh)
    assert names == ["fraud_pb2.py", "fraud_pb2.pyi", "fraud_pb2_grpc.py"]
    for path in fresh:
        committed = repo_root / "fraudlab" / "schema" / "proto" / path.name
        assert committed.read_text() == path.read_text(), f"{committed} is stale: run `make proto` and commit it"
