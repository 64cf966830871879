"""Input pipeline: samples from the tiny HDF5 file, determinism, tf.data and PyDataset batches, 2 replicas."""
import os
import subprocess
import sys
import textwrap

import cv2
import numpy as np
import pytest

from simplepose.bottomup import pipeline
from simplepose.config import Config
from simplepose.data import stream
from simplepose.data.hdf5 import HDF5Reader

CFG = Config().with_overrides(["data.input_size=128", "data.stride=8"])
GRID = 128 // 8


@pytest.fixture(scope="module")
def reader(tiny_hdf5):
    return HDF5Reader(tiny_hdf5)


def _stream(reader, k, cfg=CFG, train=True, seed=0):
    """Stream element ``k`` rendered alone: uint8 image, then the maps in TARGET_KEYS order."""
    stream = pipeline.SampleStream(reader, cfg, train, seed)
    return tuple(a[0] for a in stream.render(stream.elements(k, k + 1)))


def test_make_sample_shapes_and_dtypes(reader):
    sk = CFG.skeleton
    for train in (True, False):
        image, maps = pipeline.make_sample(reader, 1, stream.sample_rng(0, 0, 1), CFG, train)
        assert image.shape == (128, 128, 3) and image.dtype == np.float32 and 0 <= image.min() and image.max() <= 255
        assert maps["keypoints"].shape == (GRID, GRID, sk.num_keypoint_channels)
        assert maps["limbs"].shape == (GRID, GRID, sk.num_limbs) and maps["mask"].shape == (GRID, GRID, 1)
        assert all(m.dtype == np.float32 for m in maps.values())
        assert maps["keypoints"][..., :-1].max() > 0.5  # the main person is in the crop


def test_validation_centres_the_main_person(reader):
    """Validation: no randomness; main person's keypoints = (p - centre) * 0.6 S / height + (S - 1) / 2."""
    for index in range(min(len(reader), 6)):
        raw = reader.raw(index)
        sample = pipeline.augment_sample(reader, index, np.random.default_rng(123), CFG, train=False)
        again = pipeline.augment_sample(reader, index, np.random.default_rng(7), CFG, train=False)
        np.testing.assert_array_equal(sample.image, again.image)
        kp = CFG.skeleton.from_coco(raw.keypoints[:1])[0]
        s = 0.6 * 128 / raw.scale
        expected = (kp[:, :2] - raw.center) * s + 63.5
        labelled = kp[:, 2] > 0
        np.testing.assert_allclose(sample.keypoints[0, labelled, :2], expected[labelled], atol=1e-3)


def test_image_height_gives_every_sample_of_an_image_the_test_scale(reader):
    """With ``augment.image_height`` H the source image is H crop pixels high: scale H / image height, the
    same for every person of the image whatever their size, still centred on the main person."""
    cfg = CFG.with_overrides(["augment.image_height=100"])
    for index in range(min(len(reader), 6)):
        raw = reader.raw(index)
        sample = pipeline.augment_sample(reader, index, np.random.default_rng(0), cfg, train=False)
        kp = cfg.skeleton.from_coco(raw.keypoints)
        s = 100.0 / raw.height
        expected = (kp[..., :2] - raw.center) * s + 63.5
        labelled = kp[..., 2] > 0
        np.testing.assert_allclose(sample.keypoints[..., :2][labelled], expected[labelled], atol=1e-3)
    with pytest.raises(Exception, match="image_height"):
        CFG.with_overrides(["augment.image_height=-1"])


def test_reduced_decode_is_aligned_with_full_decode(reader):
    """A small target height forces a reduced decode; the crop must match the full decode's, unshifted.

    The two differ by resampling (a 1/r DCT decode vs bilinear over full pixels), so single shifts are
    noisy; a systematic offset (e.g. half a reduced pixel) would show in the mean.
    """
    cfg = CFG.with_overrides(["augment.target_dist=0.2"])
    full_cfg = cfg.with_overrides(["augment.reduced_decode=false"])
    shifts = []
    for index in range(len(reader)):
        fast = pipeline.augment_sample(reader, index, stream.sample_rng(0, 0, index), cfg, True)
        full = pipeline.augment_sample(reader, index, stream.sample_rng(0, 0, index), full_cfg, True)
        if fast.reduce == 1:
            continue
        np.testing.assert_array_equal(fast.keypoints, full.keypoints)
        np.testing.assert_array_equal(fast.mask, full.mask)
        a, b = (cv2.cvtColor(x.image, cv2.COLOR_BGR2GRAY).astype(np.float64) for x in (fast, full))
        shifts.append(cv2.phaseCorrelate(a, b)[0])
        assert np.abs(a - b).mean() < 3
    shifts = np.array(shifts)
    assert len(shifts) >= 4
    assert np.abs(shifts).max() < 0.5 and np.abs(shifts.mean(axis=0)).max() < 0.1, shifts


