"""Synthetic COCO person-keypoints datasets: stick people with real geometry and the awkward cases."""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import pathlib
import shutil
from collections.abc import Iterable

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from simplepose.atomic import clean_stale, temp_path, write_bytes
from simplepose.data.stick_people import DISTAL, FACE, Person, background, bgr, draw, sample_pose
from simplepose.skeleton import COCO_KEYPOINTS, COCO_SKELETON

LOG = logging.getLogger(__name__)

#: Awkward cases, each toggleable through ``edge_cases``. Image-level: ``empty`` (nobody),
#: ``crowd`` (one iscrowd=1 RLE region over a drawn cluster of people), ``two_crowds``. Person-level:
#: ``no_keypoints`` (drawn, annotated with num_keypoints=0), ``border`` (cut by the image border,
#: out-of-frame keypoints v=0), ``tiny`` (area < 32**2), ``occluded`` (v=1: hidden by a person in
#: front, or a limb drawn faint), ``missing`` (a wrist or ankle and its limb not drawn, v=0).
CASES = ("empty", "crowd", "two_crowds", "no_keypoints", "border", "tiny", "occluded", "missing")


@dataclasses.dataclass(frozen=True)
class SyntheticCoco:
    """A generated dataset.

    Attributes:
        ann_file: ``root/annotations.json``.
        image_dir: ``root/images``.
        num_images: number of images.
        num_people: non-crowd person annotations (including those with num_keypoints=0).
        poses_by_image: image id -> float32 ``(N, 17, 3)``, one row per non-crowd annotation in id order:
            the joint's true drawn position (also where unlabelled or outside the image) and the annotated v.
        cases: case name -> ids of the images that contain it (``CASES`` plus ``back_facing``).
        case_annotations: person-level case name -> annotation ids.
    """

    ann_file: pathlib.Path
    image_dir: pathlib.Path
    num_images: int
    num_people: int
    poses_by_image: dict = dataclasses.field(repr=False, compare=False)
    cases: dict = dataclasses.field(repr=False, compare=False)
    case_annotations: dict = dataclasses.field(repr=False, compare=False)

    def summary(self) -> str:
        counts = ", ".join(f"{k}={len(v)}" for k, v in self.cases.items())
        return f"{self.num_images} images, {self.num_people} people; images per case: {counts}"


def _place(rng: np.random.Generator, height: float, cx: float, size: tuple[int, int], *, inside: bool) -> Person:
    """Sample a pose and put its hip centre near x=cx, fully inside the image unless ``inside`` is False."""
    w, h = size
    back = bool(rng.random() < 0.3)
    for _ in range(8):
        rel = sample_pose(rng, height, back)
        margin = 0.09 * height
        lo, hi = rel.min(0) - margin, rel.max(0) + margin
        if hi[1] - lo[1] < h - 2 and (hi[0] - lo[0] < w - 2 or not inside):
            break
        height *= 0.85
    y = rng.uniform(-lo[1] + 1, max(h - 1 - hi[1], -lo[1] + 1))
    x = float(np.clip(cx, -lo[0] + 1, w - 1 - hi[0])) if inside else cx
    xy = np.rint(rel + (x, y)).astype(np.int64)
    skin = bgr(rng.uniform(15, 35), rng.uniform(0.3, 0.6), rng.uniform(0.45, 0.95))
    cloth = bgr(rng.uniform(0, 360), rng.uniform(0.1, 0.5), rng.uniform(0.25, 0.8))
    return Person(xy, height, back, depth=float(xy[15:, 1].max()), skin=skin, cloth=cloth)


def _crowd(rng: np.random.Generator, x0: float, x1: float, size: tuple[int, int]) -> list[Person]:
    """A cluster of small overlapping people between x0 and x1 (never annotated individually)."""
    h = size[1]
    people = [_place(rng, rng.uniform(0.2, 0.32) * h, rng.uniform(x0, x1), size, inside=True)
              for _ in range(rng.integers(5, 9))]
    return sorted(people, key=lambda p: p.depth)


