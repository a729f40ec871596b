"""Reading a saved model's file back only when its manifest vouches for it: one check for every kind of model.

The synthesizer (``.npz``) and the detector (``.onnx``) are each a payload and a JSON manifest beside it holding the
format, its version and the payload's SHA-256. :func:`verified_payload` refuses an unknown format or version, a
missing file and a changed one, before anything parses the bytes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fraudlab.exceptions import ModelFileError

__all__ = ["verified_payload"]


def verified_payload(model_path: Path, manifest: Mapping[str, Any], *, manifest_name: str, format_key: str,
                     format_name: str, format_version: int, remedy: str) -> bytes:
    """The bytes of ``model_path`` once the manifest's format, version and SHA-256 all match.

    Raises:
        ModelFileError: naming the file and the reason; ``remedy`` says how to make a new one.
    """
    if manifest.get(format_key) != format_name or manifest.get("format_version") != format_version:
        raise ModelFileError(
            f"{model_path}: format {manifest.get(format_key)!r} version {manifest.get('format_version')!r} is not "
            f"one this fraudlab reads ({format_name!r} version {format_version}); {remedy}.")
    if not model_path.is_file():
        raise ModelFileError(f"The model file {model_path} named by {manifest_name} does not exist.")
    payload = model_path.read_bytes()
    digest = hashlib.sha256(payload).hexdigest()
    if digest != manifest.get("sha256"):
        raise ModelFileError(f"{model_path} has SHA-256 {digest}, but {manifest_name} says {manifest.get('sha256')}: "
                             "the file was modified or corrupted (tampered with) and was not loaded.")
    return payload
