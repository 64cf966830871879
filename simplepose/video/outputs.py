"""Video and JSON-lines outputs written under a temporary name beside the target and renamed when closed.

Closing with ``keep=True`` (the normal end, Ctrl-C, a broken input stream) finalises the file (OpenCV writes
the container's index on release, so the frames written so far play) and renames it into place; closing
with ``keep=False`` (an error) deletes it. The final name therefore only ever holds a complete file.
"""
from __future__ import annotations

import json
import os
import tempfile

import cv2

from simplepose.atomic import TEMP_PREFIX
from simplepose.errors import DataError

#: Container (file ending) -> FourCC: MPEG-4 Part 2 in MP4, Motion JPEG in AVI (both written by OpenCV's
#: own FFmpeg; H.264 encoders are not part of the opencv-python wheels).
FOURCCS = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "MJPG"}


def check_output_path(path, allowed=None) -> None:
    """Raise ``DataError`` if ``path``'s folder is missing or not writable, or its ending is not ``allowed``."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise DataError(f"{path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise DataError(f"{path}: folder {folder} is not writable")
    if os.path.isdir(path):
        raise DataError(f"{path}: is a folder, expected a file name")
    ext = os.path.splitext(path)[1].lower()
    if allowed is not None and ext not in allowed:
        raise DataError(f"{path}: unsupported ending {ext or '(none)'!r}; use one of {', '.join(allowed)}")


def _temp_beside(path: str) -> str:
    folder, name = os.path.split(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=TEMP_PREFIX, suffix=os.path.splitext(name)[1])
    os.close(fd)
    return tmp


def _finish(tmp: str, path: str, keep: bool) -> None:
    if keep:
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)  # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp, path)
    elif os.path.exists(tmp):
        os.unlink(tmp)


class VideoOutput:
    """An annotated video: ``write(frame)`` BGR uint8 frames of ``size`` ``(width, height)`` at ``fps``."""

    def __init__(self, path, fps: float, size):
        self.path = os.fspath(path)
        check_output_path(self.path, FOURCCS)
        self.fourcc = FOURCCS[os.path.splitext(self.path)[1].lower()]
        self.tmp = _temp_beside(self.path)
        self.writer = cv2.VideoWriter(self.tmp, cv2.VideoWriter_fourcc(*self.fourcc), float(fps), tuple(size))
        self.frames, self.closed = 0, False
        if not self.writer.isOpened():
            self.close(keep=False)
            raise DataError(f"{self.path}: OpenCV cannot write {self.fourcc} video here")

    def write(self, image) -> None:
        self.writer.write(image)
        self.frames += 1

    def close(self, keep: bool = True) -> None:
        """Finalise and rename (``keep`` and at least one frame), else delete."""
        if self.closed:
            return
        self.closed = True
        self.writer.release()
        _finish(self.tmp, self.path, keep and self.frames > 0)


class JsonLinesOutput:
    """One JSON object per line; every line is complete when the file appears under its name."""

    def __init__(self, path):
        self.path = os.fspath(path)
        check_output_path(self.path)
        self.tmp = _temp_beside(self.path)
        self.file, self.lines, self.closed = open(self.tmp, "w"), 0, False

    def write(self, obj) -> None:
        self.file.write(json.dumps(obj) + "\n")
        self.lines += 1

    def close(self, keep: bool = True) -> None:
        """Close and rename (``keep``), else delete."""
        if self.closed:
            return
        self.closed = True
        self.file.close()
        _finish(self.tmp, self.path, keep)