def _layout(rng: np.random.Generator, features: frozenset, size: tuple[int, int], max_people: int,
            random_cases: frozenset) -> tuple[list[Person], list[list[Person]]]:
    """People (annotated, in drawing order) and crowd clusters of one image with the given case features."""
    w, h = size
    if "empty" in features:
        return [], []
    specials = [f for f in ("no_keypoints", "tiny", "occluded", "missing") if f in features]
    n_crowds = 2 if "two_crowds" in features else int("crowd" in features)
    n_ord = int(rng.integers(0 if specials else 1, max(1, max_people - len(specials) - n_crowds) + 1))
    sides = [(0.02, 0.32), (0.68, 0.98)]
    crowd_ranges = sides if n_crowds == 2 else [sides[int(rng.integers(0, 2))]] if n_crowds else []
    crowds = [_crowd(rng, a * w, b * w, size) for a, b in crowd_ranges]
    free = (0.35 * w if n_crowds and crowd_ranges[0][0] < 0.1 else 0.0,
            w - 0.35 * w if n_crowds and crowd_ranges[-1][1] > 0.9 else float(w))
    actors = list(rng.permutation(specials + ["ordinary"] * n_ord)) if specials or n_ord else []
    people = []
    for i, actor in enumerate(actors):
        cx = free[0] + (free[1] - free[0]) * (i + 0.5 + rng.uniform(-0.45, 0.45)) / len(actors)
        people += _actor(rng, str(actor), cx, size, random_cases)
    if "border" in features:
        cx = rng.uniform(-0.03, 0.03) * w + (0 if rng.random() < 0.5 else w)
        people.append(_place(rng, rng.uniform(0.5, 0.8) * h, cx, size, inside=False))
    return sorted(people, key=lambda p: p.depth), crowds


def _actor(rng: np.random.Generator, actor: str, cx: float, size: tuple[int, int],
           random_cases: frozenset) -> list[Person]:
    """The people for one layout slot: one person, or an occluded person with its occluder."""
    h = size[1]
    if actor == "tiny":
        p = _place(rng, rng.uniform(24, 30), cx, size, inside=True)
        p.depth = math.inf  # drawn last, so it stays visible
        return [p]
    border = actor == "ordinary" and "border" in random_cases and rng.random() < 0.08
    if border:
        cx = (0 if cx < size[0] / 2 else size[0]) + rng.uniform(-0.05, 0.05) * size[0]
    p = _place(rng, rng.uniform(0.45, 0.85) * h, cx, size, inside=not border)
    if actor == "no_keypoints":
        p.annotated = False
    ordinary = actor == "ordinary"
    if actor == "missing" or (ordinary and "missing" in random_cases and rng.random() < 0.08):
        p.missing = int(rng.choice(DISTAL))
    elif ordinary and "occluded" in random_cases and rng.random() < 0.06:
        p.faint = int(rng.choice(DISTAL))
    if actor != "occluded":
        return [p]
    front = _place(rng, p.height, cx + rng.choice([-1, 1]) * 0.2 * p.height, size, inside=True)
    dy = p.xy[11:13, 1].mean() - front.xy[11:13, 1].mean()  # same hip height, staying inside the image
    front.xy[:, 1] += int(np.clip(dy, -front.xy[:, 1].min(), h - 1 - front.xy[:, 1].max()))
    front.depth, front.faint = p.depth + 1e-3, int(rng.choice((9, 10)))
    return [p, front]


