"""Layers point down, and heavy dependencies stay where they are used: checked in a fresh interpreter per import.

Each case imports one fraudlab module in a new Python process and lists what
ended up in ``sys.modules``. A stage that must run without gRPC, a Kafka
client, MLflow or PyFlink (and without the stages above it) fails here the day
someone adds such an import, even an indirect one.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

#: Heavy or stage-specific third-party packages: what the lower layers must not load.
GRPC = ("grpc", "grpc_health", "grpc_reflection", "grpc_tools")
KAFKA = ("confluent_kafka",)
LATER_STAGES = ("mlflow", "pyflink", "onnxruntime", "redis")
NOTEBOOK = ("papermill", "ipykernel", "nbformat")  # not IPython: seaborn loads it when it is installed
SERVICES = (*GRPC, *KAFKA, *LATER_STAGES, *NOTEBOOK)
#: The generated stubs need the protobuf runtime they were generated for: the Flink venv's older one cannot load them,
#: so what the Flink job imports from fraudlab.schema (table, wire) must not load them either.
STUBS = ("fraudlab.schema.proto.fraud_pb2", "fraudlab.schema.proto.fraud_pb2_grpc", "fraudlab.schema.messages")

#: module imported -> (third-party packages it must not load, fraudlab modules it must not load)
FORBIDDEN: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "fraudlab": (SERVICES, ("fraudlab.data", "fraudlab.generate", "fraudlab.evaluate", "fraudlab.ingest",
                            "fraudlab.kafka", "fraudlab.infra", "fraudlab.cli")),
    "fraudlab.config": (SERVICES, ("fraudlab.schema",)),
    "fraudlab.artefacts": (SERVICES, ("fraudlab.schema", "fraudlab.generate", "fraudlab.detect")),
    "fraudlab.exceptions": (SERVICES, ("fraudlab.schema",)),
    "fraudlab.schema": (SERVICES, ("fraudlab.data", "fraudlab.generate", "fraudlab.evaluate", "fraudlab.ingest",
                                   "fraudlab.kafka", "fraudlab.infra", *STUBS)),
    "fraudlab.schema.wire": (SERVICES, ("fraudlab.data", "fraudlab.generate", "fraudlab.detect", "fraudlab.ingest",
                                        "fraudlab.kafka", "fraudlab.infra", *STUBS)),
    "fraudlab.data": (SERVICES, ("fraudlab.generate", "fraudlab.evaluate", "fraudlab.ingest", "fraudlab.kafka")),
    "fraudlab.generate": (SERVICES, ("fraudlab.evaluate", "fraudlab.ingest", "fraudlab.kafka")),
    "fraudlab.generate.baseline": (SERVICES, ("fraudlab.evaluate", "fraudlab.ingest", "fraudlab.kafka")),
    "fraudlab.evaluate": (SERVICES, ("fraudlab.generate", "fraudlab.ingest", "fraudlab.kafka")),
    "fraudlab.evaluate.plots": (SERVICES, ("fraudlab.generate", "fraudlab.ingest", "fraudlab.kafka")),
    "fraudlab.evaluate.report": (SERVICES, ("fraudlab.ingest", "fraudlab.kafka")),
    "fraudlab.evaluate.simulator": (SERVICES, ("fraudlab.ingest", "fraudlab.kafka")),
    "fraudlab.enrich": (SERVICES, ("fraudlab.generate", "fraudlab.evaluate", "fraudlab.ingest", "fraudlab.kafka",
                                   "fraudlab.infra")),
    "fraudlab.enrich.geoip": (SERVICES, ("fraudlab.generate", "fraudlab.evaluate", "fraudlab.ingest",
                                         "fraudlab.kafka", "fraudlab.infra", "fraudlab.schema")),
    # Read on both sides of the venv boundary: the standard library only.
    "fraudlab.detect.scoring_job": ((*SERVICES, "numpy", "pandas"), ("fraudlab.detect.model", "fraudlab.schema")),
    # The main venv's launcher of the Flink job: starts it as a process, never imports PyFlink or the job.
    "fraudlab.detect.realtime": ((*GRPC, "pyflink", "mlflow", *NOTEBOOK), ("fraudlab.detect.flink_job",)),
    "fraudlab.detect.features": ((*SERVICES, "lightgbm", "onnx", "onnxmltools", "sklearn"),
                                 ("fraudlab.detect.model", "fraudlab.detect.registry", "fraudlab.generate",
                                  "fraudlab.enrich", "fraudlab.infra", "fraudlab.ingest", "fraudlab.kafka")),
    "fraudlab.detect.model": ((*GRPC, *KAFKA, "mlflow", "pyflink", *NOTEBOOK, "lightgbm", "onnxmltools"),
                              ("fraudlab.detect.registry", "fraudlab.infra", "fraudlab.ingest", "fraudlab.kafka")),
    "fraudlab.detect.registry": (SERVICES, ("fraudlab.infra", "fraudlab.ingest", "fraudlab.kafka")),
    # Each step loads its MLflow, DVC or Kafka client when it runs: importing the steps (a DAG task does) is light.
    "fraudlab.pipeline.steps": ((*GRPC, *KAFKA, "mlflow", "dvc", "pyflink", "redis", *NOTEBOOK),
                                ("fraudlab.detect.registry", "fraudlab.detect.realtime", "fraudlab.infra",
                                 "fraudlab.ingest", "fraudlab.kafka", "fraudlab.demo", "fraudlab.cli")),
    # Drives the pipeline's commands as subprocesses: none of what they load comes into the caller.
    "fraudlab.pipeline.workspace": ((*GRPC, *KAFKA, "mlflow", "dvc", "pyflink", "redis", *NOTEBOOK),
                                    ("fraudlab.detect.registry", "fraudlab.detect.realtime", "fraudlab.infra",
                                     "fraudlab.ingest", "fraudlab.kafka", "fraudlab.demo", "fraudlab.cli")),
    "fraudlab.kafka": ((*GRPC, *LATER_STAGES, *NOTEBOOK), ("fraudlab.ingest", "fraudlab.generate")),
    "fraudlab.ingest.client": ((*KAFKA, *LATER_STAGES, *NOTEBOOK), ("fraudlab.ingest.service", "fraudlab.kafka")),
    "fraudlab.ingest.service": ((*LATER_STAGES, *NOTEBOOK), ("fraudlab.ingest.client", "fraudlab.generate")),
    "fraudlab.infra": (SERVICES, ("fraudlab.schema", "fraudlab.kafka", "fraudlab.ingest", "fraudlab.detect")),
    # Runs in the main venv and only starts PyFlink's scripts: never imports pyflink (nor the job it submits).
    "fraudlab.infra.flink": (SERVICES, ("fraudlab.schema", "fraudlab.kafka", "fraudlab.ingest", "fraudlab.detect")),
    # Starts Airflow from its own venv: never imports airflow (nor what the DAG's commands load).
    "fraudlab.infra.airflow": ((*SERVICES, "airflow", "dvc"), ("fraudlab.schema", "fraudlab.kafka", "fraudlab.ingest",
                                                               "fraudlab.detect", "fraudlab.pipeline")),
    "fraudlab.notebook": (SERVICES, ("fraudlab.evaluate", "fraudlab.ingest", "fraudlab.kafka")),
    "fraudlab.cli": ((*GRPC, *KAFKA, *LATER_STAGES, *NOTEBOOK), ("fraudlab.ingest", "fraudlab.kafka",
                                                               "fraudlab.generate", "fraudlab.evaluate")),
}

_PROBE = "import importlib, json, sys; importlib.import_module(sys.argv[1]); print(json.dumps(sorted(sys.modules)))"


def _loaded_by(module: str) -> set[str]:
    completed = subprocess.run([sys.executable, "-c", _PROBE, module], capture_output=True, text=True, check=False)
    assert completed.returncode == 0, f"importing {module} failed:\n{completed.stderr}"
    return set(json.loads(completed.stdout))


def _under(loaded: set[str], packages: tuple[str, ...]) -> list[str]:
    return sorted(name for name in loaded if any(name == p or name.startswith(f"{p}.") for p in packages))


@pytest.mark.parametrize("module", sorted(FORBIDDEN))
def test_importing_a_module_loads_nothing_it_must_not(module):
    """A fresh interpreter that imports ``module`` has none of its forbidden packages or stages in sys.modules."""
    # Setup
    third_party, stages = FORBIDDEN[module]

    # Run
    loaded = _loaded_by(module)

    # Assert
    assert not _under(loaded, third_party), f"import {module} loads {_under(loaded, third_party)}"
    assert not _under(loaded, stages), f"import {module} loads {_under(loaded, stages)}"


def test_the_probe_sees_a_forbidden_import():
    """The check itself works: importing the gRPC service does load grpc and the Kafka client."""
    loaded = _loaded_by("fraudlab.ingest.service")
    assert _under(loaded, GRPC) and _under(loaded, KAFKA)


_SCORING = """import json, sys
import numpy as np, pandas as pd
from fraudlab.detect.model import DEFAULT_DETECTOR, Detector
detector = Detector.load(DEFAULT_DETECTOR)
scores = detector.score(pd.DataFrame(np.zeros((3, len(detector.feature_names))), columns=detector.feature_names))
print(json.dumps({"scores": len(scores), "modules": sorted(sys.modules)}))
"""


def test_scoring_with_the_pretrained_detector_loads_neither_mlflow_nor_the_training_libraries():
    """What the Flink venv runs: load the shipped detector and score, with onnxruntime only."""
    completed = subprocess.run([sys.executable, "-c", _SCORING], capture_output=True, text=True, check=False)
    assert completed.returncode == 0, completed.stderr
    result = json.loads(completed.stdout)
    assert result["scores"] == 3 and "onnxruntime" in result["modules"]
    assert not _under(set(result["modules"]), ("mlflow", "lightgbm", "onnxmltools", "sklearn", *GRPC, *KAFKA))
