"""numba kernels of the bottom-up decoder's greedy assembly: scored connections -> people.

Two strategies: ``assemble_merge`` (one global best-first pass; a connection starts, extends or merges
people while no keypoint type repeats) and ``assemble_published`` (the seed's ``find_people``). Like
``kernels``: arrays and scalars only, and plain Python under ``NUMBA_DISABLE_JIT=1``.
"""
import numpy as np
from numba import njit

from simplepose.decode.kernels import (CONN_A, CONN_B, CONN_LENGTH, CONN_LIMB, CONN_SCORE, PEAK_SCORE, PEAK_TYPE,
                                       cached_pair_score)


@njit(cache=True, nogil=True)
def _new_person(parts, stats, n, a, ta, b, tb, score, length, peaks):
    parts[n, ta] = a
    parts[n, tb] = b
    stats[n, 0] = peaks[a, PEAK_SCORE] + peaks[b, PEAK_SCORE] + score
    stats[n, 1] = 2.0
    stats[n, 2] = length
    return n + 1


@njit(cache=True, nogil=True)
def _merge_into(parts, stats, owner, ra, rb, s, length):
    """Move every keypoint of person ``rb`` into ``ra`` if no type would be held twice; return success."""
    for t in range(parts.shape[1]):
        if parts[ra, t] >= 0 and parts[rb, t] >= 0:
            return False
    for t in range(parts.shape[1]):
        if parts[rb, t] >= 0:
            parts[ra, t] = parts[rb, t]
            owner[parts[rb, t]] = ra
            parts[rb, t] = -1
    stats[ra, 0] += stats[rb, 0] + s
    stats[ra, 1] += stats[rb, 1]
    stats[ra, 2] = max(stats[ra, 2], stats[rb, 2], length)
    stats[rb, 1] = 0.0
    return True


@njit(cache=True, nogil=True)
def _merge_supported(limb_maps, peaks, offsets, limbs, limb_params, pair_offsets, cache, parts, ra, rb):
    """Whether more of the limbs between person ra's keypoints and person rb's pass the limb test than fail it.

    The connection that proposes the merge is one of them (it passed).
    """
    passed, failed = 0, 0
    for k in range(limbs.shape[0]):
        a, b = limbs[k, 0], limbs[k, 1]
        i, j = parts[ra, a], parts[rb, b]
        if i < 0 or j < 0:
            i, j = parts[rb, a], parts[ra, b]
        if i < 0 or j < 0:
            continue
        s = cached_pair_score(limb_maps, peaks, offsets, limbs, limb_params, pair_offsets, cache, k, i, j)
        if s > 0.0:
            passed += 1
        else:
            failed += 1
    return passed > failed


@njit(cache=True, nogil=True)
def _extension_supported(limb_maps, peaks, offsets, limbs, limb_params, pair_offsets, cache, parts, r, t, j, known):
    """Whether more of the limbs between peak j (type t) and person r's keypoints pass the limb test than
    fail it; limb ``known`` (the proposing connection) passed already and is not scored again."""
    passed, failed = 1, 0
    for k in range(limbs.shape[0]):
        a, b = limbs[k, 0], limbs[k, 1]
        if k == known or (a != t and b != t):
            continue
        src = parts[r, b] if a == t else parts[r, a]
        if src < 0:
            continue
        s = cached_pair_score(limb_maps, peaks, offsets, limbs, limb_params, pair_offsets, cache, k, src, j)
        if s > 0.0:
            passed += 1
        else:
            failed += 1
    return passed > failed


