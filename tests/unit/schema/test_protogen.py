"""The committed gRPC/protobuf modules and descriptor set are exactly what `make proto` generates from proto/."""

from __future__ import annotations

from google.protobuf import descriptor_pb2

from fraudlab.schema.protogen import DESCRIPTOR_SET, GO_PACKAGE_DIR, generate, generate_go


def test_committed_stubs_match_a_fresh_generation(tmp_path, repo_root):
    fresh = generate(output_root=tmp_path)
    names = sorted(p.name for p in fresh)
    assert names == [DESCRIPTOR_SET, "fraud_pb2.py", "fraud_pb2.pyi", "fraud_pb2_grpc.py"]
    for path in fresh:
        committed = repo_root / "fraudlab" / "schema" / "proto" / path.name
        assert committed.read_bytes() == path.read_bytes(), f"{committed} is stale: run `make proto` and commit it"


def test_committed_go_stubs_match_a_fresh_generation(tmp_path, repo_root):
    """The Go gateway's messages and service come from the same proto and protoc, with the plugins go.mod pins."""
    fresh = generate_go(output_root=tmp_path)
    assert sorted(p.name for p in fresh) == ["fraud.pb.go", "fraud_grpc.pb.go"]
    for path in fresh:
        committed = repo_root / GO_PACKAGE_DIR / path.name
        assert committed.read_bytes() == path.read_bytes(), f"{committed} is stale: run `make proto` and commit it"


def test_the_descriptor_set_is_the_whole_contract(repo_root):
    """A runtime that cannot import the stubs builds every message from this file alone (no imports missing)."""
    data = (repo_root / "fraudlab" / "schema" / "proto" / DESCRIPTOR_SET).read_bytes()
    files = descriptor_pb2.FileDescriptorSet.FromString(data).file
    assert [f.name for f in files] == ["fraudlab/schema/proto/fraud.proto"]
    assert {m.name for m in files[0].message_type} >= {"TransactionRequest", "ScoredTransaction", "DeadLetter"}
    assert not files[0].dependency
