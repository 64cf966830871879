"""Top-down network: ResNet-50 + deconv shapes and parameter count, attention layers, loss, LR schedule, training."""
import json

import cv2

import keras
import numpy as np
import pytest
import tensorflow as tf

from simplepose.config import load_config
from simplepose.losses import VisibilityWeightedMSE, topdown_loss
from simplepose.methods import build_model
from simplepose.models.attention import CRFAttention, HolisticAttention, PartwiseAttention, SoftmaxAttention
from simplepose.models.resnet_deconv import TINY_WIDTHS
from simplepose.models.topdown_net import build_topdown_network
from simplepose.models.vgg_backbone import BackboneWeightsError
from simplepose.optimizers import topdown_lr_schedule
from simplepose.topdown.data import render_heatmaps
from simplepose.skeleton import UPRIGHT_POSE

K = 17


def conv(k, cin, cout, bias=True):
    return k * k * cin * cout + (cout if bias else 0)


def bn(c):
    return 4 * c  # gamma, beta, moving mean, moving variance


def resnet50_notop_params():
    """ResNet-50 (Keras layout: convs with biases) counted block by block."""
    total = conv(7, 3, 64) + bn(64)
    cin = 64
    for filters, blocks in ((64, 3), (128, 4), (256, 6), (512, 3)):
        for b in range(blocks):
            if b == 0:
                total += conv(1, cin, 4 * filters) + bn(4 * filters)
            total += conv(1, cin, filters) + bn(filters) + conv(3, filters, filters) + bn(filters)
            total += conv(1, filters, 4 * filters) + bn(4 * filters)
            cin = 4 * filters
    return total


def head_params(cin, filters=256, num_deconv=3):
    total = 0
    for _ in range(num_deconv):
        total += conv(4, cin, filters, bias=False) + bn(filters)
        cin = filters
    return total + conv(1, filters, K)


def crf_params(cin, maps=1, k=3):
    return conv(3, cin, maps) + k * k * maps


def tiny(attention="none", kernel="crf", filters=8, **kw):
    return build_topdown_network(K, input_shape=(64, 64), backbone="tiny", num_deconv=3, deconv_filters=filters,
                                 attention=attention, attention_kernel=kernel, **kw)


def test_resnet50_no_attention_shapes_and_parameter_count():
    cfg = load_config("configs/topdown_resnet50_256x192.yaml",
                      ["model.backbone_weights=none", "topdown.attention=none"])
    model = build_model(cfg)
    assert resnet50_notop_params() == 23_587_712
    assert head_params(2048) == 10_493_201  # spec 2.2
    assert model.count_params() == resnet50_notop_params() + head_params(2048)
    assert tuple(model.get_layer("resnet50").output.shape) == (None, 8, 6, 2048)
    for i, size in enumerate(((16, 12), (32, 24), (64, 48))):
        assert tuple(model.get_layer(f"deconv{i + 1}_relu").output.shape) == (None, *size, 256)
    out = model(np.zeros((1, 256, 192, 3), np.float32), training=False)
    assert set(out) == {"heatmaps"} and tuple(out["heatmaps"].shape) == (1, 64, 48, K)


def test_backbone_weights_errors_are_one_line():
    with pytest.raises(BackboneWeightsError, match="not found"):
        build_topdown_network(K, backbone_weights="/nonexistent/resnet50.h5")


@pytest.mark.parametrize("kernel", ["crf", "softmax"])
def test_attention_parameter_counts(kernel):
    base = tiny("none").count_params()
    hol = tiny("holistic", kernel).count_params()
    part = tiny("holistic+partwise", kernel).count_params()
    crf = kernel == "crf"  # CRF: unary bias and a 3x3 pairwise kernel per map; softmax: neither
    taps = [TINY_WIDTHS[-1], 8, 8, 8]  # C5 and the three deconv outputs
    assert hol - base == sum(conv(3, c, 1, bias=crf) + 9 * crf for c in taps)
    # Part-wise: 17 unary maps and kernels; its per-keypoint projection replaces the heatmap conv.
    assert part - hol == conv(3, 8, K, bias=crf) + 9 * crf * K