def test_stream_is_deterministic_and_differs_across_epochs_and_seeds(reader):
    n = len(reader)
    a, b = _stream(reader, 3), _stream(reader, 3)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    order0, order1 = (pipeline.SampleStream(reader, CFG, True, 0).order(e) for e in (0, 1))
    assert sorted(order0) == list(range(n)) and not np.array_equal(order0, order1)
    # the same sample in the next epoch gets a new draw
    k1 = n + int(np.flatnonzero(order1 == order0[3])[0])
    assert not np.array_equal(_stream(reader, 3)[0], _stream(reader, k1)[0])
    assert not np.array_equal(_stream(reader, 3)[0], _stream(reader, 3, seed=1)[0])


def test_epoch_order_groups_the_samples_of_an_image():
    images = np.array([0, 0, 0, 1, 2, 2, 3, 4, 4, 4, 4, 5])
    orders = [stream.epoch_order(0, epoch, images) for epoch in range(4)]
    for order in orders:
        assert sorted(order) == list(range(len(images)))
        runs = images[order][np.r_[True, np.diff(images[order]) != 0]]
        assert len(runs) == len(set(runs)) == 6  # each image's samples form one run
        for image in range(6):  # within a run, file order
            assert list(order[images[order] == image]) == list(np.flatnonzero(images == image))
    assert len({tuple(images[o][np.r_[True, np.diff(images[o]) != 0]]) for o in orders}) > 1  # images reshuffled
    plain = stream.epoch_order(0, 0, images, group_by_image=False)
    assert sorted(plain) == list(range(len(images)))


def test_samples_rendered_together_equal_samples_rendered_alone(reader):
    """A batch decodes each image once; every sample is still exactly what it is on its own."""
    images = reader.sample_images
    assert len(set(images)) < len(images), "the fixture needs images with several samples"
    for cfg in (CFG, CFG.with_overrides(["augment.target_dist=0.2"])):  # the second forces reduced decodes
        stream = pipeline.SampleStream(reader, cfg, True, 4)
        together = stream.batch(0, len(reader))
        assert together[0].dtype == np.uint8 and together[0].shape == (len(reader), 128, 128, 3)
        for k in range(len(reader)):
            for a, b in zip(together, _stream(reader, k, cfg=cfg, seed=4)):
                np.testing.assert_array_equal(a[k], b)


def test_tf_dataset_batches(tiny_hdf5, reader):
    import tensorflow as tf

    ds = pipeline.build_dataset(tiny_hdf5, CFG, train=True, global_batch_size=4, seed=5, num_workers=2)
    image, maps = next(iter(ds))
    assert image.shape == (4, 128, 128, 3) and image.dtype == tf.uint8
    assert set(maps) == {"keypoints", "limbs", "mask"}
    assert maps["keypoints"].shape == (4, GRID, GRID, CFG.skeleton.num_keypoint_channels)
    assert maps["limbs"].shape == (4, GRID, GRID, CFG.skeleton.num_limbs) and maps["mask"].shape == (4, GRID, GRID, 1)
    direct = [_stream(reader, k, seed=5) for k in range(4)]
    np.testing.assert_array_equal(image.numpy(), np.stack([d[0] for d in direct]))
    np.testing.assert_array_equal(maps["limbs"].numpy(), np.stack([d[2] for d in direct]))
    again = next(iter(pipeline.build_dataset(tiny_hdf5, CFG, train=True, global_batch_size=4, seed=5,
                                             num_workers=1)))
    np.testing.assert_array_equal(again[0].numpy(), image.numpy())  # independent of the worker count


def test_tf_dataset_validation_is_one_pass(tiny_hdf5, reader):
    ds = pipeline.build_dataset(tiny_hdf5, CFG, train=False, global_batch_size=5, num_workers=2)
    sizes = [int(image.shape[0]) for image, _ in ds]
    assert sum(sizes) == len(reader) and all(s == 5 for s in sizes[:-1])


