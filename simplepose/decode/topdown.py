"""Top-down decoding: argmax with quarter-cell refinement, crop to image coordinates."""
from __future__ import annotations

import numpy as np

from simplepose.pose import cell_to_pixel


def decode_heatmaps(heatmaps, stride: int = 4):
    """Per-keypoint argmax, moved a quarter cell toward the higher neighbour on each axis (spec 4 step 5).

    The refinement needs both neighbours, so it applies for ``0 < x < w - 1`` (and likewise ``y``); the
    published strict ``1 < x < w - 1`` also skipped column 1, an off-by-one. Cells map to crop pixels
    through ``simplepose.pose.cell_to_pixel``.

    Shapes: ``(B, h, w, K)`` -> coordinates ``(B, K, 2)`` float32 crop pixels ``[x, y]``, scores ``(B, K)``
    (the heatmap maxima).
    """
    hm = np.asarray(heatmaps, dtype=np.float32)
    b, h, w, k = hm.shape
    flat = hm.transpose(0, 3, 1, 2).reshape(b, k, h * w)
    idx = flat.argmax(axis=2)
    scores = np.take_along_axis(flat, idx[..., None], axis=2)[..., 0]
    y, x = np.divmod(idx, w)
    bi, ki = np.meshgrid(np.arange(b), np.arange(k), indexing="ij")
    fx, fy = x.astype(np.float32), y.astype(np.float32)
    inner_x = (x > 0) & (x < w - 1)
    inner_y = (y > 0) & (y < h - 1)
    xr, xl = np.minimum(x + 1, w - 1), np.maximum(x - 1, 0)
    yd, yu = np.minimum(y + 1, h - 1), np.maximum(y - 1, 0)
    fx += np.where(inner_x, 0.25 * np.sign(hm[bi, y, xr, ki] - hm[bi, y, xl, ki]), 0.0)
    fy += np.where(inner_y, 0.25 * np.sign(hm[bi, yd, x, ki] - hm[bi, yu, x, ki]), 0.0)
    coords = np.stack([cell_to_pixel(fx, stride), cell_to_pixel(fy, stride)], axis=-1)
    return coords.astype(np.float32), scores.astype(np.float32)


def crop_to_image(coords, matrices) -> np.ndarray:
    """Map crop pixel coordinates back through the inverse of each crop's image-to-crop affine.

    Shapes: ``coords`` ``(B, K, 2)``, ``matrices`` ``(B, 2, 3)`` image-to-crop -> ``(B, K, 2)`` image pixels.
    """
    m = np.asarray(matrices, dtype=np.float64)
    a, t = m[:, :, :2], m[:, :, 2]
    inv = np.linalg.inv(a)
    xy = np.asarray(coords, dtype=np.float64) - t[:, None, :]
    return np.einsum("bij,bkj->bki", inv, xy).astype(np.float32)
