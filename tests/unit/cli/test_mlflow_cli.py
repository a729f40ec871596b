"""`fraudlab mlflow up | down | status` and `fraudlab promote`: flags and environment reach one library call each."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from click.testing import CliRunner

from fraudlab import config
from fraudlab.cli import cli
from fraudlab.detect.registry import PromotionDecision
from fraudlab.exceptions import MlflowError
from fraudlab.infra.mlflow import MlflowStatus
from fraudlab.infra.process import free_port


@pytest.fixture
def clean_environment(monkeypatch, tmp_path) -> Path:
    """No MLflow or fraudlab variables from the shell; FRAUDLAB_CACHE_DIR points at a temporary cache."""
    for name in ("MLFLOW_TRACKING_URI", "FRAUDLAB_MLFLOW_PORT", "FRAUDLAB_MLFLOW_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("FRAUDLAB_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _decision(promoted: bool) -> PromotionDecision:
    reason = ("version 2 (real_pr_auc 0.7) < champion version 1 (real_pr_auc 0.8): champion stays version 1"
              if not promoted else "version 2 (real_pr_auc 0.9) >= champion version 1 (real_pr_auc 0.8)")
    return PromotionDecision(promoted=promoted, candidate_version=2, champion_version=1,
                             candidate_metric=0.7 if not promoted else 0.9, champion_metric=0.8,
                             metric="real_pr_auc", reason=reason)


@pytest.fixture
def promote_calls(monkeypatch) -> list[tuple[tuple, dict]]:
    """Replace the registry's promote; record each call; answer "refused" for version 2, "promoted" otherwise."""
    calls: list[tuple[tuple, dict]] = []

    def fake(*args, **kwargs):
        calls.append((args, kwargs))
        return _decision(promoted=args[0] != 2)

    monkeypatch.setattr("fraudlab.detect.registry.promote", fake)
    return calls


def test_promote_defaults_to_the_cache_store_and_the_latest_version(clean_environment, promote_calls):
    """No flag, no MLFLOW_TRACKING_URI: the SQLite store in FRAUDLAB_CACHE_DIR, the latest version, no force."""
    # Run
    result = CliRunner().invoke(cli, ["promote", "--no-announce"])

    # Assert
    assert result.exit_code == 0, result.output
    assert promote_calls == [((None,), {"tracking_uri": f"sqlite:///{clean_environment}/mlflow/mlflow.db",
                                        "metric": config.MLFLOW_PROMOTION_METRIC,
                                        "max_recall_drop": config.MLFLOW_MAX_RECALL_DROP, "force": False})]
    assert result.output.startswith("promoted: ")


def test_promote_reads_mlflow_tracking_uri_and_the_flag_wins(clean_environment, promote_calls, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    CliRunner().invoke(cli, ["promote", "--version", "3", "--force", "--no-announce"])
    CliRunner().invoke(cli, ["promote", "--version", "3", "--tracking-uri", "sqlite:////x/y.db", "--metric", "m",
                                "--max-recall-drop", "0.1", "--no-announce"])
    assert promote_calls[0] == ((3,), {"tracking_uri": "http://127.0.0.1:5999", "metric": "real_pr_auc",
                                       "max_recall_drop": config.MLFLOW_MAX_RECALL_DROP, "force": True})
    assert promote_calls[1][1]["max_recall_drop"] == 0.1
    assert promote_calls[1][1]["tracking_uri"] == "sqlite:////x/y.db" and promote_calls[1][1]["metric"] == "m"


def test_a_refused_promotion_is_one_line_naming_both_metrics_and_exit_1(clean_environment, promote_calls):
    result = CliRunner().invoke(cli, ["promote", "--version", "2"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [f"not promoted: {_decision(False).reason}"]
    assert "0.7" in result.output and "0.8" in result.output


def test_promote_refuses_version_zero_as_bad_usage(clean_environment, promote_calls):
    result = CliRunner().invoke(cli, ["promote", "--version", "0"])
    assert result.exit_code == 2 and not promote_calls


def test_mlflow_up_passes_port_state_and_cache_and_prints_the_ui_url(clean_environment, monkeypatch, tmp_path):
    """The settings come from --port / --state-dir and FRAUDLAB_CACHE_DIR; the output names the UI and the URI."""
    # Setup
    seen = []

    def fake_start(settings, announce):
        seen.append(settings)
        announce("Starting MLflow ...")
        return MlflowStatus(running=True, tracking_uri=settings.tracking_uri, pid=123, state_dir=settings.state,
                            ready=True)

    monkeypatch.setattr("fraudlab.infra.mlflow.start_mlflow", fake_start)

    # Run
    result = CliRunner().invoke(cli, ["mlflow", "up", "--port", "15077"])
    explicit = CliRunner().invoke(cli, ["mlflow", "up", "--state-dir", str(tmp_path / "s")])

    # Assert
    assert result.exit_code == 0, result.output
    assert seen[0].port == 15077 and seen[0].state == clean_environment / "mlflow"
    assert "UI http://127.0.0.1:15077/" in result.output and "--tracking-uri http://127.0.0.1:15077" in result.output
    assert "Starting MLflow" in result.output  # the announcement (stderr; CliRunner mixes it into output)
    assert explicit.exit_code == 0 and seen[1].state == tmp_path / "s" and seen[1].port == config.MLFLOW_PORT


def test_mlflow_status_of_a_server_never_started_exits_3(clean_environment, tmp_path):
    result = CliRunner().invoke(cli, ["mlflow", "status", "--state-dir", str(tmp_path), "--port", "15999"])
    assert result.exit_code == 3
    assert "http://127.0.0.1:15999: not running" in result.output


def test_mlflow_down_when_nothing_runs_says_so(clean_environment, tmp_path):
    result = CliRunner().invoke(cli, ["mlflow", "down", "--state-dir", str(tmp_path), "--port", str(free_port())])
    assert result.exit_code == 0 and "was not running" in result.output


def test_mlflow_up_on_a_taken_port_is_an_mlflow_error(clean_environment, tmp_path):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        result = CliRunner().invoke(cli, ["mlflow", "up", "--state-dir", str(tmp_path), "--port", str(port)])
    assert result.exit_code != 0 and isinstance(result.exception, MlflowError)
    assert f"port {port} on 127.0.0.1 is already in use" in str(result.exception)
