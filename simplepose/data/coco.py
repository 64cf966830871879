"""COCO person-keypoint annotations: loading and checking, the people of an image, miss masks, main persons."""
from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import logging
import os

import numpy as np
from pycocotools import mask as mask_utils

from simplepose.errors import DataError
from simplepose.skeleton import COCO_KEYPOINTS

LOG = logging.getLogger(__name__)

NUM_COCO_KEYPOINTS = len(COCO_KEYPOINTS)
_IMAGE_FIELDS = ("id", "file_name", "width", "height")
_ANN_FIELDS = ("image_id", "bbox", "keypoints", "num_keypoints", "iscrowd", "area")


class CocoFormatError(DataError):
    """The annotation file is not a usable COCO person-keypoints file (the message names file and problem)."""


@dataclasses.dataclass(frozen=True)
class MainPersonRules:
    """Spec §3.1 main-person rules.

    Attributes:
        min_keypoints: a main person has at least this many labelled keypoints (``num_keypoints``).
        min_area: ... and a segment ``area`` of at least this many px².
        min_center_distance: ... and its bbox centre is at least this fraction of an already chosen main
            person's max bbox side away from that person's centre.
        legacy_stale_max_side: reproduce the seed's bug: use the max side of the image's *last*
            annotation's bbox (a stale loop variable) instead of the chosen person's own. Off by default.
    """

    min_keypoints: int = 5
    min_area: float = 32.0 * 32.0
    min_center_distance: float = 0.3
    legacy_stale_max_side: bool = False


@dataclasses.dataclass
class CocoKeypoints:
    """A loaded COCO person-keypoints file.

    Attributes:
        path: the annotation file.
        images: the ``images`` records, in file order.
        annotations: ``{image_id: [annotation, ...]}`` in file order; every image id has a list.
    """

    path: str
    images: list
    annotations: dict


def load_coco_keypoints(path) -> CocoKeypoints:
    """Read and check a COCO person-keypoints JSON file.

    Raises:
        FileNotFoundError: the file does not exist.
        CocoFormatError: it is not JSON, or a record lacks a field this module needs.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"annotation file not found: {path}")
    try:
        with open(path, "rb") as f:
            data = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CocoFormatError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) \
            or not isinstance(data.get("annotations"), list):
        raise CocoFormatError(f"{path}: not a COCO annotation file (needs 'images' and 'annotations' lists)")
    images = data["images"]
    for i, img in enumerate(images):
        _require(path, f"image record {i}", img, _IMAGE_FIELDS)
    by_image = {img["id"]: [] for img in images}
    for i, ann in enumerate(data["annotations"]):
        _require(path, f"annotation {i}", ann, _ANN_FIELDS)
        if ann.get("category_id", 1) != 1:
            continue
        if len(ann["keypoints"]) != 3 * NUM_COCO_KEYPOINTS or len(ann["bbox"]) != 4:
            raise CocoFormatError(f"{path}: annotation {i} (id {ann.get('id')}): expected "
                                  f"{3 * NUM_COCO_KEYPOINTS} keypoint numbers and a 4-number bbox")
        if ann["image_id"] not in by_image:
            raise CocoFormatError(f"{path}: annotation {i} refers to unknown image_id {ann['image_id']}")
        by_image[ann["image_id"]].append(ann)
    LOG.info("%s: %d images, %d annotations", path, len(images), len(data["annotations"]))
    return CocoKeypoints(path=path, images=images, annotations=by_image)


def _require(path, what, record, fields):
    if not isinstance(record, dict):
        raise CocoFormatError(f"{path}: {what} is not an object")
    missing = [f for f in fields if f not in record]
    if missing:
        raise CocoFormatError(f"{path}: {what} lacks field(s) {', '.join(missing)}")


def annotation_rle(ann: dict, height: int, width: int):
    """An annotation's segmentation as one compressed RLE, exactly as ``pycocotools.COCO.annToRLE``.

    An annotation without a segmentation (or with an empty polygon list) falls back to its bbox rectangle.

    Raises:
        CocoFormatError: an RLE segmentation whose ``size`` is not the image's (the annotation belongs to
            another image, or the file was edited).
    """
    segm = ann.get("segmentation")
    if not segm:
        x, y, w, h = ann["bbox"]
        segm = [[x, y, x + w, y, x + w, y + h, x, y + h]]
    if isinstance(segm, list):
        return mask_utils.merge(mask_utils.frPyObjects(segm, height, width))
    size = segm.get("size") if isinstance(segm, dict) else None
    if size is None or [int(v) for v in size] != [height, width]:
        raise CocoFormatError(f"annotation {ann.get('id')}: its RLE segmentation is sized {size} (height, width), "
                              f"its image {height}x{width}")
    if isinstance(segm.get("counts"), list):
        return mask_utils.frPyObjects(segm, height, width)
    return segm


def _union(anns, height, width) -> np.ndarray:
    """Union of the annotations' segmentations, uint8 (H, W) 0/1."""
    if not anns:
        return np.zeros((height, width), dtype=np.uint8)
    rles = [annotation_rle(a, height, width) for a in anns]
    return mask_utils.decode(mask_utils.merge(rles, intersect=0)).astype(np.uint8, copy=False)


