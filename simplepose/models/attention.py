"""Attention for the top-down head: CRF (mean-field) and spatial-softmax maps, holistic and part-wise use."""
from __future__ import annotations

import keras
from keras import layers, ops

KERNELS = ("crf", "softmax")


def _xavier():
    """TF1 ``xavier_initializer(uniform=False)``: truncated normal, fan average (spec 2.3)."""
    return keras.initializers.VarianceScaling(1.0, "fan_avg", "truncated_normal")


@keras.saving.register_keras_serializable(package="simplepose")
class CRFAttention(layers.Layer):
    """Attention maps by mean-field inference with a learned spatial pairwise kernel (Chu et al. 2017).

    ``U = conv(F)`` gives one unary logit map per output map. Then ``Q_0 = sigmoid(U)`` and
    ``Q_t = sigmoid(U + K * Q_{t-1})`` for ``t = 1..iterations``, where ``*`` is a SAME convolution with a
    ``kernel_size`` x ``kernel_size`` kernel ``K`` per map, shared over iterations. With ``kernel_size >= 3``
    neighbouring pixels influence each other (the published code used a 1x1 scalar kernel: no spatial
    term). The unary conv has a bias (Chu's original does; the published port dropped it).

    Args:
        num_maps: attention maps computed (1 holistic, K part-wise); each has its own unary and kernel.
        kernel_size: side of the pairwise kernel (odd).
        iterations: mean-field updates after the initial ``sigmoid(U)``.
        unary_kernel_size: side of the unary conv.

    Shapes: ``(B, h, w, C)`` -> ``(B, h, w, num_maps)`` in (0, 1).
    """

    def __init__(self, num_maps=1, kernel_size=3, iterations=3, unary_kernel_size=3, **kwargs):
        super().__init__(**kwargs)
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"CRF pairwise kernel_size={kernel_size}: must be odd and >= 1")
        self.num_maps = int(num_maps)
        self.kernel_size = int(kernel_size)
        self.iterations = int(iterations)
        self.unary_kernel_size = int(unary_kernel_size)
        self.unary = layers.Conv2D(self.num_maps, self.unary_kernel_size, padding="same",
                                   kernel_initializer=_xavier(), name="unary")

    def build(self, input_shape):
        self.unary.build(input_shape)
        # Std 1/k keeps the pairwise message (a sum of k*k terms times Q in (0, 1)) of order 1.
        self.pairwise = self.add_weight(
            name="pairwise", shape=(self.kernel_size, self.kernel_size, self.num_maps, 1),
            initializer=keras.initializers.TruncatedNormal(0.0, 1.0 / self.kernel_size))

    def call(self, features):
        return self.mean_field(self.unary(features))

    def mean_field(self, unary):
        """Run the mean-field iterations on given unary logits. Shapes: ``(B, h, w, M)`` -> same."""
        q = ops.sigmoid(unary)
        for _ in range(self.iterations):
            q = ops.sigmoid(unary + ops.depthwise_conv(q, self.pairwise, strides=1, padding="same"))
        return q

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.num_maps,)

    def get_config(self):
        return {**super().get_config(), "num_maps": self.num_maps, "kernel_size": self.kernel_size,
                "iterations": self.iterations, "unary_kernel_size": self.unary_kernel_size}


@keras.saving.register_keras_serializable(package="simplepose")
class SoftmaxAttention(layers.Layer):
    """Spatial-softmax attention maps (the report's softmax variant; the design details are ours).

    ``phi = softmax over all h*w positions of conv(F)``, one map per output channel, then rescaled by
    ``h * w`` so each map has mean 1 at any resolution (a raw softmax would be ~1/3072 at 64x48 and its
    scale would depend on the map size, which matters when maps of several scales are summed).

    Args:
        num_maps: attention maps computed.
        unary_kernel_size: side of the scoring conv.

    Shapes: ``(B, h, w, C)`` -> ``(B, h, w, num_maps)``, positive, mean 1 over each map.
    """

    def __init__(self, num_maps=1, unary_kernel_size=3, **kwargs):
        super().__init__(**kwargs)
        self.num_maps = int(num_maps)
        self.unary_kernel_size = int(unary_kernel_size)
        # No bias: a softmax over positions is invariant to a per-map constant (its gradient is 0).
        # Zero init: every map starts uniform (all ones), i.e. as no attention; a random init gives peaks
        # up to h*w that blow the initial heatmaps (and loss) up by orders of magnitude.
        self.unary = layers.Conv2D(self.num_maps, self.unary_kernel_size, padding="same", use_bias=False,
                                   kernel_initializer="zeros", name="unary")

    def build(self, input_shape):
        self.unary.build(input_shape)

    def call(self, features):
        s = self.unary(features)
        s = s - ops.max(s, axis=(1, 2), keepdims=True)
        e = ops.exp(s)
        h, w = ops.shape(s)[1], ops.shape(s)[2]
        area = ops.cast(h * w, e.dtype)
        return e * area / ops.sum(e, axis=(1, 2), keepdims=True)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.num_maps,)

    def get_config(self):
        return {**super().get_config(), "num_maps": self.num_maps, "unary_kernel_size": self.unary_kernel_size}


