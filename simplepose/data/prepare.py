"""COCO person keypoints + images -> one HDF5 file (streaming, parallel image reads, atomic)."""
from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import itertools
import json
import logging
import os
import time

import numpy as np
import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from simplepose.atomic import check_replaceable
from simplepose.data import coco
from simplepose.data.codecs import decode_image, encode_mask
from simplepose.data.hdf5 import HDF5Writer, ImageRecord
from simplepose.errors import DataError

LOG = logging.getLogger(__name__)


@dataclasses.dataclass
class PrepSummary:
    """What a preparation run did.

    Attributes:
        images_total: images considered (the annotation file's images, cut to ``limit``).
        images_without_samples: images with no main person; their files are not read.
        images_read: image files read and validated (each gives >= 1 sample).
        images_skipped: ``{reason: count}`` for images that were unusable (files ``missing``, ``empty``,
            ``corrupt``, ``size_mismatch``; ``bad_segmentation``: an annotation's RLE is sized for another
            image); their samples are dropped.
        people_bad_bbox: person annotations with keypoints whose bbox has no positive width and height: never
            a main person, and left out of the stored people.
        samples_written, people_written: rows written.
        keypoints_outside: labelled keypoints outside their image, set to v = 0 (see ``coco.keypoints_array``).
        bytes_written: size of the output file. seconds: wall time. read_seconds: time spent reading and
            writing the images (what the progress bar measures).
    """

    images_total: int = 0
    images_without_samples: int = 0
    images_read: int = 0
    images_skipped: dict = dataclasses.field(default_factory=dict)
    people_bad_bbox: int = 0
    samples_written: int = 0
    people_written: int = 0
    keypoints_outside: int = 0
    bytes_written: int = 0
    seconds: float = 0.0
    read_seconds: float = 0.0

    def format(self) -> str:
        """A few human-readable lines."""
        skipped = ", ".join(f"{k}: {v}" for k, v in sorted(self.images_skipped.items())) or "none"
        files = self.images_read + sum(self.images_skipped.values())
        rate = files / self.read_seconds if self.read_seconds > 0 else 0.0
        return (f"images: {self.images_total} considered, {self.images_read} read, "
                f"{self.images_without_samples} without a main person (not read)\n"
                f"images skipped: {sum(self.images_skipped.values())} ({skipped})\n"
                f"people dropped for a bbox without positive width and height: {self.people_bad_bbox}\n"
                f"samples written: {self.samples_written} ({self.people_written} people); "
                f"keypoints outside their image set to v=0: {self.keypoints_outside}\n"
                f"{self.bytes_written / 2**20:.1f} MiB in {self.seconds:.1f} s; {files} image files read in "
                f"{self.read_seconds:.1f} s ({rate:.1f}/s, the progress bar's rate)")


class EmptyDataError(DataError):
    """Preparation found no sample to write (``DataError``)."""


@dataclasses.dataclass
class _Skipped:
    reason: str
    message: str


def _check_image(encoded: bytes, height: int, width: int):
    """None when the bytes decode (as the reader does) to a ``height x width`` image, else a skip reason."""
    if not encoded:
        return "empty"
    # A truncated JPEG has no end-of-image marker after its last start-of-scan; libjpeg would pad it with
    # grey and only warn. (Markers cannot occur inside entropy-coded data; an EXIF thumbnail's EOI precedes.)
    if encoded[:2] == b"\xff\xd8" and encoded.rfind(b"\xff\xd9") < encoded.rfind(b"\xff\xda"):
        return "corrupt"
    try:
        image = decode_image(encoded)
    except ValueError:
        return "corrupt"
    if image.shape[:2] != (height, width):
        return "size_mismatch"
    return None


def build_record(info: dict, anns: list, image_dir: str, main: list):
    """Read, validate and assemble one image with its main people; a ``_Skipped`` if the file is unusable."""
    path = os.path.join(image_dir, info["file_name"])
    height, width = int(info["height"]), int(info["width"])
    try:
        with open(path, "rb") as f:
            encoded = f.read()
    except OSError as e:
        return _Skipped("missing", f"{path}: {e.strerror}")
    reason = _check_image(encoded, height, width)
    if reason:
        return _Skipped(reason, f"{path}: {reason}")
    keep = [i for i, a in enumerate(anns) if not a["iscrowd"] and a["num_keypoints"] > 0 and has_area(a)]
    people = [anns[i] for i in keep]
    keypoints, outside = coco.keypoints_array(people, height, width)
    try:
        mask = encode_mask(coco.miss_mask(anns, height, width))
    except coco.CocoFormatError as e:
        return _Skipped("bad_segmentation", f"{path}: {e}")
    record = ImageRecord(
        image_id=int(info["id"]), file_name=info["file_name"], height=height, width=width, encoded=encoded,
        mask=mask, keypoints=keypoints,
        bbox=np.asarray([a["bbox"] for a in people], np.float32).reshape(-1, 4),
        area=np.asarray([a["area"] for a in people], np.float32),
        annotation_id=np.asarray([a.get("id", -1) for a in people], np.int64),
        main=[keep.index(m) for m in main])
    return record, outside


