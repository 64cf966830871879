"""numba kernels of the bottom-up decoder: peak NMS, sub-pixel refinement, limb scoring (each pair once).

Greedy assembly is in ``assembly_kernels``.

Only functions of arrays and scalars live here (style 7.5 rule 7); thresholds arrive as arguments.
Every function also runs as plain Python under ``NUMBA_DISABLE_JIT=1`` (tests compare both).
Coordinates are in map cells: x = column, y = row.
"""
import math

import numpy as np
from numba import njit

#: Columns of a peak row.
PEAK_X, PEAK_Y, PEAK_SCORE, PEAK_TYPE = 0, 1, 2, 3
#: Columns of a connection row.
CONN_A, CONN_B, CONN_SCORE, CONN_LENGTH, CONN_LIMB, CONN_RANK = 0, 1, 2, 3, 4, 5


# === Peaks ===
@njit(cache=True, nogil=True)
def _is_peak(m, r, c, value):
    """3x3 NMS with a raster-order tie-break: >= later neighbours, > earlier ones (spec 9.1 #14)."""
    h, w = m.shape
    for dr in range(-1, 2):
        for dc in range(-1, 2):
            if dr == 0 and dc == 0:
                continue
            rr, cc = r + dr, c + dc
            if rr < 0 or rr >= h or cc < 0 or cc >= w:
                continue
            n = m[rr, cc]
            earlier = dr < 0 or (dr == 0 and dc < 0)
            if n > value or (earlier and n == value):
                return False
    return True


@njit(cache=True, nogil=True)
def _values(a, b, c, log_fit):
    """The samples to fit: their logarithms when ``log_fit`` and all are positive (exact for Gaussians)."""
    if log_fit and a > 0.0 and b > 0.0 and c > 0.0:
        return math.log(a), math.log(b), math.log(c)
    return a, b, c


@njit(cache=True, nogil=True)
def _vertex(left, centre, right, log_fit):
    """Vertex offset (clipped to [-0.5, 0.5]) and curvature of the parabola through samples at -1, 0, 1.

    The curvature is 0 when the samples are not concave (no fit; offset 0).
    """
    left, centre, right = _values(left, centre, right, log_fit)
    curvature = 2.0 * centre - left - right
    if curvature <= 0.0:
        return 0.0, 0.0
    return min(0.5, max(-0.5, 0.5 * (right - left) / curvature)), curvature


@njit(cache=True, nogil=True)
def _one_sided(centre, neighbour, direction, curvature, log_fit):
    """Vertex offset from one neighbour (at ``direction`` = +-1) and a curvature borrowed from the other axis.

    A peak on the map border has only one neighbour along the axis across the border; for an isotropic
    peak the other axis gives the missing curvature.
    """
    if curvature <= 0.0:
        return 0.0
    centre, neighbour, _ = _values(centre, neighbour, 1.0, log_fit)
    d = direction * (0.5 - (centre - neighbour) / curvature)
    return min(0.5, max(-0.5, d))


@njit(cache=True, nogil=True)
def subpixel_offset(m, r, c, log_fit):
    """Sub-pixel (dx, dy) of the peak at (r, c): a parabola per axis, one-sided on the map border."""
    h, w = m.shape
    v = m[r, c]
    dx, kx, dy, ky = 0.0, 0.0, 0.0, 0.0
    if 0 < c < w - 1:
        dx, kx = _vertex(m[r, c - 1], v, m[r, c + 1], log_fit)
    if 0 < r < h - 1:
        dy, ky = _vertex(m[r - 1, c], v, m[r + 1, c], log_fit)
    if kx == 0.0 and w > 1 and (c == 0 or c == w - 1):
        dx = _one_sided(v, m[r, 1], 1.0, ky, log_fit) if c == 0 else _one_sided(v, m[r, c - 1], -1.0, ky, log_fit)
    if ky == 0.0 and h > 1 and (r == 0 or r == h - 1):
        dy = _one_sided(v, m[1, c], 1.0, kx, log_fit) if r == 0 else _one_sided(v, m[r - 1, c], -1.0, kx, log_fit)
    return dx, dy


