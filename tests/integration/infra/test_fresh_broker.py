"""A newcomer's first run: `fraudlab demo` and notebook 03 on a brand-new broker and a topic that does not exist.

A fresh broker answers CreateTopics before it has elected the new
partitions' leaders; an offset query in that gap used to fail with
NOT_LEADER_FOR_PARTITION, so the first `make demo` on every new machine died
while the session broker of the rest of the suite, created long before, hid it.
Each round here starts from empty state on free ports.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import papermill
import pytest

from fraudlab.infra.broker import LocalBroker
from fraudlab.notebook import read_results

NOTEBOOK_03 = Path(__file__).resolve().parents[3] / "notebooks" / "03_grpc_kafka_pipeline.ipynb"
ROUNDS = 3

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_the_demo_command_succeeds_on_a_brand_new_broker(tmp_path, fresh_broker_settings, round_):
    """The ingestion demo from the CLI: it starts the broker itself, in empty state, and creates the topic."""
    settings = fresh_broker_settings("broker")
    completed = subprocess.run(
        [sys.executable, "-m", "fraudlab", "demo", "--ingest-only", "--port", str(settings.port),
         "--controller-port", str(settings.controller_port), "--state-dir", str(settings.state_dir),
         "--count", "2000", "--users", "50", "--topic", f"fresh-demo-{round_}"],
        capture_output=True, text=True, timeout=300, check=False, cwd=tmp_path,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert "Traceback" not in completed.stderr
    assert f"Kafka broker at {settings.bootstrap}: started" in completed.stdout
    assert "read 2,000 records (2,000 distinct)" in completed.stdout
    assert "every acknowledged transaction is in Kafka exactly once" in completed.stdout


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_notebook_03_runs_top_to_bottom_on_a_brand_new_broker(tmp_path, fresh_broker_settings, round_):
    with LocalBroker(fresh_broker_settings("broker"), purge_on_exit=True) as bootstrap:
        output = tmp_path / NOTEBOOK_03.name
        papermill.execute_notebook(
            str(NOTEBOOK_03), str(output), cwd=str(tmp_path), progress_bar=False, kernel_name="fraudlab",
            parameters={"bootstrap": bootstrap, "topic": f"fresh-notebook-{round_}", "n_transactions": 2000,
                        "users": 50, "seed": round_},
        )
    results = read_results(output)
    assert results["sent"] == results["accepted"] == results["consumed"] == results["distinct_consumed"] == 2000
