"""numba kernels that complete assembled people (limb-supported fill-in of missing keypoints) and find the
people a decoded person could be a fragment of.

The pass only ever adds keypoints to a person that has none of that type, so under COCO's OKS (which
scores only the ground truth's labelled keypoints, a missing prediction counting as a miss) it cannot
lower the OKS of a detection against its own person. Like ``kernels``: arrays and scalars only, and
every function also runs as plain Python under ``NUMBA_DISABLE_JIT=1``.
"""
import math

import numpy as np
from numba import njit

from simplepose.decode.kernels import PEAK_SCORE, PEAK_X, PEAK_Y, cached_pair_score


@njit(cache=True, nogil=True)
def limbs_by_type(limbs, num_types):
    """The limbs that touch each keypoint type, in limb order.

    Type t's limbs are ``touch[touch_offsets[t]:touch_offsets[t + 1]]``.

    Shapes: ``limbs (L, 2)`` -> ``touch (<= 2 L,)`` int64, ``touch_offsets (num_types + 1,)`` int64.
    """
    touch_offsets = np.zeros(num_types + 1, dtype=np.int64)
    for k in range(limbs.shape[0]):
        touch_offsets[limbs[k, 0] + 1] += 1
        if limbs[k, 1] != limbs[k, 0]:
            touch_offsets[limbs[k, 1] + 1] += 1
    for t in range(num_types):
        touch_offsets[t + 1] += touch_offsets[t]
    touch = np.empty(touch_offsets[-1], dtype=np.int64)
    fill = touch_offsets[:-1].copy()
    for k in range(limbs.shape[0]):
        a, b = limbs[k, 0], limbs[k, 1]
        touch[fill[a]] = k
        fill[a] += 1
        if b != a:
            touch[fill[b]] = k
            fill[b] += 1
    return touch, touch_offsets


@njit(cache=True, nogil=True)
def _support(limb_maps, peaks, offsets, limbs, params, pair_offsets, cache, touch, touch_offsets, parts, r, t, j):
    """Limbs between peak j (type t) and person r's keypoints: (sum of passing scores, passed, failed).

    ``touch``, ``touch_offsets``: :func:`limbs_by_type`.
    """
    total, passed, failed = 0.0, 0, 0
    for q in range(touch_offsets[t], touch_offsets[t + 1]):
        k = touch[q]
        src = parts[r, limbs[k, 1]] if limbs[k, 0] == t else parts[r, limbs[k, 0]]
        if src < 0:
            continue
        s = cached_pair_score(limb_maps, peaks, offsets, limbs, params, pair_offsets, cache, k, src, j)
        if s > 0.0:
            total += s
            passed += 1
        else:
            failed += 1
    return total, passed, failed


@njit(cache=True, nogil=True)
def _best_fill(limb_maps, peaks, offsets, limbs, params, pair_offsets, cache, touch, touch_offsets, parts, r, t):
    """The peak of type t that most limbs to person r's keypoints support (more passing than failing).

    Returns:
        ``(peak row, sum of its passing limb scores)``, or ``(-1, 0)``.
    """
    best, best_total = -1, 0.0
    linked = False  # no limb from the person's keypoints reaches type t: nothing can pass
    for q in range(touch_offsets[t], touch_offsets[t + 1]):
        k = touch[q]
        linked = linked or (parts[r, limbs[k, 1]] if limbs[k, 0] == t else parts[r, limbs[k, 0]]) >= 0
    if not linked:
        return best, best_total
    for j in range(offsets[t], offsets[t + 1]):
        total, passed, failed = _support(limb_maps, peaks, offsets, limbs, params, pair_offsets, cache, touch,
                                         touch_offsets, parts, r, t, j)
        if passed > failed and total > best_total:
            best, best_total = j, total
    return best, best_total


@njit(cache=True, nogil=True)
def _reached(fresh, limbs, touch, touch_offsets, r, t):
    """Whether a limb joins type t to a type that person r gained in its last pass (``fresh``): only then can
    :func:`_best_fill` find more for t than it did before (it depends on t's limb neighbours only)."""
    for q in range(touch_offsets[t], touch_offsets[t + 1]):
        k = touch[q]
        if fresh[r, limbs[k, 1] if limbs[k, 0] == t else limbs[k, 0]]:
            return True
    return False


