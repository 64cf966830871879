"""Person boxes for top-down evaluation: the ground truth's, or a detector's from a COCO results JSON."""
from __future__ import annotations

import collections
import json

import numpy as np

from simplepose.data.coco import image_people
from simplepose.errors import DataError


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


def detection_boxes(coco, boxes_file) -> dict:
    """Person boxes from a COCO detection results JSON (image_id, category_id, bbox, score), spec 4 step 1.

    Keeps category 1 boxes with score > 0 on images of the ground truth, in descending score per image.

    Returns:
        as :func:`ground_truth_boxes`.

    Raises:
        DataError: the file is not JSON or not a list of detection records.
    """
    try:
        with open(boxes_file) as f:
            dets = json.load(f)
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"boxes file {boxes_file!r}: cannot read it as JSON ({e})") from None
    if not isinstance(dets, list) or not all(isinstance(d, dict) for d in dets):
        raise DataError(f"boxes file {boxes_file!r}: expected a list of COCO detection records")
    by_image = collections.defaultdict(list)
    try:
        for d in sorted(dets, key=lambda d: (d.get("image_id", -1), -float(d.get("score", 0)))):
            if d.get("image_id") in coco.imgs and d.get("category_id", 1) == 1 and float(d.get("score", 0)) > 0:
                by_image[d["image_id"]].append((np.asarray(d["bbox"], np.float32).reshape(4), float(d["score"])))
    except (KeyError, TypeError, ValueError) as e:
        raise DataError(f"boxes file {boxes_file!r}: a record lacks a valid bbox or score ({e})") from None
    return {i: (np.stack([b for b, _ in v]), np.array([s for _, s in v])) for i, v in by_image.items()}
