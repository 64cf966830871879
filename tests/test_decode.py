"""Decoder: kernels against hand computations, rendered ground truth decodes back, numba == plain Python."""
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from simplepose.config import InferenceConfig
from simplepose.bottomup.targets import render_targets
from simplepose.decode import completion, decode, kernels
from simplepose.decode.grouping import GroupingParams, assemble, pair_cache
from simplepose.decode.peaks import find_all_peaks
from simplepose.pose import cell_to_pixel
from simplepose.skeleton import UPRIGHT_POSE, get_skeleton

REPO = pathlib.Path(__file__).resolve().parents[1]


# === Scenes ===
def person(height, x, y, mirror=False):
    """COCO (17, 3) keypoints of an upright person ``height`` px tall with head top at (x, y)."""
    xy = UPRIGHT_POSE * height
    if mirror:  # seen from behind: left/right sides swap image sides, names stay anatomical
        xy = xy * np.array([-1.0, 1.0], np.float32)
    kp = np.zeros((17, 3), np.float32)
    kp[:, 0], kp[:, 1], kp[:, 2] = xy[:, 0] + x, xy[:, 1] + y, 2
    return kp


def scene():
    people = np.stack([person(300, 90, 30), person(200, 250, 120, mirror=True), person(130, 400, 60),
                       person(90, 330, 20)])
    people[2, 9, 2] = 0  # an unlabelled wrist
    people[3, 5, 2] = 0  # one shoulder unlabelled, hence no neck: the seed loses this person's hips
    return people


def oks(pred, gt, sigmas):
    """COCO OKS of one predicted pose against one ground-truth person (COCO order, area = bbox area)."""
    vis = gt[:, 2] > 0
    w, h = np.ptp(gt[vis, 0]), np.ptp(gt[vis, 1])
    d2 = ((pred[:, :2] - gt[:, :2]) ** 2).sum(1)
    e = d2 / (2 * (2 * np.asarray(sigmas)) ** 2 * (w * h + np.spacing(1)))
    return float(np.exp(-e)[vis].mean())


