"""The notebooks: committed as JupyterLab saves them, clean outputs, and real results when executed.

Each notebook calls ``fraudlab.notebook.record`` for its key figures; the
slow tests execute it with papermill into a temporary folder, at small
parameters, and assert on what it recorded and on what it wrote. The fast
tests check the committed files themselves: the kernel they name, their
canonical form, and outputs free of warnings and of this machine's paths.
(CI also runs the committed notebooks as they are, at their default
parameters, with ``pytest --nbval-lax``; all but 07, the promotion loop,
which its test here runs at its default parameters anyway.)
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pandas as pd
import papermill
import pytest

from fraudlab.config import cache_root
from fraudlab.exceptions import FraudlabError
from fraudlab.generate.accounts import FRAUD_SCENARIOS
from fraudlab.generate.synth import TransactionSynthesizer
from fraudlab.kafka.admin import end_offsets
from fraudlab.notebook import canonical_notebook_text, main, read_results, values_table
from fraudlab.schema.rules import rule_pass_rates

REPO_ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = REPO_ROOT / "notebooks"
NOTEBOOK_PATHS = sorted(NOTEBOOKS.glob("*.ipynb"))
KERNEL_NAME = "fraudlab"

#: Absolute paths that would tie a committed output to this machine (and say where it was run).
MACHINE_PATHS = sorted({str(REPO_ROOT), str(Path.home()), str(cache_root()), "~/.cache",
                        "/root", "/home/", "/tmp/", "/work/"})
#: Output MIME types whose payload is base64, where any short string can turn up by chance.
BINARY_MIME_TYPES = ("image/png", "image/jpeg", "image/gif")


def _execute(name: str, tmp_path: Path, **parameters: object) -> dict[str, object]:
    output = tmp_path / name
    papermill.execute_notebook(
        str(NOTEBOOKS / name), str(output), parameters=parameters, cwd=str(tmp_path), progress_bar=False,
        kernel_name=KERNEL_NAME,
    )
    return read_results(output)


def _integral_floats(value: Any, where: str = "") -> Iterator[str]:
    """Where parsed JSON holds a float that is a whole number (JupyterLab would save it as an int)."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _integral_floats(item, f"{where}/{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _integral_floats(item, f"{where}/{index}")
    elif isinstance(value, float) and value.is_integer():
        yield f"{where} = {value!r}"


def _output_texts(notebook: nbformat.NotebookNode) -> Iterator[tuple[str, str, str]]:
    """(where, stream name or MIME type, text) of every output and of the notebook's metadata."""
    yield "notebook metadata", "metadata", json.dumps(notebook.metadata)
    for index, cell in enumerate(notebook.cells):
        for output in cell.get("outputs", []):
            where = f"cell {index}"
            if output.output_type == "stream":
                yield where, output.name, output.text
            elif output.output_type == "error":
                yield where, "error", "\n".join([output.ename, output.evalue, *output.traceback])
            else:
                for mime, data in output.get("data", {}).items():
                    if mime not in BINARY_MIME_TYPES:
                        yield where, mime, data if isinstance(data, str) else json.dumps(data)


def _processes_under(directory: Path) -> dict[int, str]:
    """The live processes (pid: name) whose command line names a path in ``directory`` or that run in it."""
    import os

    inside = f"{directory}{os.sep}"
    found = {}
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            command = (proc / "cmdline").read_bytes().decode(errors="replace")
            if inside in command or f"{os.readlink(proc / 'cwd')}{os.sep}".startswith(inside):
                found[int(proc.name)] = (proc / "comm").read_text().strip()
        except OSError:  # exited meanwhile, or not ours to read
            continue
    return found


@pytest.mark.parametrize("path", NOTEBOOK_PATHS, ids=lambda path: path.name)
def test_every_notebook_names_the_registered_fraudlab_kernel(path):
    kernelspec = nbformat.read(path, as_version=4).metadata.kernelspec
    assert kernelspec == {"name": KERNEL_NAME, "display_name": "Python (fraudlab)", "language": "python"}


@pytest.mark.parametrize("path", NOTEBOOK_PATHS, ids=lambda path: path.name)
def test_every_notebook_has_one_parameters_cell(path):
    notebook = nbformat.read(path, as_version=4)
    tagged = [cell for cell in notebook.cells if "parameters" in cell.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{path.name} needs exactly one cell tagged 'parameters'"


@pytest.mark.parametrize("path", NOTEBOOK_PATHS, ids=lambda path: path.name)
def test_committed_notebooks_are_as_jupyterlab_saves_them(path):
    """Opening a committed notebook in JupyterLab must not modify it (and autosave rewrite it)."""
    on_disk = path.read_bytes()
    fix = f"run `python -m fraudlab.notebook normalize {path.relative_to(REPO_ROOT)}`"
    assert on_disk == (nbformat.writes(nbformat.read(path, as_version=4)) + "\n").encode(), fix
    assert list(_integral_floats(json.loads(on_disk))) == [], fix


@pytest.mark.parametrize("path", NOTEBOOK_PATHS, ids=lambda path: path.name)
def test_committed_outputs_hold_no_warnings_and_no_paths_of_this_machine(path):
    problems = []
    for where, kind, text in _output_texts(nbformat.read(path, as_version=4)):
        if "TqdmWarning" in text or (kind == "stderr" and "Warning" in text):
            problems.append(f"{where}: a warning on {kind}: {text[:200]!r}")
        problems.extend(f"{where}: the path {machine_path!r} in {kind}"
                        for machine_path in MACHINE_PATHS if machine_path in text)
    assert problems == []


def test_canonical_notebook_text_writes_whole_floats_as_ints_and_ends_with_a_newline(tmp_path):
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "record('x', 1.0)", outputs=[nbformat.v4.new_output("display_data", data={"text/plain": "x = 1.0"},
                                                             metadata={"scale": 2.0, "share": 0.5})])])
    text = canonical_notebook_text(notebook)
    parsed = json.loads(text)
    assert parsed["cells"][0]["outputs"][0]["metadata"] == {"scale": 2, "share": 0.5}
    assert isinstance(parsed["cells"][0]["outputs"][0]["metadata"]["scale"], int)
    assert text.endswith("}\n")
    path = tmp_path / "n.ipynb"
    nbformat.write(notebook, path)
    main(["normalize", str(path)])
    assert path.read_text(encoding="utf-8") == text
    assert canonical_notebook_text(path) == text


