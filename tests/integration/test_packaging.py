"""A built wheel is a working fraudlab: installed without the repository, it still has its pre-trained model.

The editable install the tests run in finds everything beside the source, so
it cannot show what a wheel leaves out. Here the wheel is built from a copy of
the tracked files (nothing lands in the repository) and installed into a fresh
venv that borrows the dev venv's dependencies through a ``.pth`` path line.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pandas as pd
import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
PRETRAINED = ("fraudlab/pretrained/gaussian_copula_20L.npz", "fraudlab/pretrained/gaussian_copula_20L.json",
              "fraudlab/pretrained/detector.json", "fraudlab/pretrained/detector.onnx")


def _run(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run a command outside the dev environment's PYTHONPATH, failing with its output."""
    env = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}
    completed = subprocess.run([str(arg) for arg in args], cwd=cwd, env=env, capture_output=True, text=True,
                               check=False, timeout=300)
    assert completed.returncode == 0, f"{args} exited {completed.returncode}:\n{completed.stdout}\n{completed.stderr}"
    return completed


def _tracked_copy(target: Path) -> Path:
    """Copy the files git tracks: building in the work tree would leave build/ and *.egg-info behind."""
    listed = _run("git", "ls-files", "-z", cwd=REPO).stdout.split("\0")
    for name in filter(None, listed):
        source = REPO / name
        if source.is_file():  # a tracked file someone deleted in the work tree is still listed
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


def _build_wheel(source: Path, out: Path) -> Path:
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", out, source)
    (wheel,) = out.glob("fraudlab-*.whl")
    return wheel


def _fresh_venv(where: Path) -> tuple[Path, Path]:
    """A venv of the base interpreter whose only borrowed path is the dev venv's site-packages; (python, site)."""
    _run(getattr(sys, "_base_executable", sys.executable), "-m", "venv", "--without-pip", where)
    python = where / "bin" / "python"
    site = Path(_run(python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))").stdout.strip())
    borrowed = dict.fromkeys(sysconfig.get_path(kind) for kind in ("purelib", "platlib"))
    (site / "dev-venv-dependencies.pth").write_text("".join(f"{path}\n" for path in borrowed))
    return python, site


def _printed(python: Path, code: str, cwd: Path) -> str:
    return _run(python, "-c", code, cwd=cwd).stdout.strip()


def test_the_wheel_installs_a_fraudlab_that_samples_from_its_packaged_model(tmp_path):
    wheel = _build_wheel(_tracked_copy(tmp_path / "source"), tmp_path / "wheels")
    assert set(PRETRAINED) <= set(zipfile.ZipFile(wheel).namelist())
    python, site = _fresh_venv(tmp_path / "venv")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # The .pth line only puts the dev site-packages on sys.path: its own .pth files (the editable finder) stay off.
    assert _printed(python, "import importlib.util; print(importlib.util.find_spec('fraudlab'))", elsewhere) == "None"
    assert _printed(python, "import sdv; print(sdv.__name__)", elsewhere) == "sdv"

    # -I: the dev venv's editable fraudlab is visible to pip through the .pth; never touch it, just install beside.
    _run(python, "-m", "pip", "install", "--no-deps", "--no-index", "--ignore-installed", wheel)
    model = Path(_printed(python, "import fraudlab.generate.synth as synth; print(synth.DEFAULT_MODEL)", elsewhere))
    assert model.is_relative_to(site) and model.is_file()
    assert not model.is_relative_to(REPO)

    _run(python.parent / "fraudlab", "sample", "--rows", "1000", "--seed", "0", "-o", "out.parquet", cwd=elsewhere)
    assert len(pd.read_parquet(elsewhere / "out.parquet")) == 1000
