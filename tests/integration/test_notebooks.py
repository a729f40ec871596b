"""The notebooks run with papermill at small parameters and record real, checked results.

Each notebook calls ``fraudlab.notebook.record`` for its key figures; these
tests execute it into a temporary folder and assert on what it recorded.
(CI also runs the committed notebooks as they are, at their default
parameters, with ``pytest --nbval-lax notebooks/``.)
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import papermill
import pytest

from fraudlab.exceptions import FraudlabError
from fraudlab.generate.synth import TransactionSynthesizer
from fraudlab.notebook import read_results

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"

pytestmark = pytest.mark.slow


def _execute(name: str, tmp_path: Path, **parameters: object) -> dict[str, object]:
    output = tmp_path / name
    papermill.execute_notebook(
        str(NOTEBOOKS / name), str(output), parameters=parameters, cwd=str(tmp_path), progress_bar=False,
        kernel_name="python3",
    )
    return read_results(output)


def test_every_notebook_has_one_parameters_cell():
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        notebook = nbformat.read(path, as_version=4)
        tagged = [cell for cell in notebook.cells if "parameters" in cell.metadata.get("tags", [])]
        assert len(tagged) == 1, f"{path.name} needs exactly one cell tagged 'parameters'"


def test_01_fits_saves_and_reloads_a_model(tmp_path):
    model_path = tmp_path / "model.npz"
    results = _execute("01_fit_gaussian_copula.ipynb", tmp_path, n_rows=50_000, seed=3, model_out=str(model_path))
    assert results["source_rows"] == 50_000
    assert results["reloaded_identical"] is True
    assert results["validity_all_rules"] >= 0.999
    assert 0.0005 < results["natural_fraud_rate"] < 0.003
    assert results["model_bytes"] == model_path.stat().st_size
    assert len(TransactionSynthesizer.load(model_path).sample(100, seed=0)) == 100


def test_02_scores_the_pretrained_model_above_sdvs_default(tmp_path):
    results = _execute("02_synthetic_vs_real.ipynb", tmp_path, n_samples=30_000, seed=1)
    assert results["n_samples"] == 30_000
    assert results["quality_ours"] >= 0.9
    assert results["quality_ours"] > results["quality_sdv_default"]
    assert results["validity_ours"] >= 0.999
    assert results["validity_sdv_default"] < 0.5
    assert 0.0 <= results["dcr_share_ours"] <= 0.2


def test_read_results_refuses_a_notebook_that_recorded_nothing(tmp_path):
    path = tmp_path / "silent.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1 + 1")]), path)
    with pytest.raises(FraudlabError, match="holds no recorded results"):
        read_results(path)


@pytest.mark.kafka
def test_03_streams_through_grpc_into_kafka_and_reads_everything_back(tmp_path, kafka_bootstrap, topic):
    results = _execute("03_grpc_kafka_pipeline.ipynb", tmp_path, bootstrap=kafka_bootstrap, topic=topic,
                       n_transactions=3_000, users=50, seed=2)
    assert results["sent"] == results["accepted"] == results["consumed"] == results["distinct_consumed"] == 3_000
    assert results["transactions_per_second"] > 0
    assert results["server_running_after_stop"] is False
