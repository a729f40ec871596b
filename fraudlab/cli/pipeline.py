"""``fraudlab pipeline``: the continuous-training steps ``dvc.yaml`` and the Airflow DAG run, one command each."""

from __future__ import annotations

import os
from pathlib import Path

import click

from fraudlab import config
from fraudlab.cli.detect import announce_champion, resolve_tracking_uri, tracking_uri_option
from fraudlab.cli.options import bootstrap_option

__all__ = ["pipeline"]

_DATA = Path("data")
_FILE = click.Path(dir_okay=False, path_type=Path)
_DIRECTORY = click.Path(file_okay=False, path_type=Path)


@click.group("pipeline")
def pipeline() -> None:
    """Continuous training, step by step: `dvc repro` runs train and evaluate; register, promote and announce
    follow it (the Airflow DAG `fraudlab_continuous_training` runs them all)."""


@pipeline.command("remote")
@click.option("--url", type=_DIRECTORY, default=None,
              help="Directory of the DVC remote [default: keep the default remote there is, else dvc-remote in the "
                   "fraudlab cache].")
def remote_step(url: Path | None) -> None:
    """Give the pipeline in this directory a local DVC remote (`dvc push` / `dvc pull` then work offline)."""
    from fraudlab.pipeline.steps import REMOTE_NAME, configure_remote, default_remote

    existing = default_remote(Path.cwd())
    if url is None and existing:
        click.echo(f"DVC remote kept: {existing}")
        return
    target = url or config.cache_root(os.environ) / "dvc-remote"
    configure_remote(Path.cwd(), target)
    click.echo(f"DVC remote {REMOTE_NAME!r} is {target} (in .dvc/config.local)")


@pipeline.command("train")
@click.option("--stream", type=_FILE, default=_DATA / "streams" / "train.parquet", show_default=True,
              help="The training account stream (`fraudlab generate`).")
@click.option("--copula", type=_FILE, default=_DATA / "copula" / "model.npz", show_default=True,
              help="The fitted copula the cold rows are sampled from (`fraudlab fit`).")
@click.option("--copula-rows", type=click.IntRange(min=1), default=200_000, show_default=True,
              help="Cold rows sampled from the copula (frauds included).")
@click.option("--copula-frauds", type=click.IntRange(min=0), default=20_000, show_default=True,
              help="Of the copula rows, how many are frauds.")
@click.option("--seed", type=int, default=7, show_default=True, help="Seed of the copula rows and of LightGBM.")
@click.option("--trees", type=click.IntRange(min=1), default=200, show_default=True, help="LightGBM trees.")
@click.option("-o", "--output", type=_DIRECTORY, default=_DATA / "candidate", show_default=True,
              help="Directory for the candidate detector, its training set and settings.")
def train_step(stream: Path, copula: Path, copula_rows: int, copula_frauds: int, seed: int, trees: int,
               output: Path) -> None:
    """Fit a candidate detector on a training stream and copula rows (no threshold yet: `evaluate` sets it)."""
    from fraudlab.detect.model import DetectorParams
    from fraudlab.detect.training import TrainingSettings
    from fraudlab.pipeline.steps import train_candidate

    settings = TrainingSettings(copula_rows=copula_rows, copula_frauds=copula_frauds, copula_seed=seed,
                                params=DetectorParams(n_estimators=trees, seed=seed))
    manifest = train_candidate(settings, stream, copula, output, cache_dir=config.cache_root(os.environ))
    click.echo(f"candidate saved to {manifest}")


@pipeline.command("evaluate")
@click.option("--candidate", type=_DIRECTORY, default=_DATA / "candidate", show_default=True,
              help="What `fraudlab pipeline train` wrote.")
@click.option("--held-out", type=_FILE, default=_DATA / "streams" / "held_out.parquet", show_default=True,
              help="The held-out account stream (another seed, the natural fraud rate).")
@click.option("--alert-budget", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.005,
              show_default=True, help="Largest share of traffic the alert threshold may flag.")
@click.option("-o", "--output", type=_DIRECTORY, default=_DATA / "evaluation", show_default=True,
              help="Directory for the evaluated detector, its report and figures.")
@click.option("--metrics", "metrics_path", type=_FILE, default=_DATA / "metrics.json", show_default=True,
              help="Where the flat metrics go (what `dvc metrics diff` compares).")
