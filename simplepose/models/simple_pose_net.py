"""SimplePoseNet: VGG19 trunk + multi-stage limb/keypoint heads (model3 or OpenPose layout), dict outputs."""
from __future__ import annotations

import keras
from keras import layers, ops

from simplepose.headmeta import HeadMeta
from simplepose.models.stages import ConvFactory, model3_stage, openpose_stage
from simplepose.models.vgg_backbone import CaffePreprocess, scaled, vgg19_trunk


@keras.saving.register_keras_serializable(package="simplepose")
class SimplePoseNet(keras.Model):
    """Bottom-up pose network: float32 BGR 0..255 image in, one ``{"limbs", "keypoints"}`` dict per stage out.

    The image is mean-subtracted inside the graph (Caffe-style, what VGG19 ImageNet weights expect).
    The loss is whatever ``compile(loss=...)`` received, called as ``loss(y_true, y_pred)`` on the whole
    target and output dicts (see ``simplepose.losses.FocalL2Loss``); L2 decay on kernels is added. A saved
    ``.keras`` file keeps the loss and the optimiser state in its compile config.

    Args:
        num_limbs: limb channels L (``Skeleton.num_limbs``).
        num_keypoint_channels: keypoint channels K + 1 (``Skeleton.num_keypoint_channels``).
        num_stages: prediction stages T.
        architecture: ``model3`` (spec 4.2) or ``openpose`` (spec 4.3).
        width_multiplier: scales the head, CPM and shortcut widths.
        backbone_width_multiplier: scales the VGG widths (1.0 for ImageNet weights).
        weight_decay: L2 coefficient on conv kernels.
        kernel_init: ``gaussian`` (N(0, 0.01)) or ``he_normal``.
        norm: ``none`` (published, no normalisation) or ``batch`` (BatchNormalization after every hidden conv).
        seed: initialiser seed (None = random).
        head_meta: the model's head contract (a ``simplepose.headmeta.HeadMeta`` or its dict): what the
            Predictor needs to use it (skeleton, stride, the run's inference settings). Stored in the config,
            so a saved ``.keras`` file carries it.

    Shapes:
        inputs: (B, H, W, 3) float32, H and W multiples of 8 ->
        ``{"stage_t": {"limbs": (B, H/8, W/8, L), "keypoints": (B, H/8, W/8, K+1)}}`` float32.
    """

    def __init__(self, num_limbs, num_keypoint_channels, num_stages=3, architecture="model3",
                 width_multiplier=1.0, backbone_width_multiplier=1.0, weight_decay=5e-4,
                 kernel_init="gaussian", seed=None, head_meta=None, norm="none", **kwargs):
        if architecture not in HEADS:
            raise ValueError(f"unknown architecture {architecture!r}; expected one of {', '.join(HEADS)}")
        conv = ConvFactory(weight_decay, kernel_init, seed, norm)
        image = keras.Input((None, None, 3), dtype="float32", name="image")
        x = CaffePreprocess(name="preprocess", dtype="float32")(image)
        feats = vgg19_trunk(x, conv, backbone_width_multiplier)
        c = conv(feats["conv4_2"], scaled(256, width_multiplier), 3, "conv4_3_CPM")
        c = conv(c, scaled(128, width_multiplier), 3, "conv4_4_CPM")
        outputs = HEADS[architecture](conv, feats, c, num_limbs, num_keypoint_channels, num_stages, width_multiplier)
        super().__init__(inputs=image, outputs=outputs, **kwargs)
        self.num_limbs = num_limbs
        self.num_keypoint_channels = num_keypoint_channels
        self.num_stages = num_stages
        self.architecture = architecture
        self.width_multiplier = width_multiplier
        self.backbone_width_multiplier = backbone_width_multiplier
        self.weight_decay = weight_decay
        self.kernel_init = kernel_init
        self.norm = norm
        self.seed = seed
        self.head_meta = HeadMeta.coerce(head_meta)

    def compile(self, optimizer="rmsprop", loss=None, **kwargs):
        """Keras ``compile``; ``loss`` is kept as ``pose_loss`` and applied to the whole dicts by
        ``compute_loss`` (Keras' per-output loss matching does not fit targets shaped unlike the outputs)."""
        self.pose_loss = loss
        super().compile(optimizer=optimizer, loss=None, **kwargs)

    def get_compile_config(self):
        config = super().get_compile_config()
        if config is not None and getattr(self, "pose_loss", None) is not None:
            config["loss"] = keras.saving.serialize_keras_object(self.pose_loss)
        return config

    def compile_from_config(self, config):
        self.compile(**keras.saving.deserialize_keras_object(config))
        if self.built:
            self.optimizer.build(self.trainable_variables)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """The pose loss on the full dicts plus the (distribution-scaled) L2 decay terms."""
        total = ops.zeros((), dtype="float32")
        if getattr(self, "pose_loss", None) is not None and y is not None:
            total = total + self.pose_loss(y, y_pred, sample_weight)
        for extra in self.losses:
            total = total + ops.cast(self._aggregate_additional_loss(extra), "float32")
        return total

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Keras (3.15, TensorFlow) reduces a whole distributed batch here only to build unbuilt state;
        # MultiWorkerMirroredStrategy cannot reduce nested batches. Nothing to build: skip it.
        if self.built and (self.optimizer is None or self.optimizer.built):
            return None
        return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)

    def get_config(self):
        return {"name": self.name, "trainable": self.trainable, "num_limbs": self.num_limbs,
                "num_keypoint_channels": self.num_keypoint_channels, "num_stages": self.num_stages,
                "architecture": self.architecture, "width_multiplier": self.width_multiplier,
                "backbone_width_multiplier": self.backbone_width_multiplier, "weight_decay": self.weight_decay,
                "kernel_init": self.kernel_init, "norm": self.norm, "seed": self.seed,
                "head_meta": None if self.head_meta is None else self.head_meta.to_dict()}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def _model3_heads(conv, feats, c, num_limbs, num_kp, num_stages, width):
    s1 = conv(feats["pool2"], scaled(64, width), 1, "conv2_shortcut1", strides=2)
    s2 = conv(feats["pool3"], scaled(64, width), 1, "conv2_shortcut2")
    f = layers.Concatenate(name="features")([s1, s2, c])
    x, outputs = f, {}
    for t in range(1, num_stages + 1):
        last = t == num_stages
        kw = dict(first=t == 1, width=width, with_next=not last)
        p_l, n_l = model3_stage(conv, x, num_limbs, f"stage{t}_limbs", **kw)
        p_k, n_k = model3_stage(conv, x, num_kp, f"stage{t}_keypoints", **kw)
        outputs[f"stage_{t}"] = {"limbs": p_l, "keypoints": p_k}
        if not last:
            preds = layers.Concatenate(name=f"stage{t}_predictions")([p_l, p_k])
            q = conv(preds, f.shape[-1], 1, f"stage{t}_afterpred_conv")
            x = layers.Add(name=f"stage{t + 1}_input")([n_l, n_k, x, q])
    return outputs


def _openpose_heads(conv, feats, c, num_limbs, num_kp, num_stages, width):
    x, outputs = c, {}
    for t in range(1, num_stages + 1):
        kw = dict(first=t == 1, width=width)
        p_l = openpose_stage(conv, x, num_limbs, f"stage{t}_limbs", **kw)
        p_k = openpose_stage(conv, x, num_kp, f"stage{t}_keypoints", **kw)
        outputs[f"stage_{t}"] = {"limbs": p_l, "keypoints": p_k}
        x = layers.Concatenate(name=f"stage{t + 1}_input")([p_l, p_k, c])
    return outputs


#: The stage layouts by architecture name: model3 (spec 4.2) and the CMU/OpenPose style (spec 4.3).
HEADS = {"model3": _model3_heads, "openpose": _openpose_heads}
