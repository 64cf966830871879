"""Frame sources: a video file, a folder or glob of images (in name order), a webcam; checked when opened.

``open_source(spec)`` returns a source whose ``frames()`` yields ``Frame`` objects. Problems found when
opening (missing file, not a video, no images, a webcam that does not open, no readable frame) raise
``DataError`` with one line; problems with single images of a folder (unreadable, another size than the
first) skip the image and are counted in ``skipped``; a video stream that breaks off ends the frames early
(``ended_early``).
"""
from __future__ import annotations

import dataclasses
import glob
import logging
import math
import os
import re
import time

import cv2
import numpy as np

from simplepose.errors import DataError

LOG = logging.getLogger(__name__)

#: File endings taken from an image folder.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
#: Frame rate of image folders, and of videos and webcams that do not report one.
DEFAULT_FPS = 25.0


@dataclasses.dataclass
class Frame:
    """One frame: ``index`` (0, 1, ... over the frames used), ``time`` in seconds, BGR uint8 ``image``,
    ``name`` (the image file of a folder source, else None) and ``read_ms`` (reading + decoding)."""

    index: int
    time: float
    image: np.ndarray
    name: str | None = None
    read_ms: float = 0.0


class FrameSource:
    """Base of the sources. Attributes: ``description``, ``fps``, ``size`` ``(width, height)``, ``num_frames``
    (None when unknown: webcams), ``skipped`` (``(name, reason)`` per skipped image), ``ended_early``."""

    description = ""
    fps = DEFAULT_FPS
    size = (0, 0)
    num_frames = None

    def __init__(self):
        self.skipped, self.ended_early = [], False

    def frames(self):
        raise NotImplementedError

    def close(self) -> None:
        """Release the device or file."""


def natural_key(path: str):
    """Sort key of a name with its digit runs compared as numbers (``frame2`` before ``frame10``)."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", os.path.basename(path))]


def open_source(spec, *, fps: float | None = None) -> FrameSource:
    """The frame source named by ``spec``: an int or a string of digits (not an existing path) is a webcam
    index; a folder gives its images; a pattern with ``*``, ``?`` or ``[`` gives the images it matches; else a
    video file. ``fps`` sets the frame rate of image folders (default :data:`DEFAULT_FPS`).

    Raises:
        DataError: missing or unreadable video, no images, a webcam that cannot be opened, no readable frame.
    """
    spec_str = os.fspath(spec) if not isinstance(spec, int) else str(spec)
    if isinstance(spec, int) or (spec_str.isdigit() and not os.path.exists(spec_str)):
        return WebcamSource(int(spec_str))
    if os.path.isdir(spec_str):
        files = [os.path.join(spec_str, f) for f in os.listdir(spec_str)]
        what = f"{spec_str}: folder"
    elif any(c in spec_str for c in "*?["):
        files, what = glob.glob(spec_str), f"{spec_str}: pattern"
    else:
        return VideoFileSource(spec_str)
    images = sorted((f for f in files if f.lower().endswith(IMAGE_EXTENSIONS) and os.path.isfile(f)), key=natural_key)
    if not images:
        raise DataError(f"{what} has no images ({', '.join(IMAGE_EXTENSIONS)})")
    return ImageFolderSource(spec_str, images, fps or DEFAULT_FPS)


class VideoFileSource(FrameSource):
    """Frames of a video file (OpenCV/FFmpeg), timed by the file's frame rate."""

    def __init__(self, path: str):
        super().__init__()
        if not os.path.isfile(path):
            raise DataError(f"{path}: video not found")
        self.description, self.cap = path, cv2.VideoCapture(path)
        ok, first = self.cap.read() if self.cap.isOpened() else (False, None)
        if not ok or first is None:
            self.cap.release()
            raise DataError(f"{path}: not a video OpenCV can read (or it has no frames)")
        self.first = first
        fps = self.cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if math.isfinite(fps) and 0 < fps < 1000 else DEFAULT_FPS
        count = int(self.cap.get(cv2.CAP_PROP_FRAME_COUNT))
        self.num_frames = count if count > 0 else None
        self.size = (first.shape[1], first.shape[0])

    def frames(self):
        index, image, read_ms = 0, self.first, 0.0
        while image is not None:
            yield Frame(index, index / self.fps, image, read_ms=read_ms)
            index += 1
            start = time.perf_counter()
            try:
                ok, image = self.cap.read()
            except cv2.error as e:
                LOG.warning("%s: reading frame %d failed (%s)", self.description, index, e)
                ok = False
            read_ms = 1000.0 * (time.perf_counter() - start)
            if not ok:
                image = None
        if self.num_frames is not None and index < self.num_frames:
            self.ended_early = True
            LOG.warning("%s: the stream ended after %d of %d frames", self.description, index, self.num_frames)

    def close(self) -> None:
        self.cap.release()


class WebcamSource(FrameSource):
    """Frames of a camera (OpenCV device index), timed by the clock; runs until stopped."""

    def __init__(self, index: int):
        super().__init__()
        self.description, self.cap = f"webcam {index}", cv2.VideoCapture(index)
        ok, first = self.cap.read() if self.cap.isOpened() else (False, None)
        if not ok or first is None:
            self.cap.release()
            raise DataError(f"webcam {index} cannot be opened (no such device, or it is busy)")
        self.first, self.size = first, (first.shape[1], first.shape[0])
        fps = self.cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if math.isfinite(fps) and 0 < fps < 1000 else 30.0

    def frames(self):
        start, index, image = time.monotonic(), 0, self.first
        while True:
            yield Frame(index, time.monotonic() - start, image)
            index += 1
            ok, image = self.cap.read()
            if not ok:
                self.ended_early = True
                LOG.warning("%s: no more frames after %d", self.description, index)
                return

    def close(self) -> None:
        self.cap.release()


class ImageFolderSource(FrameSource):
    """Images in name order (digit runs as numbers), all of the first readable image's size."""

    def __init__(self, description: str, paths: list, fps: float):
        super().__init__()
        self.description, self.paths, self.fps = description, list(paths), float(fps)
        self.num_frames = len(self.paths)
        for path in self.paths:  # the first readable image fixes the size
            image = cv2.imread(path, cv2.IMREAD_COLOR)
            if image is not None:
                self.size = (image.shape[1], image.shape[0])
                break
        else:
            raise DataError(f"{description}: none of its {len(self.paths)} images can be read")

    def frames(self):
        index = 0
        for path in self.paths:
            start = time.perf_counter()
            image = cv2.imread(path, cv2.IMREAD_COLOR)
            read_ms = 1000.0 * (time.perf_counter() - start)
            if image is None:
                self._skip(path, "not a readable image")
            elif (image.shape[1], image.shape[0]) != self.size:
                self._skip(path, f"{image.shape[1]}x{image.shape[0]}, not {self.size[0]}x{self.size[1]} like the first")
            else:
                yield Frame(index, index / self.fps, image, os.path.basename(path), read_ms)
                index += 1

    def _skip(self, path: str, reason: str) -> None:
        LOG.warning("%s: skipped (%s)", path, reason)
        self.skipped.append((path, reason))
