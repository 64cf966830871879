"""Oracle scenes: COCO-style annotations of real COCO skeletons rearranged into groups and crowds (no images).

The oracle (``bottomup.oracle``) renders ground-truth maps from annotations alone, so real poses can be
recombined into many more test scenes than the images they come from. Every person of a scene is a real
labelled COCO person, mirrored with probability 1/2, rotated a little, and scaled to an area drawn from
the source's own labelled people (COCO's size distribution, as sampled by the source file). People stand
in groups of 1 to ``max_group`` side by side, overlapping, at similar depth; a scene holds several groups.
Depth follows size (a larger person is nearer): with probability ``hide_prob`` a nearer person hides
(drops) every keypoint inside its keypoint box, and keypoints outside the image are cut.
"""
from __future__ import annotations

import contextlib
import dataclasses
import io
import math

import numpy as np

from simplepose.data.coco import load_coco
from simplepose.skeleton import COCO_KEYPOINTS, COCO_SKELETON


def _coco_flip() -> np.ndarray:
    names = list(COCO_KEYPOINTS)
    swap = {"left": "right", "right": "left"}
    out = []
    for n in names:
        side = n.split("_")[0]
        out.append(names.index(n.replace(side, swap[side], 1)) if side in swap else names.index(n))
    return np.array(out, dtype=np.int64)


#: COCO keypoint index of each keypoint's mirror image.
COCO_FLIP = _coco_flip()


@dataclasses.dataclass(frozen=True)
class SourcePerson:
    """One labelled person of the source file: COCO keypoints ``(17, 3)``, bbox ``[x, y, w, h]``, area."""

    keypoints: np.ndarray
    bbox: np.ndarray
    area: float


@dataclasses.dataclass(frozen=True)
class SceneRules:
    """How scenes are composed; every field has a physical meaning.

    Attributes:
        people: (fewest, most) people per scene, drawn uniformly.
        max_group: most people standing side by side in one group.
        spacing: (min, max) distance between neighbours' centres in a group, in person-box widths
            (< 1 overlaps).
        depth_jitter: a group member's area is the group's times a factor in [1/j, j] (similar depth).
        max_rotation: rotation drawn uniformly in +-this, degrees.
        hide_prob: the probability that a nearer (larger) person hides the keypoints inside its keypoint
            box (occlusion hides a region, not scattered joints).
        max_cover: the people's summed areas are at most this times the image area (a crowd of many people
            in one photo is made of smaller people); larger draws are shrunk together.
    """

    people: tuple[int, int] = (2, 20)
    max_group: int = 5
    spacing: tuple[float, float] = (0.35, 1.1)
    depth_jitter: float = 1.25
    max_rotation: float = 15.0
    hide_prob: float = 0.5
    max_cover: float = 1.0


def source_people(ann_file) -> tuple[list[SourcePerson], list[tuple[int, int]]]:
    """The non-crowd people with at least one labelled keypoint, and every image's ``(width, height)``."""
    gt = load_coco(ann_file)
    people = []
    for ann in sorted(gt.anns.values(), key=lambda a: a["id"]):
        if ann.get("iscrowd", 0) or ann.get("num_keypoints", 0) <= 0:
            continue
        kp = np.asarray(ann["keypoints"], np.float64).reshape(len(COCO_KEYPOINTS), 3)
        people.append(SourcePerson(kp, np.asarray(ann["bbox"], np.float64), float(ann["area"])))
    sizes = [(int(i["width"]), int(i["height"])) for i in sorted(gt.imgs.values(), key=lambda i: i["id"])]
    return people, sizes


def _transform(person: SourcePerson, scale: float, angle: float, flip: bool, centre) -> tuple[np.ndarray, np.ndarray]:
    """Keypoints and box corners of ``person`` mirrored, rotated about and scaled around its box centre,
    then moved to ``centre``.

    Shapes: -> keypoints ``(17, 3)`` (unlabelled rows zero), corners ``(4, 2)``.
    """
    x, y, w, h = person.bbox
    c = np.array([x + 0.5 * w, y + 0.5 * h])
    kp = person.keypoints.copy()
    corners = np.array([[x, y], [x + w, y], [x, y + h], [x + w, y + h]], np.float64)
    if flip:
        kp = kp[COCO_FLIP]
        kp[:, 0] = 2.0 * c[0] - kp[:, 0]
        corners[:, 0] = 2.0 * c[0] - corners[:, 0]
    cos, sin = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    rot = scale * np.array([[cos, -sin], [sin, cos]])
    kp[:, :2] = (kp[:, :2] - c) @ rot.T + centre
    corners = (corners - c) @ rot.T + centre
    kp[kp[:, 2] <= 0] = 0.0
    return kp, corners


def _group_sizes(rng, n: int, max_group: int) -> list[int]:
    sizes = []
    while n > 0:
        g = int(rng.integers(1, min(max_group, n) + 1))
        sizes.append(g)
        n -= g
    return sizes


