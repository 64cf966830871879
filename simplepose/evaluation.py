"""COCO keypoint evaluation for every method: poses to COCO results, pycocotools COCOeval, per-stage timing."""
from __future__ import annotations

import collections
import contextlib
import io
import logging
import os
import time

import numpy as np

from simplepose import atomic
from simplepose.data.codecs import read_image
from simplepose.data.coco import load_coco
from simplepose.errors import DataError

LOG = logging.getLogger(__name__)

#: COCOeval's keypoint ``stats`` vector, in order.
METRIC_NAMES = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")


def poses_to_results(poses_by_image, skeleton) -> list[dict]:
    """COCO keypoint result records of every person of every image.

    Args:
        poses_by_image: ``{image_id: [Pose, ...]}`` with keypoints in original image pixels.
        skeleton: the poses' skeleton (synthesised keypoints such as the neck are dropped).
    """
    return [pose.to_coco(skeleton, image_id) for image_id, poses in poses_by_image.items() for pose in poses]


def run_coco_eval(ann_file, results, image_ids=None) -> dict:
    """Keypoint AP/AR with pycocotools.

    Args:
        ann_file: ground-truth annotation JSON path (or a loaded ``pycocotools.coco.COCO``).
        results: COCO result records (``poses_to_results``); may be empty.
        image_ids: evaluate on these images only (default: every image in ``ann_file``).

    Returns:
        ``{"AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl"}`` as floats; all
        zero when there are no results. COCOeval reports -1 for an empty area range: kept as is.
    """
    from pycocotools.cocoeval import COCOeval

    gt = load_coco(ann_file)
    ids = sorted(gt.getImgIds()) if image_ids is None else sorted(int(i) for i in image_ids)
    results = [r for r in results if r["image_id"] in set(ids)]
    if not results:
        LOG.warning("no detections: every metric is 0")
        return {name: 0.0 for name in METRIC_NAMES}
    with contextlib.redirect_stdout(io.StringIO()) as text:
        dt = gt.loadRes(results)
        ev = COCOeval(gt, dt, "keypoints")
        ev.params.imgIds = ids
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    LOG.debug("COCOeval summary:\n%s", text.getvalue())
    return {name: float(v) for name, v in zip(METRIC_NAMES, ev.stats)}


def format_summary(metrics: dict) -> str:
    """A two-line table of the COCO metrics (3 decimals), then a line per caveat.

    COCOeval's -1 (no ground-truth person in that size range) shows as ``n/a`` with a note; skipped images
    are counted.
    """
    names = [n for n in METRIC_NAMES if n in metrics]
    lines = ["  ".join(f"{n:>6}" for n in names),
             "  ".join(f"{'n/a':>6}" if metrics[n] == -1 else f"{metrics[n]:6.3f}" for n in names)]
    empty = [n for n in names if metrics[n] == -1]
    if empty:
        lines.append(f"n/a ({', '.join(empty)}): no ground-truth person of that size on these images (COCO sizes: "
                     "medium 32^2-96^2 px, large > 96^2 px of segment area); metrics.json keeps COCOeval's -1")
    if metrics.get("boxes_dropped"):
        dropped = ", ".join(f"{k}: {v}" for k, v in sorted(metrics["boxes_dropped"].items()))
        lines.append(f"person boxes left out: {dropped}")
    if metrics.get("images_skipped"):
        lines.append(f"{metrics['images_skipped']} unreadable image(s) skipped and left out of these metrics: "
                     f"{', '.join(metrics.get('skipped_images', [])[:5])}"
                     f"{' ...' if metrics['images_skipped'] > 5 else ''}")
    return "\n".join(lines)


class StageTimer:
    """Collects per-image durations (ms) by stage and summarises them.

    Example:
        >>> timer = StageTimer(); timer.add({"network": 12.0, "decode": 1.5}); timer.summary()["decode"]["median"]
        1.5
    """

    def __init__(self):
        self._ms = collections.defaultdict(list)

    def add(self, timings: dict) -> None:
        for stage, ms in timings.items():
            self._ms[stage].append(float(ms))

    def values(self, stage: str) -> np.ndarray:
        return np.asarray(self._ms.get(stage, []), dtype=np.float64)

    def summary(self) -> dict:
        """``{stage: {"median", "mean", "p95", "max", "count"}}`` in ms/image."""
        out = {}
        for stage, ms in self._ms.items():
            a = np.asarray(ms)
            out[stage] = {"median": float(np.median(a)), "mean": float(a.mean()),
                          "p95": float(np.percentile(a, 95)), "max": float(a.max()), "count": int(a.size)}
        return out


