"""Training augmentation: one composed affine (scale, rotate, shift, flip) per sample, and HSV colour jitter."""
from __future__ import annotations

import dataclasses
import logging
import math
from typing import Optional

import cv2
import numpy as np

from simplepose.data.codecs import REDUCTIONS

LOG = logging.getLogger(__name__)

#: Grey used for pixels outside the source image (the seed's border value).
BORDER_GREY = 127
_INTERPOLATIONS = {"linear": cv2.INTER_LINEAR, "cubic": cv2.INTER_CUBIC}
#: Mask samples per output cell side (at most the stride): 4 x 4 nearest samples average each cell.
MASK_SAMPLES = 4
#: OpenCV's 8-bit hue range is 0..179 (degrees / 2).
_HUE_RANGE = 180


@dataclasses.dataclass(frozen=True)
class AugmentParams:
    """One sample's augmentation draw; the defaults are the identity (validation mode).

    Attributes:
        scale: multiplies the scale that brings the main person to ``target_dist`` of the crop.
        angle: rotation in degrees.
        shift: ``(dx, dy)`` shift of the crop centre, in crop pixels.
        flip: horizontal mirror (with left/right keypoint swap).
        hsv: ``(dh, ds, dv)`` integer HSV shifts in OpenCV units, or None for no colour jitter.
    """

    scale: float = 1.0
    angle: float = 0.0
    shift: tuple[float, float] = (0.0, 0.0)
    flip: bool = False
    hsv: Optional[tuple[int, int, int]] = None


def draw_params(rng: np.random.Generator, cfg, train: bool = True) -> AugmentParams:
    """Draw one sample's augmentation from ``cfg`` (an ``AugmentConfig``); identity when not training.

    The seed's inverted comparisons are fixed: colour jitter fires with probability ``tint_prob`` and the
    scale jitter (uniform in ``[scale_min, scale_max]``) with probability ``scale_prob``.
    """
    if not train:
        return AugmentParams()
    scale = float(rng.uniform(cfg.scale_min, cfg.scale_max)) if rng.random() < cfg.scale_prob else 1.0
    angle = float(rng.uniform(-cfg.max_rotate_deg, cfg.max_rotate_deg))
    dx, dy = rng.uniform(-cfg.center_shift_px, cfg.center_shift_px, size=2)
    flip = bool(rng.random() < cfg.flip_prob)
    hsv = None
    if rng.random() < cfg.tint_prob:
        hsv = tuple(int(rng.integers(-r, r + 1)) for r in (cfg.hue_shift, cfg.sat_shift, cfg.val_shift))
    return AugmentParams(scale=scale, angle=angle, shift=(float(dx), float(dy)), flip=flip, hsv=hsv)


def crop_scale(person_height: float, params: AugmentParams, input_size: int, target_dist: float) -> float:
    """Source-to-crop scale factor: the main person's height becomes ``target_dist * input_size`` (x jitter)."""
    return target_dist * input_size / float(person_height) * params.scale


def choose_reduction(scale: float, reductions=REDUCTIONS) -> int:
    """Largest decode reduction ``r`` such that the remaining scale ``scale * r`` is still <= 1.

    The affine would throw the resolution away anyway (it only shrinks further). Decoding at 1/r skips
    most of the IDCT and colour conversion but not the entropy decoding: on COCO JPEGs here it saves
    about 10-30% of the decode time, and only large people are shrunk that much.
    """
    for r in reductions:
        if scale * r <= 1.0:
            return r
    return 1


def affine_matrix(center, person_height: float, params: AugmentParams, input_size: int,
                  target_dist: float) -> np.ndarray:
    """The one 2x3 source-to-crop matrix ``T(crop centre + shift) . F . S . R . T(-center)``.

    The crop centre is ``(input_size - 1) / 2`` (pixel centres are integers, see ``simplepose.pose``),
    so an identity draw puts ``center`` exactly at the crop's centre. ``R`` is the seed's
    ``[[cos, sin], [-sin, cos]]`` and ``F = diag(-1, 1)`` mirrors about the crop centre.

    Shapes: ``center`` ``(2,)`` -> ``(2, 3)`` float64 (what ``cv2.warpAffine`` takes).
    """
    s = crop_scale(person_height, params, input_size, target_dist)
    theta = math.radians(params.angle)
    cos, sin = math.cos(theta), math.sin(theta)
    fx = -1.0 if params.flip else 1.0
    # F . S . R as one 2x2 block.
    a = np.array([[fx * s * cos, fx * s * sin], [-s * sin, s * cos]], dtype=np.float64)
    c = np.asarray(center, dtype=np.float64).reshape(2)
    mid = (input_size - 1) / 2.0
    t = np.array([mid + params.shift[0], mid + params.shift[1]]) - a @ c
    return np.concatenate([a, t[:, None]], axis=1)


def transform_keypoints(keypoints, matrix, flip_perm=None) -> np.ndarray:
    """Map ``[x, y]`` through ``matrix``; with ``flip_perm`` also swap left/right keypoints. ``v`` is kept.

    Shapes: ``(N, K, 3)`` -> ``(N, K, 3)`` float32.
    """
    kp = np.array(keypoints, dtype=np.float32, copy=True)
    m = np.asarray(matrix, dtype=np.float64)
    xy = kp[..., :2].astype(np.float64) @ m[:, :2].T + m[:, 2]
    kp[..., :2] = xy
    if flip_perm is not None:
        kp = kp[..., np.asarray(flip_perm), :]
    return kp


