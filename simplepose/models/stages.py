"""Stage blocks of the bottom-up heads: model3 (spec 4.2, dilated branches + residual) and OpenPose (spec 4.3)."""
from __future__ import annotations

import functools

import keras
from keras import layers

from simplepose.models.vgg_backbone import scaled

#: Kernel initialisers by config name: the published N(0, 0.01), or He normal for training from scratch.
#: ``he_normal`` keeps N(0, 0.01) for the prediction convs and scales the first conv for pixel inputs.
INITIALIZERS = ("gaussian", "he_normal")
#: Normalisation after each hidden conv by config name: none (published) or batch.
NORMS = ("none", "batch")
#: Rough standard deviation of mean-subtracted 0..255 pixels.
PIXEL_STD = 58.0


class ConvFactory:
    """Makes 'same'-padded Conv2D layers with bias, the shared initialiser and L2 decay on kernels.

    Args:
        weight_decay: Keras ``L2`` coefficient on kernels (0 = none); biases are not decayed.
        init: ``gaussian`` (N(0, 0.01), spec 4.2) or ``he_normal``.
        seed: base seed of the kernel initialisers (each layer gets its own offset).
        norm: ``none`` (published: conv, bias, activation) or ``batch`` (conv without bias, BatchNormalization,
            activation) for every conv but the prediction convs.
    """

    def __init__(self, weight_decay: float, init: str = "gaussian", seed=None, norm: str = "none"):
        if init not in INITIALIZERS:
            raise ValueError(f"unknown kernel initialiser {init!r}; expected one of {', '.join(INITIALIZERS)}")
        if norm not in NORMS:
            raise ValueError(f"unknown normalisation {norm!r}; expected one of {', '.join(NORMS)}")
        self.weight_decay = weight_decay
        self.init = init
        self.norm = norm
        self.seed = seed
        self._count = 0

    def _initializer(self, role):
        self._count += 1
        seed = None if self.seed is None else self.seed + self._count
        if self.init == "gaussian" or role == "output":
            return keras.initializers.RandomNormal(stddev=0.01, seed=seed)
        # He normal; the first conv sees mean-subtracted 0..255 pixels (std ~ PIXEL_STD), not unit inputs.
        scale = 2.0 / PIXEL_STD ** 2 if role == "input" else 2.0
        return keras.initializers.VarianceScaling(scale, "fan_in", "truncated_normal", seed=seed)

    def __call__(self, x, filters, kernel, name, *, dilation=1, strides=1, activation="relu", dtype=None,
                 role="hidden"):
        """Apply a new conv layer to ``x``; ``role`` is ``input`` (first conv), ``hidden`` or ``output``."""
        normed = self.norm == "batch" and role != "output"
        layer = layers.Conv2D(
            filters, kernel, strides=strides, padding="same", dilation_rate=dilation,
            activation=None if normed else activation, use_bias=not normed,
            kernel_initializer=self._initializer(role), bias_initializer="zeros",
            kernel_regularizer=keras.regularizers.L2(self.weight_decay) if self.weight_decay else None,
            name=name, dtype=dtype)
        x = layer(x)
        if normed:
            x = layers.BatchNormalization(name=f"{name}_bn", dtype=dtype)(x)
            if activation is not None:
                x = layers.Activation(activation, name=f"{name}_{activation}", dtype=dtype)(x)
        return x


def _chain(conv, x, prefix, widths, kernels, dilations):
    for i, (w, k, d) in enumerate(zip(widths, kernels, dilations), start=1):
        x = conv(x, w, k, f"{prefix}{i}", dilation=d)
    return x


def model3_stage(conv, x, num_out, prefix, *, first, width=1.0, with_next=True):
    """One branch of a model3 stage (spec 4.2): four parallel branches, residual add, merge and predict.

    Args:
        conv: a ``ConvFactory``.
        x: stage input (256 channels at width 1).
        num_out: prediction channels (limbs or keypoints + background).
        prefix: layer name prefix, e.g. ``stage2_limbs``.
        first: stage 1 (ReLU after the add; shallower branches) or a later stage.
        width: head width multiplier.
        with_next: build ``merge_conv1`` (the feature for the next stage); the last stage does not.

    Returns:
        ``(prediction, next_feature or None)``.

    Shapes:
        x: (B, h, w, C) -> prediction (B, h, w, num_out) float32, next (B, h, w, C) (C = 256 at width 1).
    """
    s = functools.partial(scaled, multiplier=width)
    a = _chain(conv, x, f"{prefix}_a", [s(32), s(32 if first else 64)], [1, 3], [1, 1])
    b = _chain(conv, x, f"{prefix}_b", [s(32)] * 3, [1, 3, 3], [1, 1, 1])
    c = _chain(conv, x, f"{prefix}_c", [s(64)] * 3, [1, 3, 3], [1, 2, 5] if first else [1, 3, 4])
    d_dil = [1, 3, 4, 5, 5] if first else [1, 3, 3, 4, 4, 5, 5]
    d = _chain(conv, x, f"{prefix}_d", [s(64)] * len(d_dil), [1] + [3] * (len(d_dil) - 1), d_dil)
    cat = layers.Concatenate(name=f"{prefix}_concat")([a, b, c, d])
    m = conv(cat, x.shape[-1], 1, f"{prefix}_mix", activation=None)
    h = layers.Add(name=f"{prefix}_residual")([x, m])
    if first:
        h = layers.ReLU(name=f"{prefix}_residual_relu")(h)
    nxt = conv(h, x.shape[-1], 1, f"{prefix}_merge_conv1") if with_next else None
    p = conv(h, s(256), 3, f"{prefix}_regress_conv1")
    p = conv(p, s(128), 1, f"{prefix}_regress_conv2")
    p = conv(p, num_out, 1, f"{prefix}_regress_conv3", activation=None, dtype="float32", role="output")
    return p, nxt


def openpose_stage(conv, x, num_out, prefix, *, first, width=1.0):
    """One branch of a CMU/OpenPose stage (spec 4.3).

    Shapes:
        x: (B, h, w, C) -> prediction (B, h, w, num_out) float32.
    """
    if first:
        p = _chain(conv, x, f"{prefix}_conv", [scaled(128, width)] * 3, [3] * 3, [1] * 3)
        p = conv(p, scaled(512, width), 1, f"{prefix}_conv4")
    else:
        p = _chain(conv, x, f"{prefix}_conv", [scaled(128, width)] * 5, [7] * 5, [1] * 5)
        p = conv(p, scaled(128, width), 1, f"{prefix}_conv6")
    return conv(p, num_out, 1, f"{prefix}_out", activation=None, dtype="float32", role="output")