def miss_mask(anns: list, height: int, width: int) -> np.ndarray:
    """The loss mask of one image: 1 = supervised, 0 = ignored.

    Ignored pixels are (a) every crowd region (``iscrowd = 1``; any number of them) minus the segments
    of *all* annotated people of the image, and (b) the segments of people with ``num_keypoints == 0``.
    (The seed subtracted only the people listed before the crowd and failed on a second crowd.)

    Shapes:
        returns ``(height, width)`` uint8 in {0, 1}.
    """
    crowds = [a for a in anns if a["iscrowd"]]
    people = [a for a in anns if not a["iscrowd"]]
    unlabelled = _union([a for a in people if a["num_keypoints"] <= 0], height, width)
    ignored = unlabelled
    if crowds:
        crowd = _union(crowds, height, width)
        ignored = ignored | (crowd & (1 - _union(people, height, width)))
    return (1 - ignored).astype(np.uint8)


def bbox_center(bbox) -> np.ndarray:
    """Centre ``(x + w/2, y + h/2)`` of a COCO ``[x, y, w, h]`` bbox, float32 (2,)."""
    x, y, w, h = bbox
    return np.array([x + w / 2.0, y + h / 2.0], dtype=np.float32)


def select_main_people(anns: list, rules: MainPersonRules = MainPersonRules()) -> list:
    """Indices (into ``anns``) of the main people, one training sample each (spec §3.1, bug fixed).

    Annotations are visited in order. One is skipped if it is a crowd, has fewer than
    ``rules.min_keypoints`` labelled keypoints, a segment area below ``rules.min_area``, or if its bbox
    centre lies strictly closer than ``rules.min_center_distance * max(w_j, h_j)`` to the centre of an
    already chosen main person j, where ``w_j, h_j`` is the bbox of *that chosen person j*. With
    ``rules.legacy_stale_max_side`` the max side is the one of the image's last annotation instead (the seed).
    """
    chosen, centers, sides = [], [], []
    for i, ann in enumerate(anns):
        if ann["iscrowd"] or ann["num_keypoints"] < rules.min_keypoints or ann["area"] < rules.min_area:
            continue
        center = bbox_center(ann["bbox"])
        if any(np.hypot(*(center - c)) < rules.min_center_distance * s for c, s in zip(centers, sides)):
            continue
        side_bbox = anns[-1]["bbox"] if rules.legacy_stale_max_side else ann["bbox"]
        chosen.append(i)
        centers.append(center)
        sides.append(max(side_bbox[2], side_bbox[3]))
    return chosen


