"""Training: run directory, resume after a kill, NaN stop, checkpoints, and one-line CLI errors."""
import csv
import json
import os
import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from simplepose import train
from simplepose.commands import train as train_pose
from simplepose.config import load_config
from simplepose.run_dir import CSV_FILE, prepare_run_dir, resume_epoch, trim_csv

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TINY = os.path.join(REPO, "configs", "bottomup_tiny.yaml")
FAST = ["model.num_stages=1", "loss.stage_weights=[1.0]", "train.run_eagerly=true", "train.batch_size=2"]


def _cfg(*extra):
    return load_config(TINY, FAST + list(extra))


def synthetic_dataset(cfg, size=32, batches=2, nan=False, seed=0, repeat=True):
    """Random ``(image, {"keypoints", "limbs", "mask"})`` global batches (repeated forever for training)."""
    rng = np.random.default_rng(seed)
    n, h = cfg.train.batch_size * batches, size // 8
    image = rng.uniform(0, 255, (n, size, size, 3)).astype(np.float32)
    if nan:
        image[:] = np.nan
    maps = {"keypoints": rng.uniform(0, 1, (n, h, h, cfg.skeleton.num_keypoint_channels)).astype(np.float32),
            "limbs": rng.uniform(0, 1, (n, h, h, cfg.skeleton.num_limbs)).astype(np.float32),
            "mask": (rng.uniform(size=(n, h, h, 1)) > 0.2).astype(np.float32)}
    ds = tf.data.Dataset.from_tensor_slices((image, maps)).batch(cfg.train.batch_size)
    return ds.repeat() if repeat else ds


def _csv_epochs(run_dir):
    with open(os.path.join(run_dir, CSV_FILE)) as f:
        return [int(row["epoch"]) for row in csv.DictReader(f)]


def test_killed_run_resumes_from_last_completed_epoch(tmp_path, kill_at_epoch):
    cfg = _cfg("train.epochs=3", "train.steps_per_epoch=2")
    run = str(tmp_path / "run")
    with pytest.raises(KeyboardInterrupt):
        train.fit(cfg, run, synthetic_dataset(cfg), synthetic_dataset(cfg, seed=1, repeat=False),
                  callbacks=[kill_at_epoch(2)], verbose=0)
    assert _csv_epochs(run) == [0, 1] and resume_epoch(run) == 2
    killed_state = keras.saving.load_model(os.path.join(run, "last.keras"))
    assert int(killed_state.optimizer.iterations) == 4
    history = train.fit(cfg, run, synthetic_dataset(cfg), synthetic_dataset(cfg, seed=1, repeat=False), verbose=0)
    assert history.epoch == [2] and _csv_epochs(run) == [0, 1, 2]
    final = keras.saving.load_model(os.path.join(run, "last.keras"), safe_mode=True)
    assert int(final.optimizer.iterations) == 6  # the optimiser state was restored, not restarted
    assert final.pose_loss.get_config() == history.model.pose_loss.get_config()  # compile config kept
    assert os.path.exists(os.path.join(run, "model.keras")) and os.path.exists(os.path.join(run, "losses.png"))
    assert load_config(os.path.join(run, "config.yaml")) == cfg
    # a kill between an epoch's backup and its CSV row must not duplicate rows either
    trim_csv(os.path.join(run, CSV_FILE), 1)
    assert _csv_epochs(run) == [0]


LOAD_IN_FRESH_PROCESS = """
import json, sys
from simplepose.models.loading import load_model
inference, compiled = load_model(sys.argv[1]), load_model(sys.argv[1], compile=True)
print(json.dumps({"params": inference.count_params(), "optimizer": type(compiled.optimizer).__name__,
                  "iterations": int(compiled.optimizer.iterations)}))
"""


