"""Bottom-up networks: published parameter counts, VGG19 layer names and weights, outputs, serialisation."""
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from simplepose.config import load_config
from simplepose.methods import build_model
from simplepose.models.simple_pose_net import SimplePoseNet
from simplepose.models.vgg_backbone import (CAFFE_BGR_MEAN, VGG19_LAYER_NAMES, BackboneWeightsError,
                                            CaffePreprocess, load_backbone_weights)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = os.path.join(REPO, "configs", "bottomup_tiny.yaml")


@pytest.fixture(scope="module")
def full_model():
    published = os.path.join(REPO, "configs", "published_model3_vgg19_368.yaml")
    return build_model(load_config(published, ["model.backbone_weights=none"]))


@pytest.fixture(scope="module")
def tiny_model():
    return build_model(load_config(TINY))


def test_model3_has_published_parameter_count(full_model):
    assert full_model.count_params() == 13_858_945
    assert sum(int(np.prod(v.shape)) for v in full_model.trainable_weights) == 13_858_945


def test_openpose_variant_parameter_count():
    model = build_model(load_config(None, ["model.architecture=openpose", "data.skeleton=coco18_limbs24"]))
    assert model.count_params() == 25_594_945


def test_no_batch_normalisation_and_gaussian_init(full_model):
    assert not any("Normalization" in type(layer).__name__ for layer in full_model.layers)
    kernel, bias = full_model.get_layer("block3_conv1").get_weights()
    assert abs(kernel.std() - 0.01) < 0.0005 and abs(kernel.mean()) < 0.0005 and not bias.any()


def test_batch_norm_option_normalises_every_hidden_conv(tmp_path):
    model = build_model(load_config(TINY, ["model.norm=batch"]))
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    norms = {layer.name for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)}
    hidden = [c for c in convs if f"{c.name}_bn" in norms]
    assert len(norms) == len(hidden) == len(convs) - 2 * model.num_stages  # all but the prediction convs
    assert not any(c.use_bias for c in hidden) and all(c.use_bias for c in convs if c not in hidden)
    assert "block1_conv1_bn" in norms
    rng = np.random.default_rng(0)
    for layer in model.layers:  # statistics other than the initial ones, so the round trip must carry them
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.moving_mean.assign(rng.normal(0, 1, layer.moving_mean.shape).astype(np.float32))
            layer.moving_variance.assign(rng.uniform(0.5, 2, layer.moving_variance.shape).astype(np.float32))
    x = rng.uniform(0, 255, (2, 40, 56, 3)).astype(np.float32)
    before = model(x, training=False)
    path = str(tmp_path / "bn.keras")
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert loaded.norm == "batch" and loaded.get_config() == model.get_config()
    after = loaded(x, training=False)
    np.testing.assert_array_equal(np.asarray(before["stage_1"]["limbs"]), np.asarray(after["stage_1"]["limbs"]))


def test_vgg_layers_match_keras_vgg19(full_model, tmp_path):
    vgg = keras.applications.VGG19(weights=None, include_top=False)
    for name in VGG19_LAYER_NAMES:
        assert [w.shape for w in vgg.get_layer(name).weights] == [w.shape for w in full_model.get_layer(name).weights]
    path = str(tmp_path / "vgg19.weights.h5")
    vgg.save_weights(path)
    load_backbone_weights(full_model, path)
    for name in ("block1_conv1", "block4_conv2"):
        np.testing.assert_array_equal(full_model.get_layer(name).get_weights()[0], vgg.get_layer(name).get_weights()[0])


def test_imagenet_offline_is_one_clear_line(full_model, monkeypatch):
    def offline(**kwargs):
        raise Exception("URL fetch failure on https://storage.googleapis.com/...: None -- [Errno -3] "
                        "Temporary failure in name resolution\nmore detail")

    monkeypatch.setattr(keras.applications, "VGG19", offline)
    with pytest.raises(BackboneWeightsError) as info:
        load_backbone_weights(full_model, "imagenet")
    assert "ImageNet VGG19" in str(info.value) and "\n" not in str(info.value)


def test_bad_weights_files(tiny_model, tmp_path):
    with pytest.raises(BackboneWeightsError, match="not found"):
        load_backbone_weights(tiny_model, str(tmp_path / "missing.h5"))
    vgg = keras.applications.VGG19(weights=None, include_top=False)
    vgg.save_weights(str(tmp_path / "vgg.weights.h5"))
    with pytest.raises(BackboneWeightsError, match="backbone_width_multiplier"):  # tiny widths do not fit
        load_backbone_weights(tiny_model, str(tmp_path / "vgg.weights.h5"))


