"""``fraudlab train | score | promote | detect``: the detector's commands (training, scoring, the MLflow registry's
gate, and the real-time scoring job on Flink)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click

from fraudlab import config
from fraudlab.cli.flink import flink_settings
from fraudlab.cli.options import bootstrap_option, topic_option

__all__ = ["announce_champion", "detect", "promote", "resolve_tracking_uri", "score", "tracking_uri_option", "train"]

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
@click.option("--max-recall-drop", type=click.FloatRange(0, 1), default=config.MLFLOW_MAX_RECALL_DROP,
              show_default=True, help="Refuse a candidate whose recall on any fraud scenario is this much below the "
                                      "champion's.")
@click.option("--force", is_flag=True, help="Promote even when the candidate is worse than the champion.")
@click.option("--announce/--no-announce", default=True, show_default=True,
              help=f"Publish the new champion on {config.MODEL_UPDATES_TOPIC!r}, where running `fraudlab detect` jobs "
                   "pick it up without a restart.")
@bootstrap_option(help="Kafka bootstrap servers the announcement goes to.")
@click.option("--updates-topic", default=config.MODEL_UPDATES_TOPIC, show_default=True,
              help="Topic of the announcements (what `fraudlab detect` jobs follow).")
def promote(version: int | None, tracking_uri: str | None, metric: str, max_recall_drop: float, force: bool,
            announce: bool, bootstrap: str, updates_topic: str) -> None:
    """Make a registered detector version the champion, unless it is worse than the current one; exit 1 if refused.

    Worse: its metric is below the champion's, or its recall on a fraud scenario fell by more than the margin.

    A promoted champion is announced to running scoring jobs. With no broker answering there is no job to tell:
    the promotion stands, and the command says how to announce it later.
    """
    from fraudlab.detect.registry import promote as promote_version

    uri = resolve_tracking_uri(tracking_uri)
    decision = promote_version(version, tracking_uri=uri, metric=metric, max_recall_drop=max_recall_drop,
                               force=force)
    click.echo(decision.describe())
    if not decision.promoted:
        sys.exit(1)
    if announce:
        announce_champion(uri, decision.candidate_version, bootstrap=bootstrap, topic=updates_topic)


def announce_champion(tracking_uri: str, version: int, *, bootstrap: str, topic: str) -> bool:
    """Announce registered ``version`` to running scoring jobs; with no broker answering, say how to do it later
    (the promotion stands: jobs started with ``--model champion`` use it). True when announced."""
    from fraudlab.detect.realtime import ScoringJobError, announce_detector
    from fraudlab.detect.registry import load_detector

    detector = load_detector(tracking_uri, version=version)
    try:
        offset = announce_detector(bootstrap, detector, topic=topic, timeout=5)
    except ScoringJobError as exc:
        click.echo(f"not announced: {exc}. The promotion stands; jobs started with `--model champion` use it, "
                   f"and `fraudlab promote --version {version} --bootstrap {bootstrap}` announces it to running "
                   "ones.", err=True)
        return False
    click.echo(f"announced detector {detector.version} on {topic!r} (offset {offset}) at {bootstrap}: running "
               "scoring jobs switch to it")
    return True


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


@click.command("detect")
@bootstrap_option()
@topic_option()
@click.option("--model", "model", default=None,
              help="Detector the job starts with: a directory or detector.json, or 'champion' for the registry's "
                   "[default: the pre-trained detector]. Later champions announced by `fraudlab promote` replace it.")
@tracking_uri_option()
@click.option("--cluster", metavar="HOST:PORT", default=None,
              help="Submit the job to the standalone cluster whose REST API is HOST:PORT (`fraudlab flink up "
                   "--port PORT`) [default: run it embedded, on a local MiniCluster].")
@click.option("--venv", type=click.Path(path_type=Path), default=None, envvar="FRAUDLAB_FLINK_VENV",
              help="The Flink venv [default: .venv-flink at the repository root; env FRAUDLAB_FLINK_VENV].")
@click.option("--group-id", default="fraudlab-detect", show_default=True,
              help="Consumer group: where a restarted job carries on; also the prefix of its Kafka transactions.")
@click.option("--parallelism", type=click.IntRange(min=1), default=1, show_default=True,
              help="Parallel instances of every operator (a cluster needs as many free slots).")
@click.option("--lateness-ms", type=click.IntRange(min=0), default=5_000, show_default=True,
              help="How late (event time) a transaction may arrive and still be scored with complete windows (the "
                   "windows drop later ones); records wait this long behind the newest of their partition. "
                   "A replay at `--speed S` needs about S x 1000 (one wall second).")
@click.option("--checkpoint-ms", type=click.IntRange(min=100), default=config.FLINK_CHECKPOINT_MS, show_default=True,
              help="Checkpoint interval: scored records become visible to read-committed readers once per checkpoint.")
@click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Checkpoints, savepoints, the job's log and a downloaded champion [default: "
                   "~/.cache/fraudlab/flink/detect-GROUP].")
@click.option("--bounded", is_flag=True, help="Score what the topic holds now, then stop (instead of until Ctrl-C).")
def detect(bootstrap: str, topic: str, model: str | None, tracking_uri: str | None, cluster: str | None,
           venv: Path | None, group_id: str, parallelism: int, lateness_ms: int, checkpoint_ms: int,
           state_dir: Path | None, bounded: bool) -> None:
    """Score the transaction topic in real time on Apache Flink, into scored_transactions and fraud_alerts.

    Every transaction is scored once (exactly once, read committed) with features computed in Flink from the same
    declarations the model was trained on; alerts carry their top reasons; records that do not parse go to the
    dead-letter topic. Ctrl-C (or SIGTERM) stops the job with a drain: what it read is scored and committed.
    """
    from fraudlab.detect.realtime import ScoringJob, ensure_job_topics, run_scoring_job
    from fraudlab.detect.scoring_job import ScoringJobSettings
    from fraudlab.infra.process import stop_requested

    cache = config.cache_root(os.environ)
    host, port = _cluster_address(cluster)
    flink = flink_settings(port, venv, None, host=host)
    state = state_dir or cache / "flink" / f"detect-{group_id}"
    settings = ensure_job_topics(ScoringJobSettings(
        bootstrap=bootstrap, model=_model_path(model, tracking_uri, state), geoip_dir=str(cache),
        checkpoint_dir=str(state / "checkpoints"), group_id=group_id, source_topic=topic, bounded=bounded,
        lateness_ms=lateness_ms, checkpoint_ms=checkpoint_ms, parallelism=parallelism))
    where = f"on the Flink cluster at {flink.rest_url}" if cluster else "embedded (a local MiniCluster)"
    summary = (f"{settings.source_topic!r} -> {settings.scored_topic!r} (exactly once) and {settings.alerts_topic!r}"
               f", detector {settings.model}")
    click.echo(f"Starting the scoring job {where}: {summary} ...", err=True)
    if bounded:
        click.echo(run_scoring_job(settings, flink, cluster=cluster is not None).strip())
        return
    stop = stop_requested()
    job = ScoringJob(settings, flink, cluster=cluster is not None)
    with job as job_id:
        click.echo(f"job {job_id} running {where}; log {job.log_path}; Ctrl-C stops it with a drain")
        while not stop.wait(2.0):
            state_now = job.state()
            if state_now not in _LIVE_STATES:
                raise click.ClickException(f"job {job_id} is {state_now or 'gone'}; see {job.log_path}")
        late = job.late_records()
        click.echo("stopping: draining the job (what it read is scored and committed) ...", err=True)
    click.echo(f"job {job_id} stopped; the next `fraudlab detect --group-id {group_id}` carries on from its offsets")
    if late:
        click.echo(f"warning: records came more than --lateness-ms {lateness_ms} ms behind the newest event time "
                   f"(behind the watermark) and were not scored ({late:,} drops by the windows); a replay needs a "
                   "lateness that matches its speed", err=True)


_LIVE_STATES = ("CREATED", "INITIALIZING", "RUNNING", "RESTARTING")


def _cluster_address(cluster: str | None) -> tuple[str, int]:
    """``--cluster``'s HOST:PORT (the local defaults when not given)."""
    if cluster is None:
        return config.FLINK_HOST, config.FLINK_REST_PORT
    host, _, port = cluster.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise click.BadParameter(f"{cluster!r} must be HOST:PORT, e.g. 127.0.0.1:{config.FLINK_REST_PORT}",
                                 param_hint="--cluster")
    return host, int(port)


def _model_path(model: str | None, tracking_uri: str | None, state: Path) -> str:
    """The detector file the job loads: the given one, the champion downloaded (verified) into ``state``, or the
    pre-trained one."""
    from fraudlab.detect.model import DEFAULT_DETECTOR

    if model != "champion":
        return str(Path(model).resolve()) if model else str(DEFAULT_DETECTOR)
    from fraudlab.detect.registry import load_detector

    return str(load_detector(resolve_tracking_uri(tracking_uri)).save(state / "champion"))