def test_values_table_prints_counts_as_whole_numbers():
    table = values_table({"train_sample_rows": 24_532, "nonfraud_weight": 129.68712})
    with pd.option_context("display.float_format", "{:,.4f}".format):
        shown = table.to_string()
    assert "24532" in shown
    assert "24532.0" not in shown
    assert "24,532.0000" not in shown
    assert "129.6871" in shown


def test_read_results_refuses_a_notebook_that_recorded_nothing(tmp_path):
    path = tmp_path / "silent.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1 + 1")]), path)
    with pytest.raises(FraudlabError, match="holds no recorded results"):
        read_results(path)


@pytest.mark.slow
def test_01_fits_saves_and_reloads_a_model(tmp_path):
    model_path = tmp_path / "model.npz"
    results = _execute("01_fit_gaussian_copula.ipynb", tmp_path, n_rows=50_000, seed=3, model_out=str(model_path))
    assert results["source_rows"] == 50_000
    assert results["reloaded_identical"] is True
    assert results["validity_all_rules"] >= 0.999
    assert 0.0005 < results["natural_fraud_rate"] < 0.003
    model = TransactionSynthesizer.load(model_path)
    assert TransactionSynthesizer.read_manifest(model_path)["training_data"]["rows"] == 50_000
    assert model.natural_fraud_rate() == pytest.approx(results["natural_fraud_rate"])
    sample = model.sample(5_000, seed=0)
    assert len(sample) == 5_000
    assert rule_pass_rates(sample)["all"] >= 0.999


@pytest.mark.slow
def test_02_scores_the_pretrained_model_above_sdvs_default(tmp_path):
    results = _execute("02_synthetic_vs_real.ipynb", tmp_path, n_samples=30_000, seed=1)
    assert results["n_samples"] == 30_000
    assert results["quality_ours"] >= 0.9
    assert results["quality_ours"] > results["quality_sdv_default"]
    assert results["validity_ours"] >= 0.999
    assert results["validity_sdv_default"] < 0.5
    assert 0.0 <= results["dcr_share_ours"] <= 0.2


@pytest.mark.slow
@pytest.mark.kafka
def test_03_streams_through_grpc_into_kafka_and_reads_everything_back(tmp_path, kafka_bootstrap, topic):
    results = _execute("03_grpc_kafka_pipeline.ipynb", tmp_path, bootstrap=kafka_bootstrap, topic=topic,
                       n_transactions=3_000, users=50, seed=2)
    assert results["sent"] == results["accepted"] == results["consumed"] == results["distinct_consumed"] == 3_000
    assert results["transactions_per_second"] > 0
    assert results["server_running_after_stop"] is False
    # A broker given to the notebook is left running, and holds exactly this run's records.
    assert results["broker_stopped"] is False
    assert sum(end_offsets(kafka_bootstrap, topic).values()) == 3_000