@njit(cache=True, nogil=True)
def assemble_merge(peaks, conns, order, max_length_ratio, parts, stats, limb_maps, offsets, limbs, limb_params,
                   pair_offsets, cache, verify):
    """Greedy assembly over all connections in ``order`` (best first), merging fragments.

    A connection joins the people holding its two peaks when no keypoint type would then be held
    twice: it starts a person, extends one, or merges two (the seed never merged split people).
    ``max_length_ratio > 0`` also rejects a connection longer than that many times the person's
    longest limb. With ``verify``, two people merge only when more of the limbs between their keypoints
    pass the limb test than fail it: one limb that passes between two people standing close (a wrist
    near a neighbour's elbow) does not make them one person when the other limbs between them disagree.

    Args:
        peaks: peak rows ``[x, y, score, type]``.
        conns: connection rows ``[a, b, score, length, limb, rank]``.
        order: the connection rows to process, in processing order.
        parts: output, filled with -1 by the caller: peak row per person and keypoint type.
        stats: output: ``[total score, keypoint count, longest limb]`` per person.
        limb_maps, offsets, limbs, limb_params: the maps, peak offsets, limb pairs and limb test of
            ``kernels.pair_score`` (used with ``verify``).
        pair_offsets, cache: the pair scores of ``kernels.cached_pair_score`` (used with ``verify``).
        verify: check merges against the other limbs between the two people.

    Returns:
        the number of person slots used; a slot merged into another has count 0.

    Shapes: ``peaks (P, 4)``, ``conns (C, 6)``, ``order (C,)``, ``parts (P, K)`` int32, ``stats (P, 3)``,
    ``limb_maps (h, w, L)``, ``offsets (K + 1,)``, ``limbs (L, 2)`` int64, ``limb_params (6,)``,
    ``pair_offsets (L + 1,)``, ``cache (2 * pair_offsets[L],)``.
    """
    owner = np.full(peaks.shape[0], -1, dtype=np.int64)
    n = 0
    for k in order:
        a, b = int(conns[k, CONN_A]), int(conns[k, CONN_B])
        s, length = conns[k, CONN_SCORE], conns[k, CONN_LENGTH]
        ta, tb = int(peaks[a, PEAK_TYPE]), int(peaks[b, PEAK_TYPE])
        ra, rb = owner[a], owner[b]
        if ra < 0 and rb < 0:
            owner[a] = owner[b] = n
            n = _new_person(parts, stats, n, a, ta, b, tb, s, length, peaks)
            continue
        r = ra if ra >= 0 else rb
        if ra == rb or (max_length_ratio > 0.0 and length > max_length_ratio * stats[r, 2]):
            continue
        if ra >= 0 and rb >= 0:
            if not verify or _merge_supported(limb_maps, peaks, offsets, limbs, limb_params, pair_offsets, cache,
                                              parts, ra, rb):
                _merge_into(parts, stats, owner, ra, rb, s, length)
            continue
        new, tnew = (a, ta) if ra < 0 else (b, tb)
        if parts[r, tnew] < 0 and verify and not _extension_supported(
                limb_maps, peaks, offsets, limbs, limb_params, pair_offsets, cache, parts, r, tnew, new,
                int(conns[k, CONN_LIMB])):
            continue
        if parts[r, tnew] < 0:
            parts[r, tnew] = new
            owner[new] = r
            stats[r, 0] += peaks[new, PEAK_SCORE] + s
            stats[r, 1] += 1.0
            stats[r, 2] = max(stats[r, 2], length)
    return n


@njit(cache=True, nogil=True)
def _min_limb_score(parts, limb_scores, r):
    best = np.inf
    for t in range(parts.shape[1]):
        if parts[r, t] >= 0:
            best = min(best, limb_scores[r, t])
    return best


@njit(cache=True, nogil=True)
def _published_two(parts, limb_scores, stats, r1, r2, a, ta, b, tb, s, length, peaks, len_rate, tolerance):
    """The seed's found-2 branch: merge disjoint people, else drop the weaker matched keypoint."""
    disjoint = True
    for t in range(parts.shape[1]):
        if parts[r1, t] >= 0 and parts[r2, t] >= 0:
            disjoint = False
    if disjoint:
        min_tol = min(_min_limb_score(parts, limb_scores, r1), _min_limb_score(parts, limb_scores, r2))
        if s < tolerance * min_tol or len_rate * stats[r1, 2] <= length:
            return
        for t in range(parts.shape[1]):
            if parts[r1, t] < 0 and parts[r2, t] >= 0:
                parts[r1, t] = parts[r2, t]
                limb_scores[r1, t] = limb_scores[r2, t]
            parts[r2, t] = -1
        stats[r1, 0] += stats[r2, 0] + s
        stats[r1, 1] += stats[r2, 1]
        stats[r1, 2] = max(stats[r1, 2], length)
        stats[r2, 1] = 0.0
        return
    c1 = ta if parts[r1, ta] == a else tb
    c2 = tb if parts[r2, tb] == b else ta
    if s < limb_scores[r1, c1] and s < limb_scores[r2, c2]:
        return
    r, c = (r1, c1) if limb_scores[r1, c1] <= limb_scores[r2, c2] else (r2, c2)
    stats[r, 0] -= peaks[parts[r, c], PEAK_SCORE] + limb_scores[r, c]
    stats[r, 1] -= 1.0
    parts[r, c] = -1
    limb_scores[r, c] = -1.0


@njit(cache=True, nogil=True)
def _published_one(parts, limb_scores, stats, r, b, tb, s, length, peaks, len_rate):
    """The seed's found-1 branch: add B, or replace a weaker B; A is never added (as in OpenPose)."""
    if parts[r, tb] < 0 and len_rate * stats[r, 2] > length:
        parts[r, tb] = b
        limb_scores[r, tb] = s
        stats[r, 0] += peaks[b, PEAK_SCORE] + s
        stats[r, 1] += 1.0
        stats[r, 2] = max(stats[r, 2], length)
    elif parts[r, tb] != b:
        if limb_scores[r, tb] >= s or len_rate * stats[r, 2] <= length:
            return
        if parts[r, tb] >= 0:
            stats[r, 0] -= peaks[parts[r, tb], PEAK_SCORE] + limb_scores[r, tb]
        else:
            stats[r, 1] += 1.0
        parts[r, tb] = b
        limb_scores[r, tb] = s
        stats[r, 0] += peaks[b, PEAK_SCORE] + s
        stats[r, 2] = max(stats[r, 2], length)


