"""Sample streams shared by both methods' input pipelines: stateless seeding, epoch orders, tf.data and PyDataset.

A stream is the sequence of samples a run consumes. Training element ``k`` is sample ``order(epoch)[position]``
with ``(epoch, position) = divmod(k, n)``, drawn with ``sample_rng(seed, epoch, index)``: the same batches
whatever the worker count, the backend (``tf.data`` or ``keras.utils.PyDataset``) or the samples a sample
is rendered with. Validation is one pass in file order without randomness. A batch is rendered together
by one worker, so the samples of one image next to each other decode it once.
"""
from __future__ import annotations

import abc
import functools
import logging
import math
import os

import numpy as np

LOG = logging.getLogger(__name__)


def sample_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The generator of one sample's augmentation draw.

    Seeding every sample by ``(seed, epoch, index)`` makes a stream reproducible whatever the number of
    workers, their scheduling or the samples it is rendered with, and different every epoch.
    """
    return np.random.default_rng([int(seed), int(epoch), int(index)])


def epoch_order(seed: int, epoch: int, sample_images: np.ndarray, group_by_image: bool = True) -> np.ndarray:
    """The sample order of one training epoch.

    With ``group_by_image`` the images come in random order and the samples of each image follow each
    other, in file order, so an image is decoded once for all of them; otherwise a plain random
    permutation of the samples.

    Args:
        sample_images: image number of every sample.

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


def cached(cache: dict, key, make):
    """``cache[key]``, made by ``make()`` on first use (a batch's shared decodes)."""
    if key not in cache:
        cache[key] = make()
    return cache[key]


