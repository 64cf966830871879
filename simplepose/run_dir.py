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

from simplepose.atomic import clean_stale, temp_path, write_bytes
from simplepose.config import Config
from simplepose.errors import TrainingError

LOG = logging.getLogger(__name__)

CONFIG_FILE, BACKUP_DIR, CSV_FILE, PLOT_FILE = "config.yaml", "backup", "log.csv", "losses.png"
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
        best: the best ``monitor`` value of the epochs before this session (a resumed run keeps its best
            model unless a new epoch beats it).
    """

    def __init__(self, path, monitor=None, best: float = math.inf):
        super().__init__()
        self.path, self.monitor, self.best = os.fspath(path), monitor, float(best)

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor) if self.monitor else None
        if self.monitor:
            if value is None or not value < self.best:
                return
            self.best = float(value)
        clean_stale(self.path)
        tmp = temp_path(self.path, "ckpt")  # keeps the .keras ending Keras asks for
        try:
            self.model.save(tmp, overwrite=True)
            os.replace(tmp, self.path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)


class LossPlot(keras.callbacks.Callback):
    """Redraw ``losses.png`` from ``log.csv`` after every epoch (after the CSV logger wrote the epoch's row)."""

    def __init__(self, csv_path, png_path):
        super().__init__()
        self.csv_path, self.png_path = os.fspath(csv_path), os.fspath(png_path)

    def on_epoch_end(self, epoch, logs=None):
        if os.path.exists(self.csv_path):
            plot_losses(self.csv_path, self.png_path)


def best_logged(csv_path, key: str = "val_loss") -> float:
    """The smallest finite ``key`` value in ``log.csv`` (inf when there is none): the best before a resume."""
    if not os.path.exists(csv_path):
        return math.inf
    with open(csv_path, newline="") as f:
        values = [_number(row.get(key) or "") for row in csv.DictReader(f)]
    return min((v for v in values if v is not None and math.isfinite(v)), default=math.inf)


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
            AtomicCheckpoint(os.path.join(run_dir, "model.keras"), "val_loss" if validate else None,
                             best=best_logged(os.path.join(run_dir, CSV_FILE)) if validate else math.inf),
            LossPlot(os.path.join(run_dir, CSV_FILE), os.path.join(run_dir, PLOT_FILE)),
        ]
        # Keras' TensorBoard callback writes through tf.summary: TensorFlow too (JAX-only installs lack it)
        if all(importlib.util.find_spec(name) is not None for name in ("tensorboard", "tensorflow")):
            callbacks.append(keras.callbacks.TensorBoard(os.path.join(run_dir, "tensorboard"), write_graph=False))
        else:
            LOG.warning("tensorboard or tensorflow is not installed: no TensorBoard logs")
    return callbacks


def session_summary(run_dir, history, epochs: int) -> str:
    """The last line of a training command: what this session did, the losses, where the model and curves are."""
    logs, model = history.history, os.path.join(run_dir, "model.keras")
    if not logs.get("loss"):
        return f"nothing to do: {run_dir} already holds {epochs} epoch(s); model: {model}"
    last = f"last loss {logs['loss'][-1]:.4g}"
    if logs.get("val_loss"):
        best = best_logged(os.path.join(run_dir, CSV_FILE))
        last += f", val_loss {logs['val_loss'][-1]:.4g}; model: {model} (best val_loss {best:.4g})"
    else:
        last += f"; model: {model} (last epoch; no --val)"
    return (f"done: {len(logs['loss'])} epoch(s) this session (epochs {history.epoch[0] + 1}..{history.epoch[-1] + 1} "
            f"of {epochs}), {last}; curves: {os.path.join(run_dir, PLOT_FILE)}")


def plot_losses(csv_path, png_path) -> None:
    """PNG of the loss curves logged in ``csv_path`` (one line per loss column), written atomically.

    The x axis shows the epochs as ``log.csv`` numbers them (Keras counts from 0) with integer ticks; the
    y axis is logarithmic only when the losses span more than a factor 10, so short runs stay readable.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from matplotlib.ticker import MaxNLocator

    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return
    fig, ax = plt.subplots(figsize=(6, 4))
    values = []
    for key in (k for k in rows[0] if k.endswith("loss")):
        points = [(int(r["epoch"]), _number(r[key])) for r in rows]
        points = [(e, v) for e, v in points if v is not None and math.isfinite(v)]
        if points:
            ax.plot(*zip(*points), marker="o", label=key)
            values += [v for _, v in points]
    epochs = [int(r["epoch"]) for r in rows]
    ax.set_xlim(min(epochs) - 0.5, max(epochs) + 0.5)
    if max(epochs) - min(epochs) < 10:
        ax.set_xticks(range(min(epochs), max(epochs) + 1))
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    positive = [v for v in values if v > 0]
    if positive and max(positive) > 10 * min(positive):
        ax.set_yscale("log")
    ax.set(xlabel="epoch (as in log.csv, first = 0)", ylabel="loss",
           title=f"{os.path.basename(os.path.dirname(os.path.abspath(csv_path)))}: {len(rows)} epoch(s)")
    ax.grid(alpha=0.3)
    if values:
        ax.legend()
    fig.tight_layout()
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
