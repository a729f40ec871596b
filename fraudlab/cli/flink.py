"""``fraudlab flink up | down | status | fetch``: the local standalone Flink cluster and its Kafka connector jar."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click

from fraudlab import config

__all__ = ["flink", "flink_settings"]


def _flink_options(command: click.Command) -> click.Command:
    """The flags naming one local Flink cluster, shared by every ``flink`` subcommand."""
    options = [
        click.option("--port", type=click.IntRange(1, 65535), default=config.FLINK_REST_PORT, show_default=True,
                     envvar="FRAUDLAB_FLINK_PORT",
                     help="Port of the REST API and web UI (what `flink run -m` names) [env FRAUDLAB_FLINK_PORT]."),
        click.option("--venv", type=click.Path(path_type=Path), default=None, envvar="FRAUDLAB_FLINK_VENV",
                     help="The Flink venv holding PyFlink [default: .venv-flink at the repository root, made by "
                          "`make flink-venv`; env FRAUDLAB_FLINK_VENV]."),
        click.option("--state-dir", type=click.Path(path_type=Path), default=None, envvar="FRAUDLAB_FLINK_DIR",
                     help="Config, logs, pid files, checkpoints [default: ~/.cache/fraudlab/flink/cluster-PORT; "
                          "env FRAUDLAB_FLINK_DIR]."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def flink_settings(port: int, venv: Path | None, state_dir: Path | None, **overrides: Any) -> Any:
    """The cluster the flags name, in the cache the environment names, run with ``JAVA_HOME``'s Java if set."""
    from fraudlab.infra.flink import FlinkSettings

    java_home = os.environ.get("JAVA_HOME")
    return FlinkSettings(rest_port=port, venv=venv, state_dir=state_dir, cache_dir=config.cache_root(os.environ),
                         java_home=Path(java_home) if java_home else None, **overrides)


@click.group()
def flink() -> None:
    """Run a real local Apache Flink cluster (a JobManager and a TaskManager) from the Flink venv's PyFlink."""


@flink.command("up")
@_flink_options
@click.option("--slots", type=click.IntRange(1), default=config.FLINK_TASK_SLOTS, show_default=True,
              envvar="FRAUDLAB_FLINK_SLOTS", help="Task slots of the TaskManager [env FRAUDLAB_FLINK_SLOTS].")
def flink_up(port: int, venv: Path | None, state_dir: Path | None, slots: int) -> None:
    """Start the cluster (or reuse the one running) and wait until its TaskManager is registered; print the UI's URL."""
    from fraudlab.infra.flink import start_flink_cluster

    status = start_flink_cluster(flink_settings(port, venv, state_dir, task_slots=slots),
                                 announce=lambda line: click.echo(line, err=True))
    click.echo(status.describe())


@flink.command("down")
@_flink_options
@click.option("--purge", is_flag=True, help="Also delete the cluster's config, logs and checkpoints.")
def flink_down(port: int, venv: Path | None, state_dir: Path | None, purge: bool) -> None:
    """Stop the TaskManagers and the JobManager and wait until every process of theirs has exited."""
    from fraudlab.infra.flink import stop_flink_cluster

    stopped = stop_flink_cluster(flink_settings(port, venv, state_dir), purge=purge)
    state = "stopped" if stopped else "was not running"
    click.echo(f"Flink cluster on port {port}: {state}{' (state purged)' if purge else ''}")


@flink.command("status")
@_flink_options
def flink_status(port: int, venv: Path | None, state_dir: Path | None) -> None:
    """Say whether the cluster runs (TaskManagers, slots, running jobs); exit 0 when it does, 3 when it does not."""
    from fraudlab.infra.flink import flink_status as status_of

    status = status_of(flink_settings(port, venv, state_dir))
    click.echo(status.describe())
    sys.exit(0 if status.running else 3)


@flink.command("fetch")
@_flink_options
def flink_fetch(port: int, venv: Path | None, state_dir: Path | None) -> None:
    """Resolve the Kafka SQL connector jar from Maven Central into the cache (once; later calls reuse it)."""
    from fraudlab.infra.flink import resolve_connector

    jar = resolve_connector(flink_settings(port, venv, state_dir))
    click.echo(f"Flink Kafka connector ready: {jar} ({jar.stat().st_size / 1e6:.1f} MB); jobs name it in pipeline.jars")
