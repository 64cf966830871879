"""Augmentation: single-pixel invariants of the composed affine, flip swap, mask border, HSV jitter, draws."""
import cv2
import numpy as np
import pytest

from simplepose.config import AugmentConfig
from simplepose.data import augment
from simplepose.data.augment import AugmentParams
from simplepose.skeleton import get_skeleton

SIZE = 96


def _bright_pixel(shape, x, y):
    image = np.zeros(shape + (3,), np.uint8)
    image[y, x] = 255
    return image


def _centroid(image):
    w = image[..., 0].astype(np.float64)
    ys, xs = np.mgrid[:w.shape[0], :w.shape[1]]
    return np.array([(w * xs).sum() / w.sum(), (w * ys).sum() / w.sum()])


@pytest.mark.parametrize("params", [
    AugmentParams(scale=1.3),
    AugmentParams(angle=33.0),
    AugmentParams(shift=(7.5, -11.0)),
    AugmentParams(flip=True),
    AugmentParams(scale=1.1, angle=-27.0, shift=(-9.0, 5.0), flip=True),
], ids=["scale", "rotate", "shift", "flip", "composed"])
def test_single_pixel_moves_with_keypoint(params):
    """The image content under a keypoint lands exactly where the keypoint goes (openpifpaf's test)."""
    x, y = 51, 37
    image = _bright_pixel((80, 100), x, y)
    mask = np.ones((80, 100), np.uint8)
    keypoints = np.array([[[x, y, 2]]], np.float32)
    # person height 20 px -> base scale 0.6 * 96 / 20 = 2.88: upsampling keeps the pixel's centroid exact
    matrix = augment.affine_matrix((45.0, 40.0), 20.0, params, SIZE, 0.6)
    out, _, kp = augment.warp(image, mask, keypoints, matrix, SIZE, 8, [0] if params.flip else None)
    assert out[..., 0].sum() > 0
    np.testing.assert_allclose(_centroid(out), kp[0, 0, :2], atol=0.05)
    peak = np.unravel_index(np.argmax(out[..., 0]), out.shape[:2])
    assert abs(peak[1] - kp[0, 0, 0]) <= 1 and abs(peak[0] - kp[0, 0, 1]) <= 1


def test_matrix_is_the_documented_composition():
    params = AugmentParams(scale=1.2, angle=25.0, shift=(3.0, -4.0), flip=True)
    c, h = np.array([40.0, 30.0]), 50.0
    s = 0.6 * SIZE / h * 1.2
    t = np.radians(25.0)
    rot = np.array([[np.cos(t), np.sin(t), 0], [-np.sin(t), np.cos(t), 0], [0, 0, 1]])
    mid = (SIZE - 1) / 2
    expected = (np.array([[1, 0, mid + 3.0], [0, 1, mid - 4.0], [0, 0, 1]]) @ np.diag([-1.0, 1, 1])
                @ np.diag([s, s, 1]) @ rot @ np.array([[1, 0, -c[0]], [0, 1, -c[1]], [0, 0, 1]]))
    np.testing.assert_allclose(augment.affine_matrix(c, h, params, SIZE, 0.6), expected[:2], atol=1e-9)


def test_identity_draw_centres_person_and_copies_pixels():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
    center = ((SIZE - 1) / 2, (SIZE - 1) / 2)
    matrix = augment.affine_matrix(center, 0.6 * SIZE, AugmentParams(), SIZE, 0.6)  # scale exactly 1
    out, mask, _ = augment.warp(image, np.ones((SIZE, SIZE), np.uint8), np.zeros((0, 1, 3)), matrix, SIZE, 8)
    np.testing.assert_array_equal(out, image)
    np.testing.assert_array_equal(mask, 1.0)