def evaluate_step(candidate: Path, held_out: Path, alert_budget: float, output: Path, metrics_path: Path) -> None:
    """Judge the candidate on real held-out rows and the held-out stream; set its alert threshold."""
    from fraudlab.pipeline.steps import evaluate_candidate

    metrics = evaluate_candidate(candidate, held_out, output, metrics_path=metrics_path,
                                 cache_dir=config.cache_root(os.environ), alert_budget=alert_budget)
    click.echo(f"real PR-AUC {metrics['real_pr_auc']:.4f}, held-out stream PR-AUC {metrics['stream_pr_auc']:.4f}, "
               f"alert recall {metrics['alert_recall']:.3f}; metrics in {metrics_path}")


@pipeline.command("register")
@click.option("--evaluation", type=_DIRECTORY, default=_DATA / "evaluation", show_default=True,
              help="What `fraudlab pipeline evaluate` wrote.")
@click.option("--metrics", "metrics_path", type=_FILE, default=_DATA / "metrics.json", show_default=True,
              help="The metrics `fraudlab pipeline evaluate` wrote.")
@click.option("--lock", "lock_path", type=_FILE, default=Path("dvc.lock"), show_default=True,
              help="The lock file `dvc repro` wrote: its output hashes are the run's data version.")
@click.option("--params", "params_path", type=_FILE, default=Path("params.yaml"), show_default=True,
              help="The pipeline's parameters, logged to the run.")
@tracking_uri_option()
@click.option("-o", "--output", type=_FILE, default=_DATA / "registered.json", show_default=True,
              help="Where the registered version is written for `promote`.")
def register_step(evaluation: Path, metrics_path: Path, lock_path: Path, params_path: Path,
                  tracking_uri: str | None, output: Path) -> None:
    """Log the evaluated candidate as one MLflow run with its data version and register it."""
    import yaml

    from fraudlab.pipeline.steps import register_candidate

    params = yaml.safe_load(params_path.read_text(encoding="utf-8")) if params_path.is_file() else {}
    registered = register_candidate(evaluation, metrics_path=metrics_path, lock_path=lock_path, params=params or {},
                                    tracking_uri=resolve_tracking_uri(tracking_uri), output=output)
    click.echo(f"data version {registered.data_version}: detector {registered.detector} registered as version "
               f"{registered.version} (run {registered.run_id}); {output}")


@pipeline.command("promote")
@click.option("--registered", type=_FILE, default=_DATA / "registered.json", show_default=True,
              help="What `fraudlab pipeline register` wrote.")
@click.option("--metric", default=config.MLFLOW_PROMOTION_METRIC, show_default=True,
              help="Run metric the candidate must not fall below the champion's on.")
@click.option("--max-recall-drop", type=click.FloatRange(0, 1), default=config.MLFLOW_MAX_RECALL_DROP,
              show_default=True, help="Refuse a candidate whose recall on any fraud scenario is this much below the "
                                      "champion's.")
@click.option("-o", "--output", type=_FILE, default=_DATA / "promotion.json", show_default=True,
              help="Where the decision is written for `announce`.")
def promote_step(registered: Path, metric: str, max_recall_drop: float, output: Path) -> None:
    """The gate: promote the registered candidate if it is not worse than the champion. A refusal is a decision,
    not a failure: exit 0 either way (`fraudlab promote` exits 1 on a refusal)."""
    from fraudlab.pipeline.steps import gate

    decision = gate(registered, output=output, metric=metric, max_recall_drop=max_recall_drop)
    click.echo(decision.describe())


@pipeline.command("announce")
@click.option("--promotion", type=_FILE, default=_DATA / "promotion.json", show_default=True,
              help="What `fraudlab pipeline promote` wrote.")
@bootstrap_option(help="Kafka bootstrap servers of the running scoring jobs.")
@click.option("--updates-topic", default=config.MODEL_UPDATES_TOPIC, show_default=True,
              envvar="FRAUDLAB_MODEL_UPDATES_TOPIC",
              help="Topic of the announcements (what `fraudlab detect` jobs follow) "
                   "[env FRAUDLAB_MODEL_UPDATES_TOPIC].")
def announce_step(promotion: Path, bootstrap: str, updates_topic: str) -> None:
    """Tell running scoring jobs about the new champion; nothing to tell when the gate refused the candidate."""
    from fraudlab.pipeline.steps import read_json

    decision = read_json(promotion, "promotion decision (run `fraudlab pipeline promote`)")
    if not decision["promoted"]:
        click.echo(f"nothing announced: version {decision['candidate_version']} was not promoted "
                   f"({decision['reason']})")
        return
    announce_champion(decision["tracking_uri"], int(decision["candidate_version"]), bootstrap=bootstrap,
                      topic=updates_topic)
