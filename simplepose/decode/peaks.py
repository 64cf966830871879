"""Keypoint peak extraction: optional smoothing, 3x3 NMS with tie-break, sub-pixel refinement."""
from __future__ import annotations

import cv2
import numpy as np

from simplepose.decode import kernels, split_peaks


def find_all_peaks(keypoint_maps, num_keypoints: int, threshold: float, *, refine: bool = True,
                   log_fit: bool = True, smoothing: float = 0.0, max_peaks: int = 64, split_margin: float = 0.0):
    """Peaks of every keypoint channel, grouped by type.

    Args:
        keypoint_maps: keypoint channels (extra channels such as the background are ignored).
        num_keypoints: how many leading channels are keypoints.
        threshold: a peak's value must exceed this.
        refine: sub-pixel refinement by a parabola fit per axis.
        log_fit: fit the parabola to log values (exact for Gaussian maps).
        smoothing: Gaussian smoothing sigma in cells before NMS (0 = none); scores stay unsmoothed.
        max_peaks: at most this many peaks per type are kept (the highest).
        split_margin: if > 0, cells this far above the Gaussian models of the found peaks become extra
            peaks (``split_peaks``: keypoints of two people less than a cell apart).

    Returns:
        ``(peaks, offsets)``: peak rows ``[x, y, score, type]`` in cell coordinates, sorted by type;
        type t occupies rows ``offsets[t]:offsets[t + 1]``.

    Shapes: ``keypoint_maps (h, w, C >= K)`` -> ``peaks (P, 4)`` float32, ``offsets (K + 1,)`` int64.
    """
    maps = raw = np.asarray(keypoint_maps, dtype=np.float32)
    if maps.ndim != 3 or maps.shape[2] < num_keypoints:
        raise ValueError(f"expected (h, w, >= {num_keypoints}) keypoint maps, got {maps.shape}")
    if smoothing > 0:
        smooth = cv2.GaussianBlur(np.ascontiguousarray(maps[:, :, :num_keypoints]), (0, 0), smoothing)
        maps = smooth.reshape(maps.shape[:2] + (num_keypoints,))
    out = np.zeros((maps.shape[0] * maps.shape[1] * num_keypoints // 4 + 1, 4), dtype=np.float32)
    count = kernels.find_peaks_all(maps, num_keypoints, float(threshold), bool(refine), bool(log_fit), out)
    peaks = out[:count]
    if split_margin > 0 and count:
        peaks = _add_split_peaks(maps, peaks, num_keypoints, threshold, split_margin, refine)
        count = len(peaks)
    types = peaks[:, kernels.PEAK_TYPE].astype(np.int64)
    if smoothing > 0 and count:  # scores are the unsmoothed values at the peak cell
        rows = np.clip(np.rint(peaks[:, 1]).astype(int), 0, raw.shape[0] - 1)
        cols = np.clip(np.rint(peaks[:, 0]).astype(int), 0, raw.shape[1] - 1)
        peaks[:, kernels.PEAK_SCORE] = raw[rows, cols, types]
    counts = np.bincount(types, minlength=num_keypoints)
    if counts.max(initial=0) > max_peaks:  # keep the best max_peaks of each type, still grouped by type
        order = np.lexsort((-peaks[:, kernels.PEAK_SCORE], types))
        rank = np.arange(count) - np.repeat(np.cumsum(counts) - counts, counts)
        peaks = peaks[order][rank < max_peaks]
        counts = np.minimum(counts, max_peaks)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return np.ascontiguousarray(peaks, dtype=np.float32), offsets


def _add_split_peaks(maps, peaks, num_keypoints: int, threshold: float, margin: float, refine: bool):
    """``peaks`` plus the ``split_peaks`` extras, still grouped by type.

    Shapes: ``maps (h, w, C >= K)``, ``peaks (P, 4)`` grouped by type -> ``(P + E, 4)`` float32.
    """
    counts = np.bincount(peaks[:, kernels.PEAK_TYPE].astype(np.int64), minlength=num_keypoints)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    extra = np.zeros((maps.shape[0] * maps.shape[1] * num_keypoints // 4 + 1, 4), dtype=np.float32)
    n = split_peaks.find_split_peaks_all(maps, peaks, offsets, float(threshold), float(margin), bool(refine), extra)
    if n == 0:
        return peaks
    both = np.concatenate([peaks, extra[:n]])
    return both[np.argsort(both[:, kernels.PEAK_TYPE], kind="stable")]
