"""Atomic file writing: a temporary file beside the target, renamed into place, so no partial file is ever left."""
from __future__ import annotations

import json
import os
import tempfile

#: Prefix of the temporary files (a crash between creation and rename is the only way one survives).
TEMP_PREFIX = ".tmp-"


def write_bytes(path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, then rename it into place (no partial file)."""
    path = os.fspath(path)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), prefix=TEMP_PREFIX)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_text(path, text: str) -> None:
    """:func:`write_bytes` of UTF-8 ``text``."""
    write_bytes(path, text.encode())


def write_json(path, obj, *, indent=None) -> None:
    """:func:`write_bytes` of ``obj`` as JSON."""
    write_text(path, json.dumps(obj, indent=indent))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
