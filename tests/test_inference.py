"""Bottom-up predictor: exact scale back-projection, flip-TTA symmetry, padding buckets, image conversion."""
import numpy as np
import pytest

from simplepose.config import InferenceConfig
from simplepose.bottomup.targets import render_targets
from simplepose.bottomup.predictor import BottomUpPredictor, scaled_input_size, to_original
from simplepose.predictor import as_bgr_uint8
from simplepose.pose import Pose
from simplepose.skeleton import UPRIGHT_POSE, get_skeleton

SKELETON = get_skeleton("coco18_limbs40")


def people_coco():
    out = []
    for height, x, y in ((260.0, 130.3, 35.6), (170.0, 371.8, 120.2)):
        kp = np.zeros((17, 3), np.float32)
        kp[:, :2] = UPRIGHT_POSE * height + np.array([x, y], np.float32)
        kp[:, 2] = 2
        out.append(kp)
    return np.stack(out)


class RenderModel:
    """A stand-in network that renders the true maps of known people at whatever scale it is fed.

    The image is all zeros and the padding 128, so the valid size, hence the exact per-axis resize
    factors, can be read from the input; a batch's second image is treated as the mirror of the first.
    """

    def __init__(self, people, height, width, stride=8):
        self.people, self.height, self.width, self.stride = SKELETON.from_coco(people), height, width, stride
        self.shapes = []

    def __call__(self, x, training=False):
        x = np.asarray(x)
        self.shapes.append(x.shape)
        hs = int((x[0, :, 0, 0] != 128).sum())
        ws = int((x[0, 0, :, 0] != 128).sum())
        fx, fy = ws / self.width, hs / self.height
        out = {"keypoints": [], "limbs": []}
        for i in range(x.shape[0]):
            kp = self.people.copy()
            kp[..., 0] = (kp[..., 0] + 0.5) * fx - 0.5
            kp[..., 1] = (kp[..., 1] + 0.5) * fy - 0.5
            if i == 1:
                kp = kp[:, SKELETON.keypoint_flip]
                kp[..., 0] = ws - 1 - kp[..., 0]
            maps = render_targets(kp, None, SKELETON, (x.shape[1] // self.stride, x.shape[2] // self.stride),
                                  self.stride)
            out["keypoints"].append(maps["keypoints"])
            out["limbs"].append(maps["limbs"])
        return {"stage_2": {k: np.stack(v) for k, v in out.items()}, "stage_1": None}


@pytest.mark.parametrize("scale", [0.5, 1.0, 1.5, 2.0])
@pytest.mark.parametrize("flip", [False, True])
def test_single_scale_back_projection_is_exact(scale, flip):
    h, w = 400, 517
    people = people_coco()
    model = RenderModel(people, h, w)
    predictor = BottomUpPredictor(model, SKELETON, stride=8, params=InferenceConfig(scales=(scale,), flip=flip))
    poses = predictor.predict(np.zeros((h, w, 3), np.uint8))
    assert len(poses) == 2
    for gt in people:
        pose = min(poses, key=lambda p: np.abs(SKELETON.to_coco(p.keypoints)[0, :2] - gt[0, :2]).sum())
        np.testing.assert_allclose(SKELETON.to_coco(pose.keypoints)[:, :2], gt[:, :2], atol=0.02 / min(scale, 1))
    hs, ws = scaled_input_size(h, w, 368, scale, 8)
    assert model.shapes == [(2 if flip else 1, -(-hs // 64) * 64, -(-ws // 64) * 64, 3)]
    assert set(predictor.last_timings) == {"network", "resize", "decode"}


def test_multi_scale_flip_average_stays_on_the_people():
    h, w = 400, 517
    people = people_coco()
    params = InferenceConfig(scales=(0.5, 1.0, 1.5), flip=True)
    predictor = BottomUpPredictor(RenderModel(people, h, w), SKELETON, params=params)
    poses = predictor.predict(np.zeros((h, w, 3), np.uint8))
    assert len(poses) == 2
    for gt in people:
        pose = min(poses, key=lambda p: np.abs(SKELETON.to_coco(p.keypoints)[0, :2] - gt[0, :2]).sum())
        assert np.abs(SKELETON.to_coco(pose.keypoints)[:, :2] - gt[:, :2]).max() < 1.0


def test_decode_upsample_matches_stride_decoding():
    h, w = 368, 480
    people = people_coco()
    params = InferenceConfig(decode_upsample=True)
    poses = BottomUpPredictor(RenderModel(people, h, w), SKELETON, params=params).predict(np.zeros((h, w, 3), np.uint8))
    assert len(poses) == 2
    for gt in people:
        pose = min(poses, key=lambda p: np.abs(SKELETON.to_coco(p.keypoints)[0, :2] - gt[0, :2]).sum())
        assert np.abs(SKELETON.to_coco(pose.keypoints)[:, :2] - gt[:, :2]).max() < 1.5


def fake_keras_model(skeleton, seed=0):
    """A small fully convolutional model with the bottom-up output structure (fixed random weights)."""
    import keras

    keras.utils.set_random_seed(seed)
    x = keras.Input((None, None, 3))
    y = keras.layers.Rescaling(1 / 255.0)(x)
    y = keras.layers.AveragePooling2D(8)(y)
    y = keras.layers.Conv2D(8, 3, padding="same", activation="tanh")(y)
    heat = keras.layers.Conv2D(skeleton.num_keypoint_channels, 3, padding="same", activation="sigmoid")(y)
    limbs = keras.layers.Conv2D(skeleton.num_limbs, 3, padding="same", activation="sigmoid")(y)
    return keras.Model(x, {"stage_1": {"keypoints": heat, "limbs": limbs}})


def mirror(poses, width):
    out = []
    for p in poses:
        kp = p.keypoints[SKELETON.keypoint_flip].copy()
        present = kp[:, 2] > 0
        kp[present, 0] = width - 1 - kp[present, 0]
        out.append(Pose(kp, p.score))
    return out


def smooth_image(h, w, seed):
    import cv2

    rng = np.random.default_rng(seed)
    return cv2.resize(rng.integers(0, 256, (h // 16, w // 16, 3), dtype=np.uint8), (w, h),
                      interpolation=cv2.INTER_CUBIC)


def test_flip_tta_of_mirrored_input_equals_mirrored_prediction():
    model = fake_keras_model(SKELETON)
    params = InferenceConfig(flip=True, peak_threshold=0.5, limb_threshold=0.5)
    predictor = BottomUpPredictor(model, SKELETON, params=params)
    image = smooth_image(368, 480, 1)  # height = box size: no resize, so the mirror is exact
    direct = predictor.predict(image)
    mirrored = mirror(predictor.predict(np.ascontiguousarray(image[:, ::-1])), 480)
    assert len(direct) >= 2
    assert len(mirrored) == len(direct)
    key = lambda p: (-round(p.score, 5), tuple(np.round(p.keypoints[:, :2].ravel(), 2)))  # noqa: E731
    for a, b in zip(sorted(direct, key=key), sorted(mirrored, key=key)):
        assert a.score == pytest.approx(b.score, abs=1e-5)
        np.testing.assert_allclose(a.keypoints, b.keypoints, atol=1e-3)


def test_without_flip_the_prediction_is_not_symmetric():
    params = InferenceConfig(peak_threshold=0.5, limb_threshold=0.5)
    predictor = BottomUpPredictor(fake_keras_model(SKELETON), SKELETON, params=params)
    image = smooth_image(368, 480, 1)
    heat, _, _ = predictor.predict_maps(image)
    heat_m, _, _ = predictor.predict_maps(np.ascontiguousarray(image[:, ::-1]))
    assert np.abs(heat - heat_m[:, ::-1][:, :, SKELETON.keypoint_channel_flip]).max() > 1e-3


def test_padding_buckets_avoid_retracing():
    predictor = BottomUpPredictor(fake_keras_model(SKELETON), SKELETON)
    for w in (300, 310, 330):  # input widths 304, 312, 328 pad to the 64-multiples 320, 320, 384
        predictor.predict(smooth_image(368, w, 2))
    assert predictor.runner._call.experimental_get_tracing_count() == 2


def test_scaled_input_size_and_back_projection():
    assert scaled_input_size(480, 640, 368, 1.0, 8) == (368, 488)
    assert scaled_input_size(480, 640, 368, 0.5, 8) == (184, 248)
    assert scaled_input_size(10, 4000, 368, 1.0, 8) == (368, 147200)
    assert scaled_input_size(4000, 10, 368, 1.0, 8) == (368, 8)
    kp = np.array([[10.0, 20.0, 0.9], [0.0, 0.0, 0.0]], np.float32)
    fx, fy = 488 / 640, 368 / 480
    forward = kp.copy()
    forward[0, 0], forward[0, 1] = (10.5 * fx) - 0.5, (20.5 * fy) - 0.5
    (back,) = to_original([Pose(forward, 0.7)], fx, fy)
    np.testing.assert_allclose(back.keypoints, kp, atol=1e-5)
    assert back.score == 0.7


def test_images_of_any_kind_become_bgr_uint8():
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4)
    assert as_bgr_uint8(gray).shape == (3, 4, 3) and (as_bgr_uint8(gray)[..., 1] == gray).all()
    rgba = np.zeros((3, 4, 4), np.uint8)
    rgba[..., 2] = 200
    assert as_bgr_uint8(rgba).shape == (3, 4, 3) and (as_bgr_uint8(rgba)[..., 2] == 200).all()
    deep = np.full((2, 2, 3), 65535, np.uint16)
    assert (as_bgr_uint8(deep) == 255).all() and as_bgr_uint8(deep).dtype == np.uint8
    assert (as_bgr_uint8(np.full((2, 2, 3), 0.5, np.float32)) == 128).all()
    with pytest.raises(ValueError, match="image"):
        as_bgr_uint8(np.zeros((2, 2, 2), np.uint8))
