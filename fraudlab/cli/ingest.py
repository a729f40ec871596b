"""``fraudlab serve | health | produce``: the gRPC ingestion service and its load-generating client."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from fraudlab import config
from fraudlab.cli.options import (
    bootstrap_option,
    parse_rate,
    parse_speed,
    target_option,
    tls_ca_option,
    topic_option,
)

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["health", "produce", "serve"]


@click.command("serve")
@bootstrap_option()
@topic_option()
@click.option("--partitions", type=click.IntRange(min=1), default=config.TOPIC_PARTITIONS, show_default=True,
              help="Partitions of the topic when it has to be created.")
@click.option("--host", default=config.SERVICE_HOST, show_default=True, envvar="FRAUDLAB_SERVICE_HOST",
              help="Interface to bind [env FRAUDLAB_SERVICE_HOST]; 0.0.0.0 exposes the server.")
@click.option("--port", type=click.IntRange(0, 65535), default=config.SERVICE_PORT, show_default=True,
              envvar="FRAUDLAB_SERVICE_PORT", help="gRPC port [env FRAUDLAB_SERVICE_PORT].")
@click.option("--tls-cert", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              envvar="FRAUDLAB_TLS_CERT", help="PEM certificate; with --tls-key turns TLS on [env FRAUDLAB_TLS_CERT].")
@click.option("--tls-key", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              envvar="FRAUDLAB_TLS_KEY", help="PEM private key [env FRAUDLAB_TLS_KEY].")
@click.option("--token", "tokens", multiple=True, envvar="FRAUDLAB_TOKENS",
              help="Accepted bearer token, repeatable [env FRAUDLAB_TOKENS, space-separated]; none: no auth.")
@click.option("--rate-limit", type=click.FloatRange(min=0), default=config.RATE_LIMIT, show_default=True,
              help="Transactions per second allowed per user_id (token bucket); 0 disables.")
@click.option("--rate-burst", type=click.FloatRange(min=1), default=config.RATE_BURST, show_default=True,
              help="Token-bucket depth per user_id.")
@click.option("--dedup-window", type=click.FloatRange(min=0, min_open=True), default=config.DEDUP_WINDOW_S,
              show_default=True, help="Seconds a published transaction_id is remembered to drop repeats.")
@click.option("--dedup-capacity", type=click.IntRange(min=1), default=config.DEDUP_CAPACITY, show_default=True,
              help="At most this many remembered transaction_ids (about 170 MB per million).")
@click.option("--max-message-bytes", type=click.IntRange(min=4096), default=config.MAX_MESSAGE_BYTES,
              show_default=True, help="Largest request or response.")
@click.option("--ack-timeout", type=click.FloatRange(min=0, min_open=True), default=config.ACK_TIMEOUT_S,
              show_default=True, help="Seconds to wait for Kafka's confirmation before answering UNAVAILABLE.")
@click.option("--grace", type=click.FloatRange(min=0), default=config.SERVICE_GRACE_S, show_default=True,
              help="Seconds in-flight calls get to finish on SIGTERM/SIGINT.")
@click.option("--redis", "redis_url", default=None, envvar="REDIS_URL",
              help="redis://[:password@]host:port/db holding dedup and rate limits shared by all workers "
              "[env REDIS_URL; default: this process's memory].")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Server processes on one port (SO_REUSEPORT), supervised; more than 1 needs --redis.")
@click.option("--engine", type=click.Choice(["python", "go"]), default="python", show_default=True,
              envvar="FRAUDLAB_ENGINE", help="The Python server, or the Go gateway (built on first use; same "
              "contract, more unary calls per second) [env FRAUDLAB_ENGINE].")
def serve(bootstrap: str, topic: str, partitions: int, host: str, port: int, tls_cert: Path | None,
          tls_key: Path | None, tokens: tuple[str, ...], redis_url: str | None, workers: int, engine: str,
          **limits: float) -> None:
    """Run the gRPC ingestion service (FraudIngestion) in front of Kafka until SIGTERM/SIGINT."""
    from fraudlab.ingest.service import ServiceSettings, run_server

    if workers > 1 and not redis_url:
        raise click.UsageError(f"--workers {workers} needs --redis (or REDIS_URL): workers share dedup and rate "
                               "limits through Redis; one process's memory cannot be shared.")
    settings = ServiceSettings(bootstrap=bootstrap, topic=topic, partitions=partitions, host=host, port=port,
                               tls_cert=tls_cert, tls_key=tls_key, tokens=tokens, redis_url=redis_url,
                               **limits)  # type: ignore[arg-type]
    if engine == "go":
        from fraudlab.ingest.gateway import build_gateway

        build_gateway()
    if workers > 1:
        from fraudlab.ingest.workers import supervise

        supervise(settings, workers, engine=engine, echo=_echo_err)
    elif engine == "go":
        from fraudlab.ingest.gateway import gateway_command, gateway_environment

        command = gateway_command(settings)
        os.execve(command[0], command, gateway_environment(settings))
    else:
        run_server(settings, echo=_echo_err)


def _echo_err(line: str) -> None:
    click.echo(line, err=True)


@click.command("health")
@target_option()
@click.option("--service", default="", help="Service to ask about [default: the whole server].")
@tls_ca_option()
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=5.0, show_default=True,
              help="Seconds to wait for the answer.")
def health(target: str, service: str, tls_ca: Path | None, timeout: float) -> None:
    """Ask the server's standard health service; exit 0 when it is SERVING, 1 otherwise."""
    from fraudlab.ingest.channel import check_health

    status = check_health(target, service=service, tls_ca=tls_ca, timeout=timeout)
    click.echo(f"{target}: {status}")
    sys.exit(0 if status == "SERVING" else 1)


