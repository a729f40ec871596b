"""Values as JSON can hold them: the form results take in manifests, reports and notebook metadata."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["to_plain"]


def to_plain(value: Any) -> Any:
    """``value`` with numpy scalars as Python numbers, tuples as lists and NaN or infinity as None."""
    if isinstance(value, dict):
        return {str(key): to_plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [to_plain(item) for item in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
