"""The continuous-training DAG: pull the data version, rebuild what changed, push it, register, gate, announce.

This file only wires tasks; every step is one shell command of the project (``dvc`` or ``fraudlab pipeline ...``)
run in the main venv, so the logic lives in fraudlab and DVC, and can be run by hand in the same order. Airflow runs
in its own venv (``.venv-airflow``), which has neither fraudlab nor its heavy dependencies: this module imports
Airflow and the standard library only, and a unit test parses it with Airflow's DagBag and checks that.

Where and how the commands run is read from the environment of the process that parses the file (``airflow
standalone``, ``airflow dags test``): ``FRAUDLAB_PIPELINE_DIR`` is the DVC pipeline's directory (default: this
checkout's root); the checkout's ``.venv/bin`` goes first on PATH; ``FRAUDLAB_CACHE_DIR``, ``MLFLOW_TRACKING_URI``,
``KAFKA_BOOTSTRAP_SERVERS`` and ``FRAUDLAB_MODEL_UPDATES_TOPIC`` are passed on when set; DVC's and MLflow's usage
reports are off. Tasks get that environment and nothing else, so what a run did does not depend on what else the
scheduler's environment holds.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG, chain

DAG_ID = "fraudlab_continuous_training"

#: The checkout this file belongs to: ``<root>/fraudlab/pipeline/dags/<this file>``.
REPO_ROOT = Path(__file__).resolve().parents[3]

#: The variable naming the pipeline's directory (dvc.yaml, params.yaml, data/); the checkout's root without it.
PIPELINE_DIR_VARIABLE = "FRAUDLAB_PIPELINE_DIR"

#: What the commands need from the parsing process's environment, passed on only when set: where the cache, the
#: tracking server, the broker and the jobs' model-updates topic are. HOME and LANG let DVC and MLflow find their
#: configuration and decode paths.
PASSED_ON = ("FRAUDLAB_CACHE_DIR", "MLFLOW_TRACKING_URI", "KAFKA_BOOTSTRAP_SERVERS", "FRAUDLAB_MODEL_UPDATES_TOPIC",
             "HOME", "LANG", "TMPDIR")

#: The tasks in their order, each one shell command. ``check_data`` gives the pipeline the cache's DVC remote unless
#: it has one; a first run has nothing in the remote yet, so the pull
#: skips what is missing; ``promote`` exits 0 whether it promotes or refuses (its decision is in
#: ``data/promotion.json``), and ``announce`` is a no-op with a message when nothing was promoted or no broker answers.
STEPS: tuple[tuple[str, str], ...] = (
    ("check_data", "fraudlab pipeline remote && dvc pull --allow-missing"),
    ("repro", "dvc repro"),
    ("push", "dvc push"),
    ("register", "fraudlab pipeline register"),
    ("promote", "fraudlab pipeline promote"),
    ("announce", "fraudlab pipeline announce"),
)


def pipeline_dir(environ: Mapping[str, str]) -> Path:
    """The directory the commands run in: ``FRAUDLAB_PIPELINE_DIR``, else the checkout's root."""
    explicit = environ.get(PIPELINE_DIR_VARIABLE)
    return Path(explicit).expanduser().resolve() if explicit else REPO_ROOT


def task_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The whole environment of every command: the main venv first on PATH, DVC's and MLflow's usage reports off."""
    search_path = environ.get("PATH") or os.defpath
    env = {name: environ[name] for name in PASSED_ON if environ.get(name)}
    env["PATH"] = f"{REPO_ROOT / '.venv' / 'bin'}{os.pathsep}{search_path}"
    env["DVC_NO_ANALYTICS"] = "1"
    env["MLFLOW_DISABLE_TELEMETRY"] = "true"
    return env


with DAG(
    dag_id=DAG_ID,
    description="Continuous training: DVC data version, dvc repro, MLflow registration, the promotion gate, "
                "the new champion announced to the Flink job",
    schedule="@daily",
    start_date=datetime(2025, 1, 1, tzinfo=UTC),
    catchup=False,
    # Two runs at once would rebuild the same data/ directory and race for the champion alias.
    max_active_runs=1,
    dagrun_timeout=timedelta(hours=6),
    default_args={"retries": 0},
    tags=["fraudlab", "continuous-training"],
    doc_md=__doc__,
) as dag:
    _cwd = str(pipeline_dir(os.environ))
    _env = task_environment(os.environ)
    chain(*(BashOperator(task_id=task_id, bash_command=command, cwd=_cwd, env=_env, do_xcom_push=False)
            for task_id, command in STEPS))
