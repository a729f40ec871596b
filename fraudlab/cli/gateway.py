"""``fraudlab gateway build``: the Go ingestion gateway (``fraudlab serve --engine go`` runs it)."""

from __future__ import annotations

import click

__all__ = ["gateway"]


@click.group()
def gateway() -> None:
    """The Go ingestion gateway: the same contract as `fraudlab serve`, for unary throughput."""


@gateway.command("build")
def build() -> None:
    """Build gateway/bin/fraudlab-gateway with the Go toolchain (incremental; modules from the Go proxy)."""
    from fraudlab.ingest.gateway import build_gateway

    click.echo(build_gateway())
