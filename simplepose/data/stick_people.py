"""Stick people for the synthetic datasets: poses with real proportions, colours, backgrounds, drawing."""
from __future__ import annotations

import colorsys
import dataclasses
import math

import cv2
import numpy as np

from simplepose.skeleton import COCO_KEYPOINTS, COCO_SKELETON, UPRIGHT_POSE

_SIDE = np.array([1 if n.startswith("left_") else -1 if n.startswith("right_") else 0 for n in COCO_KEYPOINTS])
_CHAINS = ((5, 7, 9), (6, 8, 10), (11, 13, 15), (12, 14, 16))  # shoulder/hip -> elbow/knee -> wrist/ankle
DISTAL = (9, 10, 15, 16)
FACE = (0, 1, 2)  # nose and eyes: drawn and labelled only on people facing the camera
_FACE_LIMBS = ((1, 2), (0, 1), (0, 2), (1, 3), (2, 4))  # drawn thin over the head
_THIN = frozenset(_FACE_LIMBS + ((3, 5), (4, 6)))


def bgr(hue: float, sat: float, val: float) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb(hue / 360.0, sat, val)
    return round(b * 255), round(g * 255), round(r * 255)


# Left limbs are warm (red .. yellow, pink), right limbs cool (green .. blue, violet); centre limbs grey.
_LIMB_HUES = {(15, 13): 55, (13, 11): 35, (16, 14): 215, (14, 12): 190, (5, 11): 320, (6, 12): 265,
              (5, 7): 0, (6, 8): 120, (7, 9): 18, (8, 10): 150, (0, 1): 10, (0, 2): 180, (1, 3): 340,
              (2, 4): 200, (3, 5): 345, (4, 6): 165}
_GREYS = {(11, 12): 110, (5, 6): 235, (1, 2): 250}
#: BGR colour of each limb of ``COCO_SKELETON``, in its order.
LIMB_COLOURS = tuple(bgr(_LIMB_HUES[limb], 0.95, 0.9) if limb in _LIMB_HUES else (_GREYS[limb],) * 3
                     for limb in COCO_SKELETON)
_KP_HUES = (None, 15, 195, 350, 170, 330, 160, 5, 135, 25, 110, 300, 240, 45, 200, 65, 225)
#: BGR colour of each keypoint's disc, COCO order (pastel versions of the side's hues; the nose is white).
KEYPOINT_COLOURS = tuple((255, 255, 255) if h is None else bgr(h, 0.5, 1.0) for h in _KP_HUES)


@dataclasses.dataclass
class Person:
    xy: np.ndarray  # (17, 2) int64 drawn joint positions, pixels
    height: float
    back: bool = False
    annotated: bool = True
    missing: int | None = None  # a distal joint not drawn (nor its limb)
    faint: int | None = None  # a distal joint drawn faint (and its limb)
    depth: float = 0.0  # drawing order, smaller first
    skin: tuple = (150, 180, 220)
    cloth: tuple = (90, 90, 90)


