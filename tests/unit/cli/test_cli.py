"""The command line: help, version, and error handling."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

from click.testing import CliRunner

from fraudlab import __version__
from fraudlab.cli import cli
from fraudlab.generate.synth import DEFAULT_MODEL, TransactionSynthesizer


def test_help_lists_the_commands():
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    for command in ("broker", "demo"):
        assert command in result.output
    broker_help = CliRunner().invoke(cli, ["broker", "--help"]).output
    for command in ("up", "down", "status", "fetch"):
        assert command in broker_help


def test_status_of_a_broker_never_started_exits_3(tmp_path):
    result = CliRunner().invoke(cli, ["broker", "status", "--state-dir", str(tmp_path), "--port", "19999"])
    assert result.exit_code == 3
    assert "127.0.0.1:19999: not running" in result.output


def test_console_script_turns_errors_into_a_message_and_exit_1(tmp_path):
    completed = subprocess.run(
        [sys.executable, "-m", "fraudlab", "broker", "up", "--port", "5", "--controller-port", "5",
         "--state-dir", str(tmp_path)],
        capture_output=True, text=True, check=False,
    )
    assert completed.returncode == 1
    assert "error: port and controller_port are both 5" in completed.stderr
    assert "Traceback" not in completed.stderr


def test_version():
    assert CliRunner().invoke(cli, ["--version"]).output.strip() == f"fraudlab, version {__version__}"


def _fraudlab(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fraudlab", *args], capture_output=True, text=True, check=False,
                          env=env, timeout=120)


def test_an_unreachable_kafka_is_one_line_saying_what_to_do_and_exit_1():
    from fraudlab.infra.process import free_port

    completed = _fraudlab("demo", "--bootstrap", f"127.0.0.1:{free_port()}", "--count", "1")
    assert completed.returncode == 1
    assert "Traceback" not in completed.stderr
    error_lines = [line for line in completed.stderr.splitlines() if line.startswith("error: ")]
    assert len(error_lines) == 1
    assert "Kafka at 127.0.0.1:" in error_lines[0] and "fraudlab broker status" in error_lines[0]


def test_debug_flag_or_variable_shows_the_traceback(tmp_path):
    args = ("broker", "up", "--port", "5", "--controller-port", "5", "--state-dir", str(tmp_path))
    assert "Traceback" not in _fraudlab(*args).stderr
    for completed in (_fraudlab("--debug", *args), _fraudlab(*args, env={**os.environ, "FRAUDLAB_DEBUG": "1"})):
        assert completed.returncode == 1
        assert completed.stderr.count("Traceback (most recent call last)") == 1
        assert "error: port and controller_port are both 5" in completed.stderr


def test_bad_usage_exits_2_with_the_flag_named():
    completed = _fraudlab("sample", "--rows", "-5", "-o", "x.parquet")
    assert completed.returncode == 2
    assert "--rows" in completed.stderr and "Traceback" not in completed.stderr


def test_a_grpc_failure_is_one_line_and_exit_1(tmp_path):
    from fraudlab.infra.process import free_port

    completed = _fraudlab("produce", "--target", f"127.0.0.1:{free_port()}", "--count", "1",
                          "--retry-timeout", "1", "--no-progress")
    assert completed.returncode == 1
    lines = completed.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "UNAVAILABLE" in lines[0]


def _digests(*paths):
    return [hashlib.sha256(path.read_bytes()).hexdigest() for path in paths]


def test_fit_without_output_writes_into_the_current_directory_not_over_the_pretrained_model(tmp_path, monkeypatch):
    """A bare `fraudlab fit` used to replace the shipped model; now it writes ./gaussian_copula.npz and says where."""
    shipped = (DEFAULT_MODEL, DEFAULT_MODEL.with_suffix(".json"))
    before = _digests(*shipped)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["fit", "--rows", "2000", "--no-evaluate"])
    assert result.exit_code == 0, result.output
    written = (tmp_path / "gaussian_copula.npz").resolve()
    assert f"model {written} (" in result.stdout
    assert f"manifest {written.with_suffix('.json')}" in result.stdout
    model = TransactionSynthesizer.load(written)
    assert model.training["rows"] == 2000
    assert _digests(*shipped) == before
