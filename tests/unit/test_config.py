"""config.py holds every default once and reads no environment; exceptions.py's taxonomy lets callers catch narrowly."""

from __future__ import annotations

from pathlib import Path

import pytest

from fraudlab import config
from fraudlab.exceptions import FraudlabError, InvalidParameterError


def test_cache_root_reads_only_the_environment_it_is_given(monkeypatch):
    """Library code gets ~/.cache/fraudlab whatever the shell exports; the CLI passes os.environ explicitly."""
    # Setup
    monkeypatch.setenv("FRAUDLAB_CACHE_DIR", "/elsewhere")

    # Run / Assert
    assert config.cache_root() == Path.home() / ".cache" / "fraudlab"
    assert config.cache_root({"FRAUDLAB_CACHE_DIR": "/x"}) == Path("/x")
    assert config.cache_root({"XDG_CACHE_HOME": "/xdg"}) == Path("/xdg/fraudlab")


def test_settings_take_their_defaults_from_config():
    """The service, the producer and the broker agree with the command line because they read one module."""
    from fraudlab.infra.broker import BrokerSettings
    from fraudlab.ingest.client import ProducerSettings
    from fraudlab.ingest.service import ServiceSettings

    service = ServiceSettings()
    assert (service.bootstrap, service.topic, service.port) == (config.KAFKA_BOOTSTRAP, config.TOPIC,
                                                                config.SERVICE_PORT)
    assert ProducerSettings().target == config.SERVICE_TARGET
    assert BrokerSettings().bootstrap == config.KAFKA_BOOTSTRAP


def test_a_bad_argument_is_a_value_error_and_a_fraudlab_error():
    """Callers may catch the narrow class, ValueError, or the root."""
    from fraudlab.data.readers import check_output_path

    with pytest.raises(InvalidParameterError, match=r"Invalid output 'out\.xlsx'") as raised:
        check_output_path("out.xlsx")
    assert isinstance(raised.value, ValueError) and isinstance(raised.value, FraudlabError)