def test_caffe_preprocessing():
    mean_pixel = np.array(CAFFE_BGR_MEAN, np.float32).reshape(1, 1, 1, 3)
    out = np.asarray(CaffePreprocess()(np.concatenate([mean_pixel, mean_pixel + 10], axis=2)))
    np.testing.assert_allclose(out, [[[[0, 0, 0], [10, 10, 10]]]], atol=1e-4)


def test_outputs_per_stage_with_skeleton_channels(tiny_model):
    cfg = load_config(TINY)
    out = tiny_model(np.zeros((2, 48, 64, 3), np.float32))
    assert sorted(out) == [f"stage_{t}" for t in range(1, cfg.model.num_stages + 1)]
    for stage in out.values():
        assert tuple(stage["limbs"].shape) == (2, 6, 8, cfg.skeleton.num_limbs)
        assert tuple(stage["keypoints"].shape) == (2, 6, 8, cfg.skeleton.num_keypoint_channels)
        assert stage["limbs"].dtype == "float32"


def test_stages_and_skeleton_come_from_config():
    cfg = load_config(TINY, ["model.num_stages=1", "loss.stage_weights=[1.0]", "data.skeleton=coco18_limbs30",
                             "model.architecture=openpose"])
    out = build_model(cfg)(np.zeros((1, 32, 32, 3), np.float32))
    assert list(out) == ["stage_1"] and out["stage_1"]["limbs"].shape[-1] == 30


def test_keras_file_round_trip_safe_mode(tiny_model, tmp_path):
    path = str(tmp_path / "tiny.keras")
    tiny_model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert isinstance(loaded, SimplePoseNet) and loaded.get_config() == tiny_model.get_config()
    x = np.random.default_rng(0).uniform(0, 255, (1, 40, 56, 3)).astype(np.float32)
    a, b = tiny_model(x), loaded(x)
    for t in a:
        for branch in a[t]:
            np.testing.assert_array_equal(np.asarray(a[t][branch]), np.asarray(b[t][branch]))
    assert json.loads(json.dumps(tiny_model.get_config())) == tiny_model.get_config()


def test_each_architecture_is_built_by_its_method():
    from simplepose.models.topdown_net import TopDownNet

    for overrides, kind in ((["model.architecture=openpose"], SimplePoseNet),
                            (["model.architecture=topdown", "data.stride=4", "topdown.backbone=tiny",
                              "topdown.deconv_filters=8", "topdown.input_shape=[64, 64]"], TopDownNet)):
        model = build_model(load_config(TINY, overrides + ["model.backbone_weights=none"]))
        assert isinstance(model, kind) and model.head_meta.architecture == overrides[0].split("=")[1]


JAX_SCRIPT = """
import json, numpy as np, keras
from simplepose.config import load_config
from simplepose.losses import build_loss
from simplepose.methods import build_model
from simplepose.optimizers import build_optimizer
cfg = load_config(%r, ["model.num_stages=1", "loss.stage_weights=[1.0]"])
model = build_model(cfg)
model.compile(optimizer=build_optimizer(cfg.train, 10), loss=build_loss(cfg.loss))
rng = np.random.default_rng(0)
x = rng.uniform(0, 255, (2, 32, 48, 3)).astype("float32")
y = {"limbs": rng.uniform(0, 1, (2, 4, 6, 24)).astype("float32"),
     "keypoints": rng.uniform(0, 1, (2, 4, 6, 19)).astype("float32"), "mask": np.ones((2, 4, 6, 1), "float32")}
before = model.get_layer("stage1_limbs_a1").get_weights()[0].copy()
loss = model.train_on_batch(x, y)
pred = model.predict(x, verbose=0)
moved = np.abs(model.get_layer("stage1_limbs_a1").get_weights()[0] - before).max()
print(json.dumps({"backend": keras.backend.backend(), "loss": float(loss), "moved": float(moved),
                  "shape": list(pred["stage_1"]["keypoints"].shape)}))
"""


@pytest.mark.slow
def test_trains_and_predicts_under_jax():
    pytest.importorskip("jax")
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, "-c", JAX_SCRIPT % TINY], env=env, cwd=REPO, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["backend"] == "jax" and np.isfinite(result["loss"]) and result["loss"] > 0
    assert result["moved"] > 0 and result["shape"] == [2, 4, 6, 19]
