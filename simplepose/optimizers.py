"""Optimisers: bottom-up Adam/SGD with per-variable LR multipliers (spec 5.3) and schedule (5.2); top-down Adam."""
from __future__ import annotations

import re

import keras
from keras import ops

#: Spec 5.3 reconstruction for model3 / openpose names: stages >= 2 (and the afterpred conv that follows
#: them) x4 kernel / x8 bias; every other bias x2; everything else (VGG, CPM, shortcuts, stage 1) x1.
POSE_LR_MULTIPLIERS = (
    (r"(?:^|/)stage(?:[2-9]|[1-9]\d+)_[^/]*/kernel$", 4.0),
    (r"(?:^|/)stage(?:[2-9]|[1-9]\d+)_[^/]*/bias$", 8.0),
    (r"/bias$", 2.0),
)


class _LRMultiplierMixin:
    """Scales the learning rate of each variable by the first ``(regex, multiplier)`` whose regex matches
    ``variable.path`` (``re.search``; no match = 1). The learning rate is scaled, not the gradient: with Adam
    the two differ (Adam is invariant to gradient scale)."""

    def _init_multipliers(self, multipliers):
        self.multipliers = tuple((str(p), float(m)) for p, m in (multipliers or ()))
        self._patterns = [(re.compile(p), m) for p, m in self.multipliers]

    def multiplier_for(self, path: str) -> float:
        for pattern, mult in self._patterns:
            if pattern.search(path):
                return mult
        return 1.0

    def build(self, var_list):
        super().build(var_list)
        self._lr_mults = [self.multiplier_for(v.path) for v in var_list]

    def update_step(self, gradient, variable, learning_rate):
        mult = self._lr_mults[self._get_variable_index(variable)]
        if mult != 1.0:
            learning_rate = ops.multiply(ops.cast(learning_rate, variable.dtype), mult)
        super().update_step(gradient, variable, learning_rate)

    def get_config(self):
        return {**super().get_config(), "multipliers": [list(pm) for pm in self.multipliers]}


@keras.saving.register_keras_serializable(package="simplepose")
class MultiplierAdam(_LRMultiplierMixin, keras.optimizers.Adam):
    """``keras.optimizers.Adam`` with per-variable learning-rate multipliers (the seed's ``MultiAdam``)."""

    def __init__(self, multipliers=(), **kwargs):
        super().__init__(**kwargs)
        self._init_multipliers(multipliers)


@keras.saving.register_keras_serializable(package="simplepose")
class MultiplierSGD(_LRMultiplierMixin, keras.optimizers.SGD):
    """``keras.optimizers.SGD`` (momentum) with per-variable learning-rate multipliers (``MultiSGD``)."""

    def __init__(self, multipliers=(), **kwargs):
        super().__init__(**kwargs)
        self._init_multipliers(multipliers)


@keras.saving.register_keras_serializable(package="simplepose")
class PoseLRSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """``lr(i) = base / (1 + time_decay * i) * step_factor ** floor(floor(i / steps_per_epoch) / step_epochs)``.

    Keras 2 ``decay`` per iteration i, composed with the Caffe "step" applied at epoch starts (spec 5.2).
    ``step_epochs = 0`` (or ``steps_per_epoch = 0``) disables the step part.
    """

    def __init__(self, initial_learning_rate, time_decay=2e-5, step_factor=0.6, step_epochs=10.2,
                 steps_per_epoch=0):
        self.initial_learning_rate = float(initial_learning_rate)
        self.time_decay = float(time_decay)
        self.step_factor = float(step_factor)
        self.step_epochs = float(step_epochs)
        self.steps_per_epoch = int(steps_per_epoch)

    def __call__(self, step):
        step = ops.cast(step, "float32")
        lr = self.initial_learning_rate / (1.0 + self.time_decay * step)
        if self.step_epochs > 0 and self.steps_per_epoch > 0:
            epoch = ops.floor(step / float(self.steps_per_epoch))
            lr = lr * ops.power(self.step_factor, ops.floor(epoch / self.step_epochs))
        return lr

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate, "time_decay": self.time_decay,
                "step_factor": self.step_factor, "step_epochs": self.step_epochs,
                "steps_per_epoch": self.steps_per_epoch}


def build_optimizer(train_cfg, steps_per_epoch: int):
    """Adam (default) or SGD with momentum of a ``TrainConfig``, with the spec 5.2 schedule and multipliers."""
    schedule = PoseLRSchedule(train_cfg.learning_rate, train_cfg.lr_time_decay, train_cfg.lr_step_factor,
                              train_cfg.lr_step_epochs, steps_per_epoch)
    multipliers = POSE_LR_MULTIPLIERS if train_cfg.lr_multipliers else ()
    if train_cfg.optimizer == "sgd":
        return MultiplierSGD(multipliers, learning_rate=schedule, momentum=train_cfg.momentum)
    return MultiplierAdam(multipliers, learning_rate=schedule, epsilon=1e-7)


def topdown_lr_schedule(learning_rate: float, steps_per_epoch: int, decay_epochs=(90, 120), factor: float = 0.1):
    """Step decay: ``learning_rate`` multiplied by ``factor`` at each epoch in ``decay_epochs`` (spec 3).

    Returns a serialisable ``keras.optimizers.schedules.PiecewiseConstantDecay`` over optimizer steps
    (the constant rate itself when ``decay_epochs`` is empty).
    """
    if steps_per_epoch < 1:
        raise ValueError(f"steps_per_epoch={steps_per_epoch}: must be >= 1")
    epochs = sorted(int(e) for e in decay_epochs)
    # PiecewiseConstantDecay keeps the old value *at* a boundary step; epoch e starts at step e * spe.
    boundaries = [e * int(steps_per_epoch) - 1 for e in epochs]
    values = [float(learning_rate) * factor ** i for i in range(len(epochs) + 1)]
    if not boundaries:
        return float(learning_rate)
    return keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)


def build_topdown_optimizer(learning_rate: float, steps_per_epoch: int, decay_epochs=(90, 120),
                            factor: float = 0.1) -> keras.optimizers.Adam:
    """Adam (TF1's epsilon 1e-8) on the top-down step schedule (:func:`topdown_lr_schedule`)."""
    schedule = topdown_lr_schedule(learning_rate, steps_per_epoch, decay_epochs, factor)
    return keras.optimizers.Adam(learning_rate=schedule, epsilon=1e-8)
