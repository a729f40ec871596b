"""Notebook support: record key results in a notebook's outputs, and read them back in tests.

A notebook calls :func:`record` for each figure of merit it wants checked
(rows fitted, quality score, transactions consumed...). The value travels
inside the cell output under a private MIME type, so an executed notebook
(papermill's output file) carries its own results: ``tests/integration/test_notebooks.py``
reads them with :func:`read_results` and asserts on real numbers, with no
side files to clean up.

Committed notebooks are kept in the form JupyterLab saves
(:func:`canonical_notebook_text`), so merely opening one does not mark it
modified; ``python -m fraudlab.notebook normalize FILE...`` puts papermill's
output in that form.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fraudlab.exceptions import InvalidParameterError
from fraudlab.plain import to_plain

if TYPE_CHECKING:
    import pandas as pd
    from nbformat import NotebookNode

__all__ = [
    "RESULT_MIME_TYPE",
    "canonical_notebook_text",
    "main",
    "peak_memory_gb",
    "read_results",
    "record",
    "values_table",
]

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


def values_table(values: Mapping[str, Any], name: str = "value") -> pd.DataFrame:
    """``values`` as a one-column table in which whole numbers stay whole numbers.

    A Series of ints and floats together is upcast to float, so counts would
    print as ``24,532.0000`` under the notebooks' float format; object dtype
    formats each value by its own type.
    """
    import pandas as pd

    return pd.Series(dict(values), name=name, dtype=object).to_frame()


def _integral_floats_as_ints(value: Any) -> Any:
    """``value`` (parsed JSON) with every whole-number float as an int, as a JavaScript JSON round trip leaves it."""
    if isinstance(value, dict):
        return {key: _integral_floats_as_ints(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_integral_floats_as_ints(item) for item in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


_WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
_WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
_BAR_CELLS = 10


def _progress_text(model_id: str, state: Mapping[str, Any]) -> str | None:
    """The final text of a saved tqdm widget (HBox of prefix HTML, FloatProgress, suffix HTML), else None."""
    import html

    children = state.get(model_id, {}).get("state", {}).get("children", [])
    models = [state.get(str(child).removeprefix("IPY_MODEL_"), {}) for child in children]
    if [m.get("model_name") for m in models] != ["HTMLModel", "FloatProgressModel", "HTMLModel"]:
        return None
    prefix, bar, suffix = (m.get("state", {}) for m in models)
    filled = round(_BAR_CELLS * bar.get("value", 0) / bar["max"]) if bar.get("max") else 0
    text = f"{prefix.get('value', '')}|{'█' * filled}{' ' * (_BAR_CELLS - filled)}|{suffix.get('value', '')}"
    return html.unescape(text).replace("\u2007", " ")


def _final_progress_texts(notebook: dict[str, Any]) -> dict[str, Any]:
    """``notebook`` with each progress widget's plain-text fallback showing where the bar ended.

    The fallback is captured when the bar is first drawn (0 %), and
    JupyterLab shows it instead of the saved widget state, so a committed
    notebook would show every bar stuck at its start.
    """
    state = notebook.get("metadata", {}).get("widgets", {}).get(_WIDGET_STATE, {}).get("state", {})
    for cell in notebook.get("cells", []):
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            text = _progress_text(data[_WIDGET_VIEW].get("model_id", ""), state) if _WIDGET_VIEW in data else None
            if text is not None:
                data["text/plain"] = text
    return notebook


def canonical_notebook_text(notebook: str | Path | NotebookNode) -> str:
    """The text committed notebooks hold: what JupyterLab saves, with progress bars shown where they ended.

    JupyterLab parses a notebook in the browser, where JSON numbers are
    JavaScript numbers (``1.0`` comes back as ``1``), and the server writes
    it with ``nbformat.write`` (indent 1, sorted keys, a trailing newline).
    Papermill writes Python floats and no trailing newline, so a notebook it
    executed would be rewritten by the first autosave after merely opening it.
    """
    import nbformat

    if isinstance(notebook, str | Path):
        notebook = nbformat.read(str(notebook), as_version=4)
    plain = _final_progress_texts(_integral_floats_as_ints(notebook))
    return nbformat.writes(nbformat.from_dict(plain)) + "\n"


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m fraudlab.notebook normalize FILE...``: rewrite notebooks in canonical form, in place."""
    parser = argparse.ArgumentParser(prog="python -m fraudlab.notebook", description="Notebook maintenance.")
    commands = parser.add_subparsers(dest="command", required=True)
    normalize = commands.add_parser("normalize", help="rewrite notebooks as JupyterLab would save them")
    normalize.add_argument("files", nargs="+", type=Path, metavar="FILE")
    arguments = parser.parse_args(argv)
    for path in arguments.files:
        text = canonical_notebook_text(path)
        if path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            print(f"normalized {path}")


if __name__ == "__main__":
    main()
