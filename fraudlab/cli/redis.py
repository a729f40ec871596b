"""``fraudlab redis up | down | status``: the local Redis that ingestion workers share."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click

from fraudlab import config

__all__ = ["redis"]


def _redis_options(command: click.Command) -> click.Command:
    """The flags naming one local Redis, shared by up, down and status."""
    options = [
        click.option("--port", type=click.IntRange(1, 65535), default=config.REDIS_PORT, show_default=True,
                     envvar="FRAUDLAB_REDIS_PORT", help="TCP port [env FRAUDLAB_REDIS_PORT]."),
        click.option("--state-dir", type=click.Path(path_type=Path), default=None, envvar="FRAUDLAB_REDIS_DIR",
                     help="AOF, log, pid [default: ~/.cache/fraudlab/redis-PORT; env FRAUDLAB_REDIS_DIR]."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _settings(port: int, state_dir: Path | None) -> Any:
    from fraudlab.infra.redis import RedisSettings

    return RedisSettings(port=port, state_dir=state_dir, cache_dir=config.cache_root(os.environ))


@click.group()
def redis() -> None:
    """Run a real local Redis (the ingestion workers' shared dedup and rate-limit state)."""


@redis.command("up")
@_redis_options
def redis_up(port: int, state_dir: Path | None) -> None:
    """Start Redis (or reuse the one running) and wait until it answers PING; print its URL."""
    from fraudlab.infra.redis import start_redis

    settings = _settings(port, state_dir)
    click.echo(start_redis(settings).describe() + f"; --redis {settings.url}")


@redis.command("down")
@_redis_options
@click.option("--purge", is_flag=True, help="Also delete the append-only file and the log.")
def redis_down(port: int, state_dir: Path | None, purge: bool) -> None:
    """Stop Redis (SHUTDOWN flushes the append-only file) and wait until it has exited."""
    from fraudlab.infra.redis import stop_redis

    stopped = stop_redis(_settings(port, state_dir), purge=purge)
    state = "stopped" if stopped else "was not running"
    click.echo(f"Redis on port {port}: {state}{' (state purged)' if purge else ''}")


@redis.command("status")
@_redis_options
def redis_status(port: int, state_dir: Path | None) -> None:
    """Say whether Redis runs; exit 0 when it does, 3 when it does not."""
    from fraudlab.infra.redis import redis_status as status_of

    status = status_of(_settings(port, state_dir))
    click.echo(status.describe())
    sys.exit(0 if status.running else 3)
