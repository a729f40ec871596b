"""The ``fraudlab`` command line: each command parses flags and calls one library function.

This is the only module that reads the environment (through click's
``envvar``): the library itself takes explicit arguments.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import click

from fraudlab import __version__
from fraudlab.broker import DEFAULT_CONTROLLER_PORT, DEFAULT_HEAP, DEFAULT_PORT, KAFKA_VERSION, BrokerSettings
from fraudlab.exceptions import FraudlabError

__all__ = ["cli", "main"]


def _broker_options(command: click.Command) -> click.Command:
    """The flags that locate a local broker, shared by every ``broker`` subcommand and ``demo``."""
    options = [
        click.option("--port", type=int, default=DEFAULT_PORT, show_default=True, envvar="FRAUDLAB_BROKER_PORT",
                     help="Client listener port of the local broker [env FRAUDLAB_BROKER_PORT]."),
        click.option("--controller-port", type=int, default=DEFAULT_CONTROLLER_PORT, show_default=True,
                     envvar="FRAUDLAB_CONTROLLER_PORT", help="KRaft controller port [env FRAUDLAB_CONTROLLER_PORT]."),
        click.option("--heap", default=DEFAULT_HEAP, show_default=True, envvar="FRAUDLAB_BROKER_HEAP",
                     help="JVM heap of the broker [env FRAUDLAB_BROKER_HEAP]."),
        click.option("--kafka-version", default=KAFKA_VERSION, show_default=True, envvar="FRAUDLAB_KAFKA_VERSION",
                     help="Apache Kafka release resolved from Maven Central [env FRAUDLAB_KAFKA_VERSION]."),
        click.option("--state-dir", type=click.Path(path_type=Path), default=None, envvar="FRAUDLAB_BROKER_DIR",
                     help="Config, data and logs [default: ~/.cache/fraudlab/broker-PORT; env FRAUDLAB_BROKER_DIR]."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _settings(port: int, controller_port: int, heap: str, kafka_version: str, state_dir: Path | None) -> BrokerSettings:
    return BrokerSettings(
        port=port, controller_port=controller_port, heap=heap, kafka_version=kafka_version, state_dir=state_dir
    )


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
        from fraudlab.kafka import LIBRDKAFKA_LOGGER

        LIBRDKAFKA_LOGGER.setLevel(logging.DEBUG)


@cli.group()
def broker() -> None:
    """Run a real local Apache Kafka broker (single-node KRaft) from jars cached by Maven."""


@broker.command("up")
@_broker_options
def broker_up(**flags: object) -> None:
    """Start the broker (or reuse the one running) and wait until it serves requests."""
    from fraudlab.broker import start_broker

    click.echo(start_broker(_settings(**flags)).describe())  # type: ignore[arg-type]


@broker.command("down")
@_broker_options
@click.option("--purge", is_flag=True, help="Also delete the broker's data, logs and config.")
def broker_down(purge: bool, **flags: object) -> None:
    """Stop the broker and wait until its JVM has exited."""
    from fraudlab.broker import stop_broker

    settings = _settings(**flags)  # type: ignore[arg-type]
    stopped = stop_broker(settings, purge=purge)
    state = "stopped" if stopped else "was not running"
    click.echo(f"Kafka broker at {settings.bootstrap}: {state}{' (state purged)' if purge else ''}")


@broker.command("status")
@_broker_options
def broker_status(**flags: object) -> None:
    """Say whether the broker runs; exit 0 when it does, 3 when it does not."""
    from fraudlab.broker import broker_status as status_of

    status = status_of(_settings(**flags))  # type: ignore[arg-type]
    click.echo(status.describe())
    sys.exit(0 if status.running else 3)


@broker.command("fetch")
@_broker_options
def broker_fetch(**flags: object) -> None:
    """Resolve the broker jars from Maven Central into the cache (done once; later calls reuse them)."""
    from fraudlab.broker import resolve_jars

    libs = resolve_jars(_settings(**flags))  # type: ignore[arg-type]
    click.echo(f"Kafka jars ready: {libs} ({len(list(libs.glob('*.jar')))} jars)")


@cli.command("demo")
@_broker_options
@click.option("--bootstrap", envvar="KAFKA_BROKER", default=None,
              help="Use this Kafka instead of the local broker [env KAFKA_BROKER].")
@click.option("--count", type=click.IntRange(1, 10_000_000), default=20_000, show_default=True,
              help="How many transactions to stream through the service and read back.")
@click.option("--rate", default="max", show_default=True, help="Transactions per second, or 'max'.")
@click.option("--users", type=click.IntRange(min=1), default=1000, show_default=True, help="Size of the user_id pool.")
@click.option("--topic", default="raw_transactions", show_default=True, help="Kafka topic.")
def demo(bootstrap: str | None, count: int, rate: str, users: int, topic: str, **flags: object) -> None:
    """The pipeline: local Kafka, the gRPC ingestion service, the producer streaming, the consumer's summary."""
    from fraudlab.demo import run_demo

    run_demo(_settings(**flags), bootstrap=bootstrap, count=count, rate=_rate(rate),  # type: ignore[arg-type]
             users=users, topic=topic, echo=click.echo, progress=True)