def render(people_coco, skeleton, hw, stride=8):
    maps = render_targets(skeleton.from_coco(people_coco), None, skeleton, (hw[0] // stride, hw[1] // stride), stride)
    return maps["keypoints"], maps["limbs"]


@pytest.mark.parametrize("name, lo, hi", [("coco18_limbs24", 0.0, 0.6), ("coco18_limbs30", 0.8, 0.9),
                                          ("coco18_limbs40", 0.9, 1.0)])
def test_rendered_ground_truth_decodes_to_the_people(name, lo, hi):
    skeleton = get_skeleton(name)
    people = scene()
    heat, limbs = render(people, skeleton, (368, 480))
    poses = decode(heat, limbs, skeleton, 8, InferenceConfig(joined_guesses=False))
    sigmas = skeleton.to_coco(np.stack([skeleton.sigmas] * 3, axis=1))[:, 0]
    best = [max(oks(skeleton.to_coco(p.keypoints), gt, sigmas) for p in poses) for gt in people]
    assert min(best[:3]) > 0.9, best
    # person 4 has no neck, the seed's only shoulder-hip path (limbs24 splits it); without the left
    # shoulder its left arm hangs on the elbow-hip link only limbs40 has
    assert lo < best[3] <= hi, best
    assert all(p.keypoints[:, 2].max() <= 1.0 + 1e-6 for p in poses)
    # the split part has one possible owner: the joined person comes as a last guess
    guesses = decode(heat, limbs, skeleton, 8, InferenceConfig())
    joined = max(oks(skeleton.to_coco(p.keypoints), people[3], sigmas) for p in guesses)
    assert joined >= best[3] and (joined > 0.85 or best[3] > 0.9), (joined, best)
    assert [p.score for p in guesses[:len(poses)]] == pytest.approx(sorted((p.score for p in poses), reverse=True))


def test_decoded_coordinates_are_input_pixels_with_subpixel_accuracy():
    skeleton = get_skeleton("coco18_limbs40")
    gt = person(250, 123.3, 41.7)[None]
    heat, limbs = render(gt, skeleton, (368, 320))
    (pose,) = decode(heat, limbs, skeleton, 8, InferenceConfig())
    np.testing.assert_allclose(skeleton.to_coco(pose.keypoints)[:, :2], gt[0, :, :2], atol=0.05)


def test_published_grouping_runs_the_seed_rules():
    skeleton = get_skeleton("coco18_limbs24")
    people = scene()[:3]
    heat, limbs = render(people, skeleton, (368, 480))
    params = InferenceConfig(grouping="published", peak_refine=False, min_keypoints=2, max_length_ratio=4.0)
    poses = decode(heat, limbs, skeleton, 8, params)
    assert len(poses) == 3
    for p in poses:  # integer cells, as the seed: within half a cell diagonal of the truth
        kp = skeleton.to_coco(p.keypoints)
        gt = min(people, key=lambda g: np.abs(g[0, :2] - kp[0, :2]).sum())
        vis = (gt[:, 2] > 0) & (kp[:, 2] > 0)
        assert np.abs(kp[vis, :2] - gt[vis, :2]).max() <= 4.0 + 1e-4
        assert 0 < p.score < 1  # 1 - 1/total


def test_empty_maps_give_no_people():
    skeleton = get_skeleton("coco18_limbs24")
    heat = np.zeros((20, 30, skeleton.num_keypoint_channels), np.float32)
    limbs = np.zeros((20, 30, skeleton.num_limbs), np.float32)
    assert decode(heat, limbs, skeleton, 8, InferenceConfig()) == []
    with pytest.raises(ValueError, match="limb maps"):
        decode(heat, limbs[:, :, :3], skeleton, 8, InferenceConfig())


# === Kernels ===
def find(m, threshold=0.1, refine=True, log_fit=True):
    out = np.zeros((m.size, 4), np.float32)
    n = kernels.find_peaks(np.asarray(m, np.float32), threshold, refine, log_fit, 7, out, 0)
    return out[:n]


def test_find_peaks_all_is_find_peaks_per_channel():
    rng = np.random.default_rng(5)
    maps = rng.random((13, 16, 5)).astype(np.float32)
    maps[4, 6:8, 1] = 1.5  # a plateau
    maps[0, 0, 2] = 1.2  # a corner peak
    peaks, offsets, above, above_offsets = kernels.find_peaks_all(maps, 4, 0.4, True, True)
    expected = np.concatenate([find(maps[:, :, t], 0.4)[:, :3] for t in range(4)])
    np.testing.assert_array_equal(peaks[:, :3], expected)
    assert offsets.tolist() == [0] + np.cumsum([len(find(maps[:, :, t], 0.4)) for t in range(4)]).tolist()
    assert peaks[:, 3].tolist() == np.repeat(np.arange(4), np.diff(offsets)).tolist()
    for t in range(4):  # the cells above the threshold, in raster order
        np.testing.assert_array_equal(above[above_offsets[t]:above_offsets[t + 1]],
                                      np.flatnonzero(maps[:, :, t].astype(np.float64) > 0.4))


def test_plateau_gives_one_peak_and_border_peaks_count():
    m = np.zeros((6, 7), np.float32)
    m[2, 2:4] = 0.8  # horizontal plateau
    m[4:6, 5] = 0.6  # vertical plateau
    m[0, 0] = 0.5  # corner peak
    peaks = find(m, refine=False)
    assert sorted(map(tuple, peaks[:, :2].tolist())) == [(0.0, 0.0), (2.0, 2.0), (5.0, 4.0)]
    assert set(peaks[:, 3]) == {7.0}
    assert len(find(m, threshold=0.7)) == 1  # value must exceed the threshold


def test_subpixel_refinement_recovers_gaussian_centre_on_each_axis():
    ys, xs = np.mgrid[0:9, 0:11]
    cx, cy = 4.3, 5.8  # different offsets per axis catch swapped axes
    m = np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * 1.1 ** 2))
    (peak,) = find(m)
    assert peak[:2] == pytest.approx([cx, cy], abs=1e-4)
    assert peak[2] == pytest.approx(m[6, 4])
    (plain,) = find(m, log_fit=False)  # plain parabola: biased but on the right side of the cell
    assert 4.0 < plain[0] < 4.5 and 5.5 < plain[1] < 6.0
    (raw,) = find(m, refine=False)
    assert raw[:2].tolist() == [4.0, 6.0]