def _rotate(v: np.ndarray, angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return v @ np.array([[c, s], [-s, c]])


def sample_pose(rng: np.random.Generator, height: float, back: bool) -> np.ndarray:
    """A varied standing pose around its hip centre, bone lengths kept. Shapes: -> ``(17, 2)`` pixels."""
    base = UPRIGHT_POSE.astype(np.float64)
    pose = base.copy()
    pose[:, 0] *= rng.uniform(0.8, 1.1)  # a slightly turned body: narrower shoulders, hips and face
    for top, mid, end in _CHAINS:
        side = _SIDE[top]
        if top in (5, 6):  # arm: mostly hanging, sometimes raised sideways or up, elbow bent either way
            raise_ = rng.choice([rng.uniform(-0.15, 0.6), rng.uniform(0.6, 1.7), rng.uniform(1.7, 2.7)],
                                p=[0.55, 0.3, 0.15])
            bend = rng.uniform(-1.6, 1.2)
        else:  # leg: a small stance or step
            raise_, bend = rng.uniform(-0.08, 0.3), rng.uniform(-0.3, 0.3)
        pose[mid] = pose[top] + _rotate(base[mid] - base[top], -side * raise_)
        pose[end] = pose[mid] + _rotate(base[end] - base[mid], -side * (raise_ + bend))
    neck = 0.5 * (pose[5] + pose[6])
    pose[:5] = neck + _rotate(pose[:5] - neck, rng.uniform(-0.25, 0.25))
    if back:  # seen from behind: the person's left is on the image's left, names unchanged
        pose[:, 0] *= -1
    hip = 0.5 * (pose[11] + pose[12])
    return _rotate(pose - hip, rng.uniform(-0.15, 0.15)) * height


def _muted(rng: np.random.Generator) -> np.ndarray:
    return np.array(bgr(rng.uniform(0, 360), rng.uniform(0.0, 0.35), rng.uniform(0.2, 0.75)), np.float32)


def background(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """Gradient + blotchy low-frequency noise + random muted shapes + pixel noise. Shapes: -> ``(h, w, 3)``."""
    angle = rng.uniform(0, 2 * math.pi)
    t = (math.cos(angle) * np.arange(w, dtype=np.float32)[None, :, None]
         + math.sin(angle) * np.arange(h, dtype=np.float32)[:, None, None])
    t = (t - t.min()) / max(float(t.max() - t.min()), 1.0)
    c0, c1 = _muted(rng), _muted(rng)
    blotches = rng.normal(0, 14, (max(2, h // 24), max(2, w // 24), 1)) + rng.normal(0, 6, (1, 1, 3))
    blotches = blotches * rng.uniform(0.3, 1.0, (1, 1, 3)) + rng.normal(0, 4, blotches.shape[:2] + (3,))
    img = cv2.resize(blotches.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR) + c0 + (c1 - c0) * t
    img = np.clip(img, 0, 255).astype(np.uint8)
    for _ in range(rng.integers(4, 11)):
        colour = tuple(float(c) for c in _muted(rng))
        x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
        size = int(rng.integers(max(4, h // 20), max(5, h // 3)))
        kind = rng.integers(0, 3)
        if kind == 0:
            cv2.rectangle(img, (x, y), (x + size, y + int(size * rng.uniform(0.3, 2))), colour, -1)
        elif kind == 1:
            cv2.circle(img, (x, y), size // 2, colour, -1, cv2.LINE_AA)
        else:
            end = (x + int(rng.integers(-size, size)), y + int(rng.integers(-size, size)))
            cv2.line(img, (x, y), end, colour, int(rng.integers(1, 4)), cv2.LINE_AA)
    img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.6, 1.5))
    amp = int(rng.integers(4, 16))  # uniform pixel noise in [-amp, amp]
    noise = rng.integers(0, 2 * amp + 1, (h, w, 3), dtype=np.uint8)
    return np.clip(img + (noise.astype(np.float32) - amp), 0, 255).astype(np.uint8)


def _primitives(p: Person) -> tuple[list, list]:
    """Drawing primitives (solid, faint) of one person, back to front."""
    h, xy = p.height, [tuple(int(c) for c in q) for q in p.xy]
    thick, thin = max(2, round(0.04 * h)), max(1, round(0.012 * h))
    hidden = ({p.missing} if p.missing is not None else set()) | (set(FACE) if p.back else set())
    ears = 0.5 * (p.xy[3] + p.xy[4])
    head = tuple(int(round(c)) for c in ears)
    head_angle = math.degrees(math.atan2(p.xy[3, 1] - p.xy[4, 1], p.xy[3, 0] - p.xy[4, 0]))
    head_axes = (max(2, int(round(0.55 * float(np.linalg.norm(p.xy[3] - p.xy[4]))))), max(2, round(0.068 * h)))
    neck = tuple(int(round(c)) for c in 0.5 * (p.xy[5] + p.xy[6]))
    solid = [("poly", np.array([xy[5], xy[6], xy[12], xy[11]], np.int32), p.cloth), ("line", neck, head, thick, p.skin)]
    faint = []
    for (a, b), colour in zip(COCO_SKELETON, LIMB_COLOURS):
        if a in hidden or b in hidden or ((a, b) in _THIN and a not in (3, 4)):
            continue
        width = thin if (a, b) in _THIN else thick
        (faint if p.faint in (a, b) else solid).append(("line", xy[a], xy[b], width, colour))
    for k in range(5, 17):
        if k not in hidden:
            (faint if k == p.faint else solid).append(("circle", xy[k], max(2, round(0.028 * h)), KEYPOINT_COLOURS[k]))
    solid.append(("ellipse", head, head_axes, head_angle, (40, 45, 60) if p.back else p.skin))
    for a, b in _FACE_LIMBS:
        if a not in hidden and b not in hidden:
            solid.append(("line", xy[a], xy[b], thin, LIMB_COLOURS[COCO_SKELETON.index((a, b))]))
    solid += [("circle", xy[k], max(1, round(0.016 * h)), KEYPOINT_COLOURS[k]) for k in range(5) if k not in hidden]
    return solid, faint


def _paint(target: np.ndarray, prims: list, binary: bool) -> None:
    line = cv2.LINE_8 if binary else cv2.LINE_AA
    for kind, *args in prims:
        colour = 1 if binary else args[-1]
        if kind == "poly":
            cv2.fillPoly(target, [args[0]], colour, line)
        elif kind == "line":
            cv2.line(target, args[0], args[1], colour, args[2], line)
        elif kind == "circle":
            cv2.circle(target, args[0], args[1], colour, -1, line)
        else:
            cv2.ellipse(target, args[0], args[1], args[2], 0, 360, colour, -1, line)


def draw(img: np.ndarray, p: Person) -> np.ndarray:
    """Draw a person on ``img`` in place; return its full silhouette. Shapes: ``(H, W, 3)`` -> ``(H, W)`` uint8."""
    solid, faint = _primitives(p)
    mask = np.zeros(img.shape[:2], np.uint8)
    _paint(img, solid, binary=False)
    _paint(mask, solid + faint, binary=True)
    if faint:
        layer = img.copy()
        _paint(layer, faint, binary=False)
        cv2.addWeighted(layer, 0.35, img, 0.65, 0, dst=img)
    return mask


def walking_pose(phase: float, height: float, back: bool = False, stride: float = 0.45) -> np.ndarray:
    """A walking pose around its hip centre at gait ``phase`` (radians; one step cycle per 2 pi): the legs
    scissor by up to ``stride`` radians, each arm swings against its leg, knees and elbows flex twice per cycle.
    Smooth in ``phase``, so a sequence of phases animates a walk. Shapes: -> ``(17, 2)`` pixels."""
    base = UPRIGHT_POSE.astype(np.float64)
    pose = base.copy()
    swing = stride * math.sin(phase)
    for top, mid, end in _CHAINS:
        side = _SIDE[top]
        leg = top in (11, 12)
        angle = side * swing * (1.0 if leg else -0.8)
        bend = (0.15 + 0.1 * math.cos(2 * phase) if leg else -0.3 - 0.1 * (1 - math.cos(2 * phase))) * side
        pose[mid] = pose[top] + _rotate(base[mid] - base[top], angle)
        pose[end] = pose[mid] + _rotate(base[end] - base[mid], angle + bend)
    pose[:5] += (0.0, 0.008 * math.cos(2 * phase))  # the head bobs twice per cycle
    if back:
        pose[:, 0] *= -1
    return (pose - 0.5 * (pose[11] + pose[12])) * height