#: Where ``fraudlab fit`` writes without ``-o``: the current directory, never the pre-trained model's place.
DEFAULT_FIT_OUTPUT = "gaussian_copula.npz"


def _summary(what: str, rows: int, seconds: float) -> str:
    return f"{what}: {rows:,} rows in {seconds:.1f} s ({rows / max(seconds, 1e-9):,.0f} rows/s)"


@cli.command("fit")
@click.option("--source", default="simulator", show_default=True,
              help="'simulator' (fraudlab's PaySim simulator), 'reference' (bundled real rows) or a PaySim file.")
@click.option("--rows", type=click.IntRange(min=1), default=2_000_000, show_default=True,
              help="Training rows (simulated, or drawn at random from the file).")
@click.option("--seed", type=int, default=7, show_default=True, help="Seed of the data draw and the fit.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=DEFAULT_FIT_OUTPUT,
              show_default=True, help="Model file (.npz; the manifest goes beside it); the default is in the current "
              "directory, so the pre-trained model is replaced only when its path is given here.")
@click.option("--evaluate/--no-evaluate", default=True, show_default=True,
              help="Score the model against held-out real rows and keep the figures in its manifest.")
def fit(source: str, rows: int, seed: int, output: Path, evaluate: bool) -> None:
    """Fit the transaction synthesizer (SDV Gaussian copula per segment) and save it with its manifest."""
    import time

    from fraudlab.synth import TransactionSynthesizer, load_training_data, model_metrics

    if output.suffix != ".npz":
        raise click.BadParameter(f"{str(output)!r} must end in .npz (the manifest is written beside it)",
                                 param_hint="--output")
    training = load_training_data(source, rows=rows, seed=seed)
    started = time.perf_counter()
    model = TransactionSynthesizer(seed=seed).fit(training.table, weights=training.weights,
                                                  source=training.description)
    seconds = time.perf_counter() - started
    metrics = model_metrics(model, seed=seed) if evaluate else {}
    manifest = model.save(output, metrics=metrics)
    click.echo(_summary("Fitted", len(training.table), seconds)
               + f"; model {output.resolve()} ({output.stat().st_size / 1024:.0f} KiB), manifest {manifest.resolve()}")


@cli.command("sample")
@click.option("--model", "model_path", type=click.Path(path_type=Path), default=None,
              help="Model file [default: the pre-trained fraudlab/pretrained/gaussian_copula_20L.npz].")
