"""``fraudlab fit | sample | simulate``: synthetic transactions from the copula or the PaySim simulator."""

from __future__ import annotations

from pathlib import Path

import click

from fraudlab import config
from fraudlab.cli.options import timing_summary

__all__ = ["fit", "generate_command", "sample", "simulate_command"]


@click.command("fit")
@click.option("--source", default="simulator", show_default=True,
              help="'simulator' (fraudlab's PaySim simulator), 'reference' (bundled real rows) or a PaySim file.")
@click.option("--rows", type=click.IntRange(min=1), default=config.FIT_ROWS, show_default=True,
              help="Training rows (simulated, or drawn at random from the file).")
@click.option("--seed", type=int, default=config.FIT_SEED, show_default=True, help="Seed of the data draw and the fit.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=config.FIT_OUTPUT,
              show_default=True, help="Model file (.npz; the manifest goes beside it); the default is in the current "
              "directory, so the pre-trained model is replaced only when its path is given here.")
@click.option("--evaluate/--no-evaluate", default=True, show_default=True,
              help="Score the model against held-out real rows and keep the figures in its manifest.")
def fit(source: str, rows: int, seed: int, output: Path, evaluate: bool) -> None:
    """Fit the transaction synthesizer (SDV Gaussian copula per segment) and save it with its manifest."""
    import time

    from fraudlab.evaluate.metrics import model_metrics
    from fraudlab.generate.synth import TransactionSynthesizer, load_training_data

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
    click.echo(timing_summary("Fitted", len(training.table), seconds)
               + f"; model {output.resolve()} ({output.stat().st_size / 1024:.0f} KiB), manifest {manifest.resolve()}")


@click.command("sample")
@click.option("--model", "model_path", type=click.Path(path_type=Path), default=None,
              help="Model file [default: the pre-trained fraudlab/pretrained/gaussian_copula_20L.npz].")
@click.option("--rows", type=click.IntRange(min=0), default=config.SAMPLE_ROWS, show_default=True,
              help="Rows to sample.")
@click.option("--seed", type=int, default=None, help="Seed for a reproducible sample.")
@click.option("--fraud-rate", type=click.FloatRange(0.0, 1.0), default=None,
              help="Share of fraud rows [default: the rate the model learned].")
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True,
              help="Output file: .parquet, .csv or .csv.gz.")
def sample(model_path: Path | None, rows: int, seed: int | None, fraud_rate: float | None, output: Path) -> None:
    """Sample synthetic transactions from a fitted model into a file."""
    import time

    from fraudlab.data.readers import check_output_path, write_transactions
    from fraudlab.generate.synth import DEFAULT_MODEL, TransactionSynthesizer, sample_in_chunks

    check_output_path(output)
    model = TransactionSynthesizer.load(model_path or DEFAULT_MODEL)
    started = time.perf_counter()
    table = sample_in_chunks(model, rows, seed=seed, fraud_rate=fraud_rate)
    seconds = time.perf_counter() - started
    write_transactions(table, output)
    click.echo(timing_summary("Sampled", len(table), seconds)
               + f"; {int(table['is_fraud'].sum()):,} frauds; written to {output}")


@click.command("simulate")
@click.option("--rows", type=click.IntRange(min=1), default=config.SIMULATE_ROWS, show_default=True,
              help="Rows to simulate.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Seed: the same seed gives the same rows.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Output file: .parquet, .csv or .csv.gz.")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Show a progress bar.")
def simulate_command(rows: int, seed: int, output: Path, progress: bool) -> None:
    """Simulate PaySim transactions (fraudlab's vectorised PaySim, calibrated to the real rows) into a file."""
    import time

    from fraudlab.data.readers import check_output_path, write_transactions
    from fraudlab.generate.paysim import simulate

    check_output_path(output)
    started = time.perf_counter()
    table = simulate(rows, seed=seed, progress=progress)
    seconds = time.perf_counter() - started
    write_transactions(table, output)
    click.echo(timing_summary("Simulated", len(table), seconds)
               + f"; {int(table['is_fraud'].sum()):,} frauds; written to {output}")


def _scenario_rates(_ctx: click.Context, _param: click.Parameter, values: tuple[str, ...]) -> dict[str, float]:
    """``--scenario-rate NAME=RATE`` (repeatable) as a mapping; names and ranges are checked by StreamSettings."""
    rates = {}
    for value in values:
        name, sep, rate = value.partition("=")
        try:
            rates[name.strip()] = float(rate)
        except ValueError:
            sep = ""
        if not sep:
            raise click.BadParameter(f"{value!r} is not NAME=RATE (e.g. card_testing=0.001)")
    return rates


@click.command("generate")
@click.option("--accounts", type=int, default=config.ACCOUNTS, show_default=True, help="Accounts in the population.")
@click.option("--days", type=float, default=config.ACCOUNT_DAYS, show_default=True, help="Simulated days.")
@click.option("--rows", type=int, default=None,
              help="Exact number of rows [default: what the accounts' activity rates give over --days].")
@click.option("--seed", type=int, default=config.ACCOUNT_SEED, show_default=True,
              help="Seed: the same settings and seed give the same stream.")
@click.option("--start", default=config.ACCOUNT_START, show_default=True, help="First instant of the stream (UTC).")
@click.option("--fraud-rate", type=float, default=None,
              help="Share of fraud rows, split over the fraud scenarios by their rates [default: PaySim's 0.13%].")
@click.option("--scenario-rate", "scenario_rates", multiple=True, callback=_scenario_rates, metavar="NAME=RATE",
              help="Share of rows of one scenario (repeatable); see docs/accounts.md for the names.")
@click.option("--model", "model_path", type=click.Path(path_type=Path), default=None,
              help="Model file [default: the pre-trained model].")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Output file: .parquet, .csv or .csv.gz.")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Show a progress bar.")
def generate_command(accounts: int, days: float, rows: int | None, seed: int, start: str, fraud_rate: float | None,
                     scenario_rates: dict[str, float], model_path: Path | None, output: Path, progress: bool) -> None:
    """Generate the event-time transaction stream of an account population, with fraud scenarios, into a file."""
    import os
    import time

    from fraudlab.data.readers import check_output_path
    from fraudlab.enrich.geoip import AddressSpace
    from fraudlab.generate.accounts import FRAUD_SCENARIOS, StreamSettings, generate_stream, write_stream
    from fraudlab.generate.synth import DEFAULT_MODEL, TransactionSynthesizer

    check_output_path(output)
    settings = StreamSettings(accounts=accounts, days=days, rows=rows, seed=seed, start=start, fraud_rate=fraud_rate,
                              scenario_rates=scenario_rates)
    space = AddressSpace.load(config.cache_root(os.environ))
    model = TransactionSynthesizer.load(model_path or DEFAULT_MODEL)
    started = time.perf_counter()
    stream = generate_stream(settings, space=space, model=model, progress=progress)
    seconds = time.perf_counter() - started
    write_stream(stream, output)
    frauds = stream.loc[stream["is_fraud"], "scenario"].value_counts()
    per_scenario = ", ".join(f"{name} {int(frauds.get(name, 0)):,}" for name in FRAUD_SCENARIOS)
    click.echo(timing_summary("Generated", len(stream), seconds)
               + f"; {accounts:,} accounts; fraud rows: {per_scenario}; written to {output}")

