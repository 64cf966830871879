"""Skeleton: permutations derived from names, COCO mapping, the neck rule."""
import numpy as np
import pytest

from simplepose.skeleton import COCO_KEYPOINTS, SKELETONS, Skeleton, get_skeleton

# Spec section 1.5 / 8.1: the published flip orders, checked against our name-derived ones.
SEED_KEYPOINT_CHANNEL_FLIP = [0, 1, 5, 6, 7, 2, 3, 4, 11, 12, 13, 8, 9, 10, 15, 14, 17, 16, 18]
SEED_LIMB_FLIP_24 = [0, 2, 1, 4, 3, 6, 5, 8, 7, 12, 13, 14, 9, 10, 11, 18, 19, 20, 15, 16, 17, 21, 23, 22]
SEED_LIMB_FLIP_30 = [0, 2, 1, 4, 3, 6, 5, 8, 7, 12, 13, 14, 9, 10, 11, 18, 19, 20, 15, 16, 17,
                     22, 21, 25, 26, 23, 24, 28, 27, 29]
SEED_COCO_TO_INTERNAL = [0, 15, 14, 17, 16, 5, 2, 6, 3, 7, 4, 11, 8, 12, 9, 13, 10]


@pytest.mark.parametrize("name", sorted(SKELETONS))
def test_flips_are_involutions_consistent_with_names(name):
    sk = get_skeleton(name)
    for perm in (sk.keypoint_flip, sk.keypoint_channel_flip, sk.limb_flip):
        np.testing.assert_array_equal(perm[perm], np.arange(len(perm)))
    for i, j in enumerate(sk.keypoint_flip):
        a, b = sk.keypoints[i], sk.keypoints[j]
        assert a.replace("left_", "X").replace("right_", "left_").replace("X", "right_") == b
    for k, (a, b) in enumerate(sk.limbs):
        fa, fb = sk.limbs[sk.limb_flip[k]]
        assert {fa, fb} == {sk.keypoint_flip[a], sk.keypoint_flip[b]}


def test_published_layout_reproduced():
    sk = get_skeleton("coco18_limbs24")
    assert (sk.num_keypoints, sk.num_keypoint_channels, sk.num_limbs) == (18, 19, 24)
    assert sk.keypoint_channel_flip.tolist() == SEED_KEYPOINT_CHANNEL_FLIP
    assert sk.limb_flip.tolist() == SEED_LIMB_FLIP_24
    assert get_skeleton("coco18_limbs30").limb_flip.tolist() == SEED_LIMB_FLIP_30
    coco_to_internal = [int(np.flatnonzero(sk.coco_index == c)[0]) for c in range(17)]
    assert coco_to_internal == SEED_COCO_TO_INTERNAL


@pytest.mark.parametrize("name", sorted(SKELETONS))
def test_coco_round_trip(name):
    sk = get_skeleton(name)
    rng = np.random.default_rng(0)
    coco = np.concatenate([rng.uniform(0, 500, (5, 17, 2)), rng.integers(0, 3, (5, 17, 1))], -1).astype(np.float32)
    back = sk.to_coco(sk.from_coco(coco))
    np.testing.assert_array_equal(back, coco)


def test_neck_rule():
    sk = get_skeleton("coco18_limbs24")
    neck = sk.keypoints.index("neck")
    ls, rs = COCO_KEYPOINTS.index("left_shoulder"), COCO_KEYPOINTS.index("right_shoulder")
    kp = np.zeros((4, 17, 3), np.float32)
    kp[:, ls] = (10, 20, 2)
    kp[:, rs] = (30, 40, 2)
    kp[1, rs, 2] = 1  # one shoulder occluded -> neck occluded
    kp[2, ls, 2] = 0  # one shoulder missing -> no neck
    kp[3, :, 2] = 0
    out = sk.from_coco(kp)
    np.testing.assert_allclose(out[0, neck], (20, 30, 2))
    np.testing.assert_allclose(out[1, neck], (20, 30, 1))
    np.testing.assert_allclose(out[2, neck], (0, 0, 0))
    np.testing.assert_allclose(out[3, neck], (0, 0, 0))
    assert sk.sigmas[neck] == pytest.approx(0.079)


def test_bad_skeletons_rejected():
    with pytest.raises(ValueError, match="mirror"):
        Skeleton("x", ("nose", "left_eye"), ((0, 1),))
    with pytest.raises(ValueError, match="no mirror limb"):
        Skeleton("x", ("nose", "left_eye", "right_eye"), ((0, 1),))
    with pytest.raises(ValueError, match="neither COCO nor derived"):
        Skeleton("x", ("nose", "pelvis"), ())
    with pytest.raises(ValueError, match="unknown skeleton"):
        get_skeleton("nope")
    with pytest.raises(ValueError, match=r"\(\.\.\., 17, 3\)"):
        get_skeleton("coco17").from_coco(np.zeros((2, 18, 3)))


def test_drawing_limbs_are_anatomical():
    dense = get_skeleton("coco18_limbs40")
    names = {frozenset((dense.keypoints[a], dense.keypoints[b])) for a, b in dense.drawing_limbs}
    assert frozenset(("left_elbow", "left_wrist")) in names
    assert frozenset(("left_shoulder", "left_wrist")) not in names  # a redundant link
    assert set(dense.drawing_limbs) <= set(dense.limbs)
    assert len(get_skeleton("coco18_limbs24").drawing_limbs) == 20  # all but neck -> eyes, ears
