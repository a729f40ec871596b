"""`fraudlab train`, `promote` and `score` as a user runs them: real GeoIP cache, real MLflow store, real files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

pytestmark = pytest.mark.slow

FRAUDLAB = Path(sys.executable).parent / "fraudlab"
REPO = Path(__file__).resolve().parents[3]
SMALL = ("--accounts", "300", "--days", "5", "--copula-rows", "10000", "--trees", "30")


def _run(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(FRAUDLAB), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture
def env(tmp_path: Path, cache_dir: Path) -> dict[str, str]:
    return {**os.environ, "FRAUDLAB_CACHE_DIR": str(cache_dir), "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/ml.db",
            "MLFLOW_DISABLE_TELEMETRY": "true"}


def test_train_promote_refuse_a_worse_candidate_and_score_with_the_champion(tmp_path: Path, env) -> None:
    trained = _run("train", *SMALL, "--copula-frauds", "1000", "-o", "good", cwd=tmp_path, env=env)
    assert trained.returncode == 0, trained.stderr[-2000:]
    assert "fraud-detector version 1" in trained.stdout and "MLflow run " in trained.stdout
    assert {"detector.json", "detector.onnx", "report.md", "scenarios.png"} <= {p.name for p in (tmp_path / "good")
                                                                                 .iterdir()}
    promoted = _run("promote", cwd=tmp_path, env=env)
    assert promoted.returncode == 0 and "first champion" in promoted.stdout, promoted.stdout + promoted.stderr
    weak = _run("train", *SMALL[:-1], "5", "--copula-frauds", "50", "-o", "weak", cwd=tmp_path, env=env)
    assert weak.returncode == 0 and "fraud-detector version 2" in weak.stdout, weak.stderr[-2000:]
    refused = _run("promote", cwd=tmp_path, env=env)
    assert refused.returncode == 1 and "champion stays version 1" in refused.stdout, refused.stdout

    frauds = REPO / "fraudlab" / "data" / "datasets" / "paysim_all_frauds.csv.gz"
    scored = _run("score", "--model", "champion", "--input", str(frauds), "-o", "scores.csv", cwd=tmp_path, env=env)
    assert scored.returncode == 0, scored.stderr[-2000:]
    scores = pd.read_csv(tmp_path / "scores.csv")
    assert list(scores.columns) == ["row", "score", "alert"] and len(scores) == 8_213
    assert scores["alert"].mean() > 0.3  # all real frauds; this small model alerts on 0.07 % of a stream


def test_score_names_the_missing_columns_and_refuses_a_tampered_detector(tmp_path: Path, env) -> None:
    table = tmp_path / "stream.csv"
    pd.DataFrame({"timestamp": [1], "user_id": [1], "type": ["TRANSFER"], "amount": [5.0]}).to_csv(table, index=False)
    missing = _run("score", "--input", str(table), cwd=tmp_path, env=env)
    assert missing.returncode == 1 and "'old_balance_orig'" in missing.stderr and "'new_balance_dest'" in missing.stderr

    copy = tmp_path / "detector"
    copy.mkdir()
    pretrained = REPO / "fraudlab" / "pretrained"
    (copy / "detector.json").write_bytes((pretrained / "detector.json").read_bytes())
    onnx = bytearray((pretrained / "detector.onnx").read_bytes())
    onnx[len(onnx) // 2] ^= 0xFF
    (copy / "detector.onnx").write_bytes(bytes(onnx))
    tampered = _run("score", "--model", str(copy), "--input", str(table), cwd=tmp_path, env=env)
    assert tampered.returncode == 1 and "SHA-256" in tampered.stderr, tampered.stderr