@pytest.mark.parametrize("attention", ["none", "holistic", "holistic+partwise"])
def test_output_shape_every_variant(attention):
    out = tiny(attention)(np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 3)).astype(np.float32))
    assert tuple(out["heatmaps"].shape) == (2, 16, 16, K)


def test_crf_attention_maps_in_unit_interval_and_softmax_mean_one():
    x = np.random.default_rng(1).normal(size=(2, 6, 5, 4)).astype(np.float32)
    q = keras.ops.convert_to_numpy(CRFAttention(3)(x))
    assert q.shape == (2, 6, 5, 3) and (q > 0).all() and (q < 1).all()
    softmax = SoftmaxAttention(2)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(softmax(x)), 1.0, rtol=1e-6)  # zero init: identity
    softmax.unary.kernel.assign(np.random.default_rng(2).normal(size=softmax.unary.kernel.shape))
    phi = keras.ops.convert_to_numpy(softmax(x))
    assert phi.shape == (2, 6, 5, 2) and (phi > 0).all() and phi.std() > 0.1
    np.testing.assert_allclose(phi.mean(axis=(1, 2)), 1.0, rtol=1e-5)


def _mean_field_change(kernel_size, perturbed=(4, 4)):
    layer = CRFAttention(1, kernel_size=kernel_size, iterations=3)
    layer.build((1, 9, 9, 2))
    layer.pairwise.assign(np.full(layer.pairwise.shape, 0.5, np.float32))
    # Logits around -2 keep the sigmoids out of saturation, so changes propagate visibly.
    unary = np.random.default_rng(2).normal(-2.0, 0.3, size=(1, 9, 9, 1)).astype(np.float32)
    bumped = unary.copy()
    bumped[0, perturbed[0], perturbed[1], 0] += 3.0
    q0 = keras.ops.convert_to_numpy(layer.mean_field(unary))[0, :, :, 0]
    q1 = keras.ops.convert_to_numpy(layer.mean_field(bumped))[0, :, :, 0]
    return np.abs(q1 - q0)


def test_crf_pairwise_kernel_makes_neighbours_interact():
    change = _mean_field_change(3)
    assert change[4, 5] > 1e-2 and change[5, 5] > 1e-2  # direct neighbours
    assert change[4, 7] > 0  # three iterations of a 3x3 kernel reach three pixels
    assert change[4, 8] == 0 and change[0, 0] == 0  # and no further
    # The published 1x1 scalar kernel has no spatial term: the neighbours never see the change.
    scalar = _mean_field_change(1)
    assert scalar[4, 4] > 1e-2 and scalar[4, 5] == 0 and scalar[5, 4] == 0


@pytest.mark.parametrize("kernel", ["crf", "softmax"])
def test_gradient_reaches_every_attention_parameter(kernel):
    model = tiny("holistic+partwise", kernel)
    x = np.random.default_rng(3).uniform(0, 255, (2, 64, 64, 3)).astype(np.float32)
    target = np.random.default_rng(4).uniform(0, 1, (2, 16, 16, K)).astype(np.float32)
    att = model.get_layer("holistic_attention").trainable_weights + model.get_layer(
        "partwise_attention").trainable_weights
    per_unit = 3 if kernel == "crf" else 1  # unary kernel (+ bias + pairwise kernel)
    assert len(att) == 4 * per_unit + per_unit + 2
    with tf.GradientTape() as tape:
        loss = keras.ops.mean(keras.ops.square(model(x, training=True)["heatmaps"] - target))
    grads = tape.gradient(loss, att)
    for var, g in zip(att, grads):
        assert g is not None and float(tf.reduce_max(tf.abs(g))) > 0, var.path


