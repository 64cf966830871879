"""Person scores that rank fragments and copies below whole people; merges the limb maps must support."""
import numpy as np
import pytest

from simplepose.decode import completion
from simplepose.decode.grouping import GroupingParams, assemble, fragment_owners, joined_guesses, person_scores
from simplepose.skeleton import COCO_KEYPOINTS, UPRIGHT_POSE, get_skeleton

SKELETON = get_skeleton("coco18_limbs40")


def params(**kw):
    base = dict(limb_threshold=0.1, limb_min_fraction=0.8, min_samples=5, max_samples=20, samples_per_cell=2.0,
                mode="improved", max_length_ratio=0.0, merge_tolerance=0.85, min_keypoints=1, min_mean_score=0.0)
    base.update(kw)
    return GroupingParams(**base)


def test_reach_is_a_metric_of_bone_chains():
    r = SKELETON.reach
    assert (r == r.T).all() and (np.diag(r) == 0).all() and np.isfinite(r).all()
    assert (r[:, :, None] <= r[:, None, :] + r.T[None, :, :] + 1e-12).all()  # triangle inequality
    k = SKELETON.keypoints.index
    c = COCO_KEYPOINTS.index
    arm = (np.hypot(*(UPRIGHT_POSE[c("left_shoulder")] - UPRIGHT_POSE[c("left_elbow")]))
           + np.hypot(*(UPRIGHT_POSE[c("left_elbow")] - UPRIGHT_POSE[c("left_wrist")])))
    assert r[k("left_shoulder"), k("left_wrist")] == pytest.approx(arm)
    # every pair is at least as far apart along the bones as in the upright figure itself
    xy = np.array([UPRIGHT_POSE[c(n)] if n in COCO_KEYPOINTS else
                   0.5 * (UPRIGHT_POSE[c("left_shoulder")] + UPRIGHT_POSE[c("right_shoulder")])
                   for n in SKELETON.keypoints], dtype=np.float64)
    assert (np.hypot(*(xy[:, None] - xy[None]).transpose(2, 0, 1)) <= r + 1e-6).all()


def test_a_shared_peak_counts_half_in_each_person():
    peaks = np.array([[0, 0, 1.0, 0], [1, 0, 0.8, 1], [5, 0, 0.6, 1], [3, 3, 0.4, 2]], np.float32)
    parts = np.array([[0, 1, 3], [0, 2, -1]], np.int32)  # peak 0 held by both
    stats = np.array([[2.2, 3, 1], [1.6, 2, 1]], float)
    mean = person_scores(peaks, parts, stats, params(person_score="mean"))
    assert mean == pytest.approx([(1.0 + 0.8 + 0.4) / 3, (1.0 + 0.6) / 3])
    shared = person_scores(peaks, parts, stats, params(person_score="shared"))
    assert shared == pytest.approx([(0.5 + 0.8 + 0.4) / 3, (0.5 + 0.6) / 3])
    with pytest.raises(ValueError, match="person_score"):
        person_scores(peaks, parts, stats, params(person_score="best"))


def body(height, x, y, names):
    """Peak rows (cells) of the named keypoints of an upright figure; and their types."""
    rows = []
    for n in names:
        xy = (0.5 * (UPRIGHT_POSE[5] + UPRIGHT_POSE[6]) if n == "neck" else UPRIGHT_POSE[COCO_KEYPOINTS.index(n)])
        rows.append([xy[0] * height + x, xy[1] * height + y, 1.0, SKELETON.keypoints.index(n)])
    return rows


TORSO = ("nose", "neck", "left_shoulder", "right_shoulder", "left_hip", "right_hip")
LEGS = ("left_knee", "left_ankle")