@click.option("--rows", type=click.IntRange(min=0), default=100_000, show_default=True, help="Rows to sample.")
@click.option("--seed", type=int, default=None, help="Seed for a reproducible sample.")
@click.option("--fraud-rate", type=click.FloatRange(0.0, 1.0), default=None,
              help="Share of fraud rows [default: the rate the model learned].")
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True,
              help="Output file: .parquet, .csv or .csv.gz.")
def sample(model_path: Path | None, rows: int, seed: int | None, fraud_rate: float | None, output: Path) -> None:
    """Sample synthetic transactions from a fitted model into a file."""
    import time

    from fraudlab.data import check_output_path, write_transactions
    from fraudlab.synth import DEFAULT_MODEL, TransactionSynthesizer, sample_in_chunks

    check_output_path(output)
    model = TransactionSynthesizer.load(model_path or DEFAULT_MODEL)
    started = time.perf_counter()
    table = sample_in_chunks(model, rows, seed=seed, fraud_rate=fraud_rate)
    seconds = time.perf_counter() - started
    write_transactions(table, output)
    click.echo(_summary("Sampled", len(table), seconds)
               + f"; {int(table['is_fraud'].sum()):,} frauds; written to {output}")


def _rate(value: str) -> float | None:
    """``--rate``: a positive number of transactions per second, or ``max``."""
    if value.strip().lower() == "max":
        return None
    try:
        rate = float(value)
    except ValueError:
        rate = -1.0
    if not rate > 0:
        raise click.BadParameter(f"{value!r} is neither a positive number of transactions/s nor 'max'.")
    return rate


@cli.command("serve")
@click.option("--bootstrap", envvar="KAFKA_BROKER", default="127.0.0.1:9092", show_default=True,
              help="Kafka bootstrap servers [env KAFKA_BROKER].")
@click.option("--topic", default="raw_transactions", show_default=True, envvar="FRAUDLAB_TOPIC",
              help="Kafka topic [env FRAUDLAB_TOPIC].")
@click.option("--partitions", type=click.IntRange(min=1), default=3, show_default=True,
              help="Partitions of the topic when it has to be created.")
@click.option("--host", default="127.0.0.1", show_default=True, envvar="FRAUDLAB_SERVICE_HOST",
              help="Interface to bind [env FRAUDLAB_SERVICE_HOST]; 0.0.0.0 exposes the server.")
@click.option("--port", type=click.IntRange(0, 65535), default=50051, show_default=True,
              envvar="FRAUDLAB_SERVICE_PORT", help="gRPC port [env FRAUDLAB_SERVICE_PORT].")
@click.option("--tls-cert", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              envvar="FRAUDLAB_TLS_CERT", help="PEM certificate; with --tls-key turns TLS on [env FRAUDLAB_TLS_CERT].")
@click.option("--tls-key", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              envvar="FRAUDLAB_TLS_KEY", help="PEM private key [env FRAUDLAB_TLS_KEY].")
@click.option("--token", "tokens", multiple=True, envvar="FRAUDLAB_TOKENS",
              help="Accepted bearer token, repeatable [env FRAUDLAB_TOKENS, space-separated]; none: no auth.")
@click.option("--rate-limit", type=click.FloatRange(min=0), default=1000.0, show_default=True,
              help="Transactions per second allowed per user_id (token bucket); 0 disables.")
@click.option("--rate-burst", type=click.FloatRange(min=1), default=2000.0, show_default=True,
              help="Token-bucket depth per user_id.")
@click.option("--dedup-window", type=click.FloatRange(min=0, min_open=True), default=300.0, show_default=True,
              help="Seconds a published transaction_id is remembered to drop repeats.")
@click.option("--dedup-capacity", type=click.IntRange(min=1), default=1_000_000, show_default=True,
              help="At most this many remembered transaction_ids (about 170 MB per million).")
@click.option("--max-message-bytes", type=click.IntRange(min=4096), default=16 * 1024 * 1024, show_default=True,
              help="Largest request or response.")
