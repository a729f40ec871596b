"""Enrichment of transactions with what their fields imply; each module is imported only when first used.

* :mod:`~fraudlab.enrich.geoip`: offline GeoIP (DB-IP City Lite and IP-to-ASN, from the npm registry): lookups of
  one address or a column (:class:`GeoIP`), the hosting-network flag, and the reverse, addresses drawn inside a
  city (:class:`AddressSpace`, used by the account generator).

The names below are loaded lazily, so ``import fraudlab.enrich`` costs nothing until one is used.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["AddressSpace", "GeoIP", "GeoIPFiles", "Location", "fetch_databases", "ipv4_integers", "ipv4_strings"]


def __getattr__(name: str) -> Any:
    """Load :mod:`fraudlab.enrich.geoip` on first use of one of its public names (PEP 562)."""
    if name in __all__:
        return getattr(importlib.import_module("fraudlab.enrich.geoip"), name)
    raise AttributeError(f"module 'fraudlab.enrich' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
