"""Training input pipeline: HDF5 samples -> augmented crops and targets -> batches (tf.data or PyDataset)."""
from __future__ import annotations

import dataclasses
import functools
import logging
import math
import os
import time

import numpy as np

from simplepose.data import augment
from simplepose.data.hdf5 import HDF5Reader, decode_image, decode_mask
from simplepose.data.targets import render_targets

LOG = logging.getLogger(__name__)

#: Order of the target maps in the flat tuples passed between threads.
TARGET_KEYS = ("keypoints", "limbs", "mask")


@dataclasses.dataclass
class AugmentedSample:
    """One augmented sample before target rendering.

    Attributes:
        image: uint8 ``(S, S, 3)`` BGR crop. mask: float32 ``(S/s, S/s)`` soft loss mask on the output grid.
        keypoints: float32 ``(N, K, 3)`` all people in crop pixels, skeleton order (main person first).
        params: the augmentation draw. reduce: the JPEG decode reduction used.
    """

    image: np.ndarray
    mask: np.ndarray
    keypoints: np.ndarray
    params: augment.AugmentParams
    reduce: int


def sample_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The generator of one sample's augmentation draw.

    Seeding every sample by ``(seed, epoch, index)`` makes a stream reproducible whatever the number of
    workers or their scheduling, and different from epoch to epoch.
    """
    return np.random.default_rng([int(seed), int(epoch), int(index)])


@functools.lru_cache(maxsize=4)
def epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    """The shuffled sample order of one training epoch (read-only; cached, threads share it)."""
    order = np.random.default_rng([int(seed), int(epoch), n]).permutation(n)
    order.setflags(write=False)
    return order


def augment_sample(reader, index: int, rng: np.random.Generator, cfg, train: bool,
                   timings: dict | None = None) -> AugmentedSample:
    """Read sample ``index`` and apply one augmentation draw (deterministic centring when not training).

    Geometry is built at full resolution. The JPEG is decoded at the largest reduction 1/r that leaves the
    crop's scale at or below 1 (the warp would discard the resolution anyway), and the image warp is
    composed with the reduced-to-full pixel map, so the result matches a full decode up to resampling.
    The mask is decoded at full resolution (a small PNG), and not at all when the image has none.
    ``timings``, when given, accumulates this thread's CPU seconds per stage (``read``, ``decode``, ``warp``,
    ``colour``): the work done, not time spent waiting for a core on a busy machine.
    """
    clock = _Clock(timings)
    params = augment.draw_params(rng, cfg.augment, train)
    a, size, skeleton = cfg.augment, cfg.data.input_size, cfg.skeleton
    raw = reader.raw(index)
    clock.lap("read")
    height = raw.scale if raw.scale > 0 else max(raw.height, raw.width) * a.target_dist
    matrix = augment.affine_matrix(raw.center, height, params, size, a.target_dist)
    reduce = 1
    if a.reduced_decode:
        reduce = augment.choose_reduction(augment.crop_scale(height, params, size, a.target_dist))
    image = decode_image(raw.encoded, reduce)
    mask = decode_mask(raw.mask_png, raw.height, raw.width) if raw.mask_png else None
    clock.lap("decode")
    flip_perm = skeleton.keypoint_flip if params.flip else None
    image, mask, keypoints = augment.warp(image, mask, skeleton.from_coco(raw.keypoints), matrix, size,
                                          cfg.data.stride, flip_perm, a.interpolation,
                                          image_matrix=matrix @ augment.unreduce_matrix(reduce))
    clock.lap("warp")
    if params.hsv is not None:  # on the crop, usually smaller than the source; the grey border is tinted too
        image = augment.color_jitter(image, params.hsv)
    clock.lap("colour")
    return AugmentedSample(image=image, mask=mask, keypoints=keypoints, params=params, reduce=reduce)


class _Clock:
    """Adds the thread CPU seconds since the previous lap to ``timings[name]`` (no-op without a dict)."""

    def __init__(self, timings):
        self.timings, self.last = timings, time.thread_time()

    def lap(self, name):
        if self.timings is not None:
            now = time.thread_time()
            self.timings[name] = self.timings.get(name, 0.0) + now - self.last
            self.last = now


def sample_targets(sample: AugmentedSample, cfg) -> dict:
    """Render the targets of an augmented sample (see ``simplepose.data.targets.render_targets``)."""
    t, grid = cfg.targets, cfg.data.input_size // cfg.data.stride
    return render_targets(sample.keypoints, sample.mask, cfg.skeleton, (grid, grid), cfg.data.stride,
                          t.keypoint_sigma, t.limb_sigma, t.threshold, t.limb_shape)


def make_sample(reader, index: int, rng: np.random.Generator, cfg, train: bool):
    """One training (or validation) example.

    Returns:
        ``(image, targets)``: float32 BGR 0..255 crop and ``{"keypoints", "limbs", "mask"}`` maps.

    Shapes: image ``(S, S, 3)``; targets ``(S/s, S/s, K+1)``, ``(S/s, S/s, L)``, ``(S/s, S/s, 1)``.
    """
    sample = augment_sample(reader, index, rng, cfg, train)
    return sample.image.astype(np.float32), sample_targets(sample, cfg)


def _stream_arrays(reader, cfg, train: bool, seed: int, k: int):
    """Element ``k`` of the stream as a flat tuple: uint8 image, then the maps in ``TARGET_KEYS`` order."""
    n = len(reader)
    epoch, position = divmod(int(k), n)
    index = int(epoch_order(seed, epoch, n)[position]) if train else position
    sample = augment_sample(reader, index, sample_rng(seed, epoch, index), cfg, train)
    targets = sample_targets(sample, cfg)
    return (sample.image,) + tuple(targets[key] for key in TARGET_KEYS)


def _map_shapes(cfg):
    grid, sk = cfg.data.input_size // cfg.data.stride, cfg.skeleton
    return {"keypoints": (grid, grid, sk.num_keypoint_channels), "limbs": (grid, grid, sk.num_limbs),
            "mask": (grid, grid, 1)}


def build_dataset(path, cfg, *, train: bool, global_batch_size: int, seed: int = 0, num_workers=None,
                  input_context=None):
    """A ``tf.data.Dataset`` of ``(image, {"keypoints", "limbs", "mask"})`` batches of the global batch size.

    Training streams forever (a new shuffled order and new augmentation draws every epoch) and drops
    no data within an epoch but batches across epoch boundaries; validation is one deterministic pass
    with a final partial batch. Under ``tf.distribute``, ``strategy.experimental_distribute_dataset``
    splits each global batch over the replicas; or pass ``input_context`` from
    ``strategy.distribute_datasets_from_function`` to get per-replica batches from a disjoint share of
    the stream per input pipeline (no sample is rendered and then discarded, as auto-sharding would).

    Args:
        path: HDF5 file prepared by ``training/coco_masks_hdf5.py``.
        cfg: the whole ``Config`` (data, augment and targets sections are used).
        train: augment and repeat (True) or centre and stop after one pass (False).
        global_batch_size: examples per batch, over all replicas.
        seed: stream seed (>= 0).
        num_workers: parallel sample threads; None = ``cfg.data.workers``, 0 = one per CPU core.
        input_context: a ``tf.distribute.InputContext``, or None.

    Shapes: image ``(B, S, S, 3)`` float32 BGR 0..255; maps as in :func:`make_sample` with a batch axis.

    The per-sample work runs in ``tf.numpy_function`` on ``num_workers`` threads; its heavy parts (OpenCV,
    nogil numba kernels) release the GIL. TensorFlow is imported here only.
    """
    import tensorflow as tf

    reader = HDF5Reader(path)
    if len(reader) == 0:
        raise ValueError(f"{path}: no samples")
    workers = _resolve_workers(cfg.data.workers if num_workers is None else num_workers)
    produce = functools.partial(_stream_arrays, reader, cfg, train, int(seed))
    shapes = _map_shapes(cfg)
    size = cfg.data.input_size

    @tf.autograph.experimental.do_not_convert
    def load(k):
        out = tf.numpy_function(lambda i: produce(int(i)), [k], [tf.uint8] + [tf.float32] * len(TARGET_KEYS),
                                stateful=False)
        image = tf.ensure_shape(out[0], (size, size, 3))
        return image, {key: tf.ensure_shape(t, shapes[key]) for key, t in zip(TARGET_KEYS, out[1:])}

    @tf.autograph.experimental.do_not_convert
    def to_float(image, maps):
        return tf.cast(image, tf.float32), maps

    ds = tf.data.Dataset.range(np.iinfo(np.int64).max if train else len(reader))
    batch_size = global_batch_size
    if input_context is not None:
        ds = ds.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
        batch_size = input_context.get_per_replica_batch_size(global_batch_size)
    ds = ds.map(load, num_parallel_calls=workers, deterministic=True)
    ds = ds.batch(batch_size, drop_remainder=train)
    ds = ds.map(to_float)
    LOG.info("input pipeline: %s, %d samples, %d workers, global batch %d, %s",
             path, len(reader), workers, global_batch_size, "train" if train else "eval")
    return ds.prefetch(cfg.data.prefetch)


def _resolve_workers(workers: int) -> int:
    return int(workers) if workers and workers > 0 else (os.cpu_count() or 1)


def _stack_batch(items):
    """Flat per-sample tuples -> ``(float32 images, maps dict)``; the images are converted while copied."""
    first = items[0][0]
    images = np.empty((len(items),) + first.shape, np.float32)
    for i, item in enumerate(items):
        images[i] = item[0]
    return images, {key: np.stack([item[1 + i] for item in items]) for i, key in enumerate(TARGET_KEYS)}


@functools.cache
def _pose_dataset_class():
    import keras

    class PoseDataset(keras.utils.PyDataset):
        """Batches for backends without tf.data, with the same content as :func:`build_dataset`.

        Epoch ``e``'s batch ``i`` holds stream elements ``e * len * B + i * B ...``; training uses
        ``len(dataset) = max(1, n // B)`` batches per epoch, validation ``ceil(n / B)`` (last one partial).

        Args:
            path, cfg, train, seed: as for :func:`build_dataset`.
            batch_size: examples per batch.
            workers, use_multiprocessing, max_queue_size: ``keras.utils.PyDataset`` options.
        """

        def __init__(self, path, cfg, *, train: bool, batch_size: int, seed: int = 0, workers: int = 1,
                     use_multiprocessing: bool = False, max_queue_size: int = 10):
            super().__init__(workers=workers, use_multiprocessing=use_multiprocessing, max_queue_size=max_queue_size)
            self.reader, self.cfg, self.train = HDF5Reader(path), cfg, train
            self.batch_size, self.seed, self.epoch = int(batch_size), int(seed), 0
            self.num_samples = len(self.reader)

        def __len__(self):
            n, b = self.num_samples, self.batch_size
            return max(1, n // b) if self.train else math.ceil(n / b)

        def __getitem__(self, i):
            if not 0 <= i < len(self):
                raise IndexError(f"batch {i} out of range for {len(self)} batches")
            b = self.batch_size
            start = (self.epoch * len(self) + i) * b if self.train else i * b
            stop = start + b if self.train else min(start + b, self.num_samples)
            return _stack_batch([_stream_arrays(self.reader, self.cfg, self.train, self.seed, k)
                                 for k in range(start, stop)])

        def on_epoch_end(self):
            self.epoch += 1

    PoseDataset.__module__, PoseDataset.__qualname__ = __name__, "PoseDataset"
    return PoseDataset


def __getattr__(name):
    if name == "PoseDataset":
        return _pose_dataset_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
