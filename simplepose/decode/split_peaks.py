"""numba kernels that split merged peaks: cells a Gaussian model of the found peaks leaves unexplained.

Two people's keypoints of one type less than about a cell apart give one 3x3 maximum: the weaker is no
local maximum, only a bulge on the stronger one's flank. Each found peak is modelled as an isotropic
Gaussian (its value, sub-pixel centre, and the log curvature of its sharper axis: a bulge only widens the
axis it lies on); cells well above every model are extra peaks. Like ``kernels``: arrays and scalars only,
and every function also runs as plain Python under ``NUMBA_DISABLE_JIT=1``.
"""
import math

import numpy as np
from numba import njit

from simplepose.decode.kernels import PEAK_SCORE, PEAK_TYPE, PEAK_X, PEAK_Y, put_peak, subpixel_offset

#: A model explains nothing (less than ``exp(-_FAR)`` = 2e-5 of its peak) beyond this exponent: skipped.
_FAR = 10.8


@njit(cache=True, nogil=True)
def log_curvature(m, r, c):
    """The larger of the two axes' log curvatures ``2 log m[r, c] - log(left) - log(right)`` (0 if none).

    For a Gaussian of sigma s it is ``1 / s**2`` on both axes.
    """
    h, w = m.shape
    v = m[r, c]
    best = 0.0
    if v <= 0.0:
        return best
    if 0 < c < w - 1 and m[r, c - 1] > 0.0 and m[r, c + 1] > 0.0:
        best = max(best, 2.0 * math.log(v) - math.log(m[r, c - 1]) - math.log(m[r, c + 1]))
    if 0 < r < h - 1 and m[r - 1, c] > 0.0 and m[r + 1, c] > 0.0:
        best = max(best, 2.0 * math.log(v) - math.log(m[r - 1, c]) - math.log(m[r + 1, c]))
    return best


@njit(cache=True, nogil=True)
def peak_models(maps, peaks):
    """The Gaussian model of every peak: centre x, centre y (sub-pixel, refined here even if the peaks are
    integer cells) and the log curvature of :func:`log_curvature` (0: no model).

    Shapes: ``maps (h, w, C)``; ``peaks (P, 4)`` rows ``[x, y, score, type]`` in cells -> ``(P, 3)`` float64.
    """
    h, w = maps.shape[0], maps.shape[1]
    model = np.zeros((peaks.shape[0], 3))
    for p in range(peaks.shape[0]):
        m = maps[:, :, int(peaks[p, PEAK_TYPE])]
        r = min(max(int(round(peaks[p, PEAK_Y])), 0), h - 1)
        c = min(max(int(round(peaks[p, PEAK_X])), 0), w - 1)
        dx, dy = subpixel_offset(m, r, c, True)
        model[p, 0], model[p, 1], model[p, 2] = c + dx, r + dy, log_curvature(m, r, c)
    return model


@njit(cache=True, nogil=True)
def residual(m, r, c, peaks, model, lo, hi, threshold):
    """``m[r, c]`` minus the largest Gaussian model of peaks ``lo:hi`` if it is above ``threshold`` (else 0).

    Where a model has fallen below ``exp(-_FAR)`` of its peak it counts as 0.

    Shapes: ``m (h, w)``; ``peaks (P, 4)``; ``model (P, 3)`` of :func:`peak_models`.
    """
    v = m[r, c]
    if v <= threshold:
        return 0.0
    explained = 0.0
    for p in range(lo, hi):
        dx, dy = c - model[p, 0], r - model[p, 1]
        if model[p, 2] <= 0.0:  # no model (a corner): the peak explains the cells around it
            if dx * dx + dy * dy <= 4.0:
                explained = v
            continue
        exponent = 0.5 * model[p, 2] * (dx * dx + dy * dy)
        if exponent < _FAR:
            explained = max(explained, peaks[p, PEAK_SCORE] * math.exp(-exponent))
    return v - explained


