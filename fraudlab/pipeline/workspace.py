"""A continuous-training pipeline directory driven from Python: what a notebook and the tests do with it.

:class:`PipelineWorkspace` runs the same commands a person or the Airflow DAG runs (``dvc repro``, ``dvc metrics
diff``, ``fraudlab pipeline register | promote | announce``) as subprocesses in one directory, with one environment
(this venv's tools first on PATH, the cache, the MLflow store, the broker), and reads back what they wrote. So
nothing here re-implements a step: it only saves the caller from spelling out commands and parsing their output.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from fraudlab.exceptions import InvalidParameterError, MissingDataError
from fraudlab.pipeline.steps import PROMOTION_FILE, REGISTERED_FILE, new_workspace, read_json

__all__ = ["STAGES", "PipelineWorkspace", "pipeline_environment"]

#: The stages of ``dvc.yaml``, in their order.
STAGES = ("simulate", "fit", "streams", "train", "evaluate")
_COMMAND_TIMEOUT_S = 1800.0


def pipeline_environment(*, cache_dir: Path, tracking_uri: str, bootstrap: str | None = None,
                         base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment the pipeline's commands run in: this venv's ``dvc`` and ``fraudlab`` first on PATH, the
    fraudlab cache (GeoIP, the DVC remote), the MLflow store, the broker the announcement goes to, DVC's and
    MLflow's usage reports off."""
    env = dict(os.environ if base is None else base)
    env.update(PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', os.defpath)}",
               FRAUDLAB_CACHE_DIR=str(cache_dir), MLFLOW_TRACKING_URI=tracking_uri, DVC_NO_ANALYTICS="1",
               MLFLOW_DISABLE_TELEMETRY="true")
    if bootstrap:
        env["KAFKA_BOOTSTRAP_SERVERS"] = bootstrap
    return env


@dataclass(frozen=True)
class PipelineWorkspace:
    """A pipeline directory (``dvc.yaml``, ``params.yaml``, ``data/``, its own git) and its commands' environment."""

    directory: Path
    env: Mapping[str, str]

    @classmethod
    def create(cls, directory: Path, params: Mapping[str, Any], env: Mapping[str, str], *,
               remote: Path | None = None) -> PipelineWorkspace:
        """A new workspace in ``directory`` (:func:`~fraudlab.pipeline.steps.new_workspace`) with a local DVC remote
        (``remote``, default: the cache's ``dvc-remote``)."""
        workspace = cls(new_workspace(directory, dict(params)), dict(env))
        workspace.run("fraudlab", "pipeline", "remote", *(("--url", str(remote)) if remote else ()))
        return workspace

    def run(self, *args: str, timeout: float = _COMMAND_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
        """One command in the workspace; MissingDataError with its output when it exits non-zero."""
        completed = subprocess.run(args, cwd=self.directory, env=dict(self.env), capture_output=True, text=True,
                                   timeout=timeout, check=False, stdin=subprocess.DEVNULL)
        if completed.returncode != 0:
            raise MissingDataError(f"`{' '.join(args)}` exited {completed.returncode} in {self.directory}:\n"
                                   f"{(completed.stdout + completed.stderr)[-4000:]}")
        return completed

    @property
    def params(self) -> dict[str, Any]:
        import yaml

        return yaml.safe_load((self.directory / "params.yaml").read_text(encoding="utf-8"))

    def set_params(self, changes: Mapping[str, Any]) -> dict[str, Any]:
        """Change parameters named by dotted paths (``{"train.trees": 30}``) in ``params.yaml``; the new parameters.

        Raises:
            InvalidParameterError: a path names no existing parameter (a typo would otherwise add one no stage reads).
        """
        import yaml

        params = self.params
        for dotted, value in changes.items():
            *parents, leaf = dotted.split(".")
            node = params
            for key in parents:
                node = node.get(key) if isinstance(node, dict) else None
            if not isinstance(node, dict) or leaf not in node:
                raise InvalidParameterError(f"Invalid parameter {dotted!r}: params.yaml has no such entry.")
            node[leaf] = value
        (self.directory / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
        return params

    def repro(self) -> list[str]:
        """``dvc repro``; the stages it ran (those whose inputs changed), in order."""
        output = self.run("dvc", "repro").stdout
        return [stage for stage in STAGES if f"Running stage '{stage}'" in output]

    def commit(self, message: str) -> None:
        """Commit ``dvc.lock``, ``params.yaml`` and the metrics to the workspace's git: what ``dvc metrics diff``
        compares the next run with."""
        self.run("git", "add", "-A")
        self.run("git", "-c", "user.name=fraudlab", "-c", "user.email=pipeline@fraudlab.invalid", "commit",
                 "--quiet", "--allow-empty", "-m", message)

    def step(self, name: str, *args: str) -> str:
        """``fraudlab pipeline NAME ARGS``: what it printed."""
        return self.run("fraudlab", "pipeline", name, *args).stdout.strip()

    def metrics(self) -> dict[str, float]:
        return read_json(self.directory / "data" / "metrics.json", "evaluation metrics (run `dvc repro`)")

    def metrics_diff(self) -> pd.DataFrame:
        """``dvc metrics diff`` against the last commit: metric, old, new and change, for the metrics that moved."""
        diff = json.loads(self.run("dvc", "metrics", "diff", "--json").stdout or "{}")
        rows = [{"metric": name, "old": change.get("old"), "new": change.get("new"), "change": change.get("diff")}
                for values in diff.values() for name, change in values.items()]
        return pd.DataFrame(rows, columns=["metric", "old", "new", "change"]).set_index("metric")

    def dag(self) -> str:
        """``dvc dag``: the stages and what feeds what, as text."""
        return self.run("dvc", "dag").stdout.rstrip()

    def registered(self) -> dict[str, Any]:
        return read_json(self.directory / "data" / REGISTERED_FILE, "registered candidate")

    def decision(self) -> dict[str, Any]:
        return read_json(self.directory / "data" / PROMOTION_FILE, "promotion decision")
