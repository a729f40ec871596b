"""The command line: help, version, and error handling."""

from __future__ import annotations

import subprocess
import sys

from click.testing import CliRunner

from fraudlab import __version__
from fraudlab.cli import cli


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
