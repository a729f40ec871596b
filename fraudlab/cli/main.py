"""The ``fraudlab`` command line: each command parses flags and calls one library function.

The command line is the only part of fraudlab that reads the environment
(through click's ``envvar``, and :mod:`fraudlab.cli.options` for the cache
directory and ``JAVA_HOME``): the library takes explicit arguments. Each
command group lives in a module of its own; this one is the root group, the
logging set-up and the entry point that turns errors into one line.
"""

from __future__ import annotations

import logging
import os
import sys

import click

from fraudlab import __version__
from fraudlab.cli.airflow import airflow
from fraudlab.cli.broker import broker
from fraudlab.cli.demo import demo
from fraudlab.cli.detect import detect, promote, score, train
from fraudlab.cli.evaluate import evaluate_command
from fraudlab.cli.flink import flink
from fraudlab.cli.gateway import gateway
from fraudlab.cli.generate import fit, generate_command, sample, simulate_command
from fraudlab.cli.geoip import geoip
from fraudlab.cli.ingest import health, produce, serve
from fraudlab.cli.kafka import consume
from fraudlab.cli.mlflow import mlflow
from fraudlab.cli.pipeline import pipeline
from fraudlab.cli.redis import redis
from fraudlab.exceptions import FraudlabError

__all__ = ["cli", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="fraudlab")
@click.option("--debug", is_flag=True, envvar="FRAUDLAB_DEBUG",
              help="Show the full traceback of an error, and Kafka client logs [env FRAUDLAB_DEBUG=1].")
def cli(debug: bool) -> None:
    """fraudlab: synthetic PaySim transactions, a gRPC ingestion service and a real Kafka broker."""
    _configure_logging(debug)


class _ProgressSafeHandler(logging.Handler):
    """Write log records to stderr through tqdm, so a line never tears a progress bar apart."""

    def emit(self, record: logging.LogRecord) -> None:
        from tqdm import tqdm

        try:
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # logging must never raise into the caller
            self.handleError(record)


def _configure_logging(debug: bool) -> None:
    """fraudlab's warnings on stderr (librdkafka's from ERROR up, see ``fraudlab.kafka``); everything with --debug."""
    handler = _ProgressSafeHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    package = logging.getLogger("fraudlab")
    package.handlers[:] = [handler]
    package.propagate = False
    package.setLevel(logging.DEBUG if debug else logging.WARNING)
    if debug:
        from fraudlab.kafka.connection import LIBRDKAFKA_LOGGER

        LIBRDKAFKA_LOGGER.setLevel(logging.DEBUG)


for _command in (broker, redis, mlflow, flink, demo, fit, sample, simulate_command, generate_command, geoip, serve,
                 health, produce, consume, evaluate_command, train, score, promote, detect, pipeline, airflow, gateway):
    cli.add_command(_command)


def main(args: list[str] | None = None) -> None:
    """Console-script entry point: errors become one line on stderr and exit code 1 (2 for bad usage).

    With ``--debug`` or ``FRAUDLAB_DEBUG=1`` the traceback is shown as well.
    """
    args = sys.argv[1:] if args is None else args
    try:
        cli.main(args, prog_name="fraudlab", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except Exception as exc:  # the one place every error reaches the user
        message = _one_line(exc)
        if message is None:
            raise
        if _debugging(args):
            import traceback

            traceback.print_exc()
        click.echo(f"error: {message}", err=True)
        sys.exit(1)


def _debugging(args: list[str]) -> bool:
    return "--debug" in args or os.environ.get("FRAUDLAB_DEBUG", "").lower() in {"1", "true", "yes"}


def _one_line(exc: Exception) -> str | None:
    """The message a user sees for an error fraudlab knows how to explain; None for a bug (shown in full)."""
    from confluent_kafka import KafkaError, KafkaException

    if isinstance(exc, FraudlabError):
        return str(exc)
    if isinstance(exc, KafkaException):
        error = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
        detail = error.str() if error is not None else str(exc)
        return (f"Kafka refused the request: {detail}. Check the broker (`fraudlab broker status`, "
                "--bootstrap) and try again; --debug shows the traceback.")
    if _is_grpc_error(exc):
        return (f"gRPC call failed: {exc.code().name}: {exc.details()}. Check that the ingestion service "  # type: ignore[attr-defined]
                "is running (`fraudlab health`, --target); --debug shows the traceback.")
    if isinstance(exc, ValueError | OSError):
        return f"{exc}; --debug shows the traceback."
    return None


def _is_grpc_error(exc: Exception) -> bool:
    grpc = sys.modules.get("grpc")  # only commands that used gRPC can raise its errors
    return grpc is not None and isinstance(exc, grpc.RpcError) and hasattr(exc, "code")
