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
    """``auto`` (every local device), ``one``, ``mirrored`` (the local devices) or ``multiworker``.

    TensorFlow: a ``tf.distribute`` strategy. ``auto`` mirrors over the GPUs when there are several, else
    the default strategy; without GPUs, ``mirrored`` mirrors over all logical CPU devices;
    ``multiworker`` reads ``TF_CONFIG``. JAX: a ``keras.distribution.DataParallel`` over the devices, or
    None for one device (``one``, or ``auto`` with a single device); ``multiworker`` first joins the
    processes with ``keras.distribution.initialize`` (``KERAS_DISTRIBUTION_JOB_ADDRESSES``,
    ``KERAS_DISTRIBUTION_NUM_PROCESSES``, ``KERAS_DISTRIBUTION_PROCESS_ID``), then spans every process's
    devices. Other backends only support ``auto`` and ``one`` (None: no strategy scope).
    """
    if keras.backend.backend() == "jax":
        return _jax_distribution(name)
    if keras.backend.backend() != "tensorflow":
        if name not in ("auto", "one"):
            raise TrainingError(f"strategy {name!r} needs the TensorFlow or JAX backend")
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


def _jax_distribution(name: str):
    """Keras' own data parallelism under JAX: the batch axis sharded over a 1-D mesh of devices."""
    from keras import distribution

    if name == "one":
        return None
    if name == "multiworker":  # before any JAX computation
        try:
            distribution.initialize()
        except (RuntimeError, ValueError) as e:
            raise TrainingError(f"JAX multi-host start failed ({str(e).splitlines()[0]}); set "
                                "KERAS_DISTRIBUTION_JOB_ADDRESSES, KERAS_DISTRIBUTION_NUM_PROCESSES and "
                                "KERAS_DISTRIBUTION_PROCESS_ID on every process") from None
    devices = distribution.list_devices()  # the default platform's (GPU, TPU, else CPU), of every process
    if name == "auto" and len(devices) == 1:
        return None
    return distribution.DataParallel(devices=devices)


def is_keras_distribution(strategy) -> bool:
    """Whether ``strategy`` is a ``keras.distribution`` one (JAX) rather than a ``tf.distribute`` strategy."""
    return isinstance(strategy, (keras.distribution.DataParallel, keras.distribution.ModelParallel))


def replica_count(strategy) -> int:
    if strategy is None:
        return 1
    if is_keras_distribution(strategy):
        return int(strategy.device_mesh.devices.size)
    return strategy.num_replicas_in_sync


def check_batch_split(global_batch: int, replicas: int) -> int:
    """Per-replica batch; the global batch must split evenly over the replicas."""
    if global_batch % replicas:
        raise TrainingError(f"batch size {global_batch} does not split evenly over {replicas} replicas; "
                            f"use a multiple of {replicas}")
    return global_batch // replicas


def process_index_and_count(strategy) -> tuple[int, int]:
    """This process's index and the number of processes feeding the model (multi-host JAX; else 0, 1)."""
    if not is_keras_distribution(strategy):
        return 0, 1
    import jax

    return jax.process_index(), jax.process_count()


def is_chief(strategy) -> bool:
    """Whether this process writes the run directory (always, except non-chief multi-worker tasks)."""
    if is_keras_distribution(strategy):
        return process_index_and_count(strategy)[0] == 0
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "chief" or (not has_chief and resolver.task_id == 0)


def _scope(strategy):
    return strategy.scope() if strategy is not None else contextlib.nullcontext()


def dtype_policy(cfg: Config) -> str:
    """The Keras dtype policy of ``train.precision`` (``train.mixed_precision: true`` = ``mixed_float16``)."""
    if cfg.train.precision == "float32" and cfg.train.mixed_precision:
        return "mixed_float16"
    return cfg.train.precision


# === Model ===
def build_and_compile(cfg: Config, steps_per_epoch: int, strategy=None) -> keras.Model:
    """Build the model of ``cfg`` and compile it with its method's loss and optimiser (under ``strategy``).

    The layers are built under ``train.precision``'s dtype policy (mixed precision: float16 or bfloat16
    compute, float32 variables; Keras wraps the optimiser in loss scaling for ``mixed_float16``); the loss
    objects are made with float32 and cast the maps to it. ``train.jit_compile`` selects XLA.
    """
    method = method_for_config(cfg)
    previous_policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy(dtype_policy(cfg))  # layers compute in it; the losses stay float32
    try:
        with _scope(strategy):
            model = method.build_model(cfg)
            loss, optimizer = method.loss_and_optimizer(cfg, steps_per_epoch)
            jit = "auto" if cfg.train.jit_compile is None else cfg.train.jit_compile
            model.compile(optimizer=optimizer, loss=loss, run_eagerly=cfg.train.run_eagerly, jit_compile=jit)
            model.optimizer.build(model.trainable_variables)
    finally:
        keras.config.set_dtype_policy(previous_policy)
    if not is_keras_distribution(strategy) and strategy is not None and strategy.extended._in_multi_worker_mode():
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


def _feed_process_share(dataset, strategy):
    """Under a Keras distribution, simplepose's stream datasets feed this process's rows of each global batch.

    Keras shards every batch a process yields over that process's devices, so with several processes each
    one yields its own ``1 / process_count`` of the global batch. Ready datasets of the caller pass as they
    are (they must yield this process's share themselves).
    """
    if dataset is None or not hasattr(dataset, "feed_share"):
        return dataset
    index, count = process_index_and_count(strategy)
    try:
        dataset.feed_share(index, count, replicas=replica_count(strategy))
    except ValueError as e:  # a validation file smaller than one global batch
        raise TrainingError(str(e)) from None
    return dataset


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
        strategy: a ``tf.distribute`` strategy or (JAX) ``keras.distribution`` made by the caller (default:
            ``make_strategy(train.strategy)``; multi-worker strategies must exist before TensorFlow or JAX
            starts, e.g. before building datasets).

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
    keras.utils.set_random_seed(cfg.train.seed)
    model = build_and_compile(cfg, steps, strategy)
    # resumed epochs draw new augmentations
    train_ds, val_ds = make_datasets(cfg, train, val, seed=cfg.train.seed + 7919 * initial_epoch)
    if is_keras_distribution(strategy):
        train_ds, val_ds = (_feed_process_share(ds, strategy) for ds in (train_ds, val_ds))
        worker = process_index_and_count(strategy)[0]
    else:
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
    with _scope(strategy) if is_keras_distribution(strategy) else contextlib.nullcontext():  # shards batches
        history = model.fit(train_ds, validation_data=val_ds, epochs=cfg.train.epochs, steps_per_epoch=steps,
                            callbacks=all_callbacks + list(callbacks), verbose=verbose, shuffle=False)
    if chief and os.path.exists(os.path.join(run_dir, CSV_FILE)):
        plot_losses(os.path.join(run_dir, CSV_FILE), os.path.join(run_dir, "losses.png"))
    return history
