"""Top-down data: box geometry, crop affine, augmentation draws, targets, samples and the tf.data pipeline."""
import json
import math

import numpy as np
import pytest
from pycocotools.coco import COCO

from simplepose.config import load_config
from simplepose.data.augment import AugmentParams
from simplepose.decode.topdown import crop_to_image
from simplepose.topdown.data import (CropStream, PersonInstance, TopDownSamples, box_to_center_size,
                                     build_topdown_dataset, clean_box, crop_matrix, draw_augmentation,
                                     load_person_instances, make_sample, render_heatmaps, samples_from_config,
                                     topdown_py_dataset)
from simplepose.topdown.method import heatmap_stride
from simplepose.pose import cell_to_pixel
from simplepose.skeleton import get_skeleton

SK = get_skeleton("coco17")


def test_box_grows_to_aspect_then_enlarges():
    center, size = box_to_center_size([10, 20, 30, 100], 0.75, 1.25)  # too narrow: width grows to 75
    np.testing.assert_allclose(center, [25, 70])
    np.testing.assert_allclose(size, [75 * 1.25, 100 * 1.25])
    _, size = box_to_center_size([0, 0, 90, 40], 0.75, 1.25)  # too wide: height grows to 120
    np.testing.assert_allclose(size, [90 * 1.25, 120 * 1.25])


def test_clean_box_clips_and_rejects_empty():
    np.testing.assert_allclose(clean_box([-5, 10, 50, 300], 40, 100), [0, 10, 39, 89])
    assert clean_box([50, 10, 20, 20], 40, 100) is None


def test_crop_matrix_geometry():
    m = crop_matrix([100, 50], 96.0, (256, 192))
    np.testing.assert_allclose(m @ [100, 50, 1], [95.5, 127.5])  # centre to the crop centre (pixel centres)
    np.testing.assert_allclose(m @ [148, 50, 1] - m @ [52, 50, 1], [192, 0])  # box width to crop width
    rot = crop_matrix([100, 50], 96.0, (256, 192), angle=90)
    # Positive angles turn the content counter-clockwise on screen: a point right of the centre goes up.
    np.testing.assert_allclose(rot @ [110, 50, 1], [95.5, 127.5 - 20], atol=1e-9)
    flip = crop_matrix([100, 50], 96.0, (256, 192), flip=True)
    np.testing.assert_allclose(flip @ [110, 50, 1], [191 - (m @ [110, 50, 1])[0], (m @ [110, 50, 1])[1]])


@pytest.mark.parametrize("angle,flip", [(0.0, False), (33.0, False), (-20.0, True)])
def test_crop_round_trip_is_exact(angle, flip):
    m = crop_matrix([321.7, 140.2], 87.3, (256, 192), angle, flip)
    pts = np.random.default_rng(0).uniform(0, 400, (1, 17, 2))
    crop = np.einsum("ij,bkj->bki", m[:, :2], pts) + m[:, 2]
    np.testing.assert_allclose(crop_to_image(crop, m[None]), pts, atol=1e-3)


def test_augmentation_draws_follow_the_ranges():
    rng = np.random.default_rng(1)
    draws = [draw_augmentation(rng) for _ in range(4000)]
    scales = np.array([d.scale for d in draws])
    angles = np.array([d.angle for d in draws])
    assert scales.min() >= 0.7 and scales.max() <= 1.3 and abs(scales.mean() - 1) < 0.02
    assert np.abs(angles).max() <= 40.0 and abs((angles != 0).mean() - 0.6) < 0.03
    assert abs(np.mean([d.flip for d in draws]) - 0.5) < 0.03
    assert all(d == AugmentParams(d.scale) for d in (draw_augmentation(rng, 0.3, 0.0, 40, 0.0) for _ in range(20)))


