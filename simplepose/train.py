"""Training for every method: strategy, compile, data sources and ``fit`` (the run directory: ``run_dir``)."""
from __future__ import annotations

import contextlib
import logging
import os

import keras

from simplepose.config import Config
from simplepose.errors import TrainingError
from simplepose.methods import OpenedData, method_for_config
from simplepose.run_dir import BACKUP_DIR, CSV_FILE, make_callbacks, plot_losses, prepare_run_dir, trim_csv

__all__ = ["TrainingError", "build_and_compile", "fit", "make_strategy", "open_source", "resolve_steps"]

LOG = logging.getLogger(__name__)


# === Strategy ===
def make_strategy(name: str):
    """``auto`` (mirrored over GPUs when there are several, else default), ``one``, ``mirrored``, ``multiworker``.

    Without GPUs, ``mirrored`` mirrors over all logical CPU devices. Non-TensorFlow backends only support
    ``auto`` and ``one`` (returns None: no strategy scope).
    """
    if keras.backend.backend() != "tensorflow":
        if name not in ("auto", "one"):
            raise TrainingError(f"strategy {name!r} needs the TensorFlow backend")
        return None
    import tensorflow as tf

    if name == "multiworker":  # before anything initialises the TensorFlow context
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    if name == "mirrored" or (name == "auto" and len(gpus) > 1):
        devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
        return tf.distribute.MirroredStrategy(devices)
    if name == "one":
        return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
    return tf.distribute.get_strategy()


def replica_count(strategy) -> int:
    return 1 if strategy is None else strategy.num_replicas_in_sync


def check_batch_split(global_batch: int, replicas: int) -> int:
    """Per-replica batch; the global batch must split evenly over the replicas."""
    if global_batch % replicas:
        raise TrainingError(f"batch size {global_batch} does not split evenly over {replicas} replicas; "
                            f"use a multiple of {replicas}")
    return global_batch // replicas


def is_chief(strategy) -> bool:
    """Whether this process writes the run directory (always, except non-chief multi-worker tasks)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "chief" or (not has_chief and resolver.task_id == 0)


# === Model ===
def build_and_compile(cfg: Config, steps_per_epoch: int, strategy=None) -> keras.Model:
    """Build the model of ``cfg`` and compile it with its method's loss and optimiser (under ``strategy``)."""
    method = method_for_config(cfg)
    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        model = method.build_model(cfg)
        loss, optimizer = method.loss_and_optimizer(cfg, steps_per_epoch)
        model.compile(optimizer=optimizer, loss=loss, run_eagerly=cfg.train.run_eagerly)
        model.optimizer.build(model.trainable_variables)
    if strategy is not None and strategy.extended._in_multi_worker_mode():
        # Keras 3 reduces the per-replica logs with axis=0 under multi-worker collectives, which fails on
        # scalars (tensorflow#72388): hand it (1,) logs, whose cross-replica mean is the scalar we want.
        model.train_step = _vector_logs(model.train_step)
        model.test_step = _vector_logs(model.test_step)
    return model


def _vector_logs(step):
    def vector_step(data):
        return {name: keras.ops.reshape(value, (1,)) for name, value in step(data).items()}

    return vector_step


# === Data ===
def open_source(cfg: Config, source, images=None, *, training: bool):
    """A data file as its method reads it, checked now (before any epoch starts); ready datasets pass through.

    Bottom-up configs read an HDF5 file; top-down configs a COCO keypoint JSON plus its image folder
    ``images``. Anything that is not a path (a ready dataset, an opened source) passes through.

    Raises:
        TrainingError: missing or unreadable file, the wrong kind of file for the method, a missing or
            superfluous image folder.
    """
    if not isinstance(source, (str, os.PathLike)):
        return source
    return method_for_config(cfg).open_data(cfg, source, images, training=training)


def make_datasets(cfg: Config, train, val=None, *, seed: int):
    """Training and validation batches (``val_ds`` None without ``val``) from opened sources."""
    method, batch = method_for_config(cfg), cfg.train.batch_size

    def make(source, training, stream_seed):
        if _is_dataset(source):
            return source
        return method.make_dataset(source, cfg, train=training, global_batch=batch, seed=stream_seed)

    return make(train, True, seed), None if val is None else make(val, False, cfg.train.seed)