def owners(people):
    """``count_owners`` of people given as lists of peak rows."""
    peaks = np.array([row for rows in people for row in rows], np.float32)
    parts = np.full((len(people), SKELETON.num_keypoints), -1, np.int32)
    i = 0
    for r, rows in enumerate(people):
        for row in rows:
            parts[r, int(row[3])] = i
            i += 1
    stats = np.array([[len(rows), len(rows), 0] for rows in people], float)
    counts, owner = completion.count_owners(peaks, parts, stats, len(people), SKELETON.reach, 1.0)
    assert ((owner >= 0) == (counts > 0)).all()
    return counts.tolist()


def test_a_fragment_within_reach_of_one_person_has_one_owner():
    torso, legs = body(40, 20, 5, TORSO), body(40, 20, 5, LEGS)
    assert owners([torso, legs]) == [0, 1]
    assert owners([torso, body(40, 60, 5, LEGS)]) == [0, 0]  # a body length away: no owner
    assert owners([torso, body(40, 21, 8, TORSO), legs]) == [0, 0, 2]  # two people could own the legs
    assert owners([torso, body(40, 20, 5, ("nose", "left_knee"))]) == [0, 0]  # a type the torso has


def merge_case(cross_limb_value):
    """Types 0-3, limbs 0-1, 2-3, 1-2, 0-2; connections make {0, 1} and {2, 3}, then 1-2 proposes a merge."""
    peaks = np.array([[1, 1, 1, 0], [1, 4, 1, 1], [4, 4, 1, 2], [4, 7, 1, 3]], np.float32)
    limbs = np.array([[0, 1], [2, 3], [1, 2], [0, 2]])
    limb_maps = np.ones((10, 10, 4), np.float32)
    limb_maps[:, :, 3] = cross_limb_value
    conns = np.array([[0, 1, 0.9, 3, 0, 0.9], [2, 3, 0.8, 3, 1, 0.8], [1, 2, 0.7, 3, 2, 0.7]], np.float32)
    offsets = np.array([0, 1, 2, 3, 4])
    out = {}
    for verify in (False, True):
        parts, _ = assemble(peaks, conns, 4, params(verify_merges=verify), limb_maps, offsets, limbs)
        out[verify] = sorted(map(tuple, parts.tolist()))
    return out


def test_merges_need_more_supporting_than_rejecting_limbs():
    out = merge_case(0.0)  # limb 0-2 between the two people rejects the merge: one for, one against
    assert out[False] == [(0, 1, 2, 3)]
    assert out[True] == [(-1, -1, 2, 3), (0, 1, -1, -1)]
    out = merge_case(1.0)
    assert out[False] == out[True] == [(0, 1, 2, 3)]


def test_a_fragment_with_one_owner_adds_the_joined_person_as_a_last_guess():
    people = [body(40, 20, 5, TORSO), body(40, 20, 5, LEGS), body(40, 80, 5, TORSO)]
    peaks = np.array([row for rows in people for row in rows], np.float32)
    parts = np.full((3, SKELETON.num_keypoints), -1, np.int32)
    i = 0
    for r, rows in enumerate(people):
        for row in rows:
            parts[r, int(row[3])] = i
            i += 1
    stats = np.array([[6, 6, 0], [2, 2, 0], [6, 6, 0]], float)
    p = params(person_score="shared", fragment_reach=1.0)
    owners = fragment_owners(peaks, parts, stats, p, SKELETON.reach)
    assert owners[0].tolist() == [0, 1, 0] and owners[1][1] == 0
    scores = person_scores(peaks, parts, stats, p, owners)
    assert scores == pytest.approx([6 / 18, 2 / 18 / 2, 6 / 18])  # the legs could be the first torso's
    out_parts, out_stats, out_scores = joined_guesses(parts, stats, scores, owners)
    assert len(out_parts) == 4 and (out_parts[:3] == parts).all()
    joined = out_parts[3]
    assert sorted(joined[joined >= 0].tolist()) == list(range(8)) and out_stats[3, 1] == 8
    assert out_scores[3] < out_scores[:3].min()