@njit(cache=True, nogil=True)
def put_peak(out, row, m, r, c, channel, refine, log_fit):
    """Write peak row ``out[row] = [x, y, m[r, c], channel]``, x and y with the sub-pixel offset of
    :func:`subpixel_offset` when ``refine``."""
    dx, dy = subpixel_offset(m, r, c, log_fit) if refine else (0.0, 0.0)
    out[row, PEAK_X] = c + dx
    out[row, PEAK_Y] = r + dy
    out[row, PEAK_SCORE] = m[r, c]
    out[row, PEAK_TYPE] = channel


@njit(cache=True, nogil=True)
def find_peaks(m, threshold, refine, log_fit, channel, out, count):
    """Append the peaks of one map to ``out`` starting at row ``count``; return the new count.

    Args:
        m: one keypoint map.
        threshold: a peak's value must exceed this.
        refine: add a sub-pixel offset per axis (parabola through the peak and its two neighbours; on the
            map border, one neighbour and the other axis's curvature).
        log_fit: fit the parabola to log values (exact for Gaussians).
        channel: keypoint type written in column ``PEAK_TYPE``.
        out: pre-allocated peak rows ``[x, y, score, type]``; rows past its end are dropped.
        count: rows already used.

    Shapes: ``m (h, w)`` float32; ``out (P, 4)`` float32.
    """
    h, w = m.shape
    for r in range(h):
        for c in range(w):
            v = m[r, c]
            if v <= threshold or count >= out.shape[0] or not _is_peak(m, r, c, v):
                continue
            put_peak(out, count, m, r, c, channel, refine, log_fit)
            count += 1
    return count


# === Limb scoring ===
@njit(cache=True, nogil=True)
def bilinear(m, x, y):
    """Bilinear sample of ``m (h, w)`` at cell coordinates (x, y), clamped to the map."""
    h, w = m.shape
    x = min(max(x, 0.0), w - 1.0)
    y = min(max(y, 0.0), h - 1.0)
    x0 = min(int(x), w - 2) if w > 1 else 0
    y0 = min(int(y), h - 2) if h > 1 else 0
    fx = x - x0 if w > 1 else 0.0
    fy = y - y0 if h > 1 else 0.0
    x1 = min(x0 + 1, w - 1)
    y1 = min(y0 + 1, h - 1)
    top = m[y0, x0] * (1.0 - fx) + m[y0, x1] * fx
    bottom = m[y1, x0] * (1.0 - fx) + m[y1, x1] * fx
    return top * (1.0 - fy) + bottom * fy


@njit(cache=True, nogil=True)
def segment_score(m, xa, ya, xb, yb, samples, threshold, max_below):
    """Mean of ``samples`` bilinear samples of ``m`` from A to B (both included) and the fraction above ``threshold``.

    Sampling stops early once more than ``max_below`` samples are at or below ``threshold`` (the pair
    is then rejected whatever the rest): the fraction is returned as -1.

    Shapes: ``m (h, w)``; returns ``(mean, fraction)``.
    """
    total = 0.0
    below = 0
    for i in range(samples):
        t = i / (samples - 1.0)
        v = bilinear(m, xa + t * (xb - xa), ya + t * (yb - ya))
        total += v
        if v <= threshold:
            below += 1
            if below > max_below:
                return total / samples, -1.0
    return total / samples, (samples - below) / samples


