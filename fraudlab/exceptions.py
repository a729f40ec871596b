"""The errors fraudlab raises.

Every error derives from :class:`FraudlabError`, so a caller can catch the
whole family at once; each subclass says which part of the pipeline failed.
Messages name the offending setting or value and how to fix it.
"""

from __future__ import annotations

__all__ = ["BrokerError", "FraudlabError", "MissingToolError"]


class FraudlabError(Exception):
    """Raised for any failure that fraudlab detects and can explain."""


class BrokerError(FraudlabError):
    """Raised when the local Kafka broker cannot be resolved, started or stopped."""


class MissingToolError(BrokerError):
    """Raised when an external program the broker needs (java, mvn) is absent or too old."""
