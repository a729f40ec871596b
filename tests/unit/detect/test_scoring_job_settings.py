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


@pytest.mark.parametrize(("ms", "literal"), [
    (0, "INTERVAL '0 00:00:00.000' DAY TO SECOND(3)"),
    (5_000, "INTERVAL '0 00:00:05.000' DAY TO SECOND(3)"),
    (30_000_000, "INTERVAL '0 08:20:00.000' DAY TO SECOND(3)"),
    (40 * 86_400_000 + 250, "INTERVAL '40 00:00:00.250' DAY TO SECOND(3)"),
])
def test_the_watermark_delay_is_written_as_a_day_to_second_interval(ms: int, literal: str):
    """``SECOND`` alone allows 99 s; a replay at 30,000x needs hours of lateness."""
    from fraudlab.detect.flink_job import _interval

    assert _interval(ms) == literal


def test_lateness_beyond_what_the_interval_can_hold_is_refused():
    with pytest.raises(InvalidParameterError, match=r"lateness_ms=8640000000 must be 0 to 99 days"):
        _settings(lateness_ms=100 * 86_400_000)
    assert _settings(lateness_ms=99 * 86_400_000).lateness_ms == 99 * 86_400_000
