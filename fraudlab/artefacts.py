"""Trusting a saved model's bytes only when its manifest vouches for them: one check for every kind of model.

The synthesizer (``.npz``) and the detector (``.onnx``) are each a payload and a JSON manifest holding the format,
its version and the payload's SHA-256, side by side on disk or (the detector) in one bundle on a Kafka topic.
:func:`verified_bytes` refuses an unknown format or version and changed bytes, before anything parses them;
:func:`verified_payload` first reads them from the file the manifest names.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fraudlab.exceptions import ModelFileError

__all__ = ["verified_bytes", "verified_payload"]


def verified_bytes(payload: bytes, manifest: Mapping[str, Any], *, source: str, manifest_name: str, format_key: str,
                   format_name: str, format_version: int, remedy: str) -> bytes:
    """``payload`` once the manifest's format, version and SHA-256 all match; ``source`` names it in errors.

    Raises:
        ModelFileError: naming ``source`` and the reason; ``remedy`` says how to make a new one.
    """
    if manifest.get(format_key) != format_name or manifest.get("format_version") != format_version:
        raise ModelFileError(
            f"{source}: format {manifest.get(format_key)!r} version {manifest.get('format_version')!r} is not "
            f"one this fraudlab reads ({format_name!r} version {format_version}); {remedy}.")
    digest = hashlib.sha256(payload).hexdigest()
    if digest != manifest.get("sha256"):
        raise ModelFileError(f"{source} has SHA-256 {digest}, but {manifest_name} says {manifest.get('sha256')}: "
                             "the model was modified or corrupted (tampered with) and was not loaded.")
    return payload


def verified_payload(model_path: Path, manifest: Mapping[str, Any], *, manifest_name: str, format_key: str,
                     format_name: str, format_version: int, remedy: str) -> bytes:
    """The bytes of ``model_path`` once :func:`verified_bytes` accepts them.

    Raises:
        ModelFileError: a missing file, or what :func:`verified_bytes` refuses, naming the file.
    """
    if not model_path.is_file():
        raise ModelFileError(f"The model file {model_path} named by {manifest_name} does not exist.")
    return verified_bytes(model_path.read_bytes(), manifest, source=str(model_path), manifest_name=manifest_name,
                          format_key=format_key, format_name=format_name, format_version=format_version,
                          remedy=remedy)