@click.option("--ack-timeout", type=click.FloatRange(min=0, min_open=True), default=10.0, show_default=True,
              help="Seconds to wait for Kafka's confirmation before answering UNAVAILABLE.")
@click.option("--grace", type=click.FloatRange(min=0), default=10.0, show_default=True,
              help="Seconds in-flight calls get to finish on SIGTERM/SIGINT.")
def serve(bootstrap: str, topic: str, partitions: int, host: str, port: int, tls_cert: Path | None,
          tls_key: Path | None, tokens: tuple[str, ...], **limits: float) -> None:
    """Run the gRPC ingestion service (FraudIngestion) in front of Kafka until SIGTERM/SIGINT."""
    from fraudlab.service import ServiceSettings, run_server

    settings = ServiceSettings(bootstrap=bootstrap, topic=topic, partitions=partitions, host=host, port=port,
                               tls_cert=tls_cert, tls_key=tls_key, tokens=tokens, **limits)  # type: ignore[arg-type]
    run_server(settings, echo=lambda line: click.echo(line, err=True))


@cli.command("health")
@click.option("--target", default="127.0.0.1:50051", show_default=True, envvar="FRAUDLAB_TARGET",
              help="host:port of the ingestion server [env FRAUDLAB_TARGET].")
@click.option("--service", default="", help="Service to ask about [default: the whole server].")
@click.option("--tls-ca", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              envvar="FRAUDLAB_TLS_CA", help="PEM certificate to trust when the server uses TLS [env FRAUDLAB_TLS_CA].")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=5.0, show_default=True,
              help="Seconds to wait for the answer.")
def health(target: str, service: str, tls_ca: Path | None, timeout: float) -> None:
    """Ask the server's standard health service; exit 0 when it is SERVING, 1 otherwise."""
    from fraudlab.service import check_health

    status = check_health(target, service=service, tls_ca=tls_ca, timeout=timeout)
    click.echo(f"{target}: {status}")
    sys.exit(0 if status == "SERVING" else 1)


@cli.command("produce")
@click.option("--target", default="127.0.0.1:50051", show_default=True, envvar="FRAUDLAB_TARGET",
              help="host:port of the ingestion server [env FRAUDLAB_TARGET].")
@click.option("--rate", default="max", show_default=True, help="Transactions per second, or 'max'.")
@click.option("--count", type=click.IntRange(min=0), default=None,
              help="Transactions to send [default: until Ctrl-C or SIGTERM].")
@click.option("--users", type=click.IntRange(min=1), default=1000, show_default=True, help="Size of the user_id pool.")
@click.option("--model", "model_path", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Saved synthesizer to sample from "
              "[default: the pre-trained fraudlab/pretrained/gaussian_copula_20L.npz].")
@click.option("--batch-size", type=click.IntRange(min=1), default=1000, show_default=True,
              help="Transactions per streamed batch at full speed.")
@click.option("--window", type=click.IntRange(min=1), default=8, show_default=True,
              help="Batches in flight without an answer.")
@click.option("--seed", type=int, default=None, help="Seed of the sampled rows and users.")
@click.option("--token", envvar="FRAUDLAB_TOKEN", default=None, help="Bearer token [env FRAUDLAB_TOKEN].")
@click.option("--tls-ca", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              envvar="FRAUDLAB_TLS_CA", help="PEM certificate to trust when the server uses TLS [env FRAUDLAB_TLS_CA].")
@click.option("--retry-timeout", type=click.FloatRange(min=0, min_open=True), default=120.0, show_default=True,
              help="Give up after this many seconds without an acknowledgement.")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Show a progress bar.")
def produce(rate: str, model_path: Path | None, progress: bool, **flags: object) -> None:
    """Stream sampled transactions through the ingestion service, resending whatever was not acknowledged."""
    import gc

    from fraudlab.producer import ProducerSettings, default_source, model_source
    from fraudlab.producer import produce as run_producer

    settings = ProducerSettings(rate=_rate(rate), **flags)  # type: ignore[arg-type]
    source = model_source(model_path) if model_path is not None else default_source()
    gc.collect()
    gc.freeze()  # this process only produces: keep full collections off the loaded libraries and the ack latency
    summary = run_producer(settings, source, progress=progress, handle_signals=True)
    click.echo(summary.describe())