def test_render_heatmaps_peak_weights_and_scale():
    kp = np.array([[cell_to_pixel(10, 4), cell_to_pixel(20, 4), 2],  # on cell (20, 10)
                   [50, 60, 0],  # not labelled
                   [200, 60, 2],  # outside a 192-wide crop
                   [cell_to_pixel(3.5, 4), cell_to_pixel(7, 4), 1]], np.float32)  # occluded: supervised
    maps, weights = render_heatmaps(kp, (64, 48), (256, 192), stride=4, sigma=2.0)
    assert maps.shape == (64, 48, 4) and maps.dtype == np.float32
    np.testing.assert_array_equal(weights, [1, 0, 0, 1])
    assert maps[20, 10, 0] == pytest.approx(1.0) and maps[..., 0].max() == maps[20, 10, 0]
    assert maps[20, 11, 0] == pytest.approx(math.exp(-1 / 8))
    assert not maps[..., 1].any() and not maps[..., 2].any()
    # Sub-cell positions are kept: halfway between columns 3 and 4 both get the same value.
    assert maps[7, 3, 3] == pytest.approx(maps[7, 4, 3]) == pytest.approx(math.exp(-0.25 / 8))
    # A zero prediction costs ~ pi sigma^2 / (h w) per supervised channel (spec's 266 / 255**2).
    zero_loss = (weights * maps ** 2).sum() / maps.size
    assert zero_loss == pytest.approx(2 * math.pi * 4 / (64 * 48 * 4), rel=1e-3)


@pytest.mark.parametrize("params", [AugmentParams(), AugmentParams(scale=1.2, angle=25.0, flip=True)])
def test_single_pixel_sample_keeps_image_keypoints_and_targets_together(params):
    image = np.zeros((300, 400, 3), np.uint8)
    kp = np.zeros((17, 3), np.float32)
    kp[9] = (150, 120, 2)  # left wrist
    image[120, 150] = 255
    inst = PersonInstance(1, "", np.array([100, 60, 120, 160], np.float32), kp)
    crop, maps, weights, m = make_sample(image, inst, (256, 192), params, SK.keypoint_flip)
    k = int(SK.keypoint_flip[9]) if params.flip else 9  # a mirrored left wrist is a right wrist
    np.testing.assert_array_equal(np.flatnonzero(weights), [k])
    y, x = np.unravel_index(crop[..., 0].argmax(), crop.shape[:2])
    expected = m @ [150, 120, 1]
    assert abs(x - expected[0]) <= 1 and abs(y - expected[1]) <= 1
    r, c = np.unravel_index(maps[..., k].argmax(), maps.shape[:2])
    assert abs(cell_to_pixel(c, 4) - expected[0]) <= 2 and abs(cell_to_pixel(r, 4) - expected[1]) <= 2


def test_load_instances_training_filter(synthetic_coco):
    with open(synthetic_coco.ann_file) as f:
        anns = json.load(f)["annotations"]
    coco = COCO(str(synthetic_coco.ann_file))
    train = load_person_instances(coco, synthetic_coco.image_dir, SK, training=True)
    boxes = load_person_instances(coco, synthetic_coco.image_dir, SK, training=False)
    assert len(train) == sum(1 for a in anns if not a["iscrowd"] and a["num_keypoints"] > 0)
    assert len(boxes) == sum(1 for a in anns if not a["iscrowd"])
    assert all((i.keypoints[:, 2] > 0).any() for i in train)


def test_dataset_batches_match_direct_samples(synthetic_coco):
    cfg = load_config("configs/topdown_tiny.yaml")
    samples = samples_from_config(cfg, synthetic_coco.ann_file, synthetic_coco.image_dir, training=False)
    assert heatmap_stride(cfg.topdown.num_deconv) == cfg.data.stride == samples.stride == 4
    crops, y, w = next(iter(build_topdown_dataset(samples, 3, training=False)))
    assert tuple(crops.shape) == (3, 128, 96, 3) and crops.dtype.name == "uint8"
    assert tuple(y["heatmaps"].shape) == (3, 32, 24, 17) and tuple(w["heatmaps"].shape) == (3, 1, 1, 17)
    for i in range(3):
        crop, direct = samples.get(i)
        np.testing.assert_array_equal(crops[i].numpy(), crop)
        np.testing.assert_array_equal(y["heatmaps"][i].numpy(), direct["heatmaps"])
        np.testing.assert_array_equal(w["heatmaps"][i].numpy(), direct["weights"])