def test_partwise_equals_per_keypoint_attended_conv():
    layer = PartwiseAttention(3, "crf")
    f = np.random.default_rng(5).normal(size=(1, 5, 4, 6)).astype(np.float32)
    out = keras.ops.convert_to_numpy(layer(f))
    maps = keras.ops.convert_to_numpy(layer.attention_map(f))
    w, b = (keras.ops.convert_to_numpy(v) for v in (layer.project.kernel, layer.project.bias))
    for p in range(3):  # heatmap_p = conv1x1_p(F * m_p)
        expected = (f * maps[..., p:p + 1]) @ w[0, 0, :, p] + b[p]
        np.testing.assert_allclose(out[..., p], expected, rtol=1e-4, atol=1e-5)


def test_holistic_sums_upsampled_maps_and_attends_last_input_once():
    layer = HolisticAttention(2, "crf")
    rng = np.random.default_rng(6)
    coarse, fine = rng.normal(size=(1, 2, 3, 4)).astype(np.float32), rng.normal(size=(1, 4, 6, 5)).astype(np.float32)
    out = keras.ops.convert_to_numpy(layer([coarse, fine]))
    m0 = keras.ops.convert_to_numpy(layer.units[0](coarse))
    m1 = keras.ops.convert_to_numpy(layer.units[1](fine))
    total = np.repeat(np.repeat(m0, 2, axis=1), 2, axis=2) + m1
    np.testing.assert_allclose(out, fine * total, rtol=1e-5)


@pytest.mark.parametrize("cls,args", [(CRFAttention, (4,)), (SoftmaxAttention, (2,)),
                                      (HolisticAttention, (3, "softmax", 5, 2)), (PartwiseAttention, (K, "crf"))])
def test_attention_config_round_trip(cls, args):
    layer = cls(*args)
    config = json.loads(json.dumps(layer.get_config()))
    assert cls.from_config(config).get_config() == layer.get_config()


@pytest.mark.slow
def test_model_save_load_same_outputs(tmp_path):
    model = tiny("holistic+partwise", "crf")
    x = np.random.default_rng(7).uniform(0, 255, (1, 64, 64, 3)).astype(np.float32)
    path = tmp_path / "td.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(loaded(x)["heatmaps"], model(x)["heatmaps"], rtol=1e-5, atol=1e-6)


def test_tiny_widths_set_the_trunk_and_survive_save_load(tmp_path):
    widths = (4, 8, 8, 16, 24)
    cfg = load_config(overrides=["model.architecture=topdown", "data.stride=4", "topdown.backbone=tiny",
                                 "topdown.input_shape=[64,64]",
                                 "topdown.deconv_filters=8", f"topdown.tiny_widths={list(widths)}"])
    model = build_model(cfg)
    trunk = sum(conv(3, cin, cout, bias=False) + bn(cout) for cin, cout in zip((3,) + widths[:-1], widths))
    base = build_model(cfg.with_overrides(["topdown.tiny_widths=[8,16,16,32,32]"]))
    default = sum(conv(3, cin, cout, bias=False) + bn(cout) for cin, cout in zip((3,) + TINY_WIDTHS[:-1], TINY_WIDTHS))
    # Only the trunk and the first deconvolution (its input channels) differ.
    assert model.count_params() - base.count_params() == trunk - default + 16 * 8 * (widths[-1] - TINY_WIDTHS[-1])
    model.save(tmp_path / "w.keras")
    assert keras.saving.load_model(tmp_path / "w.keras").tiny_widths == widths
    with pytest.raises(Exception, match="tiny_widths"):
        cfg.with_overrides(["topdown.tiny_widths=[8,16]"])