def has_area(ann: dict) -> bool:
    """Whether an annotation's bbox has a positive width and height."""
    return ann["bbox"][2] > 0 and ann["bbox"][3] > 0


def _ordered_map(fn, jobs, workers: int):
    """``map(fn, jobs)`` in order; with workers > 1 on a thread pool, at most 4 * workers jobs in flight."""
    if workers <= 1:
        yield from (fn(*job) for job in jobs)
        return
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        jobs = iter(jobs)
        pending = collections.deque(pool.submit(fn, *job) for job in itertools.islice(jobs, 4 * workers))
        while pending:
            result = pending.popleft().result()
            for job in itertools.islice(jobs, 1):
                pending.append(pool.submit(fn, *job))
            yield result


def prepare_coco_hdf5(annotations, images, out, *, limit: int | None = None, workers: int = 1,
                      progress: bool = True, rules: coco.MainPersonRules = coco.MainPersonRules(),
                      allow_empty: bool = False) -> PrepSummary:
    """Turn a COCO person-keypoints file and its image folder into one HDF5 file (schema in ``data.hdf5``).

    Images are visited in annotation-file order, so the output is the same for any ``workers``. An image
    gives one sample per main person (``coco.select_main_people``); images with none are neither read nor
    stored. Missing, empty, corrupt or wrongly sized image files are skipped and counted. Memory stays
    bounded: only the images in flight and one write buffer are held. ``out`` appears only when complete.

    Args:
        annotations: COCO ``person_keypoints_*.json``. images: its image folder. out: the HDF5 file.
        limit: only the first ``limit`` images of the annotation file. workers: image-reading threads.
        progress: show a tqdm bar. rules: main-person rules.
        allow_empty: write the file even when it has no sample (otherwise an error, and no file).

    Raises:
        EmptyDataError: no sample (and not ``allow_empty``); nothing is written.
        FileNotFoundError / NotADirectoryError / IsADirectoryError / OSError: missing inputs, or ``out`` is a
            folder or a device.
        coco.CocoFormatError: malformed annotation file.
    """
    start = time.perf_counter()
    images, out = os.fspath(images), os.fspath(out)
    if not os.path.isdir(images):
        raise NotADirectoryError(f"image folder not found: {images}")
    check_replaceable(out)
    data = coco.load_coco_keypoints(annotations)
    infos = data.images[:limit] if limit is not None else data.images
    summary = PrepSummary(images_total=len(infos))
    jobs = []
    for info in infos:
        anns = data.annotations[info["id"]]
        bad_bbox = [a for a in anns if not a["iscrowd"] and a["num_keypoints"] > 0 and not has_area(a)]
        if bad_bbox:
            summary.people_bad_bbox += len(bad_bbox)
            LOG.warning("%s: annotation(s) %s of image %s: bbox without positive width and height, person left out",
                        data.path, ", ".join(str(a.get("id")) for a in bad_bbox), info["id"])
            anns = [a for a in anns if not any(a is b for b in bad_bbox)]
        main = coco.select_main_people(anns, rules)
        if main:
            jobs.append((info, anns, images, main))
        else:
            summary.images_without_samples += 1
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    attrs = {"source_annotations": os.path.abspath(data.path), "source_images": os.path.abspath(images)}
    with HDF5Writer(out, attrs) as writer:
        _write_records(writer, jobs, workers, progress, summary)
        if summary.samples_written == 0 and not allow_empty:
            raise EmptyDataError(f"{out}: 0 samples from {data.path} ({summary.images_total} images, "
                                 f"{summary.images_without_samples} without a main person, "
                                 f"{sum(summary.images_skipped.values())} skipped); nothing written "
                                 "(--allow-empty writes it anyway)")
        writer.commit({"images_total": summary.images_total, "images_without_samples": summary.images_without_samples,
                       "images_skipped": json.dumps(summary.images_skipped, sort_keys=True)})
    summary.bytes_written = os.path.getsize(out)
    summary.seconds = time.perf_counter() - start
    LOG.info("prepared %s: %d samples from %d images in %.1f s", out, summary.samples_written,
             summary.images_read, summary.seconds)
    return summary


def _write_records(writer: HDF5Writer, jobs: list, workers: int, progress: bool, summary: PrepSummary) -> None:
    """Build the records of ``jobs`` (in order, on ``workers`` threads), write them and count into ``summary``."""
    skipped, start = collections.Counter(), time.perf_counter()
    # warnings go above the bar (not onto its line); the bar's rate is the run's average, as in the summary
    with logging_redirect_tqdm(), tqdm.tqdm(total=len(jobs), desc="image files", unit="img", smoothing=0,
                                            disable=not progress) as bar:
        for result in _ordered_map(build_record, jobs, workers):
            bar.update()
            if isinstance(result, _Skipped):
                skipped[result.reason] += 1
                LOG.warning("skipped %s", result.message)
                continue
            record, outside = result
            writer.add(record)
            summary.images_read += 1
            summary.samples_written += len(record.main)
            summary.people_written += len(record.keypoints)
            summary.keypoints_outside += outside
    summary.images_skipped = dict(skipped)
    summary.read_seconds = time.perf_counter() - start
