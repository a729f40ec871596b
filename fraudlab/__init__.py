"""fraudlab: a workbench for real-time fraud detection on synthetic mobile-money data.

The sub-packages follow the data's path (see the README's "What is where"):
``schema`` (what every stage agrees on) -> ``data`` (real rows in) ->
``generate`` (synthetic rows out) -> ``evaluate`` (synthetic vs real) ->
``ingest`` (gRPC) -> ``kafka``; ``infra`` starts the local servers, ``cli``
is the command line. The handful of names a notebook needs are importable from
here and are loaded on first use, so ``import fraudlab`` stays cheap and
importing one stage never loads another.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from fraudlab.exceptions import FraudlabError

try:
    __version__ = version("fraudlab")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

#: The module that defines each public name; a name is imported when first asked for.
_EXPORTS: dict[str, str] = {
    name: module
    for module, names in (
        ("fraudlab.data.readers", ("read_transactions",)),
        ("fraudlab.data.reference", ("load_reference",)),
        ("fraudlab.data.splits", ("split_reference",)),
        ("fraudlab.generate.paysim", ("simulate",)),
        ("fraudlab.generate.synth", ("DEFAULT_MODEL", "TransactionSynthesizer")),
        ("fraudlab.infra.broker", ("LocalBroker",)),
        ("fraudlab.ingest.client", ("ProducerSettings", "produce")),
        ("fraudlab.ingest.service", ("IngestionServer",)),
        ("fraudlab.kafka.reader", ("read_transactions_frame",)),
        ("fraudlab.notebook", ("record",)),
    )
    for name in names
}

__all__ = ["FraudlabError", "__version__", *sorted(_EXPORTS)]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'fraudlab' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
