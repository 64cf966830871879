"""Top-down Simple Baselines network (+ holistic / part-wise attention), its loss and its LR schedule."""
from __future__ import annotations

import logging

import keras
from keras import layers, ops

from simplepose.models.attention import HolisticAttention, PartwiseAttention
from simplepose.models.resnet_deconv import (add_kernel_decay, deconv_head, heatmap_conv, resnet50_backbone,
                                             tiny_backbone)
from simplepose.models.vgg_backbone import CAFFE_BGR_MEAN, CaffePreprocess

LOG = logging.getLogger(__name__)


def build_topdown_model(cfg) -> keras.Model:
    """Build the top-down model described by ``cfg.topdown`` (and ``cfg.model.backbone_weights``).

    The model takes float32 BGR crops in 0..255 and subtracts the Caffe ImageNet mean inside the graph
    (what Keras' ResNet50 weights expect). Its output is a dict ``{"heatmaps": (B, h, w, K)}`` with
    ``h, w = input_shape * 2 ** num_deconv / 32`` (64x48 for 256x192 and three deconvs) and ``K`` the
    skeleton's keypoint count.
    """
    td = cfg.topdown
    return build_topdown_network(
        num_keypoints=cfg.skeleton.num_keypoints, input_shape=tuple(td.input_shape), backbone=td.backbone,
        backbone_weights=cfg.model.backbone_weights, num_deconv=td.num_deconv, deconv_filters=td.deconv_filters,
        attention=td.attention, attention_kernel=td.attention_kernel, crf_iterations=td.crf_iterations,
        crf_kernel_size=td.crf_kernel_size, weight_decay=td.weight_decay)


def build_topdown_network(num_keypoints, input_shape=(256, 192), backbone="resnet50", backbone_weights="none",
                          num_deconv=3, deconv_filters=256, attention="none", attention_kernel="crf",
                          crf_iterations=3, crf_kernel_size=3, weight_decay=0.0) -> keras.Model:
    """The same as :func:`build_topdown_model` with narrow arguments (see ``TopDownConfig`` for each)."""
    if any(v % 32 for v in input_shape):
        raise ValueError(f"top-down input_shape={tuple(input_shape)}: both sides must be multiples of 32")
    inputs = keras.Input(shape=tuple(input_shape) + (3,), name="image")
    x = CaffePreprocess(CAFFE_BGR_MEAN, name="preprocess")(inputs)
    if backbone == "resnet50":
        net = resnet50_backbone(x, backbone_weights)
        add_kernel_decay(net, weight_decay)
        c5 = net(x)
    elif backbone == "tiny":
        c5 = tiny_backbone(x)
    else:
        raise ValueError(f"top-down backbone {backbone!r}: expected resnet50 or tiny")
    deconvs = deconv_head(c5, num_deconv, deconv_filters, weight_decay)
    features = deconvs[-1]
    if attention in ("holistic", "holistic+partwise"):
        features = HolisticAttention(len(deconvs) + 1, attention_kernel, crf_kernel_size, crf_iterations,
                                     name="holistic_attention")([c5] + deconvs)
    if attention == "holistic+partwise":
        heatmaps = PartwiseAttention(num_keypoints, attention_kernel, crf_kernel_size, crf_iterations,
                                     name="partwise_attention")(features)
    elif attention in ("none", "holistic"):
        heatmaps = heatmap_conv(num_keypoints, weight_decay)(features)
    else:
        raise ValueError(f"attention {attention!r}: expected none, holistic or holistic+partwise")
    heatmaps = layers.Identity(name="heatmaps", dtype="float32")(heatmaps)  # float32 under mixed precision
    name = f"topdown_{backbone}_{attention.replace('+', '_')}"
    return keras.Model(inputs, {"heatmaps": heatmaps}, name=name)


@keras.saving.register_keras_serializable(package="simplepose")
class VisibilityWeightedMSE(keras.losses.Loss):
    """Squared heatmap error weighted per keypoint by its visibility weight (spec 3, 0..1 target scale).

    ``call`` returns the element-wise squared error; pass the per-keypoint weights as ``sample_weight``
    (shape ``(B, 1, 1, K)``, broadcast by Keras). With the default ``sum_over_batch_size`` reduction the
    result is ``sum(w * (pred - target)**2) / (B * h * w * K)``, masked elements included in the count,
    as the published loss.

    Shapes: ``y_true``, ``y_pred`` ``(B, h, w, K)``; ``sample_weight`` ``(B, 1, 1, K)`` -> scalar.
    """

    def __init__(self, name="visibility_weighted_mse", reduction="sum_over_batch_size", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)

    def call(self, y_true, y_pred):
        y_true = ops.cast(y_true, y_pred.dtype)
        return ops.square(y_pred - y_true)

    def get_config(self):
        return {"name": self.name, "reduction": self.reduction, "dtype": self.dtype}


def topdown_loss(targets: dict, outputs: dict, loss=None):
    """The top-down training loss from the data and model dicts (for a ``compute_loss`` override).

    Shapes: ``targets = {"heatmaps": (B, h, w, K), "weights": (B, 1, 1, K)}``, ``outputs =
    {"heatmaps": (B, h, w, K)}`` -> scalar.
    """
    loss = loss or VisibilityWeightedMSE()
    return loss(targets["heatmaps"], outputs["heatmaps"], sample_weight=targets["weights"])


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


def build_topdown_optimizer(cfg, steps_per_epoch: int) -> keras.optimizers.Adam:
    """Adam (TF1's epsilon 1e-8) on the step schedule of ``cfg.topdown`` from ``cfg.train.learning_rate``."""
    td = cfg.topdown
    schedule = topdown_lr_schedule(cfg.train.learning_rate, steps_per_epoch, td.lr_decay_epochs, td.lr_decay_factor)
    return keras.optimizers.Adam(learning_rate=schedule, epsilon=1e-8)