@njit(cache=True, nogil=True)
def pair_score(limb_map, peaks, i, j, params):
    """The limb test of :func:`score_limb` for peaks i -> j: ``(score, length)``, score -1 if it fails.

    Shapes: ``limb_map (h, w)``; ``peaks (P, 4)``; ``params (6,)`` as in :func:`score_limb`.
    """
    dx = peaks[j, PEAK_X] - peaks[i, PEAK_X]
    dy = peaks[j, PEAK_Y] - peaks[i, PEAK_Y]
    length = math.sqrt(dx * dx + dy * dy)
    if length < 1e-6:
        return -1.0, length
    samples = int(min(params[3], max(params[2], math.ceil(length * params[4]) + 1)))
    max_below = int(math.floor((1.0 - params[1]) * samples + 1e-9))
    mean, fraction = segment_score(limb_map, peaks[i, PEAK_X], peaks[i, PEAK_Y],
                                   peaks[j, PEAK_X], peaks[j, PEAK_Y], samples, params[0], max_below)
    score = mean + min(params[5] / length - 1.0, 0.0)
    if fraction >= params[1] and score > 0.0:
        return score, length
    return -1.0, length


@njit(cache=True, nogil=True)
def _candidates(limb_map, peaks, a_lo, a_hi, b_lo, b_hi, params, cand, cache, base):
    """Rows ``[a, b, score, length, rank]`` of the (A, B) pairs that pass the limb tests (see :func:`score_limb`),
    written to ``cand`` by decreasing rank, equal ranks in pair order (a stable sort); returns their number.
    Every pair's score (-1 if it fails) goes to ``cache[base + (i - a_lo) * (b_hi - b_lo) + j - b_lo]``.

    Shapes: ``cand (>= (a_hi - a_lo) * (b_hi - b_lo), 5)`` float64; ``cache`` float64.
    """
    n = 0
    for i in range(a_lo, a_hi):
        for j in range(b_lo, b_hi):
            score, length = pair_score(limb_map, peaks, i, j, params)
            cache[base + (i - a_lo) * (b_hi - b_lo) + j - b_lo] = score
            if score <= 0.0:
                continue
            rank = 0.5 * score + 0.25 * (peaks[i, PEAK_SCORE] + peaks[j, PEAK_SCORE])
            k = n  # insertion sort: after every row ranked at least as high (few pairs pass)
            while k > 0 and cand[k - 1, 4] < rank:
                for col in range(5):
                    cand[k, col] = cand[k - 1, col]
                k -= 1
            cand[k, 0] = i
            cand[k, 1] = j
            cand[k, 2] = score
            cand[k, 3] = length
            cand[k, 4] = rank
            n += 1
    return n


@njit(cache=True, nogil=True)
def _match_limb(limb_map, peaks, a_lo, a_hi, b_lo, b_hi, limb, params, out, count, cand, used_a, used_b, cache, base):
    """:func:`score_limb` with scratch arrays ``cand`` (for :func:`_candidates`) and ``used_a``, ``used_b``
    (at least as long as the two peak ranges; cleared here), keeping the pair scores in ``cache`` from ``base``."""
    if a_hi == a_lo or b_hi == b_lo:
        return count
    n = _candidates(limb_map, peaks, a_lo, a_hi, b_lo, b_hi, params, cand, cache, base)
    used_a[:a_hi - a_lo] = False
    used_b[:b_hi - b_lo] = False
    taken = 0
    for k in range(n):
        i, j = int(cand[k, 0]), int(cand[k, 1])
        if used_a[i - a_lo] or used_b[j - b_lo] or count >= out.shape[0]:
            continue
        used_a[i - a_lo] = True
        used_b[j - b_lo] = True
        out[count, CONN_A] = i
        out[count, CONN_B] = j
        out[count, CONN_SCORE] = cand[k, 2]
        out[count, CONN_LENGTH] = cand[k, 3]
        out[count, CONN_LIMB] = limb
        out[count, CONN_RANK] = cand[k, 4]
        count += 1
        taken += 1
        if taken >= min(a_hi - a_lo, b_hi - b_lo):
            break
    return count