def evaluate_predictor(predictor, ann_file, image_dir, *, boxes=None, limit=None, out_dir=None,
                       progress: bool = False, extra=None) -> dict:
    """Predict every image of a COCO annotation file and score the poses with COCOeval.

    Args:
        predictor: has ``predict(image_bgr, boxes, box_scores) -> list[Pose]``, ``skeleton`` and
            ``last_timings`` (``{stage: ms}`` of the last call), like ``simplepose.predictor.Predictor``.
        ann_file: COCO person keypoints JSON (or a loaded ``pycocotools.coco.COCO``).
        image_dir: folder with the images named by the JSON's ``file_name``.
        boxes: ``{image_id: (boxes (N, 4), scores (N,))}`` person boxes for predictors that need them
            (top-down); images without boxes are not read and have no people. None: the predictor finds them.
        limit: only the first ``limit`` images (by id).
        out_dir: if given, ``results.json`` and ``metrics.json`` are written there atomically.
        progress: show a tqdm progress bar.
        extra: more entries for the metrics (e.g. where the boxes came from).

    Returns:
        the COCO metrics plus ``"timing": {stage: {"median", "mean", ...}}`` in ms/image (stages of the
        predictor plus ``total`` and ``read``), ``"images"`` (evaluated), ``"images_skipped"`` and
        ``"skipped_images"`` (missing or unreadable files: skipped, logged, and left out of the metrics; the
        first 100 names), ``"results"`` (people reported) and, with ``boxes``, ``"boxes"`` (boxes given on
        the evaluated images).
    """
    gt = load_coco(ann_file)
    ids = sorted(gt.getImgIds())[: limit if limit else None]
    timer, poses_by_image, num_boxes, skipped = StageTimer(), {}, 0, []
    for image_id in progress_bar(ids, progress, "evaluate"):
        image_boxes, box_scores = (None, None) if boxes is None else boxes.get(image_id, ((), ()))
        if boxes is not None and not len(image_boxes):
            poses_by_image[image_id] = []
            continue
        path = os.path.join(image_dir, gt.loadImgs([image_id])[0]["file_name"])
        start = time.perf_counter()
        try:
            image = read_image(path)
        except DataError as e:
            LOG.warning("skipped %s", e)
            skipped.append(os.path.basename(path))
            continue
        read = time.perf_counter()
        num_boxes += 0 if image_boxes is None else len(image_boxes)
        poses_by_image[image_id] = predictor.predict(image, image_boxes, box_scores)
        timer.add(dict(predictor.last_timings, read=1000.0 * (read - start),
                       total=1000.0 * (time.perf_counter() - read)))
    extra = dict(extra or {}, images_skipped=len(skipped), skipped_images=skipped[:100],
                 **({} if boxes is None else {"boxes": num_boxes}))
    if skipped:
        LOG.warning("%d unreadable image(s) skipped and left out of the metrics (listed in metrics.json)", len(skipped))
    return finish_evaluation(gt, poses_by_image, predictor.skeleton, [i for i in ids if i in poses_by_image], timer,
                             out_dir, extra)


def finish_evaluation(gt, poses_by_image, skeleton, image_ids, timer, out_dir=None, extra=None) -> dict:
    """COCOeval of the poses, timing summary, and (with ``out_dir``) atomic ``results.json`` + ``metrics.json``.

    ``extra`` entries are added to the metrics (before they are written).
    """
    results = poses_to_results(poses_by_image, skeleton)
    metrics = run_coco_eval(gt, results, image_ids=image_ids)
    metrics.update(timing=timer.summary(), images=len(image_ids), results=len(results), **(extra or {}))
    if out_dir is not None:
        os.makedirs(out_dir, exist_ok=True)
        atomic.write_json(os.path.join(out_dir, "results.json"), results)
        atomic.write_json(os.path.join(out_dir, "metrics.json"), metrics, indent=1)
    return metrics


def progress_bar(items, enabled: bool, desc: str):
    """``items`` wrapped in a tqdm progress bar when ``enabled``."""
    if not enabled:
        return items
    from tqdm import tqdm

    return tqdm(items, desc=desc, unit="img")


def format_timing(timing: dict) -> str:
    """One line per stage: median and mean ms/image."""
    return "\n".join(f"{stage:>8}: median {t['median']:8.2f} ms  mean {t['mean']:8.2f} ms"
                     for stage, t in timing.items())
