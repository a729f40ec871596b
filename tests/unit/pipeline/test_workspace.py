"""fraudlab.pipeline.workspace without DVC: the parameter edits and the commands' environment."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import yaml

from fraudlab.exceptions import InvalidParameterError, MissingDataError
from fraudlab.pipeline.steps import SMALL_PARAMS
from fraudlab.pipeline.workspace import PipelineWorkspace, pipeline_environment


@pytest.fixture
def workspace(tmp_path: Path) -> PipelineWorkspace:
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(SMALL_PARAMS, sort_keys=False))
    return PipelineWorkspace(tmp_path, pipeline_environment(cache_dir=tmp_path / "cache",
                                                            tracking_uri="sqlite:///m.db"))


def test_set_params_changes_the_dotted_entries_and_keeps_the_rest(workspace):
    changed = workspace.set_params({"train.trees": 3, "seed": 9})
    on_disk = yaml.safe_load((workspace.directory / "params.yaml").read_text())
    assert on_disk == changed == workspace.params
    assert on_disk["train"] == {**SMALL_PARAMS["train"], "trees": 3} and on_disk["seed"] == 9
    assert on_disk["streams"] == SMALL_PARAMS["streams"]


@pytest.mark.parametrize("name", ["train.tres", "nothing.at.all", "seed.value"])
def test_set_params_refuses_an_entry_params_yaml_does_not_have(workspace, name):
    before = (workspace.directory / "params.yaml").read_text()
    with pytest.raises(InvalidParameterError, match=f"Invalid parameter '{name}'"):
        workspace.set_params({name: 1})
    assert (workspace.directory / "params.yaml").read_text() == before


def test_the_commands_run_with_this_venv_first_and_the_runs_settings(tmp_path):
    env = pipeline_environment(cache_dir=tmp_path, tracking_uri="sqlite:///x.db", bootstrap="127.0.0.1:1",
                               base={"PATH": "/usr/bin", "HOME": "/home/x"})
    assert env["PATH"] == f"{Path(sys.executable).parent}{os.pathsep}/usr/bin"
    assert env["FRAUDLAB_CACHE_DIR"] == str(tmp_path) and env["MLFLOW_TRACKING_URI"] == "sqlite:///x.db"
    assert env["KAFKA_BOOTSTRAP_SERVERS"] == "127.0.0.1:1" and env["HOME"] == "/home/x"
    assert env["DVC_NO_ANALYTICS"] == "1" and env["MLFLOW_DISABLE_TELEMETRY"] == "true"


def test_a_failing_command_is_an_error_with_its_output(workspace):
    with pytest.raises(MissingDataError, match=r"exited 3 in .*\n.*boom"):
        workspace.run(sys.executable, "-c", "import sys; print('boom'); sys.exit(3)")
