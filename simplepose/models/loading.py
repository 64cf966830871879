"""``load_model``: the one loader of saved simplepose models, with one-line errors for files it cannot load."""
from __future__ import annotations

import os
import zipfile

import keras

from simplepose.errors import ModelFileError


def load_model(path, *, compile: bool = False) -> keras.Model:
    """Load a ``.keras`` model saved by simplepose (safe mode: no Lambda layers, no arbitrary code).

    Every simplepose serialisable class (networks, attention, losses, optimisers, schedules) is
    registered first. ``compile=False`` (the default, for inference) skips the optimiser and loss.

    Raises:
        ModelFileError: the file is missing, is not a ``.keras`` archive (truncated, another format), or holds
            something Keras cannot rebuild; the message names the file and the problem.
    """
    import simplepose.losses  # noqa: F401  (registers the serialisable classes)
    import simplepose.models.simple_pose_net  # noqa: F401
    import simplepose.models.topdown_net  # noqa: F401
    import simplepose.optimizers  # noqa: F401

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ModelFileError(f"{path}: model file not found")
    if not zipfile.is_zipfile(path):
        raise ModelFileError(f"{path}: not a Keras model file ({_what_is_it(path)})")
    try:
        return keras.saving.load_model(path, compile=compile, safe_mode=True)
    except Exception as e:  # Keras raises ValueError, KeyError, TypeError, OSError ... on foreign archives
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelFileError(f"{path}: cannot load this model ({type(e).__name__}: {reason})") from None


def _what_is_it(path) -> str:
    """Why a file is not a ``.keras`` zip archive, from its size and first bytes."""
    with open(path, "rb") as f:
        head = f.read(8)
    if not head:
        return "the file is empty"
    if head.startswith(b"PK\x03\x04"):
        return f"a zip archive cut short at {os.path.getsize(path)} bytes: truncated by an interrupted copy or save"
    if head.startswith(b"\x89HDF"):
        return "an HDF5 file: a legacy Keras .h5 model or a prepared data file, not a .keras archive"
    return f"a .keras file is a zip archive; this one starts with {head!r}"
