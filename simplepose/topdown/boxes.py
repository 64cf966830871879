"""Person boxes for top-down evaluation: the ground truth's, or a detector's from a COCO results JSON."""
from __future__ import annotations

import collections
import json
import logging

import numpy as np

from simplepose.data.coco import image_people
from simplepose.errors import DataError

LOG = logging.getLogger(__name__)


def ground_truth_boxes(coco) -> dict:
    """Every non-crowd annotation's box (people without keypoints included, as the published test), score 1.

    Returns:
        ``{image_id: (boxes (N, 4) COCO [x, y, w, h], scores (N,))}`` in annotation order.
    """
    out = {}
    for image_id in sorted(coco.getImgIds()):
        boxes = [p.bbox for p in image_people(coco, image_id)]
        if boxes:
            out[image_id] = (np.stack(boxes), np.ones(len(boxes)))
    return out


def detection_boxes(coco, boxes_file, dropped: dict | None = None) -> dict:
    """Person boxes from a COCO detection results JSON (image_id, category_id, bbox, score), spec 4 step 1.

    Keeps category 1 boxes with score > 0 and a positive width and height on images of the ground truth, in
    descending score per image. The others are counted by reason (``unknown_image``, ``not_person``,
    ``score_not_positive``, ``empty_box``) into ``dropped`` and logged.

    Returns:
        as :func:`ground_truth_boxes`.

    Raises:
        DataError: the file is not JSON or not a list of detection records, or none of its boxes is kept.
    """
    try:
        with open(boxes_file) as f:
            dets = json.load(f)
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"boxes file {boxes_file!r}: cannot read it as JSON ({e})") from None
    if not isinstance(dets, list) or not all(isinstance(d, dict) for d in dets):
        raise DataError(f"boxes file {boxes_file!r}: expected a list of COCO detection records")
    by_image, reasons = collections.defaultdict(list), collections.Counter()
    try:
        for d in sorted(dets, key=lambda d: (d.get("image_id", -1), -float(d.get("score", 0)))):
            box, score = np.asarray(d["bbox"], np.float32).reshape(4), float(d["score"])
            reason = ("unknown_image" if d.get("image_id") not in coco.imgs else
                      "not_person" if d.get("category_id", 1) != 1 else
                      "score_not_positive" if not score > 0 else
                      "empty_box" if not (box[2] > 0 and box[3] > 0) else None)
            if reason:
                reasons[reason] += 1
            else:
                by_image[d["image_id"]].append((box, score))
    except (KeyError, TypeError, ValueError) as e:
        raise DataError(f"boxes file {boxes_file!r}: a record lacks a valid bbox or score ({e})") from None
    if dropped is not None:
        dropped.update(reasons)
    text = ", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in sorted(reasons.items()))
    if not by_image:
        raise DataError(f"boxes file {boxes_file!r}: none of its {len(dets)} boxes is usable"
                        + (f" ({text})" if text else ""))
    if reasons:
        LOG.warning("boxes file %s: %d of %d boxes left out (%s)", boxes_file, sum(reasons.values()), len(dets), text)
    return {i: (np.stack([b for b, _ in v]), np.array([s for _, s in v])) for i, v in by_image.items()}