def make_scene(rng, sources: list[SourcePerson], areas: np.ndarray, size: tuple[int, int],
               rules: SceneRules = SceneRules()) -> list[dict]:
    """One scene's person annotations (COCO fields; no ids).

    Args:
        rng: a ``numpy.random.Generator``.
        sources: the people to draw from.
        areas: the areas to draw sizes from.
        size: the image's ``(width, height)``.
    """
    width, height = size
    n = int(rng.integers(rules.people[0], rules.people[1] + 1))
    groups = _group_sizes(rng, n, rules.max_group)
    group_area = rng.choice(areas, size=len(groups))
    member_area = np.concatenate([a * np.exp(rng.uniform(-1, 1, g) * math.log(rules.depth_jitter))
                                  for a, g in zip(group_area, groups)])
    member_area *= min(1.0, rules.max_cover * width * height / member_area.sum())
    placed, k = [], 0
    for g in groups:
        anchor = np.array([rng.uniform(0, width), rng.uniform(0, height)])
        offset = 0.0
        for _ in range(g):
            src = sources[int(rng.integers(len(sources)))]
            scale = math.sqrt(member_area[k] / max(src.area, 1.0))
            angle = rng.uniform(-rules.max_rotation, rules.max_rotation)
            flip = bool(rng.random() < 0.5)
            box_w = scale * src.bbox[2]
            centre = anchor + np.array([offset, rng.uniform(-0.1, 0.1) * scale * src.bbox[3]])
            kp, corners = _transform(src, scale, angle, flip, centre)
            placed.append((member_area[k], kp, corners))
            offset += rng.uniform(*rules.spacing) * box_w
            k += 1
    order = np.argsort([-p[0] for p in placed], kind="stable")  # nearest (largest) first
    anns, nearer = [], []
    for i in order:
        area, kp, corners = placed[i]
        labelled = kp[:, 2] > 0
        inside = (kp[:, 0] >= 0) & (kp[:, 0] < width) & (kp[:, 1] >= 0) & (kp[:, 1] < height)
        hidden = np.zeros(len(kp), bool)
        for x0, y0, x1, y1 in nearer:  # a nearer person hides the whole region it covers, or nothing
            covered = (kp[:, 0] >= x0) & (kp[:, 0] <= x1) & (kp[:, 1] >= y0) & (kp[:, 1] <= y1)
            if covered.any() and rng.random() < rules.hide_prob:
                hidden |= covered
        if labelled.any():  # the body is there whether or not its keypoints are labelled in the scene
            pts = kp[labelled, :2]
            nearer.append((pts[:, 0].min(), pts[:, 1].min(), pts[:, 0].max(), pts[:, 1].max()))
        keep = labelled & inside & ~hidden
        kp[~keep] = 0.0
        lo = np.clip(corners.min(0), 0, [width, height])
        hi = np.clip(corners.max(0), 0, [width, height])
        full = np.prod(corners.max(0) - corners.min(0))
        cut = np.prod(hi - lo) / full if full > 0 else 0.0
        if cut <= 0:
            continue
        anns.append({"keypoints": [round(float(v), 2) for v in kp.ravel()], "num_keypoints": int(keep.sum()),
                     "bbox": [round(float(v), 2) for v in (*lo, *(hi - lo))], "area": float(area * cut),
                     "iscrowd": 0, "category_id": 1})
    return anns


def make_oracle_scenes(ann_file, num_scenes: int, *, seed: int = 0, rules: SceneRules = SceneRules()) -> dict:
    """A COCO person-keypoints dataset (a dict) of ``num_scenes`` scenes built from ``ann_file``'s people.

    Image sizes are drawn from the source's images. Scene ``i`` depends only on ``(seed, i)``, the source
    and ``rules``. Images have no files (``file_name`` is empty): the oracle needs none.
    """
    sources, sizes = source_people(ann_file)
    if not sources:
        raise ValueError(f"{ann_file}: no labelled person to build scenes from")
    areas = np.array([p.area for p in sources])
    images, anns = [], []
    for i in range(num_scenes):
        rng = np.random.default_rng([seed, i])
        w, h = sizes[int(rng.integers(len(sizes)))]
        images.append({"id": i + 1, "file_name": "", "width": w, "height": h})
        for ann in make_scene(rng, sources, areas, (w, h), rules):
            anns.append({"id": len(anns) + 1, "image_id": i + 1, **ann})
    categories = [{"id": 1, "name": "person", "supercategory": "person", "keypoints": list(COCO_KEYPOINTS),
                   "skeleton": [[a + 1, b + 1] for a, b in COCO_SKELETON]}]
    return {"info": {"description": f"oracle scenes from {ann_file}", "seed": seed,
                     "rules": dataclasses.asdict(rules)},
            "images": images, "annotations": anns, "categories": categories}


def as_coco(dataset: dict):
    """A ``pycocotools.coco.COCO`` holding ``dataset`` (no file written)."""
    from pycocotools.coco import COCO

    coco = COCO()
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco
