"""The scoring job's settings: one definition on both sides of the venv boundary, refused early when wrong."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from fraudlab.cli import cli
from fraudlab.detect.scoring_job import ScoringJobSettings
from fraudlab.exceptions import InvalidParameterError


def _settings(**overrides) -> ScoringJobSettings:
    values = {"bootstrap": "127.0.0.1:9092", "model": "m.json", "geoip_dir": "/g", "checkpoint_dir": "/tmp/cp"}
    return ScoringJobSettings(**{**values, **overrides})


def test_settings_survive_the_json_round_trip_the_job_reads():
    settings = _settings(bounded=True, detached=True, parallelism=2, lateness_ms=250, group_id="g1")
    assert ScoringJobSettings.from_json(settings.to_json()) == settings


def test_every_bad_knob_is_named_with_its_value():
    with pytest.raises(InvalidParameterError) as refused:
        _settings(bootstrap="", lateness_ms=-1, checkpoint_ms=50, parallelism=0)
    message = str(refused.value)
    for named in ("bootstrap=''", "lateness_ms=-1", "checkpoint_ms=50", "parallelism=0"):
        assert named in message


def test_unknown_keys_from_another_version_are_refused_by_name():
    text = _settings().to_json().replace('"bounded"', '"bounded_mode"')
    with pytest.raises(InvalidParameterError, match=r"Unknown scoring job settings \['bounded_mode'\]"):
        ScoringJobSettings.from_json(text)


def test_checkpoints_savepoints_and_transactions_are_named_after_the_job(tmp_path: Path):
    settings = _settings(checkpoint_dir=str(tmp_path / "cp"), group_id="night-shift")
    assert settings.checkpoint_uri == (tmp_path / "cp").as_uri()
    assert settings.savepoint_uri == (tmp_path / "cp" / "savepoints").as_uri()
    assert settings.transactional_id_prefix == "night-shift-scored"


@pytest.mark.parametrize("value", ["localhost", "host:", ":8081", "host:http", "host:70000"])
def test_detect_refuses_a_cluster_that_is_not_host_and_port(value: str):
    result = CliRunner().invoke(cli, ["detect", "--cluster", value])
    assert result.exit_code == 2
    assert "--cluster" in result.output and repr(value) in result.output
