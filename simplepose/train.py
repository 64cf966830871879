"""Training: strategy, compile, data sources and ``fit`` (the run directory is ``simplepose.run_dir``)."""
from __future__ import annotations

import contextlib
import logging
import os

import keras

from simplepose.config import Config
from simplepose.losses import build_loss
from simplepose.models.registry import build_model
from simplepose.optimizers import build_optimizer
from simplepose.run_dir import CSV_FILE, TrainingError, make_callbacks, plot_losses, prepare_run_dir, trim_csv

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
    """Build the model of ``cfg`` and compile it: bottom-up with the focal L2 loss and the multiplier optimiser,
    top-down with its visibility-weighted MSE (weights as Keras sample weights) and its Adam schedule."""
    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        model = build_model(cfg)
        if cfg.model.architecture == "topdown":
            from simplepose.models.topdown_net import VisibilityWeightedMSE, build_topdown_optimizer

            optimizer, loss = build_topdown_optimizer(cfg, steps_per_epoch), {"heatmaps": VisibilityWeightedMSE()}
        else:
            optimizer, loss = build_optimizer(cfg.train, steps_per_epoch), build_loss(cfg.loss)
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
def data_size(path) -> int:
    """Samples in an HDF5 training file; missing, foreign, old-schema or truncated files raise TrainingError."""
    from simplepose.data.hdf5 import HDF5Reader

    try:
        return len(HDF5Reader(path))
    except (OSError, ValueError) as e:
        raise TrainingError(str(e).splitlines()[0]) from None


def open_source(cfg: Config, source, images=None, *, training: bool):
    """A data file as :func:`make_dataset` reads it, checked now (before any epoch starts).

    Bottom-up configs read an HDF5 file (returned as is); top-down configs (``model.architecture=topdown``)
    read a COCO keypoint JSON plus its image folder ``images`` (returned as ``TopDownSamples``). Anything
    that is not a path (a ready dataset, ``TopDownSamples``) passes through.

    Raises:
        TrainingError: missing or unreadable file, the wrong kind of file for the architecture, a missing or
            superfluous image folder.
    """
    if not isinstance(source, (str, os.PathLike)):
        return source
    path = os.fspath(source)
    if cfg.model.architecture != "topdown":
        if images is not None:
            raise TrainingError(f"{images}: an image folder is only read by top-down configs; bottom-up "
                                "training reads everything from its HDF5 file")
        if path.lower().endswith(".json"):
            raise TrainingError(f"{path}: bottom-up training reads an HDF5 file (training/coco_masks_hdf5.py); "
                                "COCO JSON files are read by top-down configs (model.architecture=topdown)")
        data_size(path)
        return path
    return _topdown_samples(cfg, path, images, training=training)


def _topdown_samples(cfg: Config, path: str, images, *, training: bool):
    from simplepose.data.topdown import samples_from_config

    if path.lower().endswith((".h5", ".hdf5")):
        raise TrainingError(f"{path}: top-down training reads a COCO keypoint JSON and its image folder, "
                            "not an HDF5 file")
    if not os.path.isfile(path):
        raise TrainingError(f"{path}: annotation file not found")
    if images is None or not os.path.isdir(images):
        raise TrainingError(f"{path}: top-down training needs the image folder of this annotation file"
                            + (f" ({images} is not a folder)" if images is not None else ""))
    try:
        samples = samples_from_config(cfg, path, images, training=training)
    except (AssertionError, ValueError, KeyError, TypeError) as e:  # pycocotools' assorted errors on foreign JSON
        raise TrainingError(f"{path}: not a COCO keypoint file ({type(e).__name__}: {e})") from None
    if len(samples) < (cfg.train.batch_size if training else 1):
        raise TrainingError(f"{path}: {len(samples)} usable person instance(s), fewer than "
                            + (f"one batch of {cfg.train.batch_size}" if training else "one"))
    return samples


