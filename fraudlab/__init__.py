"""fraudlab: a workbench for real-time fraud detection on synthetic mobile-money data."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from fraudlab.exceptions import BrokerError, FraudlabError, MissingToolError

try:
    __version__ = version("fraudlab")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

__all__ = ["BrokerError", "FraudlabError", "MissingToolError", "__version__"]