def _grid_matrix(step: float) -> np.ndarray:
    """3x3 map from crop pixels to a grid of cells ``step`` pixels wide (cell centres as in ``pose``)."""
    off = (step - 1) / 2.0
    return np.array([[1 / step, 0.0, -off / step], [0.0, 1 / step, -off / step], [0.0, 0.0, 1.0]])


def unreduce_matrix(reduce: int) -> np.ndarray:
    """3x3 map from pixels of an image decoded at 1/reduce to full-resolution pixels.

    Reduced pixel j averages full pixels ``[r*j, r*j + r)``, so its centre is ``r*j + (r - 1)/2``
    (the inverse of ``simplepose.data.codecs.reduce_points``).
    """
    off = (reduce - 1) / 2.0
    return np.array([[reduce, 0.0, off], [0.0, reduce, off], [0.0, 0.0, 1.0]])


def warp(image, mask, keypoints, matrix, size: int, stride: int, flip_perm=None,
         interpolation: str = "linear", image_matrix=None):
    """Apply one affine to image, miss mask and keypoints.

    The image is resampled into a ``size`` square with a constant grey border. The mask (1 = supervised)
    is sampled (nearest) with border 1, so regions outside the source image count as supervised background
    (as in the seed), at ``MASK_SAMPLES`` x ``MASK_SAMPLES`` evenly spaced points per output cell, and
    averaged per cell: a soft mask on the output grid (the area average of the warped mask, sampled).

    Args:
        image: uint8 BGR source image.
        mask: uint8 miss mask at the source's full resolution, 1 = supervised; None = all supervised.
        keypoints: all people's keypoints in source pixels.
        matrix: 2x3 source-to-crop matrix from :func:`affine_matrix`.
        size: crop side; a multiple of ``stride``.
        stride: output stride of the target maps.
        flip_perm: the skeleton's ``keypoint_flip`` when the matrix mirrors, else None.
        interpolation: ``linear`` or ``cubic`` for the image.
        image_matrix: the matrix for ``image`` when it was decoded at reduced resolution
            (``matrix @ unreduce_matrix(r)``); None = ``matrix``.

    Returns:
        ``(image, mask, keypoints)``.

    Shapes: ``(h, w, 3)`` uint8, ``(H, W)`` uint8, ``(N, K, 3)`` -> ``(size, size, 3)`` uint8,
    ``(size / stride, size / stride)`` float32 in [0, 1], ``(N, K, 3)`` float32.
    """
    if interpolation not in _INTERPOLATIONS:
        raise ValueError(f"interpolation={interpolation!r}: expected one of {', '.join(_INTERPOLATIONS)}")
    if size % stride:
        raise ValueError(f"crop size {size} is not a multiple of the stride {stride}")
    m = np.asarray(matrix, dtype=np.float64)[:2]
    m_image = m if image_matrix is None else np.asarray(image_matrix, dtype=np.float64)[:2]
    out = cv2.warpAffine(image, m_image, (size, size), flags=_INTERPOLATIONS[interpolation],
                         borderMode=cv2.BORDER_CONSTANT, borderValue=(BORDER_GREY,) * 3)
    grid = size // stride
    if mask is None:
        soft = np.ones((grid, grid), np.float32)
    else:
        sub = min(stride, MASK_SAMPLES)
        fine = _grid_matrix(stride / sub) @ np.vstack([m, [0.0, 0.0, 1.0]])
        crop_mask = cv2.warpAffine(mask, fine[:2], (grid * sub, grid * sub), flags=cv2.INTER_NEAREST,
                                   borderMode=cv2.BORDER_CONSTANT, borderValue=1)
        soft = cv2.resize(crop_mask.astype(np.float32), (grid, grid), interpolation=cv2.INTER_AREA)
    return out, soft, transform_keypoints(keypoints, m, flip_perm)


def _hsv_lut(dh: int, ds: int, dv: int) -> np.ndarray:
    """Per-channel lookup table: hue wraps modulo 180, saturation and value are clipped to 0..255."""
    i = np.arange(256, dtype=np.int16)
    hue = np.where(i < _HUE_RANGE, (i + dh) % _HUE_RANGE, i)
    lut = np.stack([hue, np.clip(i + ds, 0, 255), np.clip(i + dv, 0, 255)], axis=-1)
    return lut.astype(np.uint8).reshape(256, 1, 3)


def color_jitter(image: np.ndarray, hsv_shift) -> np.ndarray:
    """Shift hue, saturation and value of a BGR image in OpenCV's 8-bit HSV space.

    Hue is cyclic (0..179 in OpenCV), so it wraps; the seed clipped it to 255, which turns shifted reds
    into invalid hues. Done with one per-channel lookup table on uint8 data (no float copies).

    Shapes: ``(H, W, 3)`` uint8 BGR -> ``(H, W, 3)`` uint8 BGR.
    """
    dh, ds, dv = (int(v) for v in hsv_shift)
    hsv = cv2.cvtColor(image, cv2.COLOR_BGR2HSV)
    hsv = cv2.LUT(hsv, _hsv_lut(dh, ds, dv))
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)