def test_bilinear_and_segment_sampling_are_exact_on_a_ramp():
    ys, xs = np.mgrid[0:5, 0:6].astype(np.float64)
    m = 0.1 * xs + 0.02 * ys
    assert kernels.bilinear(m, 2.25, 3.5) == pytest.approx(0.225 + 0.07)
    assert kernels.bilinear(m, -3.0, 9.0) == pytest.approx(m[4, 0])  # clamped
    mean, frac = kernels.segment_score(m, 0.0, 0.0, 4.0, 2.0, 5, 0.2, 5)
    samples = [0.1 * 4 * t + 0.02 * 2 * t for t in np.linspace(0, 1, 5)]  # 0, .11, .22, .33, .44
    assert mean == pytest.approx(np.mean(samples))
    assert frac == pytest.approx(0.6)
    assert kernels.segment_score(m, 0.0, 0.0, 4.0, 2.0, 5, 0.2, 1)[1] == -1.0  # 2 below > 1: rejected early
    assert kernels.segment_score(m, 0.0, 0.0, 4.0, 2.0, 5, 0.2, 2)[1] == pytest.approx(0.6)


LIMB_PARAMS = np.array([0.15, 0.9, 5, 20, 2.0, 100.0])


def test_limb_scoring_matches_each_start_to_its_own_end():
    limb = np.zeros((12, 12), np.float32)
    limb[2, 1:6] = 1.0  # person 1: (1, 2) -> (5, 2)
    limb[8, 3:10] = 1.0  # person 2: (3, 8) -> (9, 8)
    peaks = np.array([[1, 2, 0.9, 0], [3, 8, 0.8, 0], [9, 8, 0.7, 1], [5, 2, 0.95, 1]], np.float32)
    out = np.zeros((4, 6), np.float32)
    n = kernels.score_limb(limb, peaks, 0, 2, 2, 4, 3, LIMB_PARAMS, out, 0)
    assert n == 2
    pairs = {(int(a), int(b)) for a, b in out[:n, :2]}
    assert pairs == {(0, 3), (1, 2)}
    assert np.allclose(out[:n, kernels.CONN_SCORE], 1.0) and np.all(out[:n, kernels.CONN_LIMB] == 3)
    row = out[list(out[:n, 0]).index(1)]
    assert row[kernels.CONN_LENGTH] == pytest.approx(6.0)
    assert row[kernels.CONN_RANK] == pytest.approx(0.5 + 0.25 * (0.8 + 0.7))
    short = LIMB_PARAMS.copy()
    short[5] = 3.0  # distance prior: 3/6 - 1 = -0.5 -> score 0.5 for the 6-cell limb
    n = kernels.score_limb(limb, peaks, 0, 2, 2, 4, 3, short, out, 0)
    assert sorted(out[:n, kernels.CONN_SCORE].round(4)) == [0.5, 0.75]


def conn(a, b, score, length=2.0, limb=0):
    return [a, b, score, length, limb, score]


def group(peaks, conns, mode="improved", **kw):
    params = dict(limb_threshold=0.1, limb_min_fraction=0.8, min_samples=5, max_samples=20, samples_per_cell=2.0,
                  mode=mode, max_length_ratio=0.0, merge_tolerance=0.85, min_keypoints=2, min_mean_score=0.0)
    params.update(kw)
    return assemble(np.asarray(peaks, np.float32), np.asarray(conns, np.float32), 4, GroupingParams(**params))