class Stream(abc.ABC):
    """The samples a run consumes, in order, and their rendering in batches.

    Subclasses say how to render a batch (:meth:`render`: a flat tuple of arrays), the dtypes and shapes
    of that tuple (:meth:`signature`) and how it becomes the model's ``(x, y[, sample_weight])``
    (:meth:`pack`).

    Args:
        sample_images: image number of every sample (samples of one image share its decode).
        train: augment and repeat forever, or one clean pass in file order.
        seed: stream seed (>= 0).
        group_by_image: training order keeps the samples of an image together (see :func:`epoch_order`).
    """

    def __init__(self, sample_images, *, train: bool, seed: int = 0, group_by_image: bool = True):
        self.sample_images = np.asarray(sample_images, dtype=np.int64)
        self.num_samples = len(self.sample_images)
        self.train, self.seed, self.group_by_image = bool(train), int(seed), bool(group_by_image)
        self._orders = functools.lru_cache(maxsize=4)(self._order)

    def _order(self, epoch: int) -> np.ndarray:
        if self.train:
            order = epoch_order(self.seed, epoch, self.sample_images, self.group_by_image)
        else:
            order = np.arange(self.num_samples)
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

    def rng(self, epoch: int, index: int) -> np.random.Generator:
        """The augmentation draw of one element (:func:`sample_rng`)."""
        return sample_rng(self.seed, epoch, index)

    def batch(self, i: int, batch_size: int, timings: dict | None = None) -> tuple:
        """Batch ``i``: elements ``i * B`` to ``(i + 1) * B - 1`` (fewer at the end of a validation pass)."""
        start = int(i) * batch_size
        stop = start + batch_size if self.train else min(start + batch_size, self.num_samples)
        return self.render(self.elements(start, stop), timings)

    def num_batches(self, batch_size: int) -> int:
        """Batches of one pass: full ones when training (at least 1), all samples when validating."""
        n = self.num_samples
        return max(1, n // batch_size) if self.train else math.ceil(n / batch_size)

    @abc.abstractmethod
    def render(self, elements, timings: dict | None = None) -> tuple:
        """Render ``elements`` (``(epoch, index)`` pairs) as one batch: a flat tuple of arrays."""

    @abc.abstractmethod
    def signature(self) -> list:
        """``[(dtype name, shape without the batch axis), ...]`` of :meth:`render`'s tuple."""

    @abc.abstractmethod
    def pack(self, flat):
        """The flat batch as the model's ``(x, y)`` or ``(x, y, sample_weight)`` (numpy or tensors)."""


def tf_dataset(stream: Stream, batch_size: int, *, num_workers: int = 0, prefetch: int = 4, input_context=None,
               name: str = "stream"):
    """A ``tf.data.Dataset`` of ``stream``'s batches in the model's structure.

    Training streams forever (a new order and new draws every epoch, batches across epoch boundaries, no
    sample dropped); validation is one pass with a final partial batch. With ``input_context`` (from
    ``strategy.distribute_datasets_from_function``) ``batch_size`` is the global batch, each pipeline
    renders per-replica batches and pipeline p takes batches p, p + P, ... (no sample is rendered and
    then discarded, as auto-sharding would).

    Each batch is rendered by one ``tf.numpy_function`` call, ``num_workers`` batches at a time on threads
    (0 = one per CPU core); the heavy parts (OpenCV, nogil numba kernels) release the GIL.
    """
    import tensorflow as tf

    if input_context is not None:
        batch_size = input_context.get_per_replica_batch_size(batch_size)
    workers = int(num_workers) if num_workers and num_workers > 0 else (os.cpu_count() or 1)
    signature = stream.signature()
    rows = batch_size if stream.train else None  # training batches are all full; the last validation one is not

    @tf.autograph.experimental.do_not_convert
    def load(i):
        out = tf.numpy_function(lambda j: stream.batch(j, batch_size), [i],
                                [tf.as_dtype(dtype) for dtype, _ in signature], stateful=False)
        return stream.pack(tuple(tf.ensure_shape(t, (rows,) + tuple(shape)) for t, (_, shape) in zip(out, signature)))

    ds = tf.data.Dataset.range(np.iinfo(np.int64).max if stream.train else stream.num_batches(batch_size))
    if input_context is not None:
        ds = ds.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
    ds = ds.map(load, num_parallel_calls=workers, deterministic=True)
    LOG.info("input pipeline: %s, %d samples, %d workers, batch %d, %s", name, stream.num_samples, workers,
             batch_size, "train" if stream.train else "eval")
    return ds.prefetch(prefetch)


def py_dataset(stream: Stream, batch_size: int, **kwargs):
    """``stream``'s batches as a ``keras.utils.PyDataset`` (any backend), equal to :func:`tf_dataset`'s.

    Epoch ``e``'s batch ``i`` holds stream elements ``(e * len + i) * B ...`` when training (``len`` =
    ``stream.num_batches(B)``); validation is one pass. ``kwargs`` go to ``PyDataset`` (``workers``,
    ``use_multiprocessing``, ``max_queue_size``).
    """
    return _stream_dataset_class()(stream, batch_size, **kwargs)


@functools.cache
def _stream_dataset_class():
    import keras  # here only: this module stays importable without Keras

    class StreamDataset(keras.utils.PyDataset):
        def __init__(self, stream, batch_size, **kwargs):
            super().__init__(**kwargs)
            self.stream, self.batch_size, self.epoch = stream, int(batch_size), 0
            self.share, self.full_batches = (0, 1), False

        def feed_share(self, index: int, count: int, replicas: int = 1):
            """Yield process ``index``'s rows of each global batch, for data-parallel steps over ``replicas``.

            Of ``count`` processes each renders ``B / count`` consecutive rows of every global batch
            (together, the very batches of one process). Batches must split evenly over the replicas, so
            with more than one, a validation pass leaves out its final partial batch (logged).
            """
            if self.batch_size % count or self.batch_size % replicas:
                raise ValueError(f"batch size {self.batch_size} does not split evenly over {count} processes "
                                 f"and {replicas} replicas")
            self.share, self.full_batches = (int(index), int(count)), replicas > 1
            dropped = self.stream.num_samples - len(self) * self.batch_size
            if not self.stream.train and self.full_batches and dropped:
                LOG.info("validation: the last %d of %d samples are left out (a partial batch does not split "
                         "over %d replicas)", dropped, self.stream.num_samples, replicas)
            if not len(self):
                raise ValueError(f"{self.stream.num_samples} validation samples: fewer than one batch of "
                                 f"{self.batch_size}, which {replicas} replicas need")

        def __len__(self):
            if self.full_batches and not self.stream.train:
                return self.stream.num_samples // self.batch_size
            return self.stream.num_batches(self.batch_size)

        def __getitem__(self, i):
            if not 0 <= i < len(self):
                raise IndexError(f"batch {i} out of range for {len(self)} batches")
            k = self.epoch * len(self) + i if self.stream.train else i
            index, count = self.share
            if count == 1:
                return self.stream.pack(self.stream.batch(k, self.batch_size))
            rows = self.batch_size // count
            start = k * self.batch_size + index * rows
            return self.stream.pack(self.stream.render(self.stream.elements(start, start + rows)))

        def on_epoch_end(self):
            self.epoch += 1

    StreamDataset.__module__, StreamDataset.__qualname__ = __name__, "StreamDataset"
    return StreamDataset
