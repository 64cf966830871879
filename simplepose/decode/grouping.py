"""Grouping orchestration: candidate limbs from peaks, greedy assembly, filtering into poses."""
from __future__ import annotations

import dataclasses

import numpy as np

from simplepose.decode import assembly_kernels, completion, kernels
from simplepose.pose import Pose, cell_to_pixel


@dataclasses.dataclass(frozen=True)
class GroupingParams:
    """Thresholds of limb scoring and assembly (see ``InferenceConfig`` for their meaning)."""

    limb_threshold: float
    limb_min_fraction: float
    min_samples: int
    max_samples: int
    samples_per_cell: float
    mode: str
    max_length_ratio: float
    merge_tolerance: float
    min_keypoints: int
    min_mean_score: float
    fill_missing: bool = False
    fill_min_keypoints: int = 2
    person_score: str = "mean"
    verify_merges: bool = False
    fragment_reach: float = 0.0
    joined_guesses: bool = False


def limb_test_params(params: GroupingParams, map_height: int) -> np.ndarray:
    """The limb test vector of ``kernels.score_limb`` (the distance prior uses half the map height)."""
    min_samples = max(int(params.min_samples), 2)  # both endpoints are always sampled
    return np.array([params.limb_threshold, params.limb_min_fraction, min_samples,
                     max(int(params.max_samples), min_samples), params.samples_per_cell, 0.5 * map_height],
                    dtype=np.float64)


def pair_cache(offsets, limbs):
    """An empty cache of limb pair scores (``kernels.cached_pair_score``) for peaks grouped by ``offsets``.

    :func:`score_connections` fills it with every pair it scores; :func:`assemble` looks the pairs up there.

    Shapes: ``offsets (K + 1,)``, ``limbs (L, 2)`` -> ``(pair_offsets (L + 1,) int64, cache (2 * T,) float64)``.
    """
    return kernels.empty_pair_cache(np.asarray(offsets, np.int64), np.asarray(limbs, np.int64).reshape(-1, 2))


def score_connections(limb_maps, peaks, offsets, limbs, params: GroupingParams, pairs=None):
    """Candidate connections of every limb (a greedy one-to-one matching per limb), in limb order.

    The seed's distance prior uses half the image height: here half the map height in cells. ``pairs``, a
    :func:`pair_cache`, receives the score of every pair.

    Shapes: ``limb_maps (h, w, L)``, ``peaks (P, 4)``, ``offsets (K + 1,)`` -> ``(C, 6)`` float32 rows
    ``[a, b, score, length, limb, rank]`` (lengths in cells).
    """
    limb_maps = np.asarray(limb_maps, dtype=np.float32)
    if limb_maps.ndim != 3 or limb_maps.shape[2] != len(limbs):
        raise ValueError(f"expected (h, w, {len(limbs)}) limb maps, got {limb_maps.shape}")
    kparams = limb_test_params(params, limb_maps.shape[0])
    counts = np.diff(offsets)
    limbs = np.asarray(limbs, np.int64).reshape(-1, 2)
    out = np.zeros((int(np.minimum(counts[limbs[:, 0]], counts[limbs[:, 1]]).sum()), 6), dtype=np.float32)
    pair_offsets, cache = pair_cache(offsets, limbs) if pairs is None else pairs
    n = kernels.score_all_limbs(limb_maps, peaks, offsets, limbs, kparams, out, pair_offsets, cache)
    return out[:n]


def assemble(peaks, conns, num_keypoints: int, params: GroupingParams, limb_maps=None, offsets=None, limbs=None,
             pairs=None):
    """Group connections into people, complete them (``improved`` mode) and drop weak ones.

    Args:
        limb_maps, offsets, limbs: the maps, peak offsets and limb pairs; needed by ``params.fill_missing``
            and ``params.verify_merges``.
        pairs: the :func:`pair_cache` that :func:`score_connections` filled (else pairs are scored afresh).

    Returns:
        ``(parts, stats)``: peak row per person and keypoint type (-1 = absent) and
        ``[total score, keypoint count, longest limb]`` per kept person.

    Shapes: ``peaks (P, 4)``, ``conns (C, 6)`` -> ``parts (N, K)`` int32, ``stats (N, 3)`` float64.
    """
    parts = np.full((max(len(peaks), 1), num_keypoints), -1, dtype=np.int32)
    stats = np.zeros((max(len(peaks), 1), 3), dtype=np.float64)
    if len(conns) == 0:
        n = 0
    elif params.mode == "published":
        len_rate = params.max_length_ratio if params.max_length_ratio > 0 else np.inf
        n = assembly_kernels.assemble_published(peaks, conns, len_rate, params.merge_tolerance, parts, stats)
    elif params.mode == "improved":
        order = np.argsort(-conns[:, kernels.CONN_RANK], kind="stable")
        verify = params.verify_merges and limb_maps is not None and limbs is not None
        maps = np.asarray(limb_maps if verify else np.zeros((1, 1, 1)), np.float32)
        limb_pairs = np.asarray(limbs if verify else np.zeros((0, 2)), np.int64).reshape(-1, 2)
        if offsets is None:  # peaks are grouped by type
            offsets = np.searchsorted(peaks[:, kernels.PEAK_TYPE], np.arange(num_keypoints + 1) - 0.5)
        offsets = np.asarray(offsets, np.int64)
        if pairs is None:
            pairs = pair_cache(offsets, limbs if limbs is not None else limb_pairs)
        n = assembly_kernels.assemble_merge(peaks, conns, order, params.max_length_ratio, parts, stats, maps,
                                            offsets, limb_pairs, limb_test_params(params, maps.shape[0]), *pairs,
                                            verify)
    else:
        raise ValueError(f"unknown grouping mode {params.mode!r}; expected 'improved' or 'published'")
    parts, stats = parts[:n], stats[:n]
    if params.mode == "improved":
        _complete(peaks, parts, stats, params, limb_maps, offsets, limbs, pairs)
    return assembly_kernels.finish_people(peaks, parts, stats, params.min_keypoints <= 1, max(params.min_keypoints, 1),
                                          float(params.min_mean_score))


