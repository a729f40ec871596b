"""environment.yml (conda users) declares the same dependencies as pyproject.toml."""

from __future__ import annotations

import re
import tomllib

import yaml

# conda-forge packages whose names differ from PyPI's.
CONDA_TO_PYPI = {"python-confluent-kafka": "confluent-kafka", "redis-py": "redis"}
# Tools the conda environment brings that pip does not install (the broker's JVM and build tools).
CONDA_ONLY = {"python", "openjdk", "maven", "make", "go", "pip"}


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement.strip(), maxsplit=1)[0].lower()


def test_environment_yml_matches_pyproject(repo_root):
    project = tomllib.loads((repo_root / "pyproject.toml").read_text())["project"]
    declared = {_name(r) for r in project["dependencies"]}
    for extra in project["optional-dependencies"].values():
        declared |= {_name(r) for r in extra}

    env = yaml.safe_load((repo_root / "environment.yml").read_text())
    conda, pip = set(), set()
    for entry in env["dependencies"]:
        if isinstance(entry, dict):
            pip |= {_name(r) for r in entry["pip"] if not r.startswith("-e")}
        else:
            conda.add(CONDA_TO_PYPI.get(_name(entry), _name(entry)))

    assert "conda-forge" in env["channels"]
    assert {"openjdk", "maven", "go"} <= conda
    assert (conda - CONDA_ONLY) | pip == declared
    assert any(entry == "openjdk=17" for entry in env["dependencies"] if isinstance(entry, str))