def _is_dataset(source) -> bool:
    """A ready dataset (tf.data, PyDataset, iterable of batches) rather than a data file a method opened."""
    return not isinstance(source, OpenedData)


def resolve_steps(cfg: Config, train_source) -> int:
    """``train.steps_per_epoch``, or one pass over the opened training source when it is 0."""
    if cfg.train.steps_per_epoch:
        return cfg.train.steps_per_epoch
    if _is_dataset(train_source):
        raise TrainingError("train.steps_per_epoch=0 needs a training file (HDF5 or COCO JSON) to count its samples")
    return max(1, train_source.num_samples // cfg.train.batch_size)


# === Fit ===
def fit(cfg: Config, run_dir, train, val=None, *, train_images=None, val_images=None, callbacks=(),
        strategy=None, verbose="auto") -> keras.callbacks.History:
    """Train ``cfg``'s model, writing config, logs and checkpoints into ``run_dir``; resume if interrupted.

    Args:
        cfg: resolved config (``train`` section: batch, epochs, steps, strategy, precision, optimiser).
        run_dir: run directory; a previous interrupted run with the same config there is continued.
        train, val: data files (see :func:`open_source`): HDF5 for bottom-up configs, COCO keypoint JSON for
            top-down ones; or opened sources; or ready datasets of the model's ``(x, y[, sample_weight])``
            global batches.
        train_images, val_images: image folders of the top-down JSON files.
        callbacks: extra Keras callbacks.
        strategy: a ``tf.distribute`` strategy made by the caller (default: ``make_strategy(train.strategy)``;
            multi-worker strategies must exist before TensorFlow starts, e.g. before building datasets).

    Raises:
        TrainingError: bad data file, batch that does not split over the replicas, run dir holding another
            config, NaN loss.
    """
    train = open_source(cfg, train, train_images, training=True)
    val = None if val is None else open_source(cfg, val, val_images, training=False)
    strategy = strategy or make_strategy(cfg.train.strategy)
    check_batch_split(cfg.train.batch_size, replica_count(strategy))
    chief = is_chief(strategy)
    initial_epoch = prepare_run_dir(run_dir, cfg, write=chief)
    if chief:
        trim_csv(os.path.join(run_dir, CSV_FILE), initial_epoch)
    steps = resolve_steps(cfg, train)
    previous_policy = keras.config.dtype_policy()
    if cfg.train.mixed_precision:
        keras.config.set_dtype_policy("mixed_float16")
    try:
        keras.utils.set_random_seed(cfg.train.seed)
        model = build_and_compile(cfg, steps, strategy)
    finally:
        keras.config.set_dtype_policy(previous_policy)
    # resumed epochs draw new augmentations
    train_ds, val_ds = make_datasets(cfg, train, val, seed=cfg.train.seed + 7919 * initial_epoch)
    worker = getattr(getattr(strategy, "cluster_resolver", None), "task_id", 0) or 0
    all_callbacks = make_callbacks(run_dir, chief=chief, validate=val is not None, worker_id=worker)
    if initial_epoch >= cfg.train.epochs:
        LOG.info("%s already holds %d of %d epoch(s): nothing to train", run_dir, initial_epoch, cfg.train.epochs)
    else:
        if initial_epoch:
            LOG.info("resuming %s after epoch %d of %d (weights and optimiser state from %s)", run_dir,
                     initial_epoch, cfg.train.epochs, os.path.join(run_dir, BACKUP_DIR))
        LOG.info("training %s (%d parameters) on %d replica(s), global batch %d, %d steps/epoch, epochs %d..%d",
                 model.name, model.count_params(), replica_count(strategy), cfg.train.batch_size, steps,
                 initial_epoch + 1, cfg.train.epochs)
    history = model.fit(train_ds, validation_data=val_ds, epochs=cfg.train.epochs, steps_per_epoch=steps,
                        callbacks=all_callbacks + list(callbacks), verbose=verbose, shuffle=False)
    if chief and os.path.exists(os.path.join(run_dir, CSV_FILE)):
        plot_losses(os.path.join(run_dir, CSV_FILE), os.path.join(run_dir, "losses.png"))
    return history