def test_flip_swaps_left_and_right():
    sk = get_skeleton("coco18_limbs24")
    lw, rw = sk.keypoints.index("left_wrist"), sk.keypoints.index("right_wrist")
    kp = np.zeros((1, sk.num_keypoints, 3), np.float32)
    kp[0, lw] = (30.0, 20.0, 2)  # the person's left wrist, on the image's left
    kp[0, rw] = (60.0, 20.0, 1)
    params = AugmentParams(flip=True)
    matrix = augment.affine_matrix((45.0, 20.0), 0.6 * SIZE, params, SIZE, 0.6)
    _, _, out = augment.warp(np.zeros((40, 90, 3), np.uint8), np.ones((40, 90), np.uint8), kp, matrix, SIZE, 8,
                             sk.keypoint_flip)
    mid = (SIZE - 1) / 2
    # the mirrored left wrist is now a right wrist, on the image's right, and keeps its visibility
    np.testing.assert_allclose(out[0, rw], (mid + 15.0, mid, 2))
    np.testing.assert_allclose(out[0, lw], (mid - 15.0, mid, 1))
    # mirroring about the crop centre twice, with the swap, is the identity
    mirror = np.array([[-1.0, 0.0, SIZE - 1.0], [0.0, 1.0, 0.0]])
    twice = augment.transform_keypoints(augment.transform_keypoints(kp, mirror, sk.keypoint_flip), mirror,
                                        sk.keypoint_flip)
    np.testing.assert_allclose(twice, kp)


def test_mask_is_soft_on_output_grid_and_out_of_image_is_supervised():
    center = ((SIZE - 1) / 2 + 32, (SIZE - 1) / 2)  # crop shifted right: 32 columns fall outside the image
    matrix = augment.affine_matrix(center, 0.6 * SIZE, AugmentParams(), SIZE, 0.6)
    mask2 = np.ones((SIZE, SIZE), np.uint8)
    mask2[:, 36:] = 0  # crop column j shows image column j + 32: crop columns 4..63 are masked
    _, soft, _ = augment.warp(np.zeros((SIZE, SIZE, 3), np.uint8), mask2, np.zeros((0, 1, 3)), matrix, SIZE, 8)
    assert soft.shape == (SIZE // 8, SIZE // 8) and soft.dtype == np.float32
    # crop columns 64.. show image columns 96.., outside the image: supervised (border value 1)
    np.testing.assert_allclose(soft[5], [0.5] + [0.0] * 7 + [1.0] * 4)


def test_color_jitter_hue_wraps_and_clips():
    hsv = np.array([[[178, 200, 100], [5, 250, 250], [90, 100, 200]]], np.uint8)
    bgr = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)
    base = cv2.cvtColor(bgr, cv2.COLOR_BGR2HSV).astype(int)
    out = cv2.cvtColor(augment.color_jitter(bgr, (10, 30, -20)), cv2.COLOR_BGR2HSV).astype(int)
    expected_h = (base[..., 0] + 10) % 180
    hue_err = np.abs((out[..., 0] - expected_h + 90) % 180 - 90)
    assert hue_err.max() <= 2  # the BGR round trip quantises hue a little
    assert out[0, 0, 0] < 15  # 178 + 10 wrapped past 179 to about 8, not clipped at 179 or 255
    assert out[0, 1, 1] >= 250  # saturation clipped at 255
    np.testing.assert_array_equal(augment.color_jitter(bgr, (0, 0, 0)),
                                  cv2.cvtColor(cv2.cvtColor(bgr, cv2.COLOR_BGR2HSV), cv2.COLOR_HSV2BGR))


def test_hsv_lut():
    lut = augment._hsv_lut(-10, 40, -30)[:, 0]
    assert lut[5, 0] == 175 and lut[179, 0] == 169 and lut[0, 1] == 40 and lut[250, 1] == 255
    assert lut[10, 2] == 0 and lut[255, 2] == 225


