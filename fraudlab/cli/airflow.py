"""``fraudlab airflow up | down | status``: Airflow standalone scheduling the continuous-training DAG, with its UI."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click

from fraudlab import config

__all__ = ["airflow"]


def _airflow_options(command: click.Command) -> click.Command:
    """The flags naming one local Airflow, shared by up, down and status."""
    options = [
        click.option("--port", type=click.IntRange(1, 65535), default=config.AIRFLOW_PORT, show_default=True,
                     envvar="FRAUDLAB_AIRFLOW_PORT", help="Port of the UI and API server [env FRAUDLAB_AIRFLOW_PORT]."),
        click.option("--home", type=click.Path(path_type=Path), default=None, envvar="FRAUDLAB_AIRFLOW_HOME",
                     help="AIRFLOW_HOME: metadata DB, logs, generated password, pid [default: ~/.cache/fraudlab/"
                          "airflow; env FRAUDLAB_AIRFLOW_HOME]."),
        click.option("--venv", type=click.Path(path_type=Path), default=None, envvar="FRAUDLAB_AIRFLOW_VENV",
                     help="The Airflow venv [default: .venv-airflow at the repository root; env "
                          "FRAUDLAB_AIRFLOW_VENV]."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _settings(port: int, home: Path | None, venv: Path | None) -> Any:
    from fraudlab.infra.airflow import AirflowSettings

    return AirflowSettings(port=port, home=home, venv=venv, cache_dir=config.cache_root(os.environ))


@click.group()
def airflow() -> None:
    """Run Airflow standalone locally: the continuous-training DAG, its runs and their logs in a UI."""


@airflow.command("up")
@_airflow_options
def airflow_up(port: int, home: Path | None, venv: Path | None) -> None:
    """Start Airflow (or reuse the one running) and wait until it is healthy; print the UI's URL and login."""
    from fraudlab.infra.airflow import start_airflow

    status = start_airflow(_settings(port, home, venv), announce=lambda line: click.echo(line, err=True))
    click.echo(status.describe())
    click.echo(f"DAG {config.AIRFLOW_DAG_ID}: paused until you unpause or trigger it in the UI; "
               "`fraudlab airflow down` stops everything.")


@airflow.command("down")
@_airflow_options
@click.option("--purge", is_flag=True, help="Also delete the home: metadata DB (every run's history), logs, password.")
def airflow_down(port: int, home: Path | None, venv: Path | None, purge: bool) -> None:
    """Stop Airflow and all its components and wait until every one has exited."""
    from fraudlab.infra.airflow import stop_airflow

    stopped = stop_airflow(_settings(port, home, venv), purge=purge)
    state = "stopped" if stopped else "was not running"
    click.echo(f"Airflow on port {port}: {state}{' (home purged)' if purge else ''}")


@airflow.command("status")
@_airflow_options
def airflow_status(port: int, home: Path | None, venv: Path | None) -> None:
    """Say whether Airflow runs; exit 0 when it does, 3 when it does not."""
    from fraudlab.infra.airflow import airflow_status as status_of

    status = status_of(_settings(port, home, venv))
    click.echo(status.describe())
    sys.exit(0 if status.running else 3)