def test_py_dataset_matches_tf_data(tiny_hdf5, reader):
    ds = pipeline.build_py_dataset(tiny_hdf5, CFG, train=True, batch_size=4, seed=5)
    assert len(ds) == len(reader) // 4
    image, maps = ds[0]
    assert image.dtype == np.uint8 and image.shape == (4, 128, 128, 3)
    tf_batches = iter(pipeline.build_dataset(tiny_hdf5, CFG, train=True, global_batch_size=4, seed=5,
                                             num_workers=1))
    tf_image, tf_maps = next(tf_batches)
    np.testing.assert_array_equal(image, tf_image.numpy())
    np.testing.assert_array_equal(maps["keypoints"], tf_maps["keypoints"].numpy())
    ds.on_epoch_end()  # epoch 1 batch 0 is stream batch len(ds)
    for _ in range(len(ds) - 1):
        next(tf_batches)
    np.testing.assert_array_equal(ds[0][0], next(tf_batches)[0].numpy())
    val = pipeline.build_py_dataset(tiny_hdf5, CFG, train=False, batch_size=5)
    assert sum(len(val[i][0]) for i in range(len(val))) == len(reader)
    with pytest.raises(IndexError):
        val[len(val)]


@pytest.mark.slow
def test_global_batch_splits_over_two_replicas(tiny_hdf5):
    """Under MirroredStrategy on two logical CPUs each replica gets half of the same global batch."""
    script = textwrap.dedent(f"""
        import numpy as np, tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        from simplepose.config import Config
        from simplepose.bottomup.pipeline import build_dataset
        cfg = Config().with_overrides(["data.input_size=64"])
        ds = build_dataset({str(tiny_hdf5)!r}, cfg, train=True, global_batch_size=4, seed=3, num_workers=2)
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        image, maps = next(iter(strategy.experimental_distribute_dataset(ds)))
        parts = strategy.experimental_local_results(image)
        assert len(parts) == 2 and all(p.shape == (2, 64, 64, 3) for p in parts), [p.shape for p in parts]
        limbs = strategy.experimental_local_results(maps["limbs"])
        whole_image, whole_maps = next(iter(ds))
        np.testing.assert_array_equal(np.concatenate([p.numpy() for p in parts]), whole_image.numpy())
        np.testing.assert_array_equal(np.concatenate([p.numpy() for p in limbs]), whole_maps["limbs"].numpy())
        per_replica = strategy.distribute_datasets_from_function(
            lambda ctx: build_dataset({str(tiny_hdf5)!r}, cfg, train=True, global_batch_size=4, seed=3,
                                      num_workers=1, input_context=ctx))
        image, _ = next(iter(per_replica))
        assert all(p.shape == (2, 64, 64, 3) for p in strategy.experimental_local_results(image))
        print("REPLICAS-OK")
    """)
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=240)
    assert "REPLICAS-OK" in result.stdout, result.stderr[-3000:]


def test_show_writes_pngs(tiny_hdf5, tmp_path):
    from simplepose.commands import show

    assert show.main([str(tiny_hdf5), "--out", str(tmp_path), "-n", "2", "--set", "data.input_size=128"]) == 0
    files = sorted(tmp_path.glob("*.png"))
    assert len(files) == 2
    assert cv2.imread(str(files[0])).shape[1:] == (4 * 128, 3) and cv2.imread(str(files[0])).shape[0] > 128
    assert show.main([str(tmp_path / "missing.h5"), "--out", str(tmp_path)]) == 2


def test_py_dataset_under_jax_does_not_need_tensorflow(tiny_hdf5):
    pytest.importorskip("jax")
    script = textwrap.dedent(f"""
        import sys
        import keras
        from simplepose.config import Config
        from simplepose.bottomup import pipeline
        assert keras.backend.backend() == "jax"
        ds = pipeline.build_py_dataset({str(tiny_hdf5)!r}, Config().with_overrides(["data.input_size=64"]), train=True,
                                  batch_size=2)
        image, maps = ds[0]
        assert image.shape == (2, 64, 64, 3) and maps["limbs"].shape[:3] == (2, 8, 8)
        assert "tensorflow" not in sys.modules
        print("JAX-OK")
    """)
    env = dict(os.environ, KERAS_BACKEND="jax", CUDA_VISIBLE_DEVICES="")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=240)
    assert "JAX-OK" in result.stdout, result.stderr[-3000:]
