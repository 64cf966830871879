"""Atomic file writing: a temporary file beside the target, renamed into place, so no partial file is ever left.

Every temporary file (or folder) simplepose writes beside a target is named ``.tmp-<pid>-<tag>-<name>``:
the writing process's id, a tag that keeps the names of one process apart, and the target's name (so a
``.keras`` temporary still ends in ``.keras``). A process removes its own on any exit Python sees (errors,
Ctrl-C, SIGTERM through ``cli.run_main``); a killed process (SIGKILL, power loss) cannot, so the next writer of
the same target removes those of processes that no longer run (:func:`clean_stale`).
"""
from __future__ import annotations

import errno
import json
import logging
import os
import re
import shutil
import tempfile

LOG = logging.getLogger(__name__)

#: Prefix of the temporary files (a crash between creation and rename is the only way one survives).
TEMP_PREFIX = ".tmp-"
_TEMP_NAME = re.compile(r"^\.tmp-(?P<pid>\d+)-[A-Za-z0-9_]+-(?P<name>.+)$")


def temp_path(path, tag: str = "w") -> str:
    """The temporary name of this process for ``path``: ``.tmp-<pid>-<tag>-<name>`` in the same folder.

    ``tag`` (letters, digits, ``_``) tells apart several temporaries of one process for one target.
    """
    folder, name = os.path.split(os.path.abspath(os.fspath(path)))
    return os.path.join(folder, f"{TEMP_PREFIX}{os.getpid()}-{tag}-{name}")


def clean_stale(path) -> list:
    """Remove the temporary files and folders for ``path`` left by processes that no longer run.

    Only temporaries of this target (same folder, same name) are considered, and only when their process id
    is not a live process on this machine; another process's write in progress is left alone.

    Returns:
        the removed paths.
    """
    folder, name = os.path.split(os.path.abspath(os.fspath(path)))
    try:
        entries = os.listdir(folder)
    except OSError:
        return []
    removed = []
    for entry in entries:
        match = _TEMP_NAME.match(entry)
        if not match or match["name"] != name or _alive(int(match["pid"])):
            continue
        stale = os.path.join(folder, entry)
        try:
            shutil.rmtree(stale) if os.path.isdir(stale) and not os.path.islink(stale) else os.remove(stale)
        except FileNotFoundError:
            continue
        removed.append(stale)
        LOG.info("removed %s, left by process %s that no longer runs", stale, match["pid"])
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def check_output_folder(folder) -> None:
    """Raise ``NotADirectoryError``/``PermissionError`` now if ``folder`` cannot be (created and) written later.

    For jobs that write at the end of a long run: the problem shows before the work, not after it.
    """
    folder = os.path.abspath(os.fspath(folder))
    existing = folder
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise NotADirectoryError(errno.ENOTDIR, "not a folder" if existing == folder else
                                 f"cannot create a folder under a file ({existing})", folder)
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PermissionError(errno.EACCES, f"no permission to write in {existing}", folder)


def check_replaceable(path) -> None:
    """Raise ``IsADirectoryError``/``OSError`` if ``path`` exists and is not a regular file.

    A rename would otherwise replace a folder's entry or a device (``/dev/full``, a FIFO) with a file.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        raise IsADirectoryError(errno.EISDIR, "a folder, not a file", path)
    if os.path.exists(path) and not os.path.isfile(path):
        raise OSError(errno.EINVAL, "exists and is not a regular file (a device or a pipe?)", path)


def write_bytes(path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, then rename it into place (no partial file)."""
    path = os.fspath(path)
    check_replaceable(path)
    clean_stale(path)
    folder, name = os.path.split(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f"{TEMP_PREFIX}{os.getpid()}-", suffix=f"-{name}")
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
