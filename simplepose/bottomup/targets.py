"""Training targets: keypoint and limb Gaussian maps at the output stride (numpy reference + dispatch)."""
from __future__ import annotations

import logging
import math

import numpy as np

LOG = logging.getLogger(__name__)

LIMB_SHAPES = ("capsule", "seed_box")
#: The seed's ``paf_thre``: half-width margin of the box that bounds a seed-style limb, input pixels.
SEED_BOX_MARGIN = 8.0


def support_radius(sigma: float, threshold: float) -> float:
    """Distance beyond which ``exp(-d^2 / 2 sigma^2) <= threshold``."""
    return sigma * math.sqrt(2.0 * math.log(1.0 / threshold)) if 0 < threshold < 1 else math.inf


def render_targets(keypoints, mask, skeleton, out_hw, stride: int, keypoint_sigma: float = 7.0,
                   limb_sigma: float = 5.0, threshold: float = 0.01, limb_shape: str = "capsule",
                   impl: str = "numba") -> dict:
    """Render one sample's target maps (spec section 2, with the seed's bugs fixed).

    - Map cell (r, c) samples input pixel ``(s*c + (s-1)/2, s*r + (s-1)/2)`` for keypoints *and* limbs
      (``simplepose.pose``; the seed used cell corners for limbs).
    - Keypoint channel k: max over people of ``exp(-d^2 / 2 sigma^2)``, d = distance to the keypoint.
    - Limb channel l: ``exp(-d^2 / 2 sigma_l^2)`` with d the distance to the *segment* (a capsule),
      averaged over the people whose limb of that type reaches the cell. ``limb_shape="seed_box"``
      restores the seed's distance to the infinite line, cut by the endpoints' box widened by 8 px.
    - Values at or below ``threshold`` are zeroed; background = 1 - max keypoint (limbs do not count).
    - Keypoints with v = 0 never draw; a limb draws only when both ends have v > 0.
    - Every channel is multiplied by the mask.

    Args:
        keypoints: all people's keypoints ``[x, y, v]`` in input pixels, skeleton order.
        mask: loss mask on the output grid (1 = supervised, soft values allowed), or None for all ones.
        skeleton: a ``simplepose.skeleton.Skeleton`` (channel counts and limbs).
        out_hw: ``(h, w)`` of the output grid (any shape; the input image is about ``stride`` times it).
        stride: input pixels per map cell.
        keypoint_sigma, limb_sigma: Gaussian sigmas in input pixels.
        threshold: values at or below it are zeroed.
        limb_shape: ``capsule`` (default) or ``seed_box``.
        impl: ``numba`` (fast kernels) or ``numpy`` (the clear reference).

    Returns:
        ``{"keypoints": (h, w, K+1), "limbs": (h, w, L), "mask": (h, w, 1)}``, float32, masked.

    Shapes: keypoints ``(N, K, 3)``; mask ``(h, w)`` or ``(h, w, 1)``.
    """
    if limb_shape not in LIMB_SHAPES:
        raise ValueError(f"limb_shape={limb_shape!r}: expected one of {', '.join(LIMB_SHAPES)}")
    h, w = (int(v) for v in out_hw)
    kp = np.ascontiguousarray(keypoints, dtype=np.float32).reshape(-1, skeleton.num_keypoints, 3)
    m = np.ones((h, w), np.float32) if mask is None else np.asarray(mask, np.float32).reshape(h, w)
    limbs = np.asarray(skeleton.limbs, dtype=np.int64).reshape(-1, 2)
    args = (kp, limbs, h, w, float(stride), float(keypoint_sigma), float(limb_sigma), float(threshold),
            limb_shape == "seed_box")
    if impl == "numba":
        from simplepose.bottomup import target_kernels

        heat, limb_maps = target_kernels.render(*args)
    elif impl == "numpy":
        heat, limb_maps = _render_numpy(*args)
    else:
        raise ValueError(f"impl={impl!r}: expected numba or numpy")
    heat *= m[..., None]
    limb_maps *= m[..., None]
    return {"keypoints": heat, "limbs": limb_maps, "mask": np.ascontiguousarray(m[..., None])}