def _visibility(p: Person, in_front: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """COCO v per joint: 0 outside the image / not drawn / no keypoints, 1 hidden by someone or faint, else 2."""
    x, y = p.xy[:, 0], p.xy[:, 1]
    inside = (x >= 0) & (x < size[0]) & (y >= 0) & (y < size[1])
    v = np.where(inside, 2, 0)
    covered = in_front[np.clip(y, 0, size[1] - 1), np.clip(x, 0, size[0] - 1)] > 0
    v[inside & covered] = 1
    if p.faint is not None:
        v[p.faint] = min(v[p.faint], 1)
    for k in ({p.missing} if p.missing is not None else set()) | (set(FACE) if p.back else set()):
        v[k] = 0
    return v if p.annotated else np.zeros_like(v)


def _shape_fields(mask: np.ndarray) -> dict:
    """bbox (drawn extent), area and polygon segmentation (outer contours) of a person's silhouette."""
    x, y, bw, bh = cv2.boundingRect(mask)
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    polys = [[float(c) for c in cnt.reshape(-1)] for cnt in contours if len(cnt) >= 3]
    if not polys:
        polys = [[float(x), float(y), float(x + bw), float(y), float(x + bw), float(y + bh), float(x), float(y + bh)]]
    rle = mask_utils.merge(mask_utils.frPyObjects(polys, *mask.shape))
    return {"bbox": [float(x), float(y), float(bw), float(bh)], "area": float(mask_utils.area(rle)),
            "segmentation": polys}


def _crowd_fields(mask: np.ndarray) -> dict:
    """bbox, area and RLE segmentation (counts as str) of a crowd region."""
    rle = mask_utils.encode(np.asfortranarray(mask))
    bbox = [float(c) for c in mask_utils.toBbox(rle)]
    rle["counts"] = rle["counts"].decode("ascii")
    return {"bbox": bbox, "area": float(mask_utils.area(rle)), "segmentation": rle}


def _render(rng: np.random.Generator, features: frozenset, size: tuple[int, int], max_people: int,
            random_cases: frozenset) -> tuple[np.ndarray, list[dict], list[np.ndarray], list[set]]:
    """One image with its annotations (no ids yet), true poses and per-annotation case tags."""
    people, crowds = _layout(rng, features, size, max_people, random_cases)
    img = background(rng, *size)
    anns, poses, tags = [], [], []
    close = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (max(3, size[1] // 20) | 1,) * 2)
    for group in crowds:
        region = np.zeros(size[::-1], np.uint8)
        for p in group:
            region |= draw(img, p)
        region = cv2.dilate(cv2.morphologyEx(region, cv2.MORPH_CLOSE, close), close)
        anns.append({"iscrowd": 1, "num_keypoints": 0, "keypoints": [0] * 51, **_crowd_fields(region)})
        poses.append(None)
        tags.append({"crowd"})
    masks = [draw(img, p) for p in people]
    in_front = np.zeros(size[::-1], np.uint8)
    for p, mask in reversed(list(zip(people, masks))):
        if mask.any():
            v = _visibility(p, in_front, size)
            kps = np.concatenate([np.where(v[:, None] > 0, p.xy, 0), v[:, None]], 1)
            anns.append({"iscrowd": 0, "num_keypoints": int((v > 0).sum()), "keypoints": kps.reshape(-1).tolist(),
                         **_shape_fields(mask)})
            poses.append(np.concatenate([p.xy, v[:, None]], 1).astype(np.float32))
            tags.append(_person_tags(p, anns[-1], size))
        in_front |= mask
    order = [i for i in range(len(crowds))] + list(range(len(anns) - 1, len(crowds) - 1, -1))
    return img, [anns[i] for i in order], [poses[i] for i in order], [tags[i] for i in order]


def _person_tags(p: Person, ann: dict, size: tuple[int, int]) -> set:
    x, y = p.xy[:, 0], p.xy[:, 1]
    outside = (x < 0) | (x >= size[0]) | (y < 0) | (y >= size[1])
    v = np.asarray(ann["keypoints"][2::3])
    tags = {"no_keypoints"} if ann["num_keypoints"] == 0 else set()
    if p.annotated:
        tags |= {"border"} if outside.any() else set()
        tags |= {"occluded"} if (v == 1).any() else set()
        tags |= {"missing"} if p.missing is not None and not outside[p.missing] else set()
    tags |= {"back_facing"} if p.back else set()
    return tags | ({"tiny"} if ann["area"] < 32 ** 2 else set())


def _plan(num_images: int, cases: frozenset) -> list[frozenset]:
    """Case features per image: one case per image when there is room, else packed (``empty`` alone)."""
    plan = [set() for _ in range(num_images)]
    person_cases = [c for c in CASES if c in cases and c != "empty"]
    if "two_crowds" in person_cases and "crowd" in person_cases and num_images < len(CASES):
        person_cases.remove("crowd")  # a two-crowd image also covers the one-crowd case
    start = 0
    if "empty" in cases and num_images > 1:
        plan[0].add("empty")
        start = 1
    for i, case in enumerate(person_cases):
        plan[start + i % (num_images - start)].add(case)
    return [frozenset(p) for p in plan]


def _categories() -> list[dict]:
    return [{"id": 1, "name": "person", "supercategory": "person", "keypoints": list(COCO_KEYPOINTS),
             "skeleton": [[a + 1, b + 1] for a, b in COCO_SKELETON]}]


def _case_set(edge_cases: bool | Iterable[str]) -> frozenset:
    if isinstance(edge_cases, bool):
        return frozenset(CASES) if edge_cases else frozenset()
    cases = frozenset(edge_cases)
    if cases - set(CASES):
        raise ValueError(f"unknown edge cases {sorted(cases - set(CASES))}; known: {', '.join(CASES)}")
    return cases


def _index_cases(images: list[dict], anns: list[dict], tags: dict) -> tuple[dict, dict]:
    """Case name -> image ids, and person-level case name -> annotation ids."""
    case_anns = {c: [] for c in ("crowd", "no_keypoints", "border", "tiny", "occluded", "missing", "back_facing")}
    for ann_id, tag in tags.items():
        for t in tag:
            case_anns[t].append(ann_id)
    image_of = {a["id"]: a["image_id"] for a in anns}
    case_images = {c: sorted({image_of[i] for i in case_anns.get(c, ())}) for c in (*CASES, "back_facing")}
    crowds = [a["image_id"] for a in anns if a["iscrowd"]]
    case_images["empty"] = sorted({img["id"] for img in images} - set(image_of.values()))
    case_images["two_crowds"] = sorted({i for i in crowds if crowds.count(i) >= 2})
    return case_images, case_anns


def _replace_whole(root, kwargs) -> SyntheticCoco:
    """:func:`make_synthetic_coco` into a temporary sibling of ``root``, then swapped in for ``root``."""
    root = pathlib.Path(root)
    clean_stale(root)
    staging, old = pathlib.Path(temp_path(root, "new")), pathlib.Path(temp_path(root, "old"))
    try:
        result = make_synthetic_coco(staging, **kwargs)
        if root.exists():
            os.replace(root, old)
        os.replace(staging, root)
    finally:
        for path in (staging, old):
            shutil.rmtree(path, ignore_errors=True)
    return dataclasses.replace(result, ann_file=root / result.ann_file.name, image_dir=root / result.image_dir.name)


def make_synthetic_coco(root, *, num_images: int = 12, image_size: tuple[int, int] = (320, 240),
                        max_people: int = 4, seed: int = 0, image_format: str = "jpg",
                        edge_cases: bool | Iterable[str] = True, replace: bool = False) -> SyntheticCoco:
    """Write a deterministic synthetic COCO person-keypoints dataset under ``root``.

    Writes ``root/images/<12-digit id>.<image_format>`` and, last and atomically, ``root/annotations.json``
    (whose ``info`` also records the cases). With every case enabled and ``num_images >= 8`` each case gets
    its own image; fewer images pack them together. Whatever the toggles, keypoints hidden by a person
    drawn in front are labelled v=1. The same arguments give byte-identical files.

    Args:
        root: output directory (created).
        num_images: number of images (>= 1).
        image_size: ``(width, height)`` in pixels, each >= 32.
        max_people: most annotated people in an ordinary image (>= 1).
        seed: random seed; image ``i`` depends only on ``(seed, i)`` and the case plan.
        image_format: ``"jpg"`` or ``"png"`` (lossless, exact colours).
        edge_cases: True (all of ``CASES``), False (none) or an iterable of case names.
        replace: write into a temporary folder beside ``root`` and swap it in for ``root`` when complete, so
            ``root`` ends up holding this dataset and nothing else (its old contents are deleted).
    """
    if replace:
        return _replace_whole(root, dict(num_images=num_images, image_size=image_size, max_people=max_people,
                                         seed=seed, image_format=image_format, edge_cases=edge_cases))
    size = (int(image_size[0]), int(image_size[1]))
    problems = [msg for bad, msg in ((num_images < 1, f"num_images must be >= 1, got {num_images}"),
                                     (max_people < 1, f"max_people must be >= 1, got {max_people}"),
                                     (min(size) < 32, f"image_size must be >= 32 each, got {size}"),
                                     (image_format not in ("jpg", "png"), f"unknown image_format {image_format!r}"))
                if bad]
    if problems:
        raise ValueError("; ".join(problems))
    cases = _case_set(edge_cases)
    root = pathlib.Path(root)
    ann_file, image_dir = root / "annotations.json", root / "images"
    image_dir.mkdir(parents=True, exist_ok=True)
    ann_file.unlink(missing_ok=True)  # a half-rewritten directory must never look complete
    params = [cv2.IMWRITE_JPEG_QUALITY, 92] if image_format == "jpg" else [cv2.IMWRITE_PNG_COMPRESSION, 3]
    images, anns, poses_by_image, tags = [], [], {}, {}
    for index, features in enumerate(_plan(num_images, cases)):
        image_id, file_name = index + 1, f"{index + 1:012d}.{image_format}"
        img, img_anns, poses, img_tags = _render(np.random.default_rng([seed, index]), features, size, max_people,
                                                 cases)
        write_bytes(image_dir / file_name, cv2.imencode(f".{image_format}", img, params)[1].tobytes())
        images.append({"id": image_id, "file_name": file_name, "width": size[0], "height": size[1]})
        people = [p for p in poses if p is not None]
        poses_by_image[image_id] = np.stack(people) if people else np.zeros((0, 17, 3), np.float32)
        for ann, tag in zip(img_anns, img_tags):
            anns.append({"id": len(anns) + 1, "image_id": image_id, "category_id": 1, **ann})
            tags[len(anns)] = tag
    case_images, case_anns = _index_cases(images, anns, tags)
    info = {"description": "simplepose synthetic COCO", "seed": seed, "cases": case_images,
            "case_annotations": case_anns}
    dataset = {"info": info, "images": images, "annotations": anns, "categories": _categories()}
    write_bytes(ann_file, json.dumps(dataset).encode())
    result = SyntheticCoco(ann_file, image_dir, num_images, sum(1 - a["iscrowd"] for a in anns), poses_by_image,
                           {k: tuple(v) for k, v in case_images.items()}, {k: tuple(v) for k, v in case_anns.items()})
    LOG.debug("wrote %s: %s", ann_file, result.summary())
    return result
