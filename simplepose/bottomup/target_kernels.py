"""Numba kernels (nogil, arrays and scalars only) for the targets; each Gaussian writes only in its window."""
from __future__ import annotations

import math

import numpy as np
from numba import njit

_SEED_BOX_MARGIN = 8.0


@njit(nogil=True, cache=True)
def _radius(sigma, threshold):
    if threshold <= 0.0 or threshold >= 1.0:
        return 1e30
    return sigma * math.sqrt(2.0 * math.log(1.0 / threshold))


@njit(nogil=True, cache=True)
def _cell_range(lo, hi, stride, n):
    """Cells whose centres lie in [lo, hi] input pixels, one cell of slack each side, clipped to [0, n)."""
    off = (stride - 1.0) / 2.0
    a = max(math.floor((lo - off) / stride) - 1.0, 0.0)
    b = min(math.ceil((hi - off) / stride) + 2.0, float(n))
    if b <= a:
        return 0, 0
    return int(a), int(b)


@njit(nogil=True, cache=True)
def draw_keypoints(heat, kp, stride, sigma, threshold):
    """Max-merge every labelled keypoint's Gaussian into ``heat[..., k]``. Shapes: (h,w,K+1), (N,K,3)."""
    h, w = heat.shape[0], heat.shape[1]
    off = (stride - 1.0) / 2.0
    r = _radius(sigma, threshold)
    inv = 1.0 / (2.0 * sigma * sigma)
    for p in range(kp.shape[0]):
        for k in range(kp.shape[1]):
            if kp[p, k, 2] <= 0:
                continue
            x, y = float(kp[p, k, 0]), float(kp[p, k, 1])
            r0, r1 = _cell_range(y - r, y + r, stride, h)
            c0, c1 = _cell_range(x - r, x + r, stride, w)
            for i in range(r0, r1):
                dy = stride * i + off - y
                for j in range(c0, c1):
                    dx = stride * j + off - x
                    g = math.exp(-(dx * dx + dy * dy) * inv)
                    if g > threshold and g > heat[i, j, k]:
                        heat[i, j, k] = g


@njit(nogil=True, cache=True)
def _seed_box_cells(lo, hi, stride):
    """The seed's box, in cells: [round(pixel_to_cell(lo - 8)), round(pixel_to_cell(hi + 8)))."""
    off = (stride - 1.0) / 2.0
    return (math.floor((lo - _SEED_BOX_MARGIN - off) / stride + 0.5),
            math.floor((hi + _SEED_BOX_MARGIN - off) / stride + 0.5))


@njit(nogil=True, cache=True)
def _limb_value(px, py, x1, y1, dx, dy, length2, inv, threshold, seed_box):
    if seed_box:
        cross = dx * (y1 - py) - (x1 - px) * dy
        d2 = cross * cross / length2
    else:
        t = 0.0
        if length2 > 0.0:
            t = min(max(((px - x1) * dx + (py - y1) * dy) / length2, 0.0), 1.0)
        ex, ey = x1 + t * dx - px, y1 + t * dy - py
        d2 = ex * ex + ey * ey
    g = math.exp(-d2 * inv)
    return g if g > threshold else 0.0


@njit(nogil=True, cache=True)
def draw_limb(total, count, limb, x1, y1, x2, y2, stride, sigma, threshold, seed_box):
    """Add one limb's response to ``total[..., limb]`` and count the cells it reaches. Shapes: (h,w,L)."""
    h, w = total.shape[0], total.shape[1]
    off = (stride - 1.0) / 2.0
    dx, dy = x2 - x1, y2 - y1
    length2 = dx * dx + dy * dy
    if seed_box and length2 == 0.0:
        return  # the seed skips a zero-length limb
    r = _radius(sigma, threshold)
    r0, r1 = _cell_range(min(y1, y2) - r, max(y1, y2) + r, stride, h)
    c0, c1 = _cell_range(min(x1, x2) - r, max(x1, x2) + r, stride, w)
    if seed_box:
        lo, hi = _seed_box_cells(min(y1, y2), max(y1, y2), stride)
        r0, r1 = max(r0, int(max(lo, 0.0))), min(r1, int(min(max(hi, 0.0), float(h))))
        lo, hi = _seed_box_cells(min(x1, x2), max(x1, x2), stride)
        c0, c1 = max(c0, int(max(lo, 0.0))), min(c1, int(min(max(hi, 0.0), float(w))))
    inv = 1.0 / (2.0 * sigma * sigma)
    for i in range(r0, r1):
        py = stride * i + off
        for j in range(c0, c1):
            g = _limb_value(stride * j + off, py, x1, y1, dx, dy, length2, inv, threshold, seed_box)
            if g > 0.0:
                total[i, j, limb] += g
                count[i, j, limb] += 1.0


@njit(nogil=True, cache=True)
def draw_limbs(total, count, kp, limbs, stride, sigma, threshold, seed_box):
    """Every person's limbs whose two ends are labelled. Shapes: (h,w,L), (h,w,L), (N,K,3), (L,2)."""
    for p in range(kp.shape[0]):
        for limb in range(limbs.shape[0]):
            a, b = limbs[limb, 0], limbs[limb, 1]
            if kp[p, a, 2] > 0 and kp[p, b, 2] > 0:
                draw_limb(total, count, limb, float(kp[p, a, 0]), float(kp[p, a, 1]), float(kp[p, b, 0]),
                          float(kp[p, b, 1]), stride, sigma, threshold, seed_box)


@njit(nogil=True, cache=True)
def _finish(heat, total, count, num_k):
    """Background = 1 - max keypoint; limb sums become averages over the limbs that reached each cell."""
    h, w = heat.shape[0], heat.shape[1]
    for i in range(h):
        for j in range(w):
            peak = np.float32(0.0)
            for k in range(num_k):
                peak = max(peak, heat[i, j, k])
            heat[i, j, num_k] = np.float32(1.0) - peak
            for limb in range(total.shape[2]):
                if count[i, j, limb] > 1:
                    total[i, j, limb] /= count[i, j, limb]


@njit(nogil=True, cache=True)
def _render(kp, limbs, h, w, stride, kp_sigma, limb_sigma, threshold, seed_box):
    num_k = kp.shape[1]
    heat = np.zeros((h, w, num_k + 1), np.float32)
    draw_keypoints(heat, kp, stride, kp_sigma, threshold)
    total = np.zeros((h, w, limbs.shape[0]), np.float32)
    count = np.zeros((h, w, limbs.shape[0]), np.float32)
    draw_limbs(total, count, kp, limbs, stride, limb_sigma, threshold, seed_box)
    _finish(heat, total, count, num_k)
    return heat, total


def render(kp, limbs, h, w, stride, kp_sigma, limb_sigma, threshold, seed_box):
    """Unmasked keypoint (with background) and limb maps; the same maths as ``targets._render_numpy``.

    Shapes: (N,K,3), (L,2) -> (h,w,K+1), (h,w,L) float32.
    """
    return _render(np.ascontiguousarray(kp, np.float32), np.ascontiguousarray(limbs, np.int64), int(h), int(w),
                   float(stride), float(kp_sigma), float(limb_sigma), float(threshold), bool(seed_box))
