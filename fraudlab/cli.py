"""The ``fraudlab`` command line: each command parses flags and calls one library function.

This is the only module that reads the environment (through click's
``envvar``): the library itself takes explicit arguments.
"""

from __future__ import annotations

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
def cli() -> None:
    """fraudlab: synthetic PaySim transactions, a gRPC ingestion service and a real Kafka broker."""


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
@click.option("--count", type=click.IntRange(1, 10_000), default=5, show_default=True,
              help="How many transactions to publish and read back.")
@click.option("--topic", default="raw_transactions", show_default=True, help="Kafka topic.")
def demo(bootstrap: str | None, count: int, topic: str, **flags: object) -> None:
    """Publish real PaySim transactions to Kafka, read them back and print them."""
    from fraudlab.demo import run_demo

    run_demo(_settings(**flags), bootstrap=bootstrap, count=count, topic=topic, echo=click.echo)  # type: ignore[arg-type]


def _summary(what: str, rows: int, seconds: float) -> str:
    return f"{what}: {rows:,} rows in {seconds:.1f} s ({rows / max(seconds, 1e-9):,.0f} rows/s)"


@cli.command("fit")
@click.option("--source", default="simulator", show_default=True,
              help="'simulator' (fraudlab's PaySim simulator), 'reference' (bundled real rows) or a PaySim file.")
@click.option("--rows", type=click.IntRange(min=1), default=2_000_000, show_default=True,
              help="Training rows (simulated, or drawn at random from the file).")
@click.option("--seed", type=int, default=7, show_default=True, help="Seed of the data draw and the fit.")
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None,
              help="Model file (.npz; the manifest goes beside it) [default: models/gaussian_copula_20L.npz].")
@click.option("--evaluate/--no-evaluate", default=True, show_default=True,
              help="Score the model against held-out real rows and keep the figures in its manifest.")
def fit(source: str, rows: int, seed: int, output: Path | None, evaluate: bool) -> None:
    """Fit the transaction synthesizer (SDV Gaussian copula per segment) and save it with its manifest."""
    import time

    from fraudlab.synth import DEFAULT_MODEL, TransactionSynthesizer, load_training_data, model_metrics

    output = output or DEFAULT_MODEL
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
               + f"; model {output} ({output.stat().st_size / 1024:.0f} KiB), manifest {manifest}")


@cli.command("sample")
@click.option("--model", "model_path", type=click.Path(path_type=Path), default=None,
              help="Model file [default: the pre-trained models/gaussian_copula_20L.npz].")
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


def main() -> None:
    """Console-script entry point: run the CLI and turn fraudlab's errors into a message and exit 1."""
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except FraudlabError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
