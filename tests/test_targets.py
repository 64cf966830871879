"""Targets: Gaussian values against hand computations, capsule vs seed box, masking, numba == numpy."""
import numpy as np
import pytest

from simplepose.bottomup.targets import render_targets, support_radius
from simplepose.pose import cell_to_pixel
from simplepose.skeleton import get_skeleton

SK = get_skeleton("coco18_limbs24")
K, L = SK.num_keypoints, SK.num_limbs
NECK, NOSE = SK.keypoints.index("neck"), SK.keypoints.index("nose")
NECK_NOSE = SK.limbs.index((NECK, NOSE))


def _people(*rows):
    """People with the given ``{keypoint index: (x, y, v)}``; every other keypoint v = 0."""
    kp = np.zeros((len(rows), K, 3), np.float32)
    for p, row in enumerate(rows):
        for k, value in row.items():
            kp[p, k] = value
    return kp


def _render(kp, hw=(30, 40), stride=8, mask=None, impl="numba", **kw):
    return render_targets(kp, mask, SK, hw, stride, impl=impl, **kw)


@pytest.mark.parametrize("impl", ["numba", "numpy"])
@pytest.mark.parametrize("stride", [8, 4])
def test_keypoint_gaussian_peak_and_falloff(impl, stride):
    x, y = cell_to_pixel(10, stride) + 1.25, cell_to_pixel(7, stride) - 1.5
    t = _render(_people({NOSE: (x, y, 2)}), stride=stride, impl=impl)
    heat = t["keypoints"][..., NOSE]
    ys, xs = np.mgrid[:30, :40]
    d2 = (cell_to_pixel(xs, stride) - x) ** 2 + (cell_to_pixel(ys, stride) - y) ** 2
    g = np.exp(-d2 / (2 * 7.0 ** 2))
    np.testing.assert_allclose(heat, np.where(g > 0.01, g, 0), atol=1e-6)
    assert np.unravel_index(np.argmax(heat), heat.shape) == (7, 10)
    on_cell = _render(_people({NOSE: (cell_to_pixel(5, stride), cell_to_pixel(4, stride), 1)}), stride=stride,
                      impl=impl)["keypoints"]
    assert on_cell[4, 5, NOSE] == pytest.approx(1.0)
    # background = 1 - max keypoint; the other keypoint channels stay empty
    np.testing.assert_allclose(t["keypoints"][..., K], 1 - heat, atol=1e-6)
    assert np.delete(t["keypoints"], [NOSE, K], axis=-1).max() == 0


@pytest.mark.parametrize("impl", ["numba", "numpy"])
def test_keypoints_max_over_people_and_unlabelled_never_draw(impl):
    a, b = (cell_to_pixel(10, 8), cell_to_pixel(10, 8)), (cell_to_pixel(11, 8), cell_to_pixel(10, 8))
    t = _render(_people({NOSE: a + (2,)}, {NOSE: b + (2,), NECK: (100.0, 100.0, 0)}), impl=impl)
    heat = t["keypoints"]
    assert heat[10, 10, NOSE] == pytest.approx(1.0) and heat[10, 11, NOSE] == pytest.approx(1.0)  # max, not sum
    assert heat[..., NECK].max() == 0 and t["limbs"].max() == 0  # v = 0 neck: no keypoint, no limb


@pytest.mark.parametrize("impl", ["numba", "numpy"])
def test_capsule_limb_is_bounded_to_the_segment(impl):
    y = cell_to_pixel(10, 8)
    x1, x2 = cell_to_pixel(5, 8), cell_to_pixel(15, 8)
    limbs = _render(_people({NECK: (x1, y, 2), NOSE: (x2, y, 1)}), impl=impl)["limbs"]
    ch = limbs[..., NECK_NOSE]
    np.testing.assert_allclose(ch[10, 5:16], 1.0)  # highest on the segment
    sig2 = 2 * 5.0 ** 2
    np.testing.assert_allclose(ch[11, 5:16], np.exp(-64 / sig2), rtol=1e-6)  # one cell off the line
    np.testing.assert_allclose(ch[10, 16], np.exp(-64 / sig2), rtol=1e-6)  # 8 px past the end: point distance
    np.testing.assert_allclose(ch[11, 16], np.exp(-128 / sig2), rtol=1e-6)
    assert ch[10, 18:].max() == 0 and ch[10, :3].max() == 0  # >= 16 px past the ends: nothing
    assert support_radius(5.0, 0.01) == pytest.approx(15.17, abs=0.01)
    assert np.delete(limbs, NECK_NOSE, axis=-1).max() == 0


