"""Decoding maps into people: peaks (merged ones split), limb scoring, greedy grouping, fill-in (numba kernels)."""
from __future__ import annotations

import functools

import numpy as np

from simplepose.decode.grouping import (GroupingParams, assemble, fragment_owners, joined_guesses, pair_cache,
                                        person_scores, score_connections, to_poses)
from simplepose.decode.peaks import find_all_peaks
from simplepose.pose import Pose

__all__ = ["decode", "grouping_params", "warm_up"]


def grouping_params(params) -> GroupingParams:
    """The grouping thresholds of an ``InferenceConfig`` (cached: a decoder asks for them on every image)."""
    try:
        return _cached_grouping_params(params)
    except TypeError:  # params that cannot be hashed
        return _grouping_params(params)


def _grouping_params(params) -> GroupingParams:
    return GroupingParams(
        limb_threshold=params.limb_threshold, limb_min_fraction=params.limb_min_fraction,
        min_samples=params.limb_min_samples, max_samples=params.limb_max_samples,
        samples_per_cell=params.limb_samples_per_cell, mode=params.grouping,
        max_length_ratio=params.max_length_ratio, merge_tolerance=params.merge_tolerance,
        min_keypoints=params.min_keypoints, min_mean_score=params.min_mean_score,
        fill_missing=params.fill_missing, fill_min_keypoints=params.fill_min_keypoints,
        person_score=params.person_score, fragment_reach=params.fragment_reach, verify_merges=params.verify_merges,
        joined_guesses=params.joined_guesses)


_cached_grouping_params = functools.lru_cache(maxsize=16)(_grouping_params)


def decode(keypoint_maps, limb_maps, skeleton, stride: int, params) -> list[Pose]:
    """People from keypoint and limb maps.

    Args:
        keypoint_maps: keypoint channels in skeleton order (a trailing background channel is ignored).
        limb_maps: limb channels in skeleton order.
        skeleton: the :class:`~simplepose.skeleton.Skeleton` of the maps.
        stride: input pixels per map cell (1 for maps at input resolution).
        params: an ``InferenceConfig`` (thresholds and grouping mode).

    Returns:
        people, best first, with keypoints ``[x, y, score]`` in pixels of the maps' input image
        (cell centres map through ``pose.cell_to_pixel``); absent keypoints are all zero.

    Shapes: ``keypoint_maps (h, w, >= K)``, ``limb_maps (h, w, L)``.

    Example:
        >>> poses = decode(maps["keypoints"], maps["limbs"], get_skeleton("coco18_limbs24"), 8, cfg.inference)
    """
    keypoint_maps = np.asarray(keypoint_maps, dtype=np.float32)
    limb_maps = np.asarray(limb_maps, dtype=np.float32)
    if keypoint_maps.shape[:2] != limb_maps.shape[:2]:
        raise ValueError(f"keypoint maps {keypoint_maps.shape} and limb maps {limb_maps.shape} differ in size")
    if limb_maps.ndim != 3 or limb_maps.shape[2] != skeleton.num_limbs:
        raise ValueError(f"expected (h, w, {skeleton.num_limbs}) limb maps, got {limb_maps.shape}")
    peaks, offsets = find_all_peaks(keypoint_maps, skeleton.num_keypoints, params.peak_threshold,
                                    refine=params.peak_refine, smoothing=params.peak_smoothing,
                                    max_peaks=params.max_peaks, split_margin=params.peak_split_margin)
    if not len(peaks):  # nobody
        return []
    gp = grouping_params(params)
    limbs = skeleton.limb_array
    pairs = pair_cache(offsets, limbs)  # every limb pair is scored once
    conns = score_connections(limb_maps, peaks, offsets, limbs, gp, pairs)
    parts, stats = assemble(peaks, conns, skeleton.num_keypoints, gp, limb_maps, offsets, limbs, pairs)
    scores = None
    if gp.mode == "improved":
        owners = fragment_owners(peaks, parts, stats, gp, skeleton.reach)
        scores = person_scores(peaks, parts, stats, gp, owners)
        if gp.joined_guesses and owners is not None:
            parts, stats, scores = joined_guesses(parts, stats, scores, owners)
    return to_poses(peaks, parts, stats, stride, gp.mode, scores)


def warm_up(skeleton, params) -> None:
    """Compile (or load from numba's cache) every kernel ``decode`` uses, so that timings exclude it."""
    heat = np.zeros((9, 9, skeleton.num_keypoint_channels), np.float32)
    limbs = np.zeros((9, 9, skeleton.num_limbs), np.float32)
    a, b = skeleton.limbs[0]
    heat[2, 4, a] = heat[6, 4, b] = 1.0
    limbs[2:7, 4, 0] = 1.0
    decode(heat, limbs, skeleton, 8, params)