@njit(cache=True, nogil=True)
def score_limb(limb_map, peaks, a_lo, a_hi, b_lo, b_hi, limb, params, out, count):
    """Score every (A, B) peak pair of one limb, keep a greedy one-to-one matching, append it to ``out``.

    A pair passes when at least ``min_fraction`` of its samples exceed ``limb_threshold`` and its
    score (mean sample plus the distance prior) is positive. Pairs are then taken by decreasing rank
    ``0.5 * score + 0.25 * (score_A + score_B)`` while both peaks are still free (the seed's rule).

    Args:
        limb_map: the limb's response map.
        peaks: all peaks; type A occupies rows ``a_lo:a_hi``, type B rows ``b_lo:b_hi``.
        limb: limb index written in column ``CONN_LIMB``.
        params: ``[limb_threshold, min_fraction, min_samples, max_samples, samples_per_cell,
            distance_scale]``; ``distance_scale`` is the seed's half image height in cells: pairs longer
            than it are penalised by ``distance_scale / length - 1``.
        out: pre-allocated connection rows ``[a, b, score, length, limb, rank]``.
        count: rows already used; returns the new count.

    Shapes: ``limb_map (h, w)``; ``peaks (P, 4)``; ``params (6,)``; ``out (C, 6)`` float32.
    """
    cand = np.empty(((a_hi - a_lo) * (b_hi - b_lo), 5))
    used_a = np.empty(a_hi - a_lo, dtype=np.bool_)
    used_b = np.empty(b_hi - b_lo, dtype=np.bool_)
    cache = np.empty((a_hi - a_lo) * (b_hi - b_lo))
    return _match_limb(limb_map, peaks, a_lo, a_hi, b_lo, b_hi, limb, params, out, count, cand, used_a, used_b,
                       cache, 0)


@njit(cache=True, nogil=True)
def find_peaks_all(maps, num_types, threshold, refine, log_fit):
    """:func:`find_peaks` over the first ``num_types`` channels, in one pass over ``maps`` in memory order.

    The pass visits every value once and keeps the cells above ``threshold``; the 3x3 NMS and the
    refinement then run on those cells only (a crowded image has a few hundred of ``h * w * num_types``).

    Returns:
        ``(peaks, offsets, above, above_offsets)``: peak rows ``[x, y, score, type]``, type t in rows
        ``offsets[t]:offsets[t + 1]`` in raster order (as :func:`find_peaks` per channel), and the cells above
        ``threshold`` as flat indices ``r * w + c``, grouped by type the same way (for ``split_peaks``).

    Shapes: ``maps (h, w, C >= num_types)`` -> ``peaks (P, 4)`` float32, ``offsets (num_types + 1,)`` int64,
    ``above (M,)`` int64, ``above_offsets (num_types + 1,)`` int64.
    """
    h, w = maps.shape[0], maps.shape[1]
    keys = np.empty(h * w * num_types, dtype=np.int64)  # cells above threshold: type * h * w + r * w + c
    above_offsets = np.zeros(num_types + 1, dtype=np.int64)
    n = 0
    for r in range(h):
        for c in range(w):
            for t in range(num_types):
                if maps[r, c, t] > threshold:
                    keys[n] = t * h * w + r * w + c
                    above_offsets[t + 1] += 1
                    n += 1
    for t in range(num_types):
        above_offsets[t + 1] += above_offsets[t]
    above = np.empty(n, dtype=np.int64)  # a stable counting sort by type keeps the raster order within a type
    fill = above_offsets[:-1].copy()
    for i in range(n):
        t = keys[i] // (h * w)
        above[fill[t]] = keys[i] - t * h * w
        fill[t] += 1
    peaks = np.empty((n, 4), dtype=np.float32)
    offsets = np.zeros(num_types + 1, dtype=np.int64)
    count = 0
    for t in range(num_types):
        m = maps[:, :, t]
        for i in range(above_offsets[t], above_offsets[t + 1]):
            r, c = above[i] // w, above[i] % w
            v = m[r, c]
            if not _is_peak(m, r, c, v):
                continue
            put_peak(peaks, count, m, r, c, t, refine, log_fit)
            count += 1
        offsets[t + 1] = count
    return peaks[:count], offsets, above, above_offsets


