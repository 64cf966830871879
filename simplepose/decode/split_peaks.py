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

from simplepose.decode.kernels import PEAK_SCORE, PEAK_TYPE, PEAK_X, PEAK_Y, subpixel_offset

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
def residual(m, peaks, lo, hi, threshold):
    """``m`` minus the largest Gaussian model of peaks ``lo:hi`` at every cell above ``threshold`` (else 0).

    A model is centred on its peak's sub-pixel position (refined here even if the peaks are integer cells);
    where it has fallen below ``exp(-_FAR)`` of its peak it counts as 0.

    Shapes: ``m (h, w)``; ``peaks (P, 4)`` rows ``[x, y, score, type]`` in cells -> ``(h, w)`` float64.
    """
    h, w = m.shape
    res = np.zeros((h, w))
    model = np.zeros((hi - lo, 3))  # centre x, centre y (always sub-pixel), log curvature
    for p in range(lo, hi):
        r = min(max(int(round(peaks[p, PEAK_Y])), 0), h - 1)
        c = min(max(int(round(peaks[p, PEAK_X])), 0), w - 1)
        dx, dy = subpixel_offset(m, r, c, True)
        model[p - lo, 0], model[p - lo, 1], model[p - lo, 2] = c + dx, r + dy, log_curvature(m, r, c)
    for r in range(h):
        for c in range(w):
            v = m[r, c]
            if v <= threshold:
                continue
            explained = 0.0
            for p in range(lo, hi):
                dx, dy = c - model[p - lo, 0], r - model[p - lo, 1]
                if model[p - lo, 2] <= 0.0:  # no model (a corner): the peak explains the cells around it
                    if dx * dx + dy * dy <= 4.0:
                        explained = v
                    continue
                exponent = 0.5 * model[p - lo, 2] * (dx * dx + dy * dy)
                if exponent < _FAR:
                    explained = max(explained, peaks[p, PEAK_SCORE] * math.exp(-exponent))
            res[r, c] = v - explained
    return res


@njit(cache=True, nogil=True)
def find_split_peaks(m, peaks, lo, hi, threshold, margin, refine, channel, out, count):
    """Append the cells of ``m`` whose residual exceeds ``margin`` and is a 3x3 maximum; return the new count.

    Cells less than one cell from a found peak are skipped. Rows are ``[x, y, m[y, x], channel]``; with
    ``refine``, x and y get the sub-pixel offset of ``kernels.subpixel_offset`` fitted to ``m`` itself
    (the side away from the stronger peak is the hidden peak's own Gaussian; the offset is clipped to half a cell).

    Args:
        m: one keypoint map.
        peaks: found peaks; this channel's occupy rows ``lo:hi``.
        threshold: the peak threshold (cells at or below it are ignored).
        margin: how far above every peak's model a cell must be.
        out: pre-allocated rows; rows past its end are dropped.
        count: rows already used.

    Shapes: ``m (h, w)``; ``peaks (P, 4)``; ``out (Q, 4)`` float32.
    """
    if hi == lo:
        return count
    res = residual(m, peaks, lo, hi, threshold)
    h, w = m.shape
    for r in range(h):
        for c in range(w):
            v = res[r, c]
            if v <= margin or count >= out.shape[0]:
                continue
            top = True
            for rr in range(max(r - 1, 0), min(r + 2, h)):
                for cc in range(max(c - 1, 0), min(c + 2, w)):
                    earlier = rr < r or (rr == r and cc < c)
                    if res[rr, cc] > v or (earlier and res[rr, cc] == v):
                        top = False
            for p in range(lo, hi):
                if (c - peaks[p, PEAK_X]) ** 2 + (r - peaks[p, PEAK_Y]) ** 2 < 1.0:
                    top = False
            if top:
                dx, dy = subpixel_offset(m, r, c, True) if refine else (0.0, 0.0)
                out[count, PEAK_X] = c + dx
                out[count, PEAK_Y] = r + dy
                out[count, PEAK_SCORE] = m[r, c]
                out[count, PEAK_TYPE] = channel
                count += 1
    return count


@njit(cache=True, nogil=True)
def find_split_peaks_all(maps, peaks, offsets, threshold, margin, refine, out):
    """:func:`find_split_peaks` over every type of ``offsets``; returns the number of rows used in ``out``.

    Shapes: ``maps (h, w, C >= K)``; ``peaks (P, 4)`` grouped by type; ``offsets (K + 1,)``; ``out (Q, 4)``.
    """
    count = 0
    for t in range(offsets.shape[0] - 1):
        count = find_split_peaks(maps[:, :, t], peaks, offsets[t], offsets[t + 1], threshold, margin, refine, t,
                                 out, count)
    return count