PEAKS4 = [[0, 0, 1, 0], [0, 1, 1, 1], [0, 2, 1, 2], [0, 3, 1, 3], [5, 0, 1, 0], [5, 1, 1, 1]]


def test_merge_grouping_joins_fragments_and_respects_types():
    # 0-1 and 2-3 form two fragments first; 1-2 then merges them (the seed never merged fragments)
    parts, stats = group(PEAKS4, [conn(0, 1, 0.9), conn(2, 3, 0.8), conn(1, 2, 0.7), conn(4, 5, 0.6),
                                  conn(5, 2, 0.5)])
    rows = sorted(map(tuple, parts.tolist()))
    assert rows == [(0, 1, 2, 3), (4, 5, -1, -1)]  # 5-2 would give type 1 twice: refused
    full = parts.tolist().index([0, 1, 2, 3])
    assert stats[full, 0] == pytest.approx(4 + 0.9 + 0.8 + 0.7) and stats[full, 1] == 4


def test_singletons_and_filters():
    peaks = PEAKS4 + [[9, 9, 0.3, 2]]
    parts, stats = group(peaks, [conn(0, 1, 0.9)], min_keypoints=1)
    assert sorted(map(tuple, parts.tolist())) == sorted([(0, 1, -1, -1), (-1, -1, 2, -1), (-1, -1, -1, 3),
                                                         (4, -1, -1, -1), (-1, 5, -1, -1), (-1, -1, 6, -1)])
    parts, _ = group(peaks, [conn(0, 1, 0.9)], min_keypoints=1, min_mean_score=0.5)
    assert [-1, -1, 6, -1] not in parts.tolist()  # mean score 0.3 < 0.5
    parts, _ = group(peaks, [conn(0, 1, 0.9)], min_keypoints=2)
    assert parts.tolist() == [[0, 1, -1, -1]]


def test_published_grouping_never_merges_disjoint_fragments_below_tolerance():
    conns = [conn(0, 1, 0.9, limb=0), conn(2, 3, 0.9, limb=2), conn(1, 2, 0.5, limb=1)]
    parts, _ = group(PEAKS4[:4], conns, mode="published")
    assert sorted(map(tuple, parts.tolist())) == [(-1, -1, 2, 3), (0, 1, -1, -1)]  # 0.5 < 0.85 * 0.9
    conns[2][2] = 0.8
    parts, stats = group(PEAKS4[:4], conns, mode="published")
    assert parts.tolist() == [[0, 1, 2, 3]] and stats[0, 1] == 4
    assert stats[0, 0] == pytest.approx(4 + 0.9 + 0.9 + 0.8)


# === Completion and split peaks ===
def best_oks(poses, people, skeleton):
    sigmas = skeleton.to_coco(np.stack([skeleton.sigmas] * 3, axis=1))[:, 0]
    return [max(oks(skeleton.to_coco(p.keypoints), gt, sigmas) for p in poses) for gt in people]


def test_fill_missing_shares_the_peak_of_two_keypoints_in_one_cell():
    skeleton = get_skeleton("coco18_limbs40")
    people = np.stack([person(200, 100, 30), person(200, 170, 30)])
    people[1, 9, :2] = people[0, 9, :2] + [3, 3]  # both left wrists in one cell: a single peak
    heat, limbs = render(people, skeleton, (368, 320))
    filled = best_oks(decode(heat, limbs, skeleton, 8, InferenceConfig()), people, skeleton)
    assert min(filled) > 0.99, filled
    plain = best_oks(decode(heat, limbs, skeleton, 8, InferenceConfig(fill_missing=False)), people, skeleton)
    assert max(plain) > 0.99 and min(plain) < 0.95, plain  # the assembly gives the wrist to one of them


