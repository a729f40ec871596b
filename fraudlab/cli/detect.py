"""``fraudlab promote``: the detector's commands (training, scoring and the promotion gate of the MLflow registry)."""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from fraudlab import config

__all__ = ["promote", "resolve_tracking_uri", "tracking_uri_option"]

TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"


def tracking_uri_option() -> Any:
    """``--tracking-uri``: MLflow's own variable when not given, else the SQLite store ``fraudlab mlflow up`` serves."""
    return click.option(
        "--tracking-uri", default=None, envvar=TRACKING_URI_ENV,
        help=f"MLflow tracking URI, e.g. http://127.0.0.1:{config.MLFLOW_PORT} after `fraudlab mlflow up` [env "
             f"{TRACKING_URI_ENV}; default: sqlite:///~/.cache/fraudlab/{config.MLFLOW_DIR}/{config.MLFLOW_DB}, the "
             "store that server shows].")


def resolve_tracking_uri(value: str | None) -> str:
    """The flag's value, or the cache's SQLite store (the cache named by FRAUDLAB_CACHE_DIR / XDG_CACHE_HOME)."""
    from fraudlab.detect.registry import default_tracking_uri

    return value or default_tracking_uri(config.cache_root(os.environ))


@click.command("promote")
@click.option("--version", "version", type=click.IntRange(min=1), default=None,
              help="Model version to promote [default: the latest version of fraud-detector].")
@tracking_uri_option()
@click.option("--metric", default=config.MLFLOW_PROMOTION_METRIC, show_default=True,
              help="Run metric the candidate must not fall below the champion's on.")
@click.option("--force", is_flag=True, help="Promote even when the candidate's metric is below the champion's.")
def promote(version: int | None, tracking_uri: str | None, metric: str, force: bool) -> None:
    """Make a registered detector version the champion, unless it scores below the current one; exit 1 if refused."""
    from fraudlab.detect.registry import promote as promote_version

    decision = promote_version(version, tracking_uri=resolve_tracking_uri(tracking_uri), metric=metric, force=force)
    click.echo(decision.describe())
    if not decision.promoted:
        sys.exit(1)
