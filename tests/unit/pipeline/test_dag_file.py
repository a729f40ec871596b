"""The continuous-training DAG as Airflow sees it: parsed by a real DagBag in .venv-airflow, which has no fraudlab.

The DAG file must parse where only Airflow is installed (no fraudlab, no pandas or MLflow), so the parse runs in
the Airflow venv's interpreter, in a subprocess with a temporary AIRFLOW_HOME, and reports what it found as JSON.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fraudlab import config
from fraudlab.infra.airflow import DEFAULT_DAGS_FOLDER, AirflowSettings

pytestmark = pytest.mark.slow

DAG_FILE = DEFAULT_DAGS_FOLDER / f"{config.AIRFLOW_DAG_ID}.py"
TASKS = ("check_data", "repro", "push", "register", "promote", "announce")
#: What a DAG file imported by the scheduler must never load: fraudlab itself and its heavy dependencies.
HEAVY = ("fraudlab", "pandas", "numpy", "pyarrow", "mlflow", "sklearn", "lightgbm", "onnxruntime", "sdv", "torch",
         "confluent_kafka", "grpc", "pyflink")

_PARSE = """
import importlib.util, json, sys
from airflow.models import DagBag

bag = DagBag(dag_folder=sys.argv[1])
dag = bag.dags.get(sys.argv[2])  # get_dag() would ask the metadata DB, which a parse does not need
report = {"import_errors": {str(k): v for k, v in bag.import_errors.items()}, "dag_ids": sorted(bag.dag_ids),
          "fraudlab_importable": importlib.util.find_spec("fraudlab") is not None,
          "heavy_loaded": sorted(m for m in sys.modules if m.split(".")[0] in sys.argv[3].split(","))}
if dag is not None:
    report.update(schedule=str(dag.schedule), catchup=dag.catchup, max_active_runs=dag.max_active_runs,
                  order=[t.task_id for t in dag.topological_sort()],
                  tasks={t.task_id: {"upstream": sorted(t.upstream_task_ids), "command": t.bash_command,
                                     "cwd": t.cwd, "env": t.env, "operator": type(t).__name__} for t in dag.tasks})
print(json.dumps(report))
"""


def _parse_in_airflow_venv(tmp_path: Path, repo_root: Path, **environ: str) -> dict:
    """What Airflow's DagBag makes of the DAG folder when the parsing process has ``environ`` on top of its own."""
    settings = AirflowSettings(home=tmp_path / "airflow-home", venv=repo_root / config.AIRFLOW_VENV)
    if not (settings.airflow_venv / "bin" / "python").is_file():
        pytest.skip(f"the Airflow venv {config.AIRFLOW_VENV}/ does not exist yet: create it with `make airflow-venv`")
    env = {key: value for key, value in os.environ.items()
           if key not in ("PYTHONPATH", "FRAUDLAB_PIPELINE_DIR") and not key.startswith("AIRFLOW")}
    env.update(settings.environment(), **environ)
    # Not from the checkout: `python -c` puts its working directory on sys.path, which would make fraudlab importable.
    completed = subprocess.run(
        [settings.airflow_venv / "bin" / "python", "-c", _PARSE, str(DEFAULT_DAGS_FOLDER), config.AIRFLOW_DAG_ID,
         ",".join(HEAVY)], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False)
    assert completed.returncode == 0, f"parsing the DAG folder failed:\n{completed.stderr[-3000:]}"
    return json.loads(completed.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def parsed(tmp_path_factory: pytest.TempPathFactory, repo_root: Path) -> tuple[dict, Path]:
    """The DAG parsed once with a pipeline directory, a tracking URI and an unrelated variable in the environment."""
    pipeline = tmp_path_factory.mktemp("pipeline")
    report = _parse_in_airflow_venv(tmp_path_factory.mktemp("parse"), repo_root, FRAUDLAB_PIPELINE_DIR=str(pipeline),
                                    MLFLOW_TRACKING_URI="sqlite:////tmp/x.db", FRAUDLAB_UNRELATED="not passed on",
                                    KAFKA_BOOTSTRAP_SERVERS="")
    return report, pipeline


def test_the_dag_parses_without_errors_in_the_airflow_venv(parsed):
    """One DAG, no import error, and it parsed where fraudlab cannot even be imported."""
    report, _ = parsed
    assert report["import_errors"] == {}
    assert report["dag_ids"] == [config.AIRFLOW_DAG_ID]
    assert report["fraudlab_importable"] is False, "the Airflow venv must not have fraudlab (its deps clash)"
    assert report["heavy_loaded"] == []


def test_it_runs_daily_without_catch_up_one_run_at_a_time(parsed):
    report, _ = parsed
    assert (report["schedule"], report["catchup"], report["max_active_runs"]) == ("@daily", False, 1)


def test_its_tasks_run_one_command_each_in_order(parsed):
    """check_data → repro → push → register → promote → announce, each a BashOperator after the one before."""
    report, _ = parsed
    assert report["order"] == list(TASKS)
    tasks = report["tasks"]
    assert [tasks[task]["upstream"] for task in TASKS] == [[], *([task] for task in TASKS[:-1])]
    assert {task["operator"] for task in tasks.values()} == {"BashOperator"}
    assert [tasks[task]["command"] for task in TASKS] == [
        "fraudlab pipeline remote && dvc pull --allow-missing", "dvc repro", "dvc push", "fraudlab pipeline register",
        "fraudlab pipeline promote", "fraudlab pipeline announce"]


def test_the_commands_run_in_the_pipeline_directory_with_the_main_venv_first(parsed, repo_root):
    """FRAUDLAB_PIPELINE_DIR is the working directory; only the listed variables, when set, are passed on."""
    report, pipeline = parsed
    for task in report["tasks"].values():
        assert task["cwd"] == str(pipeline.resolve())
        env = task["env"]
        assert env["PATH"].split(os.pathsep)[0] == str(repo_root / ".venv" / "bin")
        assert env["DVC_NO_ANALYTICS"] == "1" and env["MLFLOW_DISABLE_TELEMETRY"] == "true"
        assert env["MLFLOW_TRACKING_URI"] == "sqlite:////tmp/x.db"
        assert "KAFKA_BOOTSTRAP_SERVERS" not in env, "an empty variable counts as unset"
        assert "FRAUDLAB_UNRELATED" not in env and "AIRFLOW_HOME" not in env


def test_without_a_pipeline_directory_the_commands_run_at_the_repository_root(tmp_path, repo_root):
    report = _parse_in_airflow_venv(tmp_path, repo_root)
    assert {task["cwd"] for task in report["tasks"].values()} == {str(repo_root)}


def test_the_dag_file_imports_only_airflow_and_the_standard_library():
    """Read from the source, so a heavy import fails here even if the Airflow venv happened to have the package."""
    tree = ast.parse(DAG_FILE.read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    roots = {name.split(".")[0] for name in imported}
    assert roots - set(sys.stdlib_module_names) - {"__future__"} == {"airflow"}