@click.command("produce")
@target_option()
@click.option("--source", type=click.Choice(["accounts", "model", "reference"]), default="accounts", show_default=True,
              help="accounts: an account population's event-time stream (histories, destinations, IP addresses, "
              "fraud scenarios; needs `fraudlab geoip fetch` once); model: independent rows sampled from the "
              "synthesizer; reference: the bundled real rows resampled.")
@click.option("--stream", "stream_path", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Replay an account stream written by `fraudlab generate` instead of generating one.")
@click.option("--accounts", type=click.IntRange(min=2), default=config.ACCOUNTS, show_default=True,
              help="Accounts of the generated population (--source accounts).")
@click.option("--days", type=click.FloatRange(min=0, min_open=True), default=config.ACCOUNT_DAYS, show_default=True,
              help="Simulated days of the generated stream (--source accounts).")
@click.option("--speed", default=str(int(config.REPLAY_SPEED)), show_default=True,
              help="Simulated seconds per wall second when replaying an account stream, or 'max' (3600: one "
              "simulated hour a second).")
@click.option("--rate", default="max", show_default=True, help="Transactions per second at most, or 'max'.")
@click.option("--count", type=click.IntRange(min=0), default=None,
              help="Transactions to send [default: the whole account stream; other sources: until Ctrl-C].")
@click.option("--users", type=click.IntRange(min=1), default=config.PRODUCER_USERS, show_default=True,
              help="Size of the user_id pool (--source model or reference).")
@click.option("--model", "model_path", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Saved synthesizer that generates the values "
              "[default: the pre-trained fraudlab/pretrained/gaussian_copula_20L.npz].")
@click.option("--batch-size", type=click.IntRange(min=1), default=config.PRODUCER_BATCH_SIZE, show_default=True,
              help="Transactions per streamed batch at full speed.")
@click.option("--window", type=click.IntRange(min=1), default=config.PRODUCER_WINDOW, show_default=True,
              help="Batches in flight without an answer.")
@click.option("--seed", type=int, default=None,
              help=f"Seed of the population (default {config.ACCOUNT_SEED}) or of the sampled rows and users.")
@click.option("--token", envvar="FRAUDLAB_TOKEN", default=None, help="Bearer token [env FRAUDLAB_TOKEN].")
@tls_ca_option()
@click.option("--retry-timeout", type=click.FloatRange(min=0, min_open=True),
              default=config.PRODUCER_RETRY_TIMEOUT_S, show_default=True,
              help="Give up after this many seconds without an acknowledgement.")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Show a progress bar.")
def produce(source: str, stream_path: Path | None, accounts: int, days: float, speed: str, rate: str,
            model_path: Path | None, progress: bool, **flags: object) -> None:
    """Stream transactions through the ingestion service, resending whatever was not acknowledged.

    By default an account population's event-time stream is generated and replayed on a simulated clock.
    """
    import gc

    from fraudlab.ingest.client import ProducerSettings, ReferenceSource, default_source, model_source
    from fraudlab.ingest.client import produce as run_producer

    if stream_path is not None and source != "accounts":
        raise click.UsageError(f"--stream replays an account stream; it cannot be combined with --source {source}.")
    settings = ProducerSettings(rate=parse_rate(rate), speed=parse_speed(speed), **flags)  # type: ignore[arg-type]
    rows = None
    stream = None
    if source == "accounts":
        stream = _account_stream(stream_path, accounts, days, settings.seed, model_path, progress)
    elif source == "reference":
        rows = ReferenceSource()
    else:
        rows = model_source(model_path) if model_path is not None else default_source()
    gc.collect()
    gc.freeze()  # this process only produces: keep full collections off the loaded libraries and the ack latency
    summary = run_producer(settings, rows, stream=stream, progress=progress, handle_signals=True)
    click.echo(summary.describe())


def _account_stream(path: Path | None, accounts: int, days: float, seed: int | None, model_path: Path | None,
                    progress: bool) -> pd.DataFrame:
    """The stream to replay: read from ``path``, or generated (population from the cached GeoIP address space)."""
    from fraudlab.generate.accounts import StreamSettings, generate_stream, read_stream

    if path is not None:
        return read_stream(path)
    from fraudlab.enrich.geoip import AddressSpace
    from fraudlab.generate.synth import TransactionSynthesizer

    settings = StreamSettings(accounts=accounts, days=days, seed=config.ACCOUNT_SEED if seed is None else seed)
    model = TransactionSynthesizer.load(model_path) if model_path is not None else None
    space = AddressSpace.load(config.cache_root(os.environ))
    return generate_stream(settings, space=space, model=model, progress=progress)