@pytest.mark.slow
def test_04_generates_every_scenario_and_geolocates_home_traffic_at_home(tmp_path):
    results = _execute("04_account_streams.ipynb", tmp_path, accounts=300, days=7, seed=3, fraud_rate=0.02)
    assert results["rows"] > 0
    assert results["rows"] == sum(results["scenario_rows"].values())
    assert set(results["fraud_scenario_rows"]) == set(FRAUD_SCENARIOS)
    assert all(rows > 0 for rows in results["fraud_scenario_rows"].values()), results["fraud_scenario_rows"]
    assert results["fraud_rows"] == sum(results["fraud_scenario_rows"].values())
    assert results["takeover_transfers"] > 0
    assert results["cash_out_equals_transfer"] is True
    assert results["cash_out_same_device_and_ip"] is True
    assert 0 < results["cash_out_max_minutes"] <= results["mule_minutes"]
    assert results["home_geolocation_share"] >= 0.99
    assert results["geolocated_share"] >= 0.99
    assert results["lookups_per_second"] > 0  # a measurement of the machine: recorded, not bounded


@pytest.mark.slow
def test_05_trains_a_detector_that_holds_on_real_rows_and_logs_it_to_mlflow(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    results = _execute("05_detect_fraud.ipynb", tmp_path, accounts=500, days=7, copula_rows=20_000,
                       copula_frauds=2_000, trees=50, ablation=False, seed=3, tracking_uri=uri)
    assert results["stream_rows"] > 1_000
    assert results["executors_identical"] is True and results["late_records"] == 0
    assert results["real_pr_auc"] >= 0.98  # synthetic-trained, on real held-out rows (0.9956 at the defaults)
    assert results["real_pr_auc"] >= 0.97 * results["real_pr_auc_trtr"]
    assert 0 < results["real_pr_auc_no_balance_errors"] <= 1
    assert 0 < results["alert_flagged_share"] <= 0.005
    assert results["ablation_families"] == []
    assert results["mlflow_model_version"] == 1  # a new store: the first version of fraud-detector


@pytest.mark.slow
@pytest.mark.kafka
def test_06_scores_every_acknowledged_transaction_once_live_on_flink_and_leaves_no_process(tmp_path):
    """Broker, Flink job and service started by the notebook, in tmp_path: while it runs, their JVMs are seen (by
    command line or working directory, papermill's cwd); once it ended, none of them is left."""
    import threading
    import time

    from fraudlab.detect.model import DEFAULT_DETECTOR, Detector
    from fraudlab.infra.process import free_port

    def processes_of_this_run() -> dict[int, str]:
        return _processes_under(tmp_path)

    seen: dict[int, str] = {}
    finished = threading.Event()

    def watch() -> None:
        while not finished.wait(1.0):
            seen.update(processes_of_this_run())

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        results = _execute("06_realtime_detection.ipynb", tmp_path, accounts=300, days=4, seed=7, speed=30_000,
                           broker_port=free_port(), controller_port=free_port(), broker_dir=str(tmp_path / "broker"),
                           job_dir=str(tmp_path / "job"))
    finally:
        finished.set()
        watcher.join()
    assert results["transactions"] > 1_000
    assert (results["acknowledged"] == results["scored"] == results["distinct_scored"]
            == results["transactions"]), "every acknowledged transaction scored, each once"
    assert results["scored_equals_acknowledged"] is True
    assert results["frauds"] > 0 and results["alerts"] > 0
    assert results["alerts_with_reasons"] == results["alerts"] and results["alert_ids_match"] is True
    assert 0.0 <= results["precision"] <= 1.0 and 0.0 <= results["recall"] <= 1.0
    assert results["model_versions"] == [Detector.load(DEFAULT_DETECTOR).version]
    assert results["warm_up_s"] >= 0 and results["latency_p50_ms"] > 0
    assert results["late_records"] == 0, "the replay's lateness matches its speed: no record dropped as late"
    log = (tmp_path / "job" / "job.log").read_text()
    assert "stopping (drain)" in log and "stopped; savepoint" in log, "the job was drained, not killed"
    assert results["job_state_after_stop"] is None
    assert results["server_running_after_stop"] is False
    assert results["broker_stopped"] is True
    assert list(seen.values()).count("java") >= 2, f"the broker's and Flink's JVMs were not seen: {seen}"
    deadline = time.monotonic() + 15  # the kernel itself may take a moment to exit
    while (left := processes_of_this_run()) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert left == {}, f"processes of this run still alive: {left}"


#: The hot-reload bound the scoring job promises: an announced model scores records within this many seconds.
RELOAD_BOUND_MS = 10_000
DAG_TASKS = ("check_data", "repro", "push", "register", "promote", "announce")


@pytest.mark.slow
@pytest.mark.kafka
@pytest.mark.timeout(2400)
def test_07_closes_the_loop_a_better_model_goes_live_a_worse_one_is_refused(tmp_path):
    """The promotion loop end to end: a live Flink job scoring a stream, Airflow's DAG promoting a better candidate
    that the job switches to within the hot-reload bound, then refusing a worse one; no record lost or doubled."""
    import time

    from fraudlab.infra.process import free_port

    results = _execute("07_continuous_training.ipynb", tmp_path, broker_port=free_port(),
                       controller_port=free_port(), broker_dir=str(tmp_path / "broker"),
                       work_dir=str(tmp_path / "work"))
    # the first champion, by hand: every stage ran
    assert results["first_stages"] == ["simulate", "fit", "streams", "train", "evaluate"]
    assert results["first_version"] == 1
    # the better candidate: the whole DAG succeeded, DVC saw the PR-AUC rise, the gate promoted it
    assert results["better_dag_state"] == "success"
    assert results["better_tasks"] == dict.fromkeys(DAG_TASKS, "success")
    assert results["better_real_pr_auc_change"] > 0 and results["better_promoted"] is True
    assert results["better_version"] == 2
    # the worse candidate: registered, refused, champion kept, nothing announced
    assert results["worse_dag_state"] == "success" and results["worse_tasks"] == dict.fromkeys(DAG_TASKS, "success")
    assert results["worse_real_pr_auc_change"] < 0 and results["worse_promoted"] is False
    assert results["worse_champion_version"] == 2 and results["champion_alias"] == [2]
    detectors = results["detectors"]
    assert results["announced_detectors"] == [detectors["better"]], "only the promoted candidate was announced"
    # the live stream: exactly once across the switch, one clean switch within the bound, kept after the refusal
    assert results["published"] > 1_000
    assert results["scored"] == results["distinct_scored"] == results["published"]
    assert results["late_records"] == 0
    assert results["model_versions_in_order"] == [detectors["first"], detectors["better"]]
    assert results["old_after_switch"] == 0
    assert 0 < results["switch_ms"] <= RELOAD_BOUND_MS
    assert results["versions_after_refusal"] == [detectors["better"]]
    assert results["job_state_after_stop"] is None and results["broker_stopped"] is True
    deadline = time.monotonic() + 15  # the kernel itself may take a moment to exit
    while (left := _processes_under(tmp_path)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert left == {}, f"processes of this run still alive: {left}"


def test_committed_notebooks_show_each_progress_bar_where_it_ended(tmp_path):
    """JupyterLab draws a saved tqdm widget from its plain-text fallback, which papermill captured at 0 %."""
    for path in NOTEBOOK_PATHS:
        assert path.read_text(encoding="utf-8") == canonical_notebook_text(path), path.name
    state = {
        "bar": {"model_name": "HBoxModel", "state": {"children": ["IPY_MODEL_a", "IPY_MODEL_b", "IPY_MODEL_c"]}},
        "a": {"model_name": "HTMLModel", "state": {"value": "produce:\u2007100%"}},
        "b": {"model_name": "FloatProgressModel", "state": {"value": 3000, "max": 3000}},
        "c": {"model_name": "HTMLModel", "state": {"value": "\u20073.00k/3.00k\u2007[00:01&lt;00:00]"}},
    }
    view = nbformat.v4.new_output("display_data", data={
        "application/vnd.jupyter.widget-view+json": {"model_id": "bar", "version_major": 2, "version_minor": 0},
        "text/plain": "produce:   0%|          | 0.00/3.00k"})
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("produce()", outputs=[view])])
    notebook.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": state}}
    saved = nbformat.reads(canonical_notebook_text(notebook), as_version=4)
    shown = saved.cells[0].outputs[0].data["text/plain"]
    assert shown == "produce: 100%|██████████| 3.00k/3.00k [00:01<00:00]"