def test_training_stream_is_reproducible_augments_and_seeds_per_sample(synthetic_coco):
    """One seeding scheme for both methods: a crop's draw depends on (seed, epoch, index) only."""
    cfg = load_config("configs/topdown_tiny.yaml")
    samples = samples_from_config(cfg, synthetic_coco.ann_file, synthetic_coco.image_dir, training=True)
    first = [next(iter(build_topdown_dataset(samples, 4, training=True, seed=5)))[0].numpy() for _ in range(2)]
    np.testing.assert_array_equal(first[0], first[1])
    plain = TopDownSamples(samples.instances, SK, (128, 96))
    assert not any(np.array_equal(first[0][0], plain.get(i)[0]) for i in range(len(plain)))
    stream = CropStream(samples, train=True, seed=5)
    (epoch, index), = stream.elements(1, 2)
    alone = stream.render([(epoch, index)])[0][0]
    np.testing.assert_array_equal(first[0][1], alone)  # rendered alone = rendered in its batch
    grouped = CropStream(samples, train=True, seed=5, group_by_image=True)
    order = grouped.order(0)
    images = samples.sample_images[order]
    assert (np.diff(images) != 0).sum() == len(set(images)) - 1  # an image's crops come together


def test_py_dataset_matches_tf_data(synthetic_coco):
    cfg = load_config("configs/topdown_tiny.yaml")
    for training in (False, True):
        samples = samples_from_config(cfg, synthetic_coco.ann_file, synthetic_coco.image_dir, training=training)
        py = topdown_py_dataset(samples, 4, training=training, seed=1)
        assert len(py) == (len(samples) // 4 if training else -(-len(samples) // 4))
        tf_batches = list(build_topdown_dataset(samples, 4, training=training, seed=1).take(2))
        for i in range(2):
            for a, b in zip(py[i], tf_batches[i]):
                for key in (a if isinstance(a, dict) else [None]):
                    np.testing.assert_array_equal(a[key] if key else a, (b[key] if key else b).numpy())
    first = py[0][0]
    np.testing.assert_array_equal(first, py[0][0])  # reproducible within an epoch
    py.on_epoch_end()
    assert not np.array_equal(first, py[0][0])  # a new order and new draws next epoch


def test_dataset_trains_with_keras_fit(synthetic_coco):
    import keras

    from simplepose.losses import VisibilityWeightedMSE
    from simplepose.methods import build_model
    from simplepose.optimizers import build_topdown_optimizer

    cfg = load_config("configs/topdown_tiny.yaml", ["topdown.attention=none", "train.learning_rate=0.01"])
    samples = samples_from_config(cfg, synthetic_coco.ann_file, synthetic_coco.image_dir, training=True)
    ds = build_topdown_dataset(samples, 4, training=True)
    x, y, w = next(iter(ds))
    assert set(y) == {"heatmaps"} and set(w) == {"heatmaps"} and tuple(w["heatmaps"].shape) == (4, 1, 1, 17)
    keras.utils.set_random_seed(0)
    model = build_model(cfg)
    model.compile(optimizer=build_topdown_optimizer(0.01, steps_per_epoch=2),
                  loss={"heatmaps": VisibilityWeightedMSE()}, run_eagerly=True)
    history = model.fit(ds.take(2), epochs=1, verbose=0, shuffle=False)
    assert np.isfinite(history.history["loss"][0])
    assert float(model.optimizer.learning_rate) == pytest.approx(0.01)