def test_pair_cache_holds_every_pair_score_both_ways():
    rng = np.random.default_rng(11)
    peaks = np.concatenate([rng.uniform(0, 13, (9, 2)), rng.uniform(0.2, 1, (9, 1)),
                            np.sort(rng.integers(0, 3, (9, 1)), axis=0)], axis=1).astype(np.float32)
    offsets = np.searchsorted(peaks[:, 3], [0, 1, 2, 3])
    limbs = np.array([[0, 1], [1, 2], [2, 0]])
    limb_maps = rng.uniform(0, 1, (14, 14, 3)).astype(np.float32) ** 0.2  # most samples pass
    pair_offsets, cache = pair_cache(offsets, limbs)
    out = np.zeros((20, 6), np.float32)
    kernels.score_all_limbs(limb_maps, peaks, offsets, limbs, LIMB_PARAMS, out, pair_offsets, cache)
    assert np.isnan(cache[pair_offsets[-1]:]).all()  # the B -> A half waits until it is asked for
    for k, (a, b) in enumerate(limbs):
        for i in range(offsets[a], offsets[a + 1]):
            for j in range(offsets[b], offsets[b + 1]):
                for first, second in ((i, j), (j, i)):
                    expected = kernels.pair_score(limb_maps[:, :, k], peaks, first, second, LIMB_PARAMS)[0]
                    got = kernels.cached_pair_score(limb_maps, peaks, offsets, limbs, LIMB_PARAMS, pair_offsets, cache,
                                                    k, first, second)
                    assert got == expected
    assert not np.isnan(cache).any() and (cache > 0).sum() > 5


def fill(second_limb_value, min_count=2):
    """Types 0, 1 held by person 0 at peaks 0, 1; peak 2 (type 2) is free; limbs 0-2 (all ones) and 1-2."""
    peaks = np.array([[1, 1, 0.9, 0], [8, 1, 0.8, 1], [4, 8, 0.7, 2]], np.float32)
    limb_maps = np.ones((10, 10, 2), np.float32)
    limb_maps[:, :, 1] = second_limb_value
    parts = np.array([[0, 1, -1]], np.int32)
    stats = np.array([[3.0, 2.0, 7.0]])
    offsets, limbs = np.array([0, 1, 2, 3]), np.array([[0, 2], [1, 2]])
    added = completion.fill_missing(limb_maps, peaks, offsets, limbs, LIMB_PARAMS, *pair_cache(offsets, limbs),
                                    min_count, parts, stats, 1)
    return added, parts, stats


def test_fill_missing_needs_more_supporting_than_rejecting_limbs():
    added, parts, stats = fill(1.0)
    assert added == 1 and parts.tolist() == [[0, 1, 2]]
    assert stats[0].tolist() == pytest.approx([3.0 + 0.7 + 2.0, 3.0, 7.0])  # peak + two limb scores of 1
    added, parts, stats = fill(0.0)  # one limb supports peak 2, the other rejects it: a tie is no fill
    assert added == 0 and parts.tolist() == [[0, 1, -1]] and stats[0].tolist() == [3.0, 2.0, 7.0]
    assert fill(1.0, min_count=3)[0] == 0  # people with fewer keypoints are left alone


def gaussians(centres, shape=(12, 12), sigma=0.875):
    """Max of unit-or-scaled Gaussians ``(cx, cy, amplitude)`` as a one-channel map, like the targets."""
    ys, xs = np.mgrid[0:shape[0], 0:shape[1]]
    m = np.zeros(shape)
    for cx, cy, a in centres:
        m = np.maximum(m, a * np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * sigma ** 2)))
    return m.astype(np.float32)[:, :, None]