@njit(cache=True, nogil=True)
def fill_missing(limb_maps, peaks, offsets, limbs, params, pair_offsets, cache, min_count, parts, stats, n):
    """Give people the keypoint types they lack when limbs from their keypoints support a peak.

    Among the peaks of a missing type, the one with the largest sum of passing limb scores wins, provided
    more of the limbs between it and the person's keypoints pass the limb test than fail it. The peak
    may already belong to another person (two people's keypoints closer than a map cell give one peak,
    which the greedy assembly hands to one of them only) or to nobody. People with fewer than
    ``min_count`` keypoints are left alone. Within a pass every type is judged on the person as it was
    before the pass (so the result does not depend on the keypoint order, and mirrored maps give mirrored
    people); passes repeat until nothing changes, so a filled elbow can support the wrist.

    Args:
        limb_maps, peaks, offsets, limbs: as in ``kernels.score_all_limbs``.
        params: the limb test ``[limb_threshold, min_fraction, min_samples, max_samples,
            samples_per_cell, distance_scale]`` of ``kernels.score_limb`` (``kernels.pair_score``).
        pair_offsets, cache: the pair scores of ``kernels.cached_pair_score`` (filled in as needed).
        parts, stats: people from the assembly, updated in place (total score, count).
        n: the number of person rows in use.

    Returns:
        the number of keypoints added.

    Shapes: ``limb_maps (h, w, L)``; ``peaks (P, 4)``; ``offsets (K + 1,)``; ``limbs (L, 2)``;
    ``pair_offsets (L + 1,)``; ``cache (2 * pair_offsets[L],)``; ``parts (N, K)`` int32; ``stats (N, 3)``.
    """
    added = 0
    found = np.full(parts.shape[1], -1, dtype=np.int64)
    support = np.zeros(parts.shape[1])
    touch, touch_offsets = limbs_by_type(limbs, parts.shape[1])
    dirty = np.ones(n, dtype=np.bool_)  # a person that gained nothing in a pass gains nothing later
    fresh = np.ones(parts.shape, dtype=np.bool_)  # the types each person gained in its last pass (first: all)
    for _ in range(parts.shape[1]):
        changed = False
        for r in range(n):
            if not dirty[r] or stats[r, 1] < min_count:
                continue
            dirty[r] = False
            for t in range(parts.shape[1]):  # every type sees the person as it was before this pass
                found[t] = -1
                if parts[r, t] < 0 and _reached(fresh, limbs, touch, touch_offsets, r, t):
                    found[t], support[t] = _best_fill(limb_maps, peaks, offsets, limbs, params, pair_offsets,
                                                      cache, touch, touch_offsets, parts, r, t)
            for t in range(parts.shape[1]):
                fresh[r, t] = found[t] >= 0
                if found[t] >= 0:
                    parts[r, t] = found[t]
                    stats[r, 0] += peaks[found[t], PEAK_SCORE] + support[t]
                    stats[r, 1] += 1.0
                    added += 1
                    changed = True
                    dirty[r] = True
        if not changed:
            break
    return added


@njit(cache=True, nogil=True)
def _height(peaks, parts, reach, r):
    """A lower bound of person r's body height: the most any two of its keypoints need (distance / reach)."""
    best = 0.0
    k = parts.shape[1]
    for a in range(k):
        i = parts[r, a]
        if i < 0:
            continue
        for b in range(a + 1, k):
            j = parts[r, b]
            if j < 0 or not reach[a, b] > 0.0 or reach[a, b] == np.inf:
                continue
            d = math.hypot(peaks[i, PEAK_X] - peaks[j, PEAK_X], peaks[i, PEAK_Y] - peaks[j, PEAK_Y])
            best = max(best, d / reach[a, b])
    return best


