"""Training precision and compilation settings: mixed float16 / bfloat16 layers, float32 maps and loss, XLA."""
import os

import keras
import numpy as np
import pytest

from simplepose import train
from simplepose.config import load_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = os.path.join(REPO, "configs", "bottomup_tiny.yaml")
FAST = ["model.num_stages=1", "loss.stage_weights=[1.0]", "train.run_eagerly=true", "train.batch_size=2",
        "data.input_size=32"]


def _batch(cfg, n=2):
    rng = np.random.default_rng(0)
    s, h = cfg.data.input_size, cfg.data.input_size // 8
    y = {"keypoints": rng.uniform(0, 1, (n, h, h, cfg.skeleton.num_keypoint_channels)).astype("float32"),
         "limbs": rng.uniform(0, 1, (n, h, h, cfg.skeleton.num_limbs)).astype("float32"),
         "mask": np.ones((n, h, h, 1), "float32")}
    return rng.uniform(0, 255, (n, s, s, 3)).astype("float32"), y


@pytest.mark.parametrize("precision, compute", [("mixed_float16", "float16"), ("mixed_bfloat16", "bfloat16")])
def test_mixed_precision_computes_low_and_keeps_the_loss_float32(precision, compute):
    cfg = load_config(TINY, FAST + [f"train.precision={precision}"])
    model = train.build_and_compile(cfg, steps_per_epoch=10)
    assert keras.config.dtype_policy().name == "float32"  # the global policy is restored
    convs = [layer for layer in model._flatten_layers() if isinstance(layer, keras.layers.Conv2D)]
    low = [layer for layer in convs if layer.compute_dtype == compute]
    assert len(low) == len(convs) - 2  # all but the two map outputs, which the network keeps float32
    assert {v.dtype for v in model.trainable_variables} == {"float32"}
    x, y = _batch(cfg)
    pred = model(x)
    assert {keras.backend.standardize_dtype(m.dtype) for m in pred["stage_1"].values()} == {"float32"}
    low_pred = keras.tree.map_structure(lambda m: keras.ops.cast(m, compute), pred)
    for loss in (model.compute_loss(x, y, pred), model.pose_loss(y, low_pred)):  # maps of any dtype: float32
        assert keras.backend.standardize_dtype(loss.dtype) == "float32"
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer) == (precision == "mixed_float16")
    before = model.trainable_variables[0].numpy().copy()
    for _ in range(20):  # float16: steps whose scaled gradients overflow are skipped and the scale halved
        value = model.train_on_batch(x, y)
        if not np.array_equal(before, model.trainable_variables[0].numpy()):
            break
    assert np.isfinite(value) and not np.array_equal(before, model.trainable_variables[0].numpy())


def test_legacy_mixed_precision_switch_means_float16():
    assert train.dtype_policy(load_config(TINY, ["train.mixed_precision=true"])) == "mixed_float16"
    assert train.dtype_policy(load_config(TINY, [])) == "float32"


@pytest.mark.parametrize("setting, expected", [("false", False), ("true", True)])
def test_jit_compile_setting_reaches_the_model(setting, expected):
    cfg = load_config(TINY, FAST[:-3] + [f"train.jit_compile={setting}"])
    assert train.build_and_compile(cfg, steps_per_epoch=10).jit_compile is expected
