"""Training: strategy, compile, run directory (config, checkpoints, logs, resume) and ``fit``."""
from __future__ import annotations

import contextlib
import csv
import importlib.util
import json
import logging
import math
import os

import keras

from simplepose.config import Config
from simplepose.losses import build_loss
from simplepose.models.registry import build_model
from simplepose.optimizers import build_optimizer

LOG = logging.getLogger(__name__)

CONFIG_FILE, BACKUP_DIR, CSV_FILE = "config.yaml", "backup", "log.csv"
#: Config keys that may change between a run and its resumption (continue for more epochs).
RESUMABLE_CHANGES = {("train", "epochs")}


class TrainingError(RuntimeError):
    """Training cannot start or continue (bad data, run dir, batch split, divergence); one-line message."""


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


# === Run directory ===
def prepare_run_dir(run_dir, cfg: Config, write: bool = True) -> int:
    """Create ``run_dir``, check a previous run there has the same config, write it; return the resume epoch.

    Raises:
        TrainingError: the directory holds a run with a different config.
    """
    os.makedirs(run_dir, exist_ok=True)
    path = os.path.join(run_dir, CONFIG_FILE)
    if os.path.exists(path):
        try:
            old = Config.from_yaml(path).to_dict()
        except ValueError as e:
            raise TrainingError(f"{run_dir} holds an unreadable {CONFIG_FILE} ({e}); use a new --run-dir") from None
        diffs = [f"{s}.{k}: {old[s][k]!r} -> {v!r}" for s, sec in cfg.to_dict().items() for k, v in sec.items()
                 if old[s][k] != v and (s, k) not in RESUMABLE_CHANGES]
        if diffs:
            raise TrainingError(f"{run_dir} holds a run with a different config ({'; '.join(diffs[:3])}"
                                f"{' ...' if len(diffs) > 3 else ''}); use a new --run-dir or the same config")
    if write:
        cfg.to_yaml(path)
    return resume_epoch(run_dir)


def resume_epoch(run_dir) -> int:
    """Epochs completed by an interrupted run (BackupAndRestore metadata), 0 for a fresh run."""
    meta = os.path.join(run_dir, BACKUP_DIR, "training_metadata.json")
    if not os.path.exists(meta):
        return 0
    with open(meta) as f:
        return int(json.load(f).get("epoch", 0))


def trim_csv(path, epochs: int) -> None:
    """Keep the header and the rows of the first ``epochs`` epochs (rows of an epoch being redone go)."""
    if not os.path.exists(path):
        return
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    keep = rows[:1] + [r for r in rows[1:] if r and int(r[0]) < epochs]
    if len(keep) != len(rows):
        with open(path, "w", newline="") as f:
            csv.writer(f).writerows(keep)


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


# === Callbacks ===
class StopOnNaN(keras.callbacks.Callback):
    """Raise ``TrainingError`` as soon as the training loss is NaN or infinite.

    Raising (rather than ``stop_training``) keeps the last backup and checkpoints free of broken weights.
    """

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            raise TrainingError(f"training loss became {float(loss)} at batch {batch}; the last completed epoch "
                                "is kept in the run dir (try a lower train.learning_rate)")


class AtomicCheckpoint(keras.callbacks.Callback):
    """Save the whole model to ``path`` at epoch ends through a temporary file and a rename.

    Args:
        path: ``.keras`` file.
        monitor: log key to minimise; None saves every epoch.
    """

    def __init__(self, path, monitor=None):
        super().__init__()
        self.path, self.monitor, self.best = os.fspath(path), monitor, math.inf

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor) if self.monitor else None
        if self.monitor:
            if value is None or not value < self.best:
                return
            self.best = float(value)
        tmp = os.path.join(os.path.dirname(self.path), f".tmp-{os.path.basename(self.path)}")
        self.model.save(tmp, overwrite=True)
        os.replace(tmp, self.path)


def make_callbacks(run_dir, *, chief: bool, validate: bool, worker_id: int = 0) -> list:
    """Backup/restore, NaN stop and, on the chief, CSV, TensorBoard and the two checkpoints."""
    backup = os.path.join(run_dir, BACKUP_DIR) if chief else os.path.join(run_dir, BACKUP_DIR, f"worker{worker_id}")
    # Made here: Keras checks then creates, which races when the workers share run_dir (the workers' folders
    # nest in the chief's).
    os.makedirs(backup, exist_ok=True)
    callbacks = [keras.callbacks.BackupAndRestore(backup, double_checkpoint=True, delete_checkpoint=False),
                 StopOnNaN()]
    if chief:
        callbacks += [
            keras.callbacks.CSVLogger(os.path.join(run_dir, CSV_FILE), append=True),
            AtomicCheckpoint(os.path.join(run_dir, "last.keras")),
            AtomicCheckpoint(os.path.join(run_dir, "model.keras"), "val_loss" if validate else None),
        ]
        if importlib.util.find_spec("tensorboard") is not None:
            callbacks.append(keras.callbacks.TensorBoard(os.path.join(run_dir, "tensorboard"), write_graph=False))
        else:
            LOG.warning("tensorboard is not installed: no TensorBoard logs")
    return callbacks


def plot_losses(csv_path, png_path) -> None:
    """PNG of the loss curves logged in ``csv_path`` (one line per loss column), written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return
    fig, ax = plt.subplots(figsize=(6, 4))
    for key in (k for k in rows[0] if k.endswith("loss")):
        points = [(int(r["epoch"]) + 1, _number(r[key])) for r in rows]
        points = [(e, v) for e, v in points if v is not None]
        if points:
            ax.plot(*zip(*points), marker="o", label=key)
    ax.set(xlabel="epoch", ylabel="loss", yscale="log", title=os.path.basename(os.path.dirname(csv_path)))
    ax.legend()
    tmp = os.path.join(os.path.dirname(png_path), ".tmp-" + os.path.basename(png_path))
    fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    os.replace(tmp, png_path)


def _number(text):
    """Float of a CSV cell; None for Keras' "NA" (e.g. the val_loss column of a run without validation)."""
    try:
        return float(text)
    except ValueError:
        return None


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
