"""``fraudlab train | score | promote``: the detector's commands (training, scoring, the MLflow registry's gate)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click

from fraudlab import config

__all__ = ["promote", "resolve_tracking_uri", "score", "tracking_uri_option", "train"]

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


@click.command("train")
@click.option("--accounts", type=click.IntRange(min=1), default=10_000, show_default=True,
              help="Accounts of the training stream (and of the held-out stream).")
@click.option("--days", type=click.FloatRange(min=0, min_open=True), default=30.0, show_default=True,
              help="Simulated days of each stream.")
@click.option("--copula-rows", type=click.IntRange(min=1), default=200_000, show_default=True,
              help="Cold rows sampled from the pre-trained copula (frauds included).")
@click.option("--copula-frauds", type=click.IntRange(min=0), default=20_000, show_default=True,
              help="Of the copula rows, how many are frauds.")
@click.option("--seed", type=int, default=7, show_default=True,
              help="Seed of the training stream and the copula rows; the held-out stream uses seed + 1.")
@click.option("--trees", type=click.IntRange(min=1), default=200, show_default=True, help="LightGBM trees.")
@click.option("--alert-budget", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.005,
              show_default=True, help="Largest share of traffic the alert threshold may flag.")
@click.option("--ablation", is_flag=True, help="Also retrain without each feature family (one training each).")
@click.option("-o", "--output", type=click.Path(file_okay=False, path_type=Path), default=Path("detector"),
              show_default=True, help="Directory for detector.json/.onnx, report.md/.json and the figures.")
@tracking_uri_option()
@click.option("--mlflow/--no-mlflow", "use_mlflow", default=True, show_default=True,
              help="Log the run and register the model as a new version of fraud-detector.")
def train(accounts: int, days: float, copula_rows: int, copula_frauds: int, seed: int, trees: int,
          alert_budget: float, ablation: bool, output: Path, tracking_uri: str | None, use_mlflow: bool) -> None:
    """Train the fraud detector on generated streams and copula rows, evaluate it, save it and log it to MLflow."""
    from fraudlab.data.splits import split_reference
    from fraudlab.detect.model import DetectorParams
    from fraudlab.detect.training import TrainingSettings, run_training, save_outputs
    from fraudlab.enrich.geoip import AddressSpace, GeoIP
    from fraudlab.generate.synth import DEFAULT_MODEL, TransactionSynthesizer

    settings = TrainingSettings(
        accounts=accounts, days=days, stream_seed=seed, copula_rows=copula_rows, copula_frauds=copula_frauds,
        copula_seed=seed, eval_accounts=accounts, eval_days=days, eval_seed=seed + 1, alert_budget=alert_budget,
        ablation=ablation, params=DetectorParams(n_estimators=trees, seed=seed))
    cache = config.cache_root(os.environ)
    with GeoIP.open(cache) as geoip:
        result = run_training(settings, space=AddressSpace.load(cache), geoip=geoip,
                              synthesizer=TransactionSynthesizer.load(DEFAULT_MODEL), split=split_reference())
    paths = save_outputs(result, output)
    metrics = result.report.metrics()
    line = (f"detector {result.detector.version}: real PR-AUC {metrics['real_pr_auc']:.4f} "
            f"(trained on real: {metrics['real_pr_auc_trtr']:.4f}), held-out stream PR-AUC "
            f"{metrics['stream_pr_auc']:.4f}, alerts at {metrics['threshold']:.4f} flag "
            f"{metrics['alert_flagged_share']:.3%} (precision {metrics['alert_precision']:.3f}, recall "
            f"{metrics['alert_recall']:.3f}); saved to {paths['manifest']}")
    if use_mlflow:
        from fraudlab.detect.registry import log_training_run

        run = log_training_run(
            result.detector, tracking_uri=resolve_tracking_uri(tracking_uri), params=settings.to_dict(),
            metrics=metrics, report_markdown=paths["report"].read_text(encoding="utf-8"),
            figures={name: paths[name] for name in ("real_comparison", "threshold_curve", "scenarios", "ablation")},
            input_example=result.example, run_name=f"train-{result.detector.version}")
        line += f"; MLflow run {run.run_id}, fraud-detector version {run.model_version}"
    click.echo(line)


@click.command("score")
@click.option("--model", "model", default=None,
              help="Detector: a directory or detector.json, or 'champion' for the registry's champion "
                   "[default: the pre-trained detector shipped with fraudlab].")
@click.option("--input", "input_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Transactions: an account stream (parquet/CSV) or any PaySim file (Kaggle, raw log, canonical).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=Path("scores.parquet"),
              show_default=True, help="Scores (.parquet or .csv): transaction_id (or row), score, alert.")
@tracking_uri_option()
def score(model: str | None, input_path: Path, output: Path, tracking_uri: str | None) -> None:
    """Score a transaction file with a detector: one score and alert flag per row."""
    import time

    from fraudlab.detect.model import DEFAULT_DETECTOR, Detector
    from fraudlab.detect.training import score_file
    from fraudlab.enrich.geoip import GeoIP
    from fraudlab.exceptions import MissingDataError

    if output.suffix not in (".parquet", ".csv"):
        raise click.BadParameter(f"{str(output)!r} must end in .parquet or .csv", param_hint="--output")
    if model == "champion":
        from fraudlab.detect.registry import load_detector

        detector = load_detector(resolve_tracking_uri(tracking_uri))
    else:
        detector = Detector.load(model or DEFAULT_DETECTOR)
    started = time.perf_counter()
    try:
        geoip: GeoIP | None = GeoIP.open(config.cache_root(os.environ))
    except MissingDataError:
        geoip = None  # PaySim files need none; a stream with addresses then says to run `fraudlab geoip fetch`
    try:
        scores = score_file(detector, input_path, geoip=geoip)
    finally:
        if geoip is not None:
            geoip.close()
    seconds = time.perf_counter() - started
    if output.suffix == ".parquet":
        scores.to_parquet(output, index=False)
    else:
        scores.to_csv(output, index=False)
    click.echo(f"scored {len(scores):,} rows with detector {detector.version} in {seconds:.1f} s: "
               f"{int(scores['alert'].sum()):,} alerts ({scores['alert'].mean():.3%}) at threshold "
               f"{detector.threshold:.4f}; wrote {output}")