@pytest.mark.parametrize("impl", ["numba", "numpy"])
def test_seed_box_limb_is_the_line_cut_by_the_widened_box(impl):
    (x1, y1), (x2, y2) = (60.0, 50.0), (140.0, 90.0)  # a slanted limb
    ch = _render(_people({NECK: (x1, y1, 2), NOSE: (x2, y2, 2)}), limb_shape="seed_box", impl=impl)["limbs"][
        ..., NECK_NOSE]
    ys, xs = np.mgrid[:30, :40]
    px, py = cell_to_pixel(xs, 8), cell_to_pixel(ys, 8)
    d = np.abs((x2 - x1) * (y1 - py) - (x1 - px) * (y2 - y1)) / np.hypot(x2 - x1, y2 - y1)
    g = np.exp(-d ** 2 / 50.0)
    box = ((xs >= np.floor((x1 - 8 - 3.5) / 8 + 0.5)) & (xs < np.floor((x2 + 8 - 3.5) / 8 + 0.5))
           & (ys >= np.floor((y1 - 8 - 3.5) / 8 + 0.5)) & (ys < np.floor((y2 + 8 - 3.5) / 8 + 0.5)))
    np.testing.assert_allclose(ch, np.where(box & (g > 0.01), g, 0), atol=1e-6)
    capsule = _render(_people({NECK: (x1, y1, 2), NOSE: (x2, y2, 2)}), impl=impl)["limbs"][..., NECK_NOSE]
    assert not np.allclose(ch, capsule)


@pytest.mark.parametrize("impl", ["numba", "numpy"])
def test_overlapping_limbs_of_one_type_are_averaged(impl):
    y = cell_to_pixel(10, 8)
    one = {NECK: (43.5, y, 2), NOSE: (123.5, y, 2)}
    shifted = {NECK: (43.5, y + 8, 2), NOSE: (123.5, y + 8, 2)}
    single = _render(_people(one), impl=impl)["limbs"][..., NECK_NOSE]
    twice = _render(_people(one, one), impl=impl)["limbs"][..., NECK_NOSE]
    np.testing.assert_allclose(twice, single)  # an average, not a sum
    both = _render(_people(one, shifted), impl=impl)["limbs"][..., NECK_NOSE]
    other = _render(_people(shifted), impl=impl)["limbs"][..., NECK_NOSE]
    np.testing.assert_allclose(both[10, 8], (single[10, 8] + other[10, 8]) / 2, rtol=1e-6)
    np.testing.assert_allclose(both[8, 8], single[8, 8], rtol=1e-6)  # only the first reaches row 8


@pytest.mark.parametrize("impl", ["numba", "numpy"])
def test_mask_zeroes_every_channel(impl):
    rng = np.random.default_rng(0)
    kp = _random_people(rng, 3, 320, 240)
    mask = np.ones((30, 40), np.float32)
    mask[5:20, 10:30] = 0
    mask[0, 0] = 0.25
    t = _render(kp, mask=mask, impl=impl)
    ref = _render(kp, impl=impl)
    for key in ("keypoints", "limbs"):
        assert t[key][5:20, 10:30].max() == 0
        np.testing.assert_allclose(t[key][0, 0], 0.25 * ref[key][0, 0], rtol=1e-6)
    assert t["keypoints"][6, 11, K] == 0  # background too
    np.testing.assert_array_equal(t["mask"][..., 0], mask)
    assert t["mask"].shape == (30, 40, 1)


def _random_people(rng, n, width, height):
    kp = np.zeros((n, K, 3), np.float32)
    kp[..., 0] = rng.uniform(-30, width + 30, (n, K))
    kp[..., 1] = rng.uniform(-30, height + 30, (n, K))
    kp[..., 2] = rng.integers(0, 3, (n, K))
    return kp


