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
    peaks, offsets, above, above_offsets = kernels.find_peaks_all(maps, num_keypoints, float(threshold), bool(refine),
                                                                  bool(log_fit))
    if split_margin > 0 and len(peaks):
        peaks, offsets = split_peaks.add_split_peaks(maps, peaks, offsets, above, above_offsets, float(threshold),
                                                     float(split_margin), bool(refine))
    count = len(peaks)
    counts = np.diff(offsets)
    if smoothing > 0 and count:  # scores are the unsmoothed values at the peak cell
        types = peaks[:, kernels.PEAK_TYPE].astype(np.int64)
        rows = np.clip(np.rint(peaks[:, 1]).astype(int), 0, raw.shape[0] - 1)
        cols = np.clip(np.rint(peaks[:, 0]).astype(int), 0, raw.shape[1] - 1)
        peaks[:, kernels.PEAK_SCORE] = raw[rows, cols, types]
    if counts.max(initial=0) > max_peaks:  # keep the best max_peaks of each type, still grouped by type
        types = peaks[:, kernels.PEAK_TYPE].astype(np.int64)
        order = np.lexsort((-peaks[:, kernels.PEAK_SCORE], types))
        rank = np.arange(count) - np.repeat(offsets[:-1], counts)
        peaks = peaks[order][rank < max_peaks]
        offsets = np.concatenate([[0], np.cumsum(np.minimum(counts, max_peaks))]).astype(np.int64)
    return peaks, offsets