def test_visibility_weighted_mse_matches_hand_computation():
    rng = np.random.default_rng(8)
    pred, target = rng.normal(size=(2, 4, 3, K)), rng.uniform(size=(2, 4, 3, K))
    weights = (rng.uniform(size=(2, 1, 1, K)) > 0.3).astype(np.float32)
    expected = (weights * (pred - target) ** 2).sum() / pred.size  # masked elements count (spec 3)
    got = topdown_loss({"heatmaps": target, "weights": weights}, {"heatmaps": pred.astype(np.float32)})
    np.testing.assert_allclose(float(got), expected, rtol=1e-5)
    loss = VisibilityWeightedMSE()
    assert VisibilityWeightedMSE.from_config(json.loads(json.dumps(loss.get_config()))).get_config() == \
        loss.get_config()


def test_lr_schedule_steps_at_epochs_90_and_120():
    schedule = topdown_lr_schedule(5e-4, steps_per_epoch=10)
    lr = [float(schedule(step)) for step in (0, 899, 900, 1199, 1200, 5000)]
    np.testing.assert_allclose(lr, [5e-4, 5e-4, 5e-5, 5e-5, 5e-6, 5e-6], rtol=1e-6)
    restored = keras.optimizers.schedules.deserialize(keras.optimizers.schedules.serialize(schedule))
    assert float(restored(1000)) == pytest.approx(5e-5)


def test_one_epoch_on_synthetic_crops_lowers_the_loss():
    """One epoch of ``model.fit`` with the weighted loss on a few drawn stick figures lowers the loss."""
    rng = np.random.default_rng(9)
    n = 8
    crops = np.full((n, 64, 64, 3), 40, np.uint8)
    targets, weights = [], []
    for i in range(n):
        kp = np.concatenate([UPRIGHT_POSE * 48 + [32 + rng.uniform(-8, 8), 8 + rng.uniform(-4, 4)],
                             np.full((K, 1), 2.0)], axis=1)
        for k, (x, y, _) in enumerate(kp):
            cv2.circle(crops[i], (int(x), int(y)), 2, (10 * k, 255, 255 - 10 * k), -1)
        maps, w = render_heatmaps(kp, (16, 16), (64, 64), stride=4, sigma=1.0)
        targets.append(maps)
        weights.append(w.reshape(1, 1, K) * (rng.uniform(size=(1, 1, K)) > 0.2))
    crops, targets, weights = crops.astype(np.float32), np.stack(targets), np.stack(weights).astype(np.float32)
    keras.utils.set_random_seed(0)
    model = tiny("holistic+partwise", "crf")
    # Eager: on a CPU, tracing the train step costs more than the dozen steps themselves.
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss={"heatmaps": VisibilityWeightedMSE()},
                  run_eagerly=True)

    def loss():  # training-mode BN: the moving statistics barely move in a few steps
        return float(topdown_loss({"heatmaps": targets, "weights": weights}, model(crops, training=True)))

    before = loss()
    data = tf.data.Dataset.from_tensor_slices((crops, {"heatmaps": targets}, {"heatmaps": weights}))
    history = model.fit(data.repeat(4).batch(4), epochs=1, verbose=0, shuffle=False)
    after = loss()
    assert np.isfinite(history.history["loss"][0])
    assert after < 0.2 * before, (before, after)


def test_kernel_decay_on_a_built_model_counts_and_serialises():
    from simplepose.models.resnet_deconv import add_kernel_decay

    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, name="c1")(inputs)
    x = keras.layers.BatchNormalization()(x)
    model = keras.Model(inputs, keras.layers.Conv2DTranspose(2, 4, strides=2, name="d1")(x))
    add_kernel_decay(model, 5e-6)
    kernels = [model.get_layer(n).kernel for n in ("c1", "d1")]
    expected = sum(5e-6 * float(np.sum(keras.ops.convert_to_numpy(k) ** 2)) for k in kernels)
    model(np.zeros((1, 8, 8, 3), np.float32))
    assert len(model.losses) == 2 and float(sum(model.losses)) == pytest.approx(expected, rel=1e-5)
    clone = keras.Model.from_config(model.get_config())
    assert clone.get_layer("c1").kernel_regularizer.get_config()["l2"] == pytest.approx(5e-6)
