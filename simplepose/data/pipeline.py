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
from simplepose.data.codecs import decode_image, decode_mask
from simplepose.data.hdf5 import HDF5Reader
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
    workers, their scheduling or the samples it is rendered with, and different every epoch.
    """
    return np.random.default_rng([int(seed), int(epoch), int(index)])


def epoch_order(seed: int, epoch: int, sample_images: np.ndarray, group_by_image: bool = True) -> np.ndarray:
    """The sample order of one training epoch.

    With ``group_by_image`` the images come in random order and the samples of each image (one per main
    person) follow each other, in file order, so an image is decoded once for all of them (coco-mini
    train: 2.6 samples per image); otherwise a plain random permutation of the samples.

    Args:
        sample_images: image row of every sample (``HDF5Reader.sample_images``).

    Shapes: ``(S,)`` -> ``(S,)`` int64, a permutation of ``range(S)``.
    """
    n = len(sample_images)
    rng = np.random.default_rng([int(seed), int(epoch), n])
    if not group_by_image:
        return rng.permutation(n)
    by_image = np.argsort(sample_images, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(sample_images[by_image]) != 0])
    groups = np.split(by_image, starts[1:])
    return np.concatenate([groups[g] for g in rng.permutation(len(groups))])


def augment_sample(reader, index: int, rng: np.random.Generator, cfg, train: bool,
                   timings: dict | None = None, decoded: dict | None = None) -> AugmentedSample:
    """Read sample ``index`` and apply one augmentation draw (deterministic centring when not training).

    Geometry is built at full resolution. The JPEG is decoded at the largest reduction 1/r that leaves the
    crop's scale at or below 1 (the warp would discard the resolution anyway), and the image warp is
    composed with the reduced-to-full pixel map, so the result matches a full decode up to resampling.
    The mask is decoded at full resolution, and not at all when the image has none.

    Args:
        timings: when given, accumulates this thread's CPU seconds per stage (``read``, ``decode``, ``warp``,
            ``colour``): the work done, not time spent waiting for a core on a busy machine.
        decoded: a dict shared by the samples rendered together (a batch): each image is
            decoded once per reduction and each mask once. The result does not depend on it.
    """
    clock = _Clock(timings)
    decoded = {} if decoded is None else decoded
    params = augment.draw_params(rng, cfg.augment, train)
    a, size, skeleton = cfg.augment, cfg.data.input_size, cfg.skeleton
    raw = reader.raw(index)
    clock.lap("read")
    height = raw.scale if raw.scale > 0 else max(raw.height, raw.width) * a.target_dist
    matrix = augment.affine_matrix(raw.center, height, params, size, a.target_dist)
    reduce = 1
    if a.reduced_decode:
        reduce = augment.choose_reduction(augment.crop_scale(height, params, size, a.target_dist))
    image = _once(decoded, ("image", raw.image_row, reduce), lambda: decode_image(raw.encoded, reduce))
    mask = None  # all supervised
    if raw.mask:
        mask = _once(decoded, ("mask", raw.image_row), lambda: decode_mask(raw.mask, raw.height, raw.width))
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


def _once(cache: dict, key, make):
    """``cache[key]``, made by ``make()`` on first use."""
    if key not in cache:
        cache[key] = make()
    return cache[key]


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


class SampleStream:
    """The samples a run consumes, in order, and their rendering: what ``build_dataset`` and ``PoseDataset``
    both deliver, so their batches are equal.

    Training: element ``k`` is sample ``order(epoch)[position]``, ``(epoch, position) = divmod(k, n)``, drawn
    with ``sample_rng(seed, epoch, index)``; the stream never ends and a new order starts every epoch.
    Validation: one pass in file order, no randomness. A batch is rendered together, by one worker, so that
    samples of one image next to each other decode it once.

    Args:
        reader: an ``HDF5Reader``. cfg: the whole ``Config``. train: augment and repeat, or one clean pass.
        seed: stream seed (>= 0).
    """

    def __init__(self, reader, cfg, train: bool, seed: int = 0):
        self.reader, self.cfg, self.train, self.seed = reader, cfg, bool(train), int(seed)
        self.num_samples = len(reader)
        self._orders = functools.lru_cache(maxsize=4)(self._order)

    def _order(self, epoch: int) -> np.ndarray:
        if not self.train:
            order = np.arange(self.num_samples)
        else:
            order = epoch_order(self.seed, epoch, self.reader.sample_images, self.cfg.data.group_by_image)
        order.setflags(write=False)
        return order

    def order(self, epoch: int) -> np.ndarray:
        """Sample indices of one epoch, in stream order (read-only; cached, threads share it)."""
        return self._orders(int(epoch))

    def elements(self, start: int, stop: int) -> list:
        """``(epoch, sample index)`` of stream elements ``start .. stop - 1``."""
        n, out = self.num_samples, []
        for k in range(int(start), int(stop)):
            epoch, position = divmod(k, n)
            out.append((epoch, int(self.order(epoch)[position])))
        return out

    def batch(self, i: int, batch_size: int, timings: dict | None = None) -> tuple:
        """Batch ``i``: elements ``i * B`` to ``(i + 1) * B - 1`` (fewer at the end of a validation pass).

        See :meth:`render` for the returned arrays.
        """
        start = int(i) * batch_size
        stop = start + batch_size if self.train else min(start + batch_size, self.num_samples)
        return self.render(self.elements(start, stop), timings)

    def render(self, elements, timings: dict | None = None) -> tuple:
        """Augment and render ``elements`` together (a batch): an image is decoded once for all its samples.

        Returns:
            A flat tuple: uint8 images ``(k, S, S, 3)``, then the maps in ``TARGET_KEYS`` order ``(k, ...)``.
        """
        decoded, images, maps = {}, [], []
        for epoch, index in elements:
            sample = augment_sample(self.reader, index, sample_rng(self.seed, epoch, index), self.cfg, self.train,
                                    timings, decoded)
            clock = _Clock(timings)
            targets = sample_targets(sample, self.cfg)
            clock.lap("targets")
            images.append(sample.image)
            maps.append(tuple(targets[key] for key in TARGET_KEYS))
        clock = _Clock(timings)
        out = (np.stack(images),) + tuple(np.stack(m) for m in zip(*maps))
        clock.lap("batching")
        return out


def _map_shapes(cfg):
    grid, sk = cfg.data.input_size // cfg.data.stride, cfg.skeleton
    return {"keypoints": (grid, grid, sk.num_keypoint_channels), "limbs": (grid, grid, sk.num_limbs),
            "mask": (grid, grid, 1)}


def build_dataset(path, cfg, *, train: bool, global_batch_size: int, seed: int = 0, num_workers=None,
                  input_context=None):
    """A ``tf.data.Dataset`` of ``(image, {"keypoints", "limbs", "mask"})`` batches of the global batch size.

    The elements are :class:`SampleStream`'s. Training streams forever (a new order and new augmentation
    draws every epoch) and drops no data within an epoch but batches across epoch boundaries; validation is
    one deterministic pass with a final partial batch. Under ``tf.distribute``,
    ``strategy.experimental_distribute_dataset`` splits each global batch over the replicas; or pass
    ``input_context`` from ``strategy.distribute_datasets_from_function`` to get per-replica batches from a
    disjoint share of the batches per input pipeline (no sample is rendered and then discarded, as
    auto-sharding would).

    Images are delivered as uint8: the model's input converts them to float32 on the accelerator, which
    saves the host a float copy per sample (~1 ms of a 368 px crop) and 3/4 of the transfer.

    Args:
        path: HDF5 file prepared by ``training/coco_masks_hdf5.py``.
        cfg: the whole ``Config`` (data, augment and targets sections are used).
        train: augment and repeat (True) or centre and stop after one pass (False).
        global_batch_size: examples per batch, over all replicas.
        seed: stream seed (>= 0).
        num_workers: threads rendering batches; None = ``cfg.data.workers``, 0 = one per CPU core.
        input_context: a ``tf.distribute.InputContext``, or None.

    Shapes: image ``(B, S, S, 3)`` uint8 BGR; maps as in :func:`make_sample` with a batch axis.

    Each batch is rendered by one ``tf.numpy_function`` call (:meth:`SampleStream.render`), ``num_workers``
    batches at a time on threads; the heavy parts (OpenCV, nogil numba kernels) release the GIL. TensorFlow
    is imported here only.
    """
    import tensorflow as tf

    reader = HDF5Reader(path)
    if len(reader) == 0:
        raise ValueError(f"{path}: no samples")
    workers = _resolve_workers(cfg.data.workers if num_workers is None else num_workers)
    stream = SampleStream(reader, cfg, train, seed)
    batch_size = global_batch_size
    if input_context is not None:
        batch_size = input_context.get_per_replica_batch_size(global_batch_size)
    n, size, shapes = len(reader), cfg.data.input_size, _map_shapes(cfg)
    rows = batch_size if train else None  # training batches are all full; the last validation batch is not

    @tf.autograph.experimental.do_not_convert
    def load(i):
        out = tf.numpy_function(lambda j: stream.batch(j, batch_size), [i],
                                [tf.uint8] + [tf.float32] * len(TARGET_KEYS), stateful=False)
        image = tf.ensure_shape(out[0], (rows, size, size, 3))
        return image, {key: tf.ensure_shape(t, (rows,) + shapes[key]) for key, t in zip(TARGET_KEYS, out[1:])}

    ds = tf.data.Dataset.range(np.iinfo(np.int64).max if train else math.ceil(n / batch_size))
    if input_context is not None:  # pipeline p renders batches p, p + P, ... of the per-replica size
        ds = ds.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
    ds = ds.map(load, num_parallel_calls=workers, deterministic=True)
    LOG.info("input pipeline: %s, %d samples, %d workers, batch %d%s, %s", path, n, workers, batch_size,
             "" if batch_size == global_batch_size else f" per replica (global {global_batch_size})",
             "train" if train else "eval")
    return ds.prefetch(cfg.data.prefetch)


def _resolve_workers(workers: int) -> int:
    return int(workers) if workers and workers > 0 else (os.cpu_count() or 1)


@functools.cache
def _pose_dataset_class():
    import keras

    class PoseDataset(keras.utils.PyDataset):
        """Batches for backends without tf.data, with the same content as :func:`build_dataset`.

        Epoch ``e``'s batch ``i`` holds :class:`SampleStream` elements ``e * len * B + i * B ...``; training
        uses ``len(dataset) = max(1, n // B)`` batches per epoch, validation ``ceil(n / B)`` (last one
        partial). A batch is rendered together (images decoded once); images are uint8.

        Args:
            path, cfg, train, seed: as for :func:`build_dataset`.
            batch_size: examples per batch.
            workers, use_multiprocessing, max_queue_size: ``keras.utils.PyDataset`` options.
        """

        def __init__(self, path, cfg, *, train: bool, batch_size: int, seed: int = 0, workers: int = 1,
                     use_multiprocessing: bool = False, max_queue_size: int = 10):
            super().__init__(workers=workers, use_multiprocessing=use_multiprocessing, max_queue_size=max_queue_size)
            self.stream = SampleStream(HDF5Reader(path), cfg, train, seed)
            self.train, self.batch_size, self.epoch = train, int(batch_size), 0
            self.num_samples = self.stream.num_samples

        def __len__(self):
            n, b = self.num_samples, self.batch_size
            return max(1, n // b) if self.train else math.ceil(n / b)

        def __getitem__(self, i):
            if not 0 <= i < len(self):
                raise IndexError(f"batch {i} out of range for {len(self)} batches")
            image, *maps = self.stream.batch(self.epoch * len(self) + i if self.train else i, self.batch_size)
            return image, dict(zip(TARGET_KEYS, maps))

        def on_epoch_end(self):
            self.epoch += 1

    PoseDataset.__module__, PoseDataset.__qualname__ = __name__, "PoseDataset"
    return PoseDataset


def __getattr__(name):
    if name == "PoseDataset":
        return _pose_dataset_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