def attention_unit(kernel: str, num_maps: int, kernel_size: int = 3, iterations: int = 3, name=None):
    """A ``CRFAttention`` or ``SoftmaxAttention`` layer producing ``num_maps`` maps."""
    if kernel == "crf":
        return CRFAttention(num_maps, kernel_size=kernel_size, iterations=iterations, name=name)
    if kernel == "softmax":
        return SoftmaxAttention(num_maps, name=name)
    raise ValueError(f"attention kernel {kernel!r}: expected one of {', '.join(KERNELS)}")


@keras.saving.register_keras_serializable(package="simplepose")
class HolisticAttention(layers.Layer):
    """One attention map per scale, nearest-upsampled to the finest scale, summed, applied once.

    The inputs are feature maps coarsest first (C5 and every deconv output); the last one is the final
    deconv output, which is the only tensor attended (spec 2.6 "as intended"): ``out = D_last * sum_s
    up(m_s)``. The summed map lies in (0, num_scales) for CRF, mean num_scales for softmax; it is not
    normalised (the source leaves this open; the heatmap conv absorbs a constant factor).

    Args:
        num_scales: number of input feature maps.
        kernel: ``crf`` or ``softmax``.
        kernel_size, iterations: CRF pairwise kernel side and mean-field iterations.

    Shapes: list of ``(B, h_s, w_s, C_s)`` with ``h_last / h_s`` integer -> ``(B, h_last, w_last, C_last)``.
    """

    def __init__(self, num_scales, kernel="crf", kernel_size=3, iterations=3, **kwargs):
        super().__init__(**kwargs)
        self.num_scales = int(num_scales)
        self.kernel = kernel
        self.kernel_size = int(kernel_size)
        self.iterations = int(iterations)
        self.units = [attention_unit(kernel, 1, self.kernel_size, self.iterations, name=f"scale{i}")
                      for i in range(self.num_scales)]

    def build(self, input_shape):
        if len(input_shape) != self.num_scales:
            raise ValueError(f"HolisticAttention expects {self.num_scales} inputs, got {len(input_shape)}")
        for unit, shape in zip(self.units, input_shape):
            unit.build(shape)

    def attention_map(self, features):
        """The summed map at the finest scale. Shapes: list as in ``call`` -> ``(B, h_last, w_last, 1)``.

        Scale i is upsampled by ``2 ** (num_scales - 1 - i)`` (each deconvolution doubles the resolution),
        so the layer also runs where the spatial size is only known at run time (exported models).
        """
        h, w = features[-1].shape[1], features[-1].shape[2]
        total = None
        for i, (unit, x) in enumerate(zip(self.units, features)):
            m = unit(x)
            f = 2 ** (self.num_scales - 1 - i)
            if None not in (h, w, x.shape[1], x.shape[2]) and (f * x.shape[1] != h or f * x.shape[2] != w):
                raise ValueError(f"scale {tuple(x.shape[1:3])} is not the final scale {(h, w)} divided by {f}")
            if f > 1:
                m = ops.repeat(ops.repeat(m, f, axis=1), f, axis=2)
            total = m if total is None else total + m
        return total

    def call(self, features):
        return features[-1] * self.attention_map(features)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "num_scales": self.num_scales, "kernel": self.kernel,
                "kernel_size": self.kernel_size, "iterations": self.iterations}


@keras.saving.register_keras_serializable(package="simplepose")
class PartwiseAttention(layers.Layer):
    """One attention map per keypoint, each applied to the features before that keypoint's 1x1 heatmap conv.

    ``heatmap_p = w_p . (F * m_p) + b_p``, computed as ``m_p * (w_p . F) + b_p`` (identical because
    ``m_p`` is one scalar per pixel) so the 17 attended copies of ``F`` are never materialised.

    Args:
        num_keypoints: heatmaps (and attention maps) produced; from the skeleton.
        kernel: ``crf`` or ``softmax``.
        kernel_size, iterations: CRF pairwise kernel side and mean-field iterations.

    Shapes: ``(B, h, w, C)`` -> ``(B, h, w, num_keypoints)``.
    """

    def __init__(self, num_keypoints, kernel="crf", kernel_size=3, iterations=3, **kwargs):
        super().__init__(**kwargs)
        self.num_keypoints = int(num_keypoints)
        self.kernel = kernel
        self.kernel_size = int(kernel_size)
        self.iterations = int(iterations)
        self.unit = attention_unit(kernel, self.num_keypoints, self.kernel_size, self.iterations, name="parts")
        self.project = layers.Conv2D(
            self.num_keypoints, 1, use_bias=True, name="project",
            kernel_initializer=keras.initializers.VarianceScaling(2.0, "fan_in", "truncated_normal"))

    def build(self, input_shape):
        self.unit.build(input_shape)
        self.project.build(input_shape)

    def attention_map(self, features):
        """The per-keypoint maps. Shapes: ``(B, h, w, C)`` -> ``(B, h, w, num_keypoints)``."""
        return self.unit(features)

    def call(self, features):
        projected = ops.matmul(features, self.project.kernel[0, 0])
        return self.unit(features) * projected + self.project.bias

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.num_keypoints,)

    def get_config(self):
        return {**super().get_config(), "num_keypoints": self.num_keypoints, "kernel": self.kernel,
                "kernel_size": self.kernel_size, "iterations": self.iterations}
