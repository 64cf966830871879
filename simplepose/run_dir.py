"""Run directory: config check and resume point, callbacks (backup, NaN stop, CSV, checkpoints), loss plot."""
from __future__ import annotations

import csv
import importlib.util
import io
import json
import logging
import math
import os

import keras

from simplepose.atomic import write_bytes
from simplepose.config import Config
from simplepose.errors import TrainingError

LOG = logging.getLogger(__name__)

CONFIG_FILE, BACKUP_DIR, CSV_FILE = "config.yaml", "backup", "log.csv"
#: Config keys that may change between a run and its resumption (continue for more epochs).
RESUMABLE_CHANGES = {("train", "epochs")}


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
        # Keras' TensorBoard callback writes through tf.summary: TensorFlow too (JAX-only installs lack it)
        if all(importlib.util.find_spec(name) is not None for name in ("tensorboard", "tensorflow")):
            callbacks.append(keras.callbacks.TensorBoard(os.path.join(run_dir, "tensorboard"), write_graph=False))
        else:
            LOG.warning("tensorboard or tensorflow is not installed: no TensorBoard logs")
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
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    write_bytes(png_path, buf.getvalue())


def _number(text):
    """Float of a CSV cell; None for Keras' "NA" (e.g. the val_loss column of a run without validation)."""
    try:
        return float(text)
    except ValueError:
        return None
