"""Synthetic against real rows: fidelity, validity, utility (TSTR) and privacy, as numbers, figures and a report.

* :mod:`~fraudlab.evaluate.metrics`: every measure and :func:`evaluate`, which runs them all;
* :mod:`~fraudlab.evaluate.simulator`: the simulator's fidelity figures against its calibration targets;
* :mod:`~fraudlab.evaluate.plots`: matplotlib figures of tables and results;
* :mod:`~fraudlab.evaluate.report`: ``fraudlab evaluate``'s files (report.md, result.json, PNGs).

``plots`` and ``report`` load matplotlib: import them by name when needed.
"""

from fraudlab.evaluate.metrics import EvaluationResult, evaluate, model_metrics

__all__ = ["EvaluationResult", "evaluate", "model_metrics"]
