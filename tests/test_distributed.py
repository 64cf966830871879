"""tf.distribute: 2-replica training equals 1-replica training on the same global batch; multi-worker."""
import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = os.path.join(REPO, "configs", "bottomup_tiny.yaml")
OVERRIDES = ["model.num_stages=1", "loss.stage_weights=[1.0]", "train.optimizer=sgd", "train.learning_rate=0.01",
             "train.lr_time_decay=0", "train.batch_size=4"]

DATA = """
import numpy as np, tensorflow as tf
def dataset(cfg, size=32, n=4):
    rng = np.random.default_rng(0)
    h = size // 8
    x = rng.uniform(0, 255, (n, size, size, 3)).astype("float32")
    y = {"keypoints": rng.uniform(0, 1, (n, h, h, cfg.skeleton.num_keypoint_channels)).astype("float32"),
         "limbs": rng.uniform(0, 1, (n, h, h, cfg.skeleton.num_limbs)).astype("float32"),
         "mask": (rng.uniform(size=(n, h, h, 1)) > 0.3).astype("float32")}
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(cfg.train.batch_size).repeat()
"""

TWO_DEVICES = DATA + """
import json, sys
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
from simplepose import train
from simplepose.config import load_config

def one_step(strategy_name):
    cfg = load_config(sys.argv[1], json.loads(sys.argv[2]) + ["train.strategy=" + strategy_name])
    strategy = train.make_strategy(cfg.train.strategy)
    keras.utils.set_random_seed(0)
    model = train.build_and_compile(cfg, 10, strategy)
    before = [w.numpy() for w in model.trainable_weights]
    loss = model.fit(dataset(cfg), epochs=1, steps_per_epoch=1, verbose=0).history["loss"][0]
    after = [w.numpy() for w in model.trainable_weights]
    update = max(float(np.abs(a - b).max()) for a, b in zip(after, before))
    return strategy.num_replicas_in_sync, loss, after, update

(n1, loss1, w1, update), (n2, loss2, w2, _) = one_step("one"), one_step("mirrored")
cfg = load_config(sys.argv[1], json.loads(sys.argv[2]) + ["train.strategy=mirrored", "train.batch_size=3"])
try:
    train.fit(cfg, sys.argv[3], dataset(cfg))
    split_error = None
except train.TrainingError as e:
    split_error = str(e)
print(json.dumps({"replicas": [n1, n2], "loss": [loss1, loss2], "split_error": split_error, "max_update": update,
                  "max_weight_diff": max(float(np.abs(a - b).max()) for a, b in zip(w1, w2))}))
"""


def _run(script, *args, env=None, timeout=600):
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    return subprocess.run([sys.executable, "-c", script, *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_two_replicas_match_one_replica(tmp_path):
    proc = _run(TWO_DEVICES, TINY, json.dumps(OVERRIDES + ["train.run_eagerly=true"]), str(tmp_path / "run"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["replicas"] == [1, 2]
    assert result["loss"][0] == pytest.approx(result["loss"][1], rel=1e-5)
    assert result["max_update"] > 1e-3 and result["max_weight_diff"] < 1e-5
    assert "does not split evenly over 2 replicas" in result["split_error"]


WORKER = """
import json, sys
from simplepose import train
from simplepose.config import load_config
cfg = load_config(sys.argv[1], json.loads(sys.argv[2]))
strategy = train.make_strategy(cfg.train.strategy)  # before TensorFlow starts
""" + DATA + """
history = train.fit(cfg, sys.argv[3], dataset(cfg), strategy=strategy, verbose=0)
np.savez(sys.argv[4], *[w.numpy() for w in history.model.trainable_weights])
print(json.dumps({"loss": [float(v) for v in np.ravel(history.history["loss"])]}))
"""


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


@pytest.mark.slow
@pytest.mark.multiworker
def test_multiworker_workers_end_with_identical_weights(tmp_path):
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    overrides = json.dumps(OVERRIDES + ["train.strategy=multiworker", "train.epochs=1", "train.steps_per_epoch=3",
                                        "train.learning_rate=1e-4"])
    procs = []
    for i in range(2):
        env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "2",
               "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})}
        procs.append(subprocess.Popen([sys.executable, "-c", WORKER, TINY, overrides, str(tmp_path / "run"),
                                       str(tmp_path / f"w{i}.npz")], cwd=REPO, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    outs = [p.communicate(timeout=900) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    w0, w1 = np.load(tmp_path / "w0.npz"), np.load(tmp_path / "w1.npz")
    assert len(w0.files) == len(w1.files) > 0
    for key in w0.files:
        np.testing.assert_array_equal(w0[key], w1[key])
    losses = [json.loads(out.strip().splitlines()[-1])["loss"] for out, _ in outs]
    assert np.isfinite(losses[0]).all() and losses[0] == pytest.approx(losses[1])  # global mean on both
    assert os.path.exists(tmp_path / "run" / "last.keras")  # written by the chief only
