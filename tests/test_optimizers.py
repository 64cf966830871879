"""Per-variable learning-rate multipliers scale the learning rate (not the gradient); the LR schedule."""
import keras
import numpy as np
import pytest

from simplepose.config import TrainConfig
from simplepose.optimizers import (POSE_LR_MULTIPLIERS, MultiplierAdam, MultiplierSGD, PoseLRSchedule,
                                   build_optimizer)

EXPECTED = {  # spec 5.3 reconstruction: backbone, CPM, shortcuts, stage 1 x1/x2; later stages x4/x8
    "block1_conv1/kernel": 1, "block4_conv2/bias": 2, "conv4_3_CPM/kernel": 1, "conv2_shortcut1/bias": 2,
    "stage1_limbs_a1/kernel": 1, "stage1_keypoints_regress_conv3/bias": 2, "stage1_afterpred_conv/kernel": 1,
    "stage2_limbs_d7/kernel": 4, "stage2_keypoints_mix/bias": 8, "stage2_afterpred_conv/kernel": 4,
    "stage3_limbs_regress_conv3/bias": 8, "stage12_limbs_a1/kernel": 4, "stage10_x/bias": 8,
    "model/stage2_limbs_a1/kernel": 4,
}


@pytest.mark.parametrize("path, mult", sorted(EXPECTED.items()))
def test_multiplier_rules(path, mult):
    assert MultiplierAdam(POSE_LR_MULTIPLIERS).multiplier_for(path) == mult


#: the toy model's variables (paths end with these) and their multipliers
TOY = {"stage1_a/kernel": 1, "stage1_a/bias": 2, "stage2_b/kernel": 4, "stage2_b/bias": 8}


def _mult(variable):
    (mult,) = [m for suffix, m in TOY.items() if variable.path.endswith(suffix)]
    return mult


def _model():
    return keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="stage1_a"),
                             keras.layers.Dense(2, name="stage2_b")])


def _one_step(optimizer, grads_scale=1.0):
    model = _model()
    rng = np.random.default_rng(0)
    grads = [rng.choice([-1.0, 1.0], size=v.shape) * rng.uniform(0.5, 2.0, size=v.shape) * grads_scale
             for v in model.trainable_variables]
    before = [np.array(v.numpy()) for v in model.trainable_variables]
    optimizer.apply_gradients([(g.astype(np.float32), v) for g, v in zip(grads, model.trainable_variables)])
    return model, grads, [np.array(v.numpy()) - b for v, b in zip(model.trainable_variables, before)]


def test_adam_first_step_moves_each_group_by_its_multiplier():
    lr = 1e-3
    model, grads, deltas = _one_step(MultiplierAdam(POSE_LR_MULTIPLIERS, learning_rate=lr))
    for v, g, d in zip(model.trainable_variables, grads, deltas):
        # Adam's first step is lr * mult * g / (|g| + eps) ~ lr * mult * sign(g)
        np.testing.assert_allclose(d, -lr * _mult(v) * np.sign(g), rtol=1e-4, atol=1e-7, err_msg=v.path)


def test_adam_multiplier_is_not_a_gradient_scale():
    # scaling the gradient by 4 does not change Adam's step: the multiplier must act on the learning rate
    _, _, plain = _one_step(keras.optimizers.Adam(learning_rate=1e-3))
    _, _, scaled = _one_step(keras.optimizers.Adam(learning_rate=1e-3), grads_scale=4.0)
    for p, s in zip(plain, scaled):
        np.testing.assert_allclose(p, s, rtol=1e-4, atol=1e-7)


def test_sgd_step_is_lr_times_multiplier_times_gradient():
    lr = 0.01
    model, grads, deltas = _one_step(MultiplierSGD(POSE_LR_MULTIPLIERS, learning_rate=lr, momentum=0.9))
    for v, g, d in zip(model.trainable_variables, grads, deltas):
        np.testing.assert_allclose(d, -lr * _mult(v) * g, rtol=1e-5, atol=1e-7, err_msg=v.path)


def test_schedule_values():
    s = PoseLRSchedule(1e-4, time_decay=2e-5, step_factor=0.6, step_epochs=2, steps_per_epoch=100)
    for step, expected in [(0, 1e-4), (199, 1e-4 / (1 + 2e-5 * 199)), (200, 0.6e-4 / (1 + 2e-5 * 200)),
                           (450, 0.36e-4 / (1 + 2e-5 * 450))]:
        assert float(s(step)) == pytest.approx(expected, rel=1e-5)
    assert float(PoseLRSchedule(1e-3, 0.0, 0.6, 0, 100)(10**6)) == pytest.approx(1e-3)


def test_seed_schedule_first_step_at_epoch_11():
    # spec 5.2: 4700 iterations per epoch, a x0.6 step every 1,198,600 / 25 iterations (10.2 epochs)
    s = PoseLRSchedule(1.0, 0.0, 0.6, 1198600 / 25 / 4700, 4700)
    assert float(s(11 * 4700 - 1)) == pytest.approx(1.0) and float(s(11 * 4700)) == pytest.approx(0.6)
    assert float(s(21 * 4700 - 1)) == pytest.approx(0.6) and float(s(21 * 4700)) == pytest.approx(0.36)


def test_build_optimizer_and_serialisation():
    opt = build_optimizer(TrainConfig(optimizer="sgd", momentum=0.8), steps_per_epoch=50)
    assert isinstance(opt, MultiplierSGD) and opt.momentum == 0.8
    clone = keras.optimizers.deserialize(keras.optimizers.serialize(opt))
    assert isinstance(clone, MultiplierSGD) and clone.multipliers == opt.multipliers
    assert isinstance(clone._learning_rate, PoseLRSchedule)
    assert clone.get_config()["learning_rate"] == opt.get_config()["learning_rate"]
    adam = build_optimizer(TrainConfig(lr_multipliers=False), steps_per_epoch=50)
    assert isinstance(adam, MultiplierAdam) and adam.multipliers == ()