@njit(cache=True, nogil=True)
def score_all_limbs(limb_maps, peaks, offsets, limbs, params, out, pair_offsets, cache):
    """:func:`score_limb` for every limb in order; returns the number of rows used in ``out``.

    Every pair's score is also kept in ``cache`` for :func:`cached_pair_score` (its A -> B half; the B -> A
    half is set to NaN, not computed).

    Shapes: ``limb_maps (h, w, L)``; ``offsets (K + 1,)``; ``limbs (L, 2)`` int; ``out (C, 6)``;
    ``pair_offsets (L + 1,)`` and ``cache`` as :func:`cached_pair_score`.
    """
    most, pairs = 0, 0  # one set of scratch arrays serves every limb
    for k in range(limbs.shape[0]):
        a, b = limbs[k, 0], limbs[k, 1]
        na, nb = offsets[a + 1] - offsets[a], offsets[b + 1] - offsets[b]
        most, pairs = max(most, na, nb), max(pairs, na * nb)
    cand = np.empty((pairs, 5))
    used_a = np.empty(most, dtype=np.bool_)
    used_b = np.empty(most, dtype=np.bool_)
    cache[pair_offsets[-1]:] = np.nan
    count = 0
    for k in range(limbs.shape[0]):
        a, b = limbs[k, 0], limbs[k, 1]
        count = _match_limb(limb_maps[:, :, k], peaks, offsets[a], offsets[a + 1], offsets[b], offsets[b + 1],
                            k, params, out, count, cand, used_a, used_b, cache, pair_offsets[k])
    return count


@njit(cache=True, nogil=True)
def empty_pair_cache(offsets, limbs):
    """``(pair_offsets, cache)`` for :func:`cached_pair_score`: nothing computed yet (all NaN).

    Shapes: ``offsets (K + 1,)``, ``limbs (L, 2)`` -> ``(L + 1,)`` int64, ``(2 * pair_offsets[L],)`` float64.
    """
    pair_offsets = np.zeros(limbs.shape[0] + 1, dtype=np.int64)
    for k in range(limbs.shape[0]):
        a, b = limbs[k, 0], limbs[k, 1]
        pair_offsets[k + 1] = pair_offsets[k] + (offsets[a + 1] - offsets[a]) * (offsets[b + 1] - offsets[b])
    return pair_offsets, np.full(2 * pair_offsets[-1], np.nan)


@njit(cache=True, nogil=True)
def cached_pair_score(limb_maps, peaks, offsets, limbs, params, pair_offsets, cache, k, i, j):
    """The score of :func:`pair_score` for limb k and peaks i -> j, computed once.

    ``cache`` holds limb k's scores from A (rows ``offsets[a]:offsets[a + 1]``) to B from ``pair_offsets[k]``
    (row-major over A, B) and from B to A from ``pair_offsets[L] + pair_offsets[k]`` (row-major over B, A):
    a pair scored the other way samples the map from the other end, which may round differently. NaN: not
    computed yet. The cache is valid for one set of peaks, maps and ``params``.

    Shapes: ``limb_maps (h, w, L)``; ``peaks (P, 4)``; ``offsets (K + 1,)``; ``limbs (L, 2)``; ``params (6,)``;
    ``pair_offsets (L + 1,)`` (the cumulative products of the limbs' peak counts); ``cache (2 * pair_offsets[L],)``
    float64.
    """
    a, b = limbs[k, 0], limbs[k, 1]
    na, nb = offsets[a + 1] - offsets[a], offsets[b + 1] - offsets[b]
    if offsets[a] <= i < offsets[a + 1] and offsets[b] <= j < offsets[b + 1]:
        slot = pair_offsets[k] + (i - offsets[a]) * nb + j - offsets[b]
    else:
        slot = pair_offsets[-1] + pair_offsets[k] + (i - offsets[b]) * na + j - offsets[a]
    if math.isnan(cache[slot]):
        cache[slot] = pair_score(limb_maps[:, :, k], peaks, i, j, params)[0]
    return cache[slot]