@cli.command("consume")
@click.option("--bootstrap", envvar="KAFKA_BROKER", default="127.0.0.1:9092", show_default=True,
              help="Kafka bootstrap servers [env KAFKA_BROKER].")
@click.option("--topic", default="raw_transactions", show_default=True, envvar="FRAUDLAB_TOPIC",
              help="Kafka topic [env FRAUDLAB_TOPIC].")
@click.option("--max", "max_messages", type=click.IntRange(min=1), default=20, show_default=True,
              help="Stop after this many transactions.")
@click.option("--from-beginning", is_flag=True, help="Read from the oldest record instead of only new ones.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=10.0, show_default=True,
              help="Stop after this many seconds without a new record.")
def consume(bootstrap: str, topic: str, max_messages: int, from_beginning: bool, timeout: float) -> None:
    """Read transactions from Kafka, decode the protobuf records and print them as a table."""
    from fraudlab.consumer import format_transactions, read_transactions_frame

    frame = read_transactions_frame(bootstrap, topic=topic, max_messages=max_messages,
                                    from_beginning=from_beginning, timeout=timeout)
    click.echo(format_transactions(frame))
    click.echo(f"{len(frame)} transaction(s) from {topic!r} at {bootstrap}")


@cli.command("evaluate")
@click.option("--real", default="reference", show_default=True,
              help="Real rows: 'reference' (the bundled PaySim rows) or a PaySim file (.csv, .csv.gz, .parquet).")
@click.option("--synthetic", required=True,
              help="Synthetic transactions file, or 'sdv-baseline' to fit and evaluate SDV's default GaussianCopula.")
@click.option("-o", "--output", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Directory for report.md, result.json and the PNG figures.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the subsamples, the classifiers and the baseline's sample.")
@click.option("--split-seed", type=int, default=0, show_default=True,
              help="Seed of the real train/test split: the one the synthesizer's real training rows came from.")
@click.option("--baseline", is_flag=True, help="Also evaluate SDV's default GaussianCopula, shown beside.")
@click.option("--baseline-rows", type=click.IntRange(min=1), default=None,
              help="Rows sampled from SDV's model [default: as many as --synthetic, 200,000 for sdv-baseline].")
def evaluate_command(real: str, synthetic: str, output: Path, seed: int, split_seed: int, baseline: bool,
                     baseline_rows: int | None) -> None:
    """Compare synthetic with real rows (fidelity, accounting rules, TSTR utility, privacy) and write a report."""
    from fraudlab.report import evaluate_files

    evaluate_files(real, synthetic, output, seed=seed, split_seed=split_seed, baseline=baseline,
                   baseline_rows=baseline_rows, echo=click.echo)


@cli.command("simulate")
@click.option("--rows", type=click.IntRange(min=1), default=2_000_000, show_default=True, help="Rows to simulate.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Seed: the same seed gives the same rows.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Output file: .parquet, .csv or .csv.gz.")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Show a progress bar.")
def simulate_command(rows: int, seed: int, output: Path, progress: bool) -> None:
    """Simulate PaySim transactions (fraudlab's vectorised PaySim, calibrated to the real rows) into a file."""
    import time

    from fraudlab.data import check_output_path, write_transactions
    from fraudlab.paysim import simulate

    check_output_path(output)
    started = time.perf_counter()
    table = simulate(rows, seed=seed, progress=progress)
    seconds = time.perf_counter() - started
    write_transactions(table, output)
    click.echo(_summary("Simulated", len(table), seconds)
               + f"; {int(table['is_fraud'].sum()):,} frauds; written to {output}")


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