def make_dataset(source, cfg: Config, *, train: bool, global_batch: int, seed: int):
    """An opened ``source`` (:func:`open_source`) as batches for ``model.fit``; datasets pass through.

    HDF5 paths go through ``simplepose.data.pipeline``; ``TopDownSamples`` through
    ``simplepose.data.topdown`` as ``(crops, {"heatmaps"}, {"heatmaps": weights})`` (training: repeated,
    every pass reshuffled, re-augmented and without its last partial batch). ``tf.data`` on TensorFlow,
    ``keras.utils.PyDataset`` on other backends.
    """
    from simplepose.data.topdown import TopDownSamples

    tensorflow = keras.backend.backend() == "tensorflow"
    if isinstance(source, TopDownSamples):
        from simplepose.data.topdown import build_topdown_dataset, topdown_py_dataset

        if not tensorflow:
            return topdown_py_dataset(source, global_batch, training=train, seed=seed, sample_weight=True)
        ds = build_topdown_dataset(source, global_batch, training=train, seed=seed, sample_weight=True)
        return ds.repeat() if train else ds
    if not isinstance(source, (str, os.PathLike)):
        return source
    if tensorflow:
        from simplepose.data.pipeline import build_dataset

        return build_dataset(source, cfg, train=train, global_batch_size=global_batch, seed=seed)
    from simplepose.data.pipeline import PoseDataset

    return PoseDataset(source, cfg, train=train, batch_size=global_batch, seed=seed)


def make_datasets(cfg: Config, train, val=None, *, seed: int):
    """Training and validation batches (``val_ds`` None without ``val``) from opened sources."""
    batch = cfg.train.batch_size
    train_ds = make_dataset(train, cfg, train=True, global_batch=batch, seed=seed)
    val_ds = None if val is None else make_dataset(val, cfg, train=False, global_batch=batch, seed=cfg.train.seed)
    return train_ds, val_ds


def resolve_steps(cfg: Config, train_source) -> int:
    """``train.steps_per_epoch``, or one pass over the opened training source when it is 0."""
    from simplepose.data.topdown import TopDownSamples

    if cfg.train.steps_per_epoch:
        return cfg.train.steps_per_epoch
    if isinstance(train_source, TopDownSamples):
        return max(1, len(train_source) // cfg.train.batch_size)
    if not isinstance(train_source, (str, os.PathLike)):
        raise TrainingError("train.steps_per_epoch=0 needs a training file (HDF5 or COCO JSON) to count its samples")
    return max(1, data_size(train_source) // cfg.train.batch_size)


# === Fit ===
def fit(cfg: Config, run_dir, train, val=None, *, train_images=None, val_images=None, callbacks=(),
        strategy=None, verbose="auto") -> keras.callbacks.History:
    """Train ``cfg``'s model, writing config, logs and checkpoints into ``run_dir``; resume if interrupted.

    Args:
        cfg: resolved config (``train`` section: batch, epochs, steps, strategy, precision, optimiser).
        run_dir: run directory; a previous interrupted run with the same config there is continued.
        train, val: data files (see :func:`open_source`): HDF5 for bottom-up configs, COCO keypoint JSON for
            top-down ones; or ``TopDownSamples``; or ready datasets of the model's ``(x, y[, sample_weight])``
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
    LOG.info("training %s (%d parameters) on %d replica(s), global batch %d, %d steps/epoch, epochs %d..%d",
             model.name, model.count_params(), replica_count(strategy), cfg.train.batch_size, steps,
             initial_epoch + 1, cfg.train.epochs)
    history = model.fit(train_ds, validation_data=val_ds, epochs=cfg.train.epochs, steps_per_epoch=steps,
                        callbacks=all_callbacks + list(callbacks), verbose=verbose, shuffle=False)
    if chief and os.path.exists(os.path.join(run_dir, CSV_FILE)):
        plot_losses(os.path.join(run_dir, CSV_FILE), os.path.join(run_dir, "losses.png"))
    return history
