"""Notebook support: record key results in a notebook's outputs, and read them back in tests.

A notebook calls :func:`record` for each figure of merit it wants checked
(rows fitted, quality score, transactions consumed...). The value travels
inside the cell output under a private MIME type, so an executed notebook
(papermill's output file) carries its own results: ``tests/test_notebooks.py``
reads them with :func:`read_results` and asserts on real numbers, with no
side files to clean up.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fraudlab.exceptions import InvalidParameterError
from fraudlab.plain import to_plain

__all__ = ["RESULT_MIME_TYPE", "peak_memory_gb", "read_results", "record"]

RESULT_MIME_TYPE = "application/vnd.fraudlab.result+json"


def peak_memory_gb() -> float:
    """The peak resident memory of this process (the notebook's kernel) so far, in GB."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def record(name: str, value: Any) -> Any:
    """Show ``name = value`` in the notebook and store it in the output for :func:`read_results`.

    Returns ``value`` so a cell can record and keep using it.
    """
    from IPython.display import display

    plain = to_plain(value)
    json.dumps(plain, allow_nan=False)
    display({RESULT_MIME_TYPE: {"name": name, "value": plain}, "text/plain": f"{name} = {plain!r}"}, raw=True)
    return value


def read_results(path: str | Path) -> dict[str, Any]:
    """Every value an executed notebook recorded, by name (a later record of a name wins)."""
    import nbformat

    notebook = nbformat.read(str(path), as_version=4)
    results: dict[str, Any] = {}
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            payload = output.get("data", {}).get(RESULT_MIME_TYPE)
            if payload is not None:
                results[payload["name"]] = payload["value"]
    if not results:
        raise InvalidParameterError(f"{path} holds no recorded results: was it executed, and does it call record()?")
    return results