@njit(cache=True, nogil=True)
def _reaches(peaks, parts, reach, p, f, limit):
    """Whether person f has no keypoint type of person p and every keypoint of f is within ``limit`` times
    the reach of every keypoint of p."""
    k = parts.shape[1]
    for a in range(k):
        if parts[p, a] >= 0 and parts[f, a] >= 0:
            return False
    for a in range(k):
        i = parts[p, a]
        if i < 0:
            continue
        for b in range(k):
            j = parts[f, b]
            if j < 0:
                continue
            d = math.hypot(peaks[i, PEAK_X] - peaks[j, PEAK_X], peaks[i, PEAK_Y] - peaks[j, PEAK_Y])
            if d > limit * reach[a, b]:
                return False
    return True


@njit(cache=True, nogil=True)
def count_owners(peaks, parts, stats, n, reach, slack):
    """For every person, how many others could own it as a fragment.

    Labelled keypoints that no limb joins (a torso hidden between head and legs) decode as separate
    people: the maps hold no link between them. Person p could own person f when p has at least as many
    keypoints, none of f's types, and every keypoint of f lies within ``slack * reach[a, b] * height(p)``
    of every keypoint of p: ``height(p)`` is the smallest body height p's own keypoints allow (a lower
    bound, so that the test errs towards "no owner") and ``reach`` the skeleton's bone-chain lengths
    (``Skeleton.reach``). However a body bends, its keypoints are never farther apart than that.

    Args:
        peaks: peak rows ``[x, y, score, type]``.
        parts, stats: people (peak row per type; ``[total score, count, longest limb]``).
        n: person rows in use.
        reach: ``(K, K)`` bone-chain lengths in body heights.
        slack: how much longer than the upright figure's a body's bones may be.

    Returns:
        ``(counts, owner)``: the number of possible owners of each person, and one of them (-1 if none;
        *the* owner where the count is 1).

    Shapes: ``peaks (P, 4)``; ``parts (N, K)`` int32; ``stats (N, 3)``; ``reach (K, K)`` -> ``(n,)``, ``(n,)``
    int64.
    """
    height = np.zeros(n)
    for r in range(n):
        height[r] = _height(peaks, parts, reach, r)
    owners = np.zeros(n, dtype=np.int64)
    owner = np.full(n, -1, dtype=np.int64)
    for f in range(n):
        if stats[f, 1] <= 0:
            continue
        for p in range(n):
            if p == f or stats[p, 1] < stats[f, 1] or height[p] <= 0.0:
                continue
            if _reaches(peaks, parts, reach, p, f, slack * height[p]):
                owners[f] += 1
                owner[f] = p
    return owners, owner


@njit(cache=True, nogil=True)
def join_fragments(parts, stats, scores, counts, owner):
    """People plus, for every person with exactly one possible owner (``counts == 1``), the owner joined with it
    (the fragment's keypoints over the owner's; the two totals and counts added), scored the fragment's score times
    the lowest person score.

    Shapes: ``parts (N, K)`` int32, ``stats (N, 3)``, ``scores (N,)``, ``counts (N,)``, ``owner (N,)`` as
    :func:`count_owners` -> ``(N + J, K)`` int32, ``(N + J, 3)``, ``(N + J,)``.
    """
    n = parts.shape[0]
    extra = 0
    for f in range(n):
        if counts[f] == 1:
            extra += 1
    out_parts = np.empty((n + extra, parts.shape[1]), dtype=np.int32)
    out_stats = np.empty((n + extra, 3))
    out_scores = np.empty(n + extra)
    out_parts[:n] = parts
    out_stats[:n] = stats
    out_scores[:n] = scores
    lowest = scores.min() if n else 0.0
    k = n
    for f in range(n):
        if counts[f] != 1:
            continue
        o = owner[f]
        for t in range(parts.shape[1]):
            out_parts[k, t] = parts[f, t] if parts[f, t] >= 0 else parts[o, t]
        out_stats[k, 0] = stats[o, 0] + stats[f, 0] * 1.0
        out_stats[k, 1] = stats[o, 1] + stats[f, 1] * 1.0
        out_stats[k, 2] = stats[o, 2] + stats[f, 2] * 0.0  # the owner's longest limb
        out_scores[k] = scores[f] * lowest
        k += 1
    return out_parts, out_stats, out_scores