def _grid(h, w, stride):
    """Input-pixel coordinates of the cell centres. Shapes: -> ``(h, 1)``, ``(1, w)``."""
    ys = stride * np.arange(h, dtype=np.float64)[:, None] + (stride - 1) / 2.0
    xs = stride * np.arange(w, dtype=np.float64)[None, :] + (stride - 1) / 2.0
    return ys, xs


def _gaussian(d2, sigma, threshold):
    g = np.exp(-d2 / (2.0 * sigma * sigma))
    return np.where(g > threshold, g, 0.0)


def _limb_value(xs, ys, a, b, sigma, threshold, seed_box, stride):
    """One limb's response on the full grid (zero where it does not reach). Shapes: -> ``(h, w)``."""
    (x1, y1), (x2, y2) = a, b
    dx, dy = x2 - x1, y2 - y1
    length2 = dx * dx + dy * dy
    if seed_box:
        if length2 == 0:
            return np.zeros(np.broadcast(ys, xs).shape)  # the seed skips a zero-length limb
        cross = dx * (y1 - ys) - (x1 - xs) * dy
        value = _gaussian(cross * cross / length2, sigma, threshold)
        return value * _seed_box(xs, ys, a, b, stride)
    t = np.zeros(np.broadcast(ys, xs).shape) if length2 == 0 else np.clip(
        ((xs - x1) * dx + (ys - y1) * dy) / length2, 0.0, 1.0)
    px, py = x1 + t * dx - xs, y1 + t * dy - ys
    return _gaussian(px * px + py * py, sigma, threshold)


def _seed_box(xs, ys, a, b, stride):
    """The seed's bounding box, in cells: ``[round(pixel_to_cell(min - 8)), round(pixel_to_cell(max + 8)))``."""
    off = (stride - 1) / 2.0
    lo_x = np.floor((min(a[0], b[0]) - SEED_BOX_MARGIN - off) / stride + 0.5)
    hi_x = np.floor((max(a[0], b[0]) + SEED_BOX_MARGIN - off) / stride + 0.5)
    lo_y = np.floor((min(a[1], b[1]) - SEED_BOX_MARGIN - off) / stride + 0.5)
    hi_y = np.floor((max(a[1], b[1]) + SEED_BOX_MARGIN - off) / stride + 0.5)
    cols = (xs - off) / stride
    rows = (ys - off) / stride
    return (cols >= lo_x) & (cols < hi_x) & (rows >= lo_y) & (rows < hi_y)


def _render_numpy(kp, limbs, h, w, stride, kp_sigma, limb_sigma, threshold, seed_box):
    """Full-grid reference renderer, one keypoint or limb at a time. Shapes: -> (h,w,K+1), (h,w,L)."""
    ys, xs = _grid(h, w, stride)
    num_k = kp.shape[1]
    heat = np.zeros((h, w, num_k + 1), np.float64)
    for person in kp.astype(np.float64):
        for k, (x, y, v) in enumerate(person):
            if v > 0:
                g = _gaussian((xs - x) ** 2 + (ys - y) ** 2, kp_sigma, threshold)
                heat[..., k] = np.maximum(heat[..., k], g)
    heat[..., num_k] = 1.0 - heat[..., :num_k].max(axis=-1, initial=0.0)
    total = np.zeros((h, w, len(limbs)), np.float64)
    count = np.zeros((h, w, len(limbs)), np.float64)
    for person in kp.astype(np.float64):
        for c, (i, j) in enumerate(limbs):
            if person[i, 2] > 0 and person[j, 2] > 0:
                value = _limb_value(xs, ys, person[i, :2], person[j, :2], limb_sigma, threshold, seed_box, stride)
                total[..., c] += value
                count[..., c] += value > 0
    limb_maps = np.divide(total, count, out=np.zeros_like(total), where=count > 0)
    return heat.astype(np.float32), limb_maps.astype(np.float32)
