"""``fraudlab mlflow up | down | status``: the local MLflow tracking server and its UI."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click

from fraudlab import config

__all__ = ["mlflow"]


def _mlflow_options(command: click.Command) -> click.Command:
    """The flags naming one local MLflow server, shared by up, down and status."""
    options = [
        click.option("--port", type=click.IntRange(1, 65535), default=config.MLFLOW_PORT, show_default=True,
                     envvar="FRAUDLAB_MLFLOW_PORT", help="TCP port of the UI and REST API [env FRAUDLAB_MLFLOW_PORT]."),
        click.option("--state-dir", type=click.Path(path_type=Path), default=None, envvar="FRAUDLAB_MLFLOW_DIR",
                     help="Tracking store, artifacts, log, pid [default: ~/.cache/fraudlab/mlflow, the store "
                          "`fraudlab train` logs to; env FRAUDLAB_MLFLOW_DIR]."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _settings(port: int, state_dir: Path | None) -> Any:
    from fraudlab.infra.mlflow import MlflowSettings

    return MlflowSettings(port=port, state_dir=state_dir, cache_dir=config.cache_root(os.environ))


@click.group()
def mlflow() -> None:
    """Run a real local MLflow tracking server: the UI over the detector's runs and registered models."""


@mlflow.command("up")
@_mlflow_options
def mlflow_up(port: int, state_dir: Path | None) -> None:
    """Start MLflow (or reuse the one running) and wait until it answers; print the UI's URL."""
    from fraudlab.infra.mlflow import start_mlflow

    settings = _settings(port, state_dir)
    status = start_mlflow(settings, announce=lambda line: click.echo(line, err=True))
    click.echo(status.describe() + f"; --tracking-uri {settings.tracking_uri}")


@mlflow.command("down")
@_mlflow_options
@click.option("--purge", is_flag=True, help="Also delete the tracking store and its artifacts (every run and model).")
def mlflow_down(port: int, state_dir: Path | None, purge: bool) -> None:
    """Stop MLflow and its workers and wait until they have exited."""
    from fraudlab.infra.mlflow import stop_mlflow

    stopped = stop_mlflow(_settings(port, state_dir), purge=purge)
    state = "stopped" if stopped else "was not running"
    click.echo(f"MLflow on port {port}: {state}{' (store purged)' if purge else ''}")


@mlflow.command("status")
@_mlflow_options
def mlflow_status(port: int, state_dir: Path | None) -> None:
    """Say whether MLflow runs; exit 0 when it does, 3 when it does not."""
    from fraudlab.infra.mlflow import mlflow_status as status_of

    status = status_of(_settings(port, state_dir))
    click.echo(status.describe())
    sys.exit(0 if status.running else 3)
