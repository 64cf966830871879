"""Losses: focal L2 over the bottom-up stages (spec 5.1), masked; the top-down visibility-weighted MSE."""
from __future__ import annotations

import keras
from keras import ops

BRANCHES = ("limbs", "keypoints")


def focal_l2_per_sample(target, pred, mask, gamma=2.0, threshold=0.01):
    """Per-sample masked focal L2: ``sum((1 - p_t)^gamma * (G - P)^2) / 2`` with P, G masked.

    ``p_t = P`` where ``G > threshold`` else ``1 - P``; ``gamma = 0`` gives the plain Euclidean loss
    ``sum((G - P)^2) / 2``. The weight uses ``|1 - p_t|`` (identical for even gamma; predictions are linear
    and may exceed 1). Masked cells have P = G = 0, hence weight 0: they contribute nothing.

    Shapes:
        target, pred: (B, h, w, C); mask: (B, h, w, 1) -> (B,).
    """
    pred = ops.cast(pred, "float32") * mask
    target = ops.cast(target, "float32") * mask
    sq = ops.square(target - pred)
    if gamma:
        p_t = ops.where(target > threshold, pred, 1.0 - pred)
        sq = sq * ops.power(ops.abs(1.0 - p_t), gamma)
    return ops.sum(sq, axis=(1, 2, 3)) * 0.5


@keras.saving.register_keras_serializable(package="simplepose")
class FocalL2Loss(keras.losses.Loss):
    """Weighted sum of the focal L2 of every stage's limb and keypoint maps, averaged over the batch.

    Called as ``loss(y_true, y_pred)`` with ``y_true = {"limbs", "keypoints", "mask"}`` (targets already
    masked) and ``y_pred = {"stage_t": {"limbs", "keypoints"}}``. Keras' ``sum_over_batch_size`` divides by
    the replica's batch and ``tf.distribute`` by the replica count: the loss is normalised by the actual
    global batch size (the seed divided by a constant 25).

    Args:
        gamma: focal exponent (0 = plain L2 / 2).
        positive_threshold: target values above it are positives.
        stage_weights: weight of each stage, first stage first.
        limb_weight: extra factor on the limb branch.
    """

    def __init__(self, gamma=2.0, positive_threshold=0.01, stage_weights=(0.5, 0.8, 1.0), limb_weight=0.3333,
                 name="focal_l2", reduction="sum_over_batch_size", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.gamma = float(gamma)
        self.positive_threshold = float(positive_threshold)
        self.stage_weights = tuple(float(w) for w in stage_weights)
        self.limb_weight = float(limb_weight)

    def call(self, y_true, y_pred):
        """Shapes: y_true maps (B, h, w, C), mask (B, h, w, 1); every y_pred map (B, h, w, C) -> (B,)."""
        if len(y_pred) != len(self.stage_weights):
            raise ValueError(f"model has {len(y_pred)} stages but the loss has {len(self.stage_weights)} weights")
        mask = ops.cast(y_true["mask"], "float32")
        total = 0.0
        for t, weight in enumerate(self.stage_weights, start=1):
            stage = y_pred[f"stage_{t}"]
            for branch in BRANCHES:
                w = weight * (self.limb_weight if branch == "limbs" else 1.0)
                total = total + w * focal_l2_per_sample(y_true[branch], stage[branch], mask,
                                                        self.gamma, self.positive_threshold)
        return total

    def get_config(self):
        return {**super().get_config(), "gamma": self.gamma, "positive_threshold": self.positive_threshold,
                "stage_weights": list(self.stage_weights), "limb_weight": self.limb_weight}


def build_loss(loss_cfg) -> FocalL2Loss:
    """The loss of a ``LossConfig`` (``kind=l2`` is the focal loss with gamma 0)."""
    return FocalL2Loss(gamma=loss_cfg.gamma if loss_cfg.kind == "focal_l2" else 0.0,
                       positive_threshold=loss_cfg.positive_threshold,
                       stage_weights=loss_cfg.stage_weights, limb_weight=loss_cfg.limb_weight)


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