def keypoints_array(anns: list, height: int, width: int):
    """Keypoints of the annotations as float32 ``(N, 17, 3)`` in COCO order and COCO v coding.

    A labelled keypoint (v > 0) outside the image, i.e. with x outside ``[0, width]`` or y outside
    ``[0, height]`` (COCO's continuous image extent), is **set to v = 0** with x = y = 0 rather than clipped:
    a clipped point would teach a wrong location.

    Returns:
        ``(keypoints, num_outside)``: the array and how many labelled keypoints were removed that way.
    """
    kp = np.asarray([a["keypoints"] for a in anns], dtype=np.float32).reshape(len(anns), NUM_COCO_KEYPOINTS, 3)
    x, y, v = kp[..., 0], kp[..., 1], kp[..., 2]
    outside = (v > 0) & ((x < 0) | (x > width) | (y < 0) | (y > height))
    kp[outside] = 0.0
    return kp, int(outside.sum())


@dataclasses.dataclass(frozen=True)
class Person:
    """One non-crowd person annotation.

    Attributes:
        annotation_id: the annotation's ``id`` (-1 when it has none).
        keypoints: float32 ``(17, 3)`` COCO order and v coding, the out-of-image rule applied
            (:func:`keypoints_array`).
        bbox: float32 ``(4,)`` COCO ``[x, y, w, h]``.
        area: segment area in px² (0 when the annotation has none).
        num_keypoints: the annotation's own count of labelled keypoints.
    """

    annotation_id: int
    keypoints: np.ndarray
    bbox: np.ndarray
    area: float
    num_keypoints: int


def people(anns: list, height: int, width: int) -> list:
    """The non-crowd :class:`Person` annotations among ``anns`` (one image's), in order.

    Every reader of people (HDF5 preparation, the oracle, top-down boxes and crops) goes through here,
    so they all see the same keypoints.
    """
    persons = [a for a in anns if not a.get("iscrowd", 0)]
    if not persons:
        return []
    kp, _ = keypoints_array(persons, height, width)
    return [Person(int(a.get("id", -1)), kp[i], np.asarray(a["bbox"], np.float32), float(a.get("area", 0.0)),
                   int(a.get("num_keypoints", int((kp[i, :, 2] > 0).sum())))) for i, a in enumerate(persons)]


def image_people(coco, image_id: int) -> list:
    """:func:`people` of one image of a ``pycocotools.coco.COCO`` object."""
    info = coco.imgs[image_id]
    return people(coco.imgToAnns.get(image_id, []), info["height"], info["width"])


def load_coco(ann_file):
    """A ``pycocotools.coco.COCO`` of an annotation file (quietly), or the object itself if already loaded.

    Raises:
        DataError: the file is missing, is not a COCO annotation file, or has a keypoint annotation whose
            keypoints are not 17 ``x, y, v`` triples (found here, before any network runs).
    """
    from pycocotools.coco import COCO

    if not isinstance(ann_file, (str, bytes, os.PathLike)) and hasattr(ann_file, "loadRes"):
        return ann_file
    path = os.fspath(ann_file)
    if not os.path.isfile(path):
        raise DataError(f"{path}: annotation file not found")
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            coco = COCO(path)
    except Exception as e:  # pycocotools raises assorted errors (AssertionError, KeyError, TypeError, ...)
        raise DataError(f"{path}: not a COCO keypoint file ({type(e).__name__}: {e})") from None
    for ann in coco.anns.values():
        kp = ann.get("keypoints")
        if kp is not None and (not isinstance(kp, list) or len(kp) != 3 * NUM_COCO_KEYPOINTS):
            raise DataError(f"{path}: annotation {ann.get('id')} has {len(kp) if isinstance(kp, list) else kp!r} "
                            f"keypoint numbers, expected {3 * NUM_COCO_KEYPOINTS}")
    return coco