def test_split_peaks_recover_a_keypoint_on_a_neighbours_flank():
    m = gaussians([(5.2, 5.1, 1.0), (5.3, 6.4, 0.9)])
    assert len(find_all_peaks(m, 1, 0.15)[0]) == 1  # the weaker one is no 3x3 maximum
    peaks, offsets = find_all_peaks(m, 1, 0.15, split_margin=0.45)
    assert offsets.tolist() == [0, 2]
    hidden = peaks[np.argmax(peaks[:, 1])]
    assert hidden[:2] == pytest.approx([5.3, 6.5], abs=1e-4)  # cell (5, 7) moved half a cell up (the clip)
    assert hidden[2] == pytest.approx(m[7, 5, 0]) and hidden[3] == 0
    assert len(find_all_peaks(m, 1, 0.15, split_margin=0.45, refine=False)[0]) == 2


@pytest.mark.parametrize("cy", [0.0, 0.3, 3.5, 6.8, 8.0])
def test_split_peaks_add_nothing_to_single_or_distant_gaussians(cy):
    for cx in np.linspace(0.0, 11.0, 12):
        assert len(find_all_peaks(gaussians([(cx, cy, 1.0)], (9, 12)), 1, 0.15, split_margin=0.45)[0]) == 1
    far = gaussians([(2.3, cy, 1.0), (8.6, cy, 0.6)], (9, 12))
    assert len(find_all_peaks(far, 1, 0.15, split_margin=0.45)[0]) == 2


# === numba == plain Python ===
_KERNEL_SCRIPT = r"""
import json, sys
import numpy as np
from simplepose.decode import assembly_kernels, kernels
rng = np.random.default_rng(3)
m = rng.random((14, 17)).astype(np.float32)
m[5, 5:7] = 2.0  # a plateau
out = np.zeros((m.size, 4), np.float32)
n = kernels.find_peaks(m, 0.5, True, True, 2, out, 0)
maps = rng.random((9, 11, 4)).astype(np.float32)  # non-contiguous channel slices
peaks_all, off_all, above, above_off = kernels.find_peaks_all(maps, 3, 0.3, True, True)
peaks = out[:n].copy()
peaks[:, 3] = np.arange(n) % 3
peaks = peaks[np.argsort(peaks[:, 3], kind="stable")]
off = np.searchsorted(peaks[:, 3], [0, 1, 2, 3])
limb = rng.random((14, 17)).astype(np.float32)
conns = np.zeros((200, 6), np.float32)
limb_maps = np.stack([limb, limb[::-1], limb[:, ::-1]], axis=2)
from simplepose.decode.grouping import pair_cache
pair_offsets, cache = pair_cache(off, np.array([[0, 1], [1, 2], [0, 2]]))
c = kernels.score_all_limbs(limb_maps, peaks, off, np.array([[0, 1], [1, 2], [0, 2]]),
                            np.array([0.2, 0.5, 5, 20, 2.0, 7.0]), conns, pair_offsets, cache)
scored = cache.copy()
conns = conns[:c]
order = np.argsort(-conns[:, 5], kind="stable")
pm = np.full((len(peaks), 3), -1, np.int32); sm = np.zeros((len(peaks), 3))
nm = assembly_kernels.assemble_merge(peaks, conns, order, 0.0, pm, sm, limb_maps, off,
                                     np.array([[0, 1], [1, 2], [0, 2]]), np.array([0.2, 0.5, 5, 20, 2.0, 7.0]),
                                     pair_offsets, cache, True)
pp = np.full((len(peaks), 3), -1, np.int32); sp = np.zeros((len(peaks), 3))
npub = assembly_kernels.assemble_published(peaks, conns, 4.0, 0.85, pp, sp)
from simplepose.decode import completion, split_peaks
pf, sf = pm[:nm].copy(), sm[:nm].copy()
n_fill = completion.fill_missing(limb_maps, peaks, off, np.array([[0, 1], [1, 2], [0, 2]]),
                                 np.array([0.2, 0.5, 5, 20, 2.0, 7.0]), pair_offsets, cache, 2, pf, sf, nm)
split, off_split = split_peaks.add_split_peaks(maps, peaks_all, off_all, above, above_off, 0.3, 0.05, True)
fin_parts, fin_stats = assembly_kernels.finish_people(peaks, pf, sf, True, 1, 0.3)
shares = assembly_kernels.keypoint_shares(peaks, fin_parts, True)
joined = completion.join_fragments(np.array([[0, 1, -1], [-1, -1, 2], [3, -1, -1]], np.int32), rng.random((3, 3)),
                                   rng.random(3), np.array([0, 1, 2]), np.array([-1, 0, 1]))
res = {"finish": [fin_parts.tolist(), fin_stats.tolist()], "shares": shares.tolist(),
       "join": [joined[0].tolist(), joined[1].tolist(), joined[2].tolist()],
       "peaks": peaks.tolist(), "peaks_all": peaks_all.tolist(), "conns": conns.tolist(),
       "scored": np.nan_to_num(scored, nan=-9).tolist(), "cache": np.nan_to_num(cache, nan=-9).tolist(),
       "fill": [n_fill, pf.tolist(), sf.tolist()], "split": split.tolist(), "split_offsets": off_split.tolist(),
       "merge": [pm[:nm].tolist(), sm[:nm].tolist()],
       "published": [pp[:npub].tolist(), sp[:npub].tolist()],
       "bilinear": float(kernels.bilinear(limb, 3.3, 7.9)),
       "segment": [float(v) for v in kernels.segment_score(limb, 1, 2, 9.5, 11, 9, 0.4, 9)]}
json.dump(res, sys.stdout)
"""