@njit(cache=True, nogil=True)
def find_split_peaks(m, cells, peaks, model, lo, hi, threshold, margin, refine, channel, out, count):
    """Append the cells of ``m`` whose residual exceeds ``margin`` and is a 3x3 maximum; return the new count.

    Only ``cells`` (the cells above ``threshold``, in raster order) can qualify: the residual is 0 elsewhere.
    Cells less than one cell from a found peak are skipped. Rows are ``[x, y, m[y, x], channel]``; with
    ``refine``, x and y get the sub-pixel offset of ``kernels.subpixel_offset`` fitted to ``m`` itself
    (the side away from the stronger peak is the hidden peak's own Gaussian; the offset is clipped to half a cell).

    Args:
        m: one keypoint map.
        cells: flat indices ``r * w + c`` of the cells of ``m`` above ``threshold``, in raster order.
        peaks: found peaks; this channel's occupy rows ``lo:hi``; ``model`` their :func:`peak_models`.
        threshold: the peak threshold (cells at or below it are ignored).
        margin: how far above every peak's model a cell must be.
        out: pre-allocated rows; rows past its end are dropped.
        count: rows already used.

    Shapes: ``m (h, w)``; ``cells (M,)`` int64; ``peaks (P, 4)``; ``model (P, 3)``; ``out (Q, 4)`` float32.
    """
    h, w = m.shape
    for i in range(cells.shape[0]):
        r, c = cells[i] // w, cells[i] % w
        if m[r, c] <= margin or count >= out.shape[0]:  # the residual is at most the value
            continue
        v = residual(m, r, c, peaks, model, lo, hi, threshold)
        if v <= margin:
            continue
        top = True
        for rr in range(max(r - 1, 0), min(r + 2, h)):
            for cc in range(max(c - 1, 0), min(c + 2, w)):
                if rr == r and cc == c:
                    continue
                earlier = rr < r or (rr == r and cc < c)
                n = residual(m, rr, cc, peaks, model, lo, hi, threshold)
                if n > v or (earlier and n == v):
                    top = False
        for p in range(lo, hi):
            if (c - peaks[p, PEAK_X]) ** 2 + (r - peaks[p, PEAK_Y]) ** 2 < 1.0:
                top = False
        if top:
            put_peak(out, count, m, r, c, channel, refine, True)
            count += 1
    return count


@njit(cache=True, nogil=True)
def add_split_peaks(maps, peaks, offsets, above, above_offsets, threshold, margin, refine):
    """``peaks`` plus the :func:`find_split_peaks` of every type, still grouped by type (a type's found peaks
    first, then its extra ones in raster order).

    Args:
        maps, peaks, offsets, above, above_offsets: as ``kernels.find_peaks_all`` gives them.
        threshold, margin, refine: as in :func:`find_split_peaks`.

    Returns:
        ``(peaks, offsets)`` with the extra peaks.

    Shapes: ``maps (h, w, C >= K)``; ``peaks (P, 4)``; ``offsets (K + 1,)``; ``above (M,)``;
    ``above_offsets (K + 1,)`` -> ``(P + E, 4)`` float32, ``(K + 1,)`` int64.
    """
    model = peak_models(maps, peaks)
    extra = np.empty((above.shape[0], 4), dtype=np.float32)  # an extra peak is a cell above threshold
    extra_offsets = np.zeros_like(offsets)
    count = 0
    for t in range(offsets.shape[0] - 1):
        if offsets[t + 1] > offsets[t]:
            count = find_split_peaks(maps[:, :, t], above[above_offsets[t]:above_offsets[t + 1]], peaks, model,
                                     offsets[t], offsets[t + 1], threshold, margin, refine, t, extra, count)
        extra_offsets[t + 1] = count
    if count == 0:
        return peaks, offsets
    both = np.empty((peaks.shape[0] + count, 4), dtype=np.float32)
    both_offsets = offsets + extra_offsets
    for t in range(offsets.shape[0] - 1):
        k = both_offsets[t]
        for i in range(offsets[t], offsets[t + 1]):
            both[k] = peaks[i]
            k += 1
        for i in range(extra_offsets[t], extra_offsets[t + 1]):
            both[k] = extra[i]
            k += 1
    return both, both_offsets