def test_draw_params_probabilities_are_not_inverted():
    cfg = AugmentConfig(scale_prob=0.3, tint_prob=0.2, flip_prob=0.5)
    rng = np.random.default_rng(1)
    draws = [augment.draw_params(rng, cfg) for _ in range(4000)]
    tint = np.mean([d.hsv is not None for d in draws])
    jitter = np.mean([d.scale != 1.0 for d in draws])
    flips = np.mean([d.flip for d in draws])
    assert abs(tint - 0.2) < 0.03 and abs(jitter - 0.3) < 0.03 and abs(flips - 0.5) < 0.03
    assert all(0.8 <= d.scale <= 1.2 and abs(d.angle) <= 40 and max(map(abs, d.shift)) <= 40 for d in draws)
    hsv = np.array([d.hsv for d in draws if d.hsv is not None])
    assert (np.abs(hsv) <= [10, 40, 30]).all() and (hsv.min(0) < 0).all() and (hsv.max(0) > 0).all()


def test_validation_draw_is_identity_and_uses_no_randomness():
    rng = np.random.default_rng(0)
    state = rng.bit_generator.state
    assert augment.draw_params(rng, AugmentConfig(), train=False) == AugmentParams()
    assert rng.bit_generator.state == state


@pytest.mark.parametrize("scale,expected", [(1.5, 1), (1.0, 1), (0.6, 1), (0.5, 2), (0.3, 2), (0.25, 4), (0.1, 8)])
def test_choose_reduction(scale, expected):
    assert augment.choose_reduction(scale) == expected


def test_warp_rejects_bad_arguments():
    with pytest.raises(ValueError, match="interpolation"):
        augment.warp(np.zeros((4, 4, 3), np.uint8), np.ones((4, 4), np.uint8), np.zeros((0, 1, 3)),
                     np.eye(2, 3), 16, 8, interpolation="nearest")
    with pytest.raises(ValueError, match="multiple"):
        augment.warp(np.zeros((4, 4, 3), np.uint8), np.ones((4, 4), np.uint8), np.zeros((0, 1, 3)),
                     np.eye(2, 3), 20, 8)


@pytest.mark.parametrize("reduce", [2, 4, 8])
def test_reduced_image_matrix_keeps_content_aligned(reduce):
    """Warping a 1/r block-averaged image with ``matrix @ unreduce_matrix(r)`` lands content where the
    full-resolution matrix puts it (block averaging keeps a blob's centroid)."""
    ys, xs = np.mgrid[:384, :384]
    x0, y0 = 200.3, 181.6
    blob = 255 * np.exp(-((xs - x0) ** 2 + (ys - y0) ** 2) / (2 * 20.0 ** 2))
    image = np.repeat(blob[..., None], 3, axis=2).astype(np.uint8)
    small = cv2.resize(image, (384 // reduce, 384 // reduce), interpolation=cv2.INTER_AREA)
    params = AugmentParams(angle=20.0, shift=(5.0, -3.0))
    matrix = augment.affine_matrix((192.0, 192.0), 115.2, params, SIZE, 0.6)  # scale 0.5, crop inside the image
    keypoints = np.array([[[x0, y0, 2]]], np.float32)
    out, _, kp = augment.warp(small, None, keypoints, matrix, SIZE, 8,
                              image_matrix=matrix @ augment.unreduce_matrix(reduce))
    np.testing.assert_allclose(_centroid(out), kp[0, 0, :2], atol=0.1)


def test_soft_mask_matches_full_resolution_area_average():
    """4 x 4 samples per cell approximate the area average of the mask warped at full crop resolution."""
    rng = np.random.default_rng(5)
    mask = (cv2.GaussianBlur(rng.uniform(size=(120, 160)), (0, 0), 6) > 0.5).astype(np.uint8)
    matrix = augment.affine_matrix((80.0, 60.0), 50.0, AugmentParams(angle=31.0, shift=(4.0, 2.0)), SIZE, 0.6)
    _, soft, _ = augment.warp(np.zeros((120, 160, 3), np.uint8), mask, np.zeros((0, 1, 3)), matrix, SIZE, 8)
    full = cv2.warpAffine(mask, matrix, (SIZE, SIZE), flags=cv2.INTER_NEAREST, borderValue=1)
    reference = full.reshape(SIZE // 8, 8, SIZE // 8, 8).mean(axis=(1, 3))
    assert 0.1 < soft.mean() < 0.9
    assert np.abs(soft - reference).mean() < 0.03 and np.abs(soft - reference).max() < 0.3