def _run_kernels(disable_jit: bool) -> dict:
    env = dict(os.environ, NUMBA_DISABLE_JIT="1" if disable_jit else "0", PYTHONPATH=str(REPO))
    done = subprocess.run([sys.executable, "-c", _KERNEL_SCRIPT], env=env, capture_output=True, text=True,
                          cwd=REPO, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


def test_numba_kernels_match_plain_python():
    jit, plain = _run_kernels(False), _run_kernels(True)
    assert len(plain["peaks"]) > 10 and len(plain["conns"]) > 3 and len(plain["merge"][0]) > 1
    assert plain["fill"][0] > 0 and len(plain["split"]) > len(plain["peaks_all"])
    assert jit["split_offsets"] == plain["split_offsets"]
    assert len(plain["finish"][0]) > len(plain["fill"][1]) and plain["join"][0][3] == [0, 1, 2]
    for key in ("peaks", "peaks_all", "conns", "bilinear", "segment", "split", "scored", "cache", "shares"):
        np.testing.assert_allclose(np.asarray(jit[key], float), np.asarray(plain[key], float), rtol=1e-5, atol=1e-6)
    for key in ("merge", "published", "fill", "finish", "join"):
        assert jit[key][0] == plain[key][0]
        np.testing.assert_allclose(jit[key][1], plain[key][1], rtol=1e-5)
    np.testing.assert_allclose(jit["fill"][2], plain["fill"][2], rtol=1e-5)  # person totals after the fill


def test_cell_centres_round_trip_through_decode():
    skeleton = get_skeleton("coco18_limbs24")
    heat = np.zeros((10, 12, skeleton.num_keypoint_channels), np.float32)
    limbs = np.zeros((10, 12, skeleton.num_limbs), np.float32)
    heat[3, 7, 0] = heat[6, 7, 1] = 1.0  # nose and neck, joined by limb 0 (neck -> nose)
    limbs[3:7, 7, 0] = 1.0
    (pose,) = decode(heat, limbs, skeleton, 4, InferenceConfig())
    assert pose.keypoints[0].tolist() == [cell_to_pixel(7, 4), cell_to_pixel(3, 4), 1.0]
    assert pose.keypoints[1].tolist() == [cell_to_pixel(7, 4), cell_to_pixel(6, 4), 1.0]
