"""The Go gateway's own checks, run by the suite so CI runs them: gofmt, go vet, go test, and go.sum complete."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from fraudlab.ingest.gateway import GATEWAY_DIR

pytestmark = pytest.mark.skipif(shutil.which("go") is None, reason="the Go toolchain is not on PATH")


def _go(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["go", *args], cwd=GATEWAY_DIR, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "GOFLAGS": "-mod=readonly"})


def test_the_sources_are_gofmt_clean():
    completed = subprocess.run(["gofmt", "-l", "."], cwd=GATEWAY_DIR, capture_output=True, text=True, check=True)
    assert completed.stdout == "", f"run gofmt -w on: {completed.stdout}"


def test_go_vet_and_go_test_pass_with_the_committed_go_sum():
    """-mod=readonly: a go.mod or go.sum that needs changing fails here instead of being rewritten in CI."""
    vet = _go("vet", "./...")
    assert vet.returncode == 0, vet.stderr
    tested = _go("test", "-count=1", "./...")
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "ok  \tfraudlab/gateway/internal/ingest" in tested.stdout