def _complete(peaks, parts, stats, params: GroupingParams, limb_maps, offsets, limbs, pairs) -> None:
    """Limb-supported fill-in of missing keypoints (``completion.fill_missing``), in place."""
    if not params.fill_missing or not len(parts):
        return
    if limb_maps is None or offsets is None or limbs is None:
        raise ValueError("fill_missing needs the limb maps, peak offsets and limbs")
    limb_maps = np.asarray(limb_maps, np.float32)
    limbs = np.asarray(limbs, np.int64).reshape(-1, 2)
    offsets = np.asarray(offsets, np.int64)
    if pairs is None:
        pairs = pair_cache(offsets, limbs)
    completion.fill_missing(limb_maps, peaks, offsets, limbs, limb_test_params(params, limb_maps.shape[0]), *pairs,
                            max(int(params.fill_min_keypoints), 1), parts, stats, len(parts))


def fragment_owners(peaks, parts, stats, params: GroupingParams, reach):
    """``completion.count_owners`` of every person with ``params.fragment_reach`` (None when it is 0).

    Shapes: -> ``(counts (N,), owner (N,))`` int64.
    """
    if params.fragment_reach <= 0 or not len(parts):
        return None
    return completion.count_owners(peaks, parts, stats, len(parts), np.asarray(reach, np.float64),
                                   float(params.fragment_reach))


def person_scores(peaks, parts, stats, params: GroupingParams, owners=None) -> np.ndarray:
    """Person scores of the ``improved`` grouping, which rank whole people above fragments.

    ``mean``: the sum of the keypoint scores divided by K. ``shared``: a peak that n people hold (fill-in
    lets people share a peak) counts 1/n in each, so that a person copied from a neighbour ranks below
    it; and given ``owners`` (:func:`fragment_owners`), a person that n others could own as a fragment
    counts 1/(1 + n). Both keep the evidence of one peak or one body from counting twice.

    Shapes: ``peaks (P, 4)``, ``parts (N, K)``, ``stats (N, 3)`` -> ``(N,)`` float64.
    """
    if params.person_score not in ("mean", "shared") and len(parts):
        raise ValueError(f"unknown person_score {params.person_score!r}; expected 'mean' or 'shared'")
    shared = params.person_score == "shared"
    scores = assembly_kernels.keypoint_shares(peaks, parts, shared).sum(axis=1) / parts.shape[1]
    if not shared or not len(parts):
        return scores
    if owners is not None:
        scores /= 1.0 + owners[0]
    return scores


def joined_guesses(parts, stats, scores, owners):
    """People plus, for every fragment with exactly one possible owner, the owner joined with it as a second
    guess, ranked after every first guess (score: the fragment's times the lowest person score).

    Nothing in the maps links a fragment to its owner, so the join is a guess; COCO's AP counts a guess
    ranked below every person as a cheap second chance, while joining outright lost more people than it
    recovered (a fragment may be a person of its own).

    Shapes: ``parts (N, K)``, ``stats (N, 3)``, ``scores (N,)``, ``owners`` as :func:`fragment_owners`
    -> ``(N + J, K)``, ``(N + J, 3)``, ``(N + J,)``.
    """
    counts, owner = owners
    if not (counts == 1).any():
        return parts, stats, scores
    return completion.join_fragments(parts, stats, np.asarray(scores, np.float64), counts, owner)


def to_poses(peaks, parts, stats, stride: int, mode: str, scores=None) -> list[Pose]:
    """People as :class:`Pose` with keypoints in input pixels (``cell_to_pixel``).

    The person score is the seed's ``1 - 1/total`` in ``published`` mode; otherwise ``scores`` (see
    :func:`person_scores`), by default the sum of the keypoint scores divided by K, which ranks complete
    people above fragments.

    Shapes: ``parts (N, K)`` -> N poses with ``(K, 3)`` keypoints; ``scores (N,)``.
    """
    rows = peaks[np.maximum(parts, 0), :kernels.PEAK_TYPE]  # (N, K, 3) [x, y, score]; absent keypoints zeroed below
    rows[..., :2] = cell_to_pixel(rows[..., :2], stride)
    rows *= (parts >= 0)[..., None]
    if mode == "published":
        scores = 1.0 - 1.0 / stats[:, 0]
    elif scores is None:
        scores = rows[..., 2].sum(axis=1, dtype=np.float64) / parts.shape[1]
    scores = np.asarray(scores, np.float64)
    values = scores.tolist()
    return [Pose(keypoints=rows[i], score=values[i]) for i in np.argsort(-scores, kind="stable").tolist()]