def test_trained_model_loads_in_fresh_process(tmp_path):
    # regression: a model compiled with the simplepose optimiser once failed to load outside the process that
    # trained it, where the optimiser class had not been registered by an import
    cfg = _cfg("train.epochs=1", "train.steps_per_epoch=2", "train.lr_multipliers=true")
    model = train.fit(cfg, str(tmp_path / "run"), synthetic_dataset(cfg), verbose=0).model
    assert type(model.optimizer).__module__ == "simplepose.optimizers"
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run([sys.executable, "-c", LOAD_IN_FRESH_PROCESS, str(tmp_path / "run" / "model.keras")],
                          capture_output=True, text=True, env=env, cwd=str(tmp_path), timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert loaded == {"params": model.count_params(), "optimizer": type(model.optimizer).__name__, "iterations": 2}


def test_nan_loss_stops_with_clear_message(tmp_path):
    cfg = _cfg("train.epochs=1", "train.steps_per_epoch=2")
    with pytest.raises(train.TrainingError, match="training loss became nan"):
        train.fit(cfg, str(tmp_path / "run"), synthetic_dataset(cfg, nan=True), verbose=0)
    assert not os.path.exists(tmp_path / "run" / "last.keras")


def test_run_dir_with_other_config_is_refused(tmp_path):
    cfg = _cfg()
    prepare_run_dir(tmp_path, cfg)
    assert prepare_run_dir(tmp_path, load_config(TINY, FAST + ["train.epochs=50"])) == 0  # more epochs: ok
    with pytest.raises(train.TrainingError, match=r"different config \(train.learning_rate"):
        prepare_run_dir(tmp_path, _cfg("train.learning_rate=0.5"))


def test_batch_must_split_over_replicas():
    assert train.check_batch_split(8, 2) == 4
    with pytest.raises(train.TrainingError, match="does not split evenly over 2 replicas"):
        train.check_batch_split(5, 2)


def _main_error(capsys, argv):
    assert train_pose.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


def test_cli_bad_inputs_are_one_line(capsys, tmp_path, tiny_hdf5):
    base = ["--config", TINY, "--run-dir", str(tmp_path / "run")]
    assert "not found" in _main_error(capsys, base + ["--train", str(tmp_path / "missing.h5")])
    truncated = tmp_path / "truncated.h5"
    with open(tiny_hdf5, "rb") as f:
        truncated.write_bytes(f.read()[: os.path.getsize(tiny_hdf5) // 2])
    assert "truncated" in _main_error(capsys, base + ["--train", str(truncated)])
    import h5py

    with h5py.File(tmp_path / "foreign.h5", "w") as f:
        f["x"] = np.zeros(3)
    assert "not a simplepose data file" in _main_error(capsys, base + ["--train", str(tmp_path / "foreign.h5")])
    assert "unknown key 'nope'" in _main_error(capsys, base + ["--train", str(tiny_hdf5), "--set", "train.nope=1"])
    prepare_run_dir(tmp_path / "run", load_config(TINY))
    assert "different config" in _main_error(capsys, base + ["--train", str(tiny_hdf5), "--batch-size", "3"])


def test_cli_print_config(capsys):
    assert train_pose.main(["--config", TINY, "--train", "x.h5", "--run-dir", "x", "--epochs", "7",
                            "--print-config"]) == 0
    assert "epochs: 7" in capsys.readouterr().out


def test_cli_trains_on_real_pipeline(capsys, tmp_path, tiny_hdf5):
    run = tmp_path / "run"
    argv = ["--config", TINY, "--train", str(tiny_hdf5), "--val", str(tiny_hdf5), "--run-dir", str(run),
            "--epochs", "1", "--steps-per-epoch", "1", "--set", *FAST, "data.input_size=32", "data.workers=1"]
    assert train_pose.main(argv) == 0, capsys.readouterr().err
    assert "done: 1 epoch(s)" in capsys.readouterr().out
    assert sorted(p for p in os.listdir(run) if not p.startswith(".")) == [
        "backup", "config.yaml", "last.keras", "log.csv", "losses.png", "model.keras", "tensorboard"]
    assert train_pose.main(argv) == 0 and "nothing to do" in capsys.readouterr().out  # finished: no-op
    shutil.rmtree(run)
