"""JAX data parallelism (keras.distribution): 2 host devices train as 1 does, with TensorFlow blocked;
process shares of the stream batches."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = os.path.join(REPO, "configs", "bottomup_tiny.yaml")
OVERRIDES = ["model.num_stages=1", "loss.stage_weights=[1.0]", "train.optimizer=sgd", "train.learning_rate=0.01",
             "train.lr_time_decay=0", "train.batch_size=4", "data.input_size=32"]

#: Runs with KERAS_BACKEND=jax, 2 XLA host devices and TensorFlow made unimportable: the JAX path needs none.
BLOCK_TF = """
import sys
sys.modules["tensorflow"] = None
"""

TWO_DEVICES = BLOCK_TF + """
import json
import numpy as np
import jax
import keras
from simplepose import train
from simplepose.config import load_config

def data(cfg, n=4):
    rng = np.random.default_rng(0)
    size = cfg.data.input_size
    h = size // 8
    x = rng.uniform(0, 255, (n, size, size, 3)).astype("float32")
    y = {"keypoints": rng.uniform(0, 1, (n, h, h, cfg.skeleton.num_keypoint_channels)).astype("float32"),
         "limbs": rng.uniform(0, 1, (n, h, h, cfg.skeleton.num_limbs)).astype("float32"),
         "mask": (rng.uniform(size=(n, h, h, 1)) > 0.3).astype("float32")}
    return x, y

def one_step(strategy_name):
    cfg = load_config(sys.argv[1], json.loads(sys.argv[2]) + ["train.strategy=" + strategy_name])
    strategy = train.make_strategy(cfg.train.strategy)
    keras.utils.set_random_seed(0)
    model = train.build_and_compile(cfg, 10, strategy)
    before = [np.asarray(w.value) for w in model.trainable_weights]
    x, y = data(cfg)
    with strategy.scope() if strategy is not None else __import__("contextlib").nullcontext():
        loss = model.fit(x, y, batch_size=4, epochs=1, verbose=0, shuffle=False).history["loss"][0]
    after = [np.asarray(w.value) for w in model.trainable_weights]
    shards = len(model.trainable_weights[0].value.sharding.device_set)
    update = max(float(np.abs(a - b).max()) for a, b in zip(after, before))
    return train.replica_count(strategy), shards, loss, after, update

(n1, s1, loss1, w1, update), (n2, s2, loss2, w2, _) = one_step("one"), one_step("auto")
cfg = load_config(sys.argv[1], json.loads(sys.argv[2]) + ["train.strategy=mirrored", "train.batch_size=3"])
try:
    train.fit(cfg, sys.argv[3], keras.utils.PyDataset())
    split_error = None
except train.TrainingError as e:
    split_error = str(e)
# the whole path: HDF5 -> stream shares -> 2 devices, validation in full batches only
cfg = load_config(sys.argv[1], json.loads(sys.argv[2]) + ["train.epochs=1", "train.steps_per_epoch=2",
                                                         "train.optimizer=adam", "train.learning_rate=1e-4"])
history = train.fit(cfg, sys.argv[3] + "_h5", sys.argv[4], sys.argv[4], verbose=0).history
print(json.dumps({"devices": jax.device_count(), "replicas": [n1, n2], "variable_devices": [s1, s2],
                  "fit_losses": [history["loss"][-1], history["val_loss"][-1]],
                  "loss": [loss1, loss2], "split_error": split_error, "max_update": update,
                  "tensorflow_loaded": sys.modules.get("tensorflow") is not None,
                  "max_weight_diff": max(float(np.abs(a - b).max()) for a, b in zip(w1, w2))}))
"""


def _run(script, *args, env=None, timeout=600):
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu", "CUDA_VISIBLE_DEVICES": "",
           "XLA_FLAGS": "--xla_force_host_platform_device_count=2", **(env or {})}
    return subprocess.run([sys.executable, "-c", script, *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.slow  # ~50 CPU-s: two XLA compilations of the tiny model
def test_jax_two_devices_match_one_device(tmp_path, tiny_hdf5):
    """One SGD step on the same global batch: identical loss and weights on 1 and on 2 devices (XLA-compiled);
    then ``fit`` on an HDF5 file with validation over both devices."""
    pytest.importorskip("jax")
    proc = _run(TWO_DEVICES, TINY, json.dumps(OVERRIDES), str(tmp_path / "run"), str(tiny_hdf5))
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    print(json.dumps({k: v for k, v in result.items() if k != "split_error"}))  # shown with pytest -s
    assert result["devices"] == 2 and not result["tensorflow_loaded"]
    assert result["replicas"] == [1, 2] and result["variable_devices"] == [1, 2]  # replicated on both
    assert result["loss"][0] == pytest.approx(result["loss"][1], rel=1e-5)
    assert result["max_update"] > 1e-3 and result["max_weight_diff"] < 1e-5
    assert "does not split evenly over 2 replicas" in result["split_error"]
    assert np.isfinite(result["fit_losses"]).all() and min(result["fit_losses"]) > 0


def _batches(tiny_hdf5, train, count, replicas, batch=4):
    from simplepose.bottomup.pipeline import build_py_dataset
    from simplepose.config import load_config

    cfg = load_config(TINY, ["data.input_size=32"])
    shares = [build_py_dataset(tiny_hdf5, cfg, train=train, batch_size=batch, seed=3) for _ in range(count)]
    for index, share in enumerate(shares):
        share.feed_share(index, count, replicas=replicas)
    return shares


def test_process_shares_make_up_the_global_batches(tiny_hdf5):
    """Two processes' shares, stacked, are the one-process batches; validation keeps full batches only."""
    (whole,), shares = _batches(tiny_hdf5, True, 1, 1), _batches(tiny_hdf5, True, 2, 2)
    for epoch in range(2):
        for i in range(len(whole)):
            x, y = whole[i]
            parts = [share[i] for share in shares]
            assert all(part[0].shape[0] == 2 for part in parts)
            np.testing.assert_array_equal(np.concatenate([p[0] for p in parts]), x)
            for key in y:
                np.testing.assert_array_equal(np.concatenate([p[1][key] for p in parts]), y[key])
        for ds in (whole, *shares):
            ds.on_epoch_end()
    (val_one,), (val_two,) = _batches(tiny_hdf5, False, 1, 1), _batches(tiny_hdf5, False, 1, 2)
    n = val_one.stream.num_samples
    assert n % 4 and len(val_one) == n // 4 + 1 and len(val_two) == n // 4  # the partial batch is left out
    assert all(val_two[i][0].shape[0] == 4 for i in range(len(val_two)))
    with pytest.raises(ValueError, match="does not split evenly over 2 processes and 2 replicas"):
        _batches(tiny_hdf5, True, 2, 2, batch=3)