@njit(cache=True, nogil=True)
def assemble_published(peaks, conns, len_rate, tolerance, parts, stats):
    """The seed's ``find_people`` (spec 6.5) over connections in limb order.

    Args:
        peaks, conns, parts, stats: as in :func:`assemble_merge`.
        len_rate: a limb longer than ``len_rate`` times the person's longest one is not attached.
        tolerance: ``connection_tole``: two disjoint people merge only if the limb score is at least
            this fraction of their weakest limb score.

    Returns:
        the number of person slots used; deleted slots have count 0.

    Shapes: as in :func:`assemble_merge`.
    """
    limb_scores = np.full(parts.shape, -1.0)
    n = 0
    for k in range(conns.shape[0]):
        a, b = int(conns[k, CONN_A]), int(conns[k, CONN_B])
        s, length = conns[k, CONN_SCORE], conns[k, CONN_LENGTH]
        ta, tb = int(peaks[a, PEAK_TYPE]), int(peaks[b, PEAK_TYPE])
        r1 = -1
        r2 = -1
        for r in range(n):
            if stats[r, 1] > 0 and (parts[r, ta] == a or parts[r, tb] == b):
                if r1 < 0:
                    r1 = r
                elif r2 < 0:
                    r2 = r
        if r1 >= 0 and r2 >= 0:
            _published_two(parts, limb_scores, stats, r1, r2, a, ta, b, tb, s, length, peaks, len_rate, tolerance)
        elif r1 >= 0:
            _published_one(parts, limb_scores, stats, r1, b, tb, s, length, peaks, len_rate)
        else:
            limb_scores[n, ta] = s
            limb_scores[n, tb] = s
            n = _new_person(parts, stats, n, a, ta, b, tb, s, length, peaks)
    return n


@njit(cache=True, nogil=True)
def finish_people(peaks, parts, stats, singletons, min_count, min_mean_score):
    """The people with at least ``min_count`` keypoints and a total of at least ``min_mean_score`` per keypoint,
    then (with ``singletons``), in peak order, a one-keypoint person for every peak nobody holds (total: its
    score, count 1, longest limb 0) that passes the same tests.

    Shapes: ``peaks (P, 4)``, ``parts (N, K)`` int32, ``stats (N, 3)`` -> ``(M, K)`` int32, ``(M, 3)``.
    """
    held = np.zeros(peaks.shape[0], dtype=np.bool_)
    for r in range(parts.shape[0]):
        for t in range(parts.shape[1]):
            if parts[r, t] >= 0:
                held[parts[r, t]] = True
    free = peaks.shape[0] - np.count_nonzero(held) if singletons else 0
    out_parts = np.full((parts.shape[0] + free, parts.shape[1]), -1, dtype=np.int32)
    out_stats = np.zeros((parts.shape[0] + free, 3))
    n = 0
    for r in range(parts.shape[0]):
        if stats[r, 1] >= min_count and stats[r, 0] >= min_mean_score * max(stats[r, 1], 1.0):
            out_parts[n] = parts[r]
            out_stats[n] = stats[r]
            n += 1
    for p in range(peaks.shape[0] if singletons else 0):
        if not held[p] and 1.0 >= min_count and np.float64(peaks[p, PEAK_SCORE]) >= min_mean_score * 1.0:
            out_parts[n, int(peaks[p, PEAK_TYPE])] = p
            out_stats[n, 0] = peaks[p, PEAK_SCORE]
            out_stats[n, 1] = 1.0
            n += 1
    return out_parts[:n], out_stats[:n]


@njit(cache=True, nogil=True)
def keypoint_shares(peaks, parts, shared):
    """Every person's keypoint scores (0 where absent); with ``shared``, a peak that n people hold counts 1/n in each.

    Shapes: ``peaks (P, 4)``, ``parts (N, K)`` int32 -> ``(N, K)`` float64.
    """
    holders = np.zeros(peaks.shape[0], dtype=np.int64)
    if shared:
        for r in range(parts.shape[0]):
            for t in range(parts.shape[1]):
                if parts[r, t] >= 0:
                    holders[parts[r, t]] += 1
    out = np.zeros(parts.shape)
    for r in range(parts.shape[0]):
        for t in range(parts.shape[1]):
            i = parts[r, t]
            if i >= 0:
                out[r, t] = np.float64(peaks[i, PEAK_SCORE]) / max(holders[i], 1)
    return out
