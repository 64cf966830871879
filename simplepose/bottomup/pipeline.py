"""Bottom-up input pipeline: HDF5 samples -> augmented crops and targets -> batches (tf.data or PyDataset)."""
from __future__ import annotations

import dataclasses
import logging
import time

import numpy as np

from simplepose.bottomup.targets import render_targets
from simplepose.data import augment, stream
from simplepose.data.codecs import decode_image, decode_mask
from simplepose.data.hdf5 import HDF5Reader

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
    height = _reference_height(raw, a, size)
    matrix = augment.affine_matrix(raw.center, height, params, size, a.target_dist)
    reduce = 1
    if a.reduced_decode:
        reduce = augment.choose_reduction(augment.crop_scale(height, params, size, a.target_dist))
    image = stream.cached(decoded, ("image", raw.image_row, reduce), lambda: decode_image(raw.encoded, reduce))
    mask = None  # all supervised
    if raw.mask:
        mask = stream.cached(decoded, ("mask", raw.image_row), lambda: decode_mask(raw.mask, raw.height, raw.width))
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


def _reference_height(raw, a, input_size: int) -> float:
    """The source height (px) that ``augment.affine_matrix`` brings to ``target_dist`` of the crop: the main
    person's bbox height; the image's longer side for a sample without one; with ``augment.image_height``,
    the height that makes the whole image ``image_height`` crop pixels high."""
    if a.image_height > 0:
        return raw.height * a.target_dist * input_size / a.image_height
    return raw.scale if raw.scale > 0 else max(raw.height, raw.width) * a.target_dist


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
    """Render the targets of an augmented sample (see ``simplepose.bottomup.targets.render_targets``)."""
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


class SampleStream(stream.Stream):
    """The bottom-up samples a run consumes (see :class:`simplepose.data.stream.Stream`), rendered from HDF5.

    Args:
        reader: an ``HDF5Reader``. cfg: the whole ``Config``. train: augment and repeat, or one clean pass.
        seed: stream seed (>= 0).
    """

    def __init__(self, reader, cfg, train: bool, seed: int = 0):
        super().__init__(reader.sample_images, train=train, seed=seed, group_by_image=cfg.data.group_by_image)
        self.reader, self.cfg = reader, cfg

    def render(self, elements, timings: dict | None = None) -> tuple:
        """Augment and render ``elements`` together (a batch): an image is decoded once for all its samples.

        Returns:
            A flat tuple: uint8 images ``(k, S, S, 3)``, then the maps in ``TARGET_KEYS`` order ``(k, ...)``.
        """
        decoded, images, maps = {}, [], []
        for epoch, index in elements:
            sample = augment_sample(self.reader, index, self.rng(epoch, index), self.cfg, self.train, timings, decoded)
            clock = _Clock(timings)
            targets = sample_targets(sample, self.cfg)
            clock.lap("targets")
            images.append(sample.image)
            maps.append(tuple(targets[key] for key in TARGET_KEYS))
        clock = _Clock(timings)
        out = (np.stack(images),) + tuple(np.stack(m) for m in zip(*maps))
        clock.lap("batching")
        return out

    def signature(self) -> list:
        grid, sk, size = self.cfg.data.input_size // self.cfg.data.stride, self.cfg.skeleton, self.cfg.data.input_size
        return [("uint8", (size, size, 3)), ("float32", (grid, grid, sk.num_keypoint_channels)),
                ("float32", (grid, grid, sk.num_limbs)), ("float32", (grid, grid, 1))]

    def pack(self, flat):
        """``(image, {"keypoints", "limbs", "mask"})``."""
        return flat[0], dict(zip(TARGET_KEYS, flat[1:]))


def build_dataset(path, cfg, *, train: bool, global_batch_size: int, seed: int = 0, num_workers=None,
                  input_context=None):
    """A ``tf.data.Dataset`` of ``(image, {"keypoints", "limbs", "mask"})`` batches of the global batch size.

    The elements are :class:`SampleStream`'s, batched by ``simplepose.data.stream.tf_dataset`` (training:
    forever, across epoch boundaries; validation: one pass, last batch partial; ``input_context``: per-replica
    batches from a disjoint share of the batches per input pipeline). Under ``tf.distribute`` without
    ``input_context``, ``strategy.experimental_distribute_dataset`` splits each global batch.

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
    """
    reader = HDF5Reader(path)
    if len(reader) == 0:
        raise ValueError(f"{path}: no samples")
    return stream.tf_dataset(SampleStream(reader, cfg, train, seed), global_batch_size,
                             num_workers=cfg.data.workers if num_workers is None else num_workers,
                             prefetch=cfg.data.prefetch, input_context=input_context, name=str(path))


def build_py_dataset(path, cfg, *, train: bool, batch_size: int, seed: int = 0, workers: int = 1,
                     use_multiprocessing: bool = False, max_queue_size: int = 10):
    """The batches of :func:`build_dataset` as a ``keras.utils.PyDataset``, for backends without tf.data.

    Epoch ``e``'s batch ``i`` holds :class:`SampleStream` elements ``(e * len + i) * B ...``; training uses
    ``len(dataset) = max(1, n // B)`` batches per epoch, validation ``ceil(n / B)`` (last one partial).
    """
    return stream.py_dataset(SampleStream(HDF5Reader(path), cfg, train, seed), batch_size, workers=workers,
                             use_multiprocessing=use_multiprocessing, max_queue_size=max_queue_size)