def test_numba_matches_numpy_reference():
    rng = np.random.default_rng(42)
    for case in range(40):
        stride = (4, 8)[case % 2]
        limb_shape = ("capsule", "seed_box")[case // 2 % 2]
        hw = (int(rng.integers(8, 50)), int(rng.integers(8, 50)))
        kp = _random_people(rng, int(rng.integers(0, 5)), hw[1] * stride, hw[0] * stride)
        if case % 5 == 0 and len(kp):  # a zero-length limb
            kp[0, NOSE] = kp[0, NECK]
        mask = rng.uniform(size=hw).astype(np.float32)
        fast = _render(kp, hw, stride, mask, impl="numba", limb_shape=limb_shape)
        ref = _render(kp, hw, stride, mask, impl="numpy", limb_shape=limb_shape)
        for key in ("keypoints", "limbs", "mask"):
            assert fast[key].dtype == np.float32 and fast[key].shape == ref[key].shape
            np.testing.assert_allclose(fast[key], ref[key], atol=1e-5, err_msg=f"case {case} {key}")


def test_shapes_any_grid_and_no_people():
    t = _render(np.zeros((0, K, 3), np.float32), hw=(23, 57), stride=4)
    assert t["keypoints"].shape == (23, 57, K + 1) and t["limbs"].shape == (23, 57, L)
    np.testing.assert_array_equal(t["keypoints"][..., K], 1.0)
    assert t["limbs"].max() == 0


def test_bad_arguments():
    with pytest.raises(ValueError, match="limb_shape"):
        _render(np.zeros((0, K, 3)), limb_shape="box")
    with pytest.raises(ValueError, match="impl"):
        _render(np.zeros((0, K, 3)), impl="cuda")


def test_kernels_agree_with_reference_without_jit():
    """The kernels' Python source (``NUMBA_DISABLE_JIT=1``) gives the reference's maps too."""
    import os
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent("""
        import numpy as np
        from simplepose.bottomup.targets import render_targets
        from simplepose.skeleton import get_skeleton
        sk = get_skeleton("coco18_limbs24")
        rng = np.random.default_rng(3)
        kp = np.zeros((2, sk.num_keypoints, 3), np.float32)
        kp[..., :2] = rng.uniform(0, 96, (2, sk.num_keypoints, 2))
        kp[..., 2] = rng.integers(0, 3, (2, sk.num_keypoints))
        for shape in ("capsule", "seed_box"):
            a = render_targets(kp, None, sk, (12, 14), 8, limb_shape=shape, impl="numba")
            b = render_targets(kp, None, sk, (12, 14), 8, limb_shape=shape, impl="numpy")
            for key in a:
                np.testing.assert_allclose(a[key], b[key], atol=1e-5)
        print("NOJIT-OK")
    """)
    env = dict(os.environ, NUMBA_DISABLE_JIT="1")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert "NOJIT-OK" in result.stdout, result.stderr[-2000:]


@pytest.mark.parametrize("stride", [8, 4])
def test_mirrored_people_give_mirrored_maps_with_swapped_channels(stride):
    """Mirror the keypoints (x -> s*w - 1 - x, left/right swapped): the maps mirror and their channels
    permute by the skeleton's flip permutations; the pixel-centre grid is symmetric, so it is exact."""
    rng = np.random.default_rng(11)
    h, w = 20, 26
    kp = _random_people(rng, 3, w * stride, h * stride)
    mirrored = kp[:, SK.keypoint_flip].copy()
    mirrored[..., 0] = stride * w - 1 - mirrored[..., 0]
    for limb_shape in ("capsule", "seed_box"):
        a = _render(kp, (h, w), stride, limb_shape=limb_shape)
        b = _render(mirrored, (h, w), stride, limb_shape=limb_shape)
        np.testing.assert_allclose(b["keypoints"], a["keypoints"][:, ::-1][..., SK.keypoint_channel_flip], atol=1e-6)
        if limb_shape == "capsule":  # the seed's box rounds half-cells asymmetrically
            np.testing.assert_allclose(b["limbs"], a["limbs"][:, ::-1][..., SK.limb_flip], atol=1e-6)
