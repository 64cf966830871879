"""TopDownNet: Simple Baselines (ResNet-50 + deconvolutions) with optional holistic / part-wise attention."""
from __future__ import annotations

import keras
from keras import layers

from simplepose.headmeta import HeadMeta
from simplepose.models.attention import HolisticAttention, PartwiseAttention
from simplepose.models.resnet_deconv import (TINY_WIDTHS, add_kernel_decay, deconv_head, heatmap_conv,
                                             load_resnet50_weights, resnet50_backbone, tiny_backbone)
from simplepose.models.vgg_backbone import CAFFE_BGR_MEAN, BackboneWeightsError, CaffePreprocess

BACKBONES = ("resnet50", "tiny")
ATTENTIONS = ("none", "holistic", "holistic+partwise")


@keras.saving.register_keras_serializable(package="simplepose")
class TopDownNet(keras.Model):
    """Top-down pose network: a person crop in, one heatmap per keypoint out.

    The crop (float32 BGR 0..255; uint8 is cast) has the Caffe ImageNet mean subtracted inside the graph
    (what Keras' ResNet50 weights expect). Load backbone weights with :func:`load_backbone_weights`.

    Args:
        num_keypoints: heatmap channels K (``Skeleton.num_keypoints``).
        input_shape: crop ``(height, width)``, multiples of 32.
        backbone: ``resnet50`` (keras.applications layout) or ``tiny`` (tests, smoke runs).
        num_deconv: transposed-conv upsampling layers of the head (each halves the stride of 32).
        deconv_filters: their width.
        attention: ``none``, ``holistic`` or ``holistic+partwise``.
        attention_kernel: ``crf`` or ``softmax``.
        crf_iterations, crf_kernel_size: mean-field iterations and pairwise kernel size of the CRF.
        weight_decay: L2 coefficient on conv and deconv kernels.
        tiny_widths: channels of the tiny trunk's stride-2 layers (``tiny`` only; five keep its stride 32).
        head_meta: the model's head contract (a ``simplepose.headmeta.HeadMeta`` or its dict), stored in
            the config so that a saved ``.keras`` file carries it.

    Shapes:
        inputs: ``(B, H, W, 3)`` -> ``{"heatmaps": (B, H * 2**num_deconv / 32, W * 2**num_deconv / 32, K)}``
        float32 (64x48 for 256x192 and three deconvolutions).
    """

    def __init__(self, num_keypoints, input_shape=(256, 192), backbone="resnet50", num_deconv=3,
                 deconv_filters=256, attention="none", attention_kernel="crf", crf_iterations=3, crf_kernel_size=3,
                 weight_decay=0.0, head_meta=None, tiny_widths=TINY_WIDTHS, **kwargs):
        input_shape = tuple(int(v) for v in input_shape)
        if any(v % 32 for v in input_shape):
            raise ValueError(f"top-down input_shape={input_shape}: both sides must be multiples of 32")
        if backbone not in BACKBONES or attention not in ATTENTIONS:
            raise ValueError(f"top-down backbone {backbone!r} / attention {attention!r}: expected one of "
                             f"{', '.join(BACKBONES)} / {', '.join(ATTENTIONS)}")
        # === Functional Model ===
        image = keras.Input(shape=input_shape + (3,), name="image")
        x = CaffePreprocess(CAFFE_BGR_MEAN, name="preprocess")(image)
        if backbone == "resnet50":
            net = resnet50_backbone(x)
            add_kernel_decay(net, weight_decay)
            c5 = net(x)
        else:
            c5 = tiny_backbone(x, tuple(int(w) for w in tiny_widths))
        deconvs = deconv_head(c5, num_deconv, deconv_filters, weight_decay)
        features = deconvs[-1]
        if attention != "none":
            features = HolisticAttention(len(deconvs) + 1, attention_kernel, crf_kernel_size, crf_iterations,
                                         name="holistic_attention")([c5] + deconvs)
        if attention == "holistic+partwise":
            heatmaps = PartwiseAttention(num_keypoints, attention_kernel, crf_kernel_size, crf_iterations,
                                         name="partwise_attention")(features)
        else:
            heatmaps = heatmap_conv(num_keypoints, weight_decay)(features)
        heatmaps = layers.Identity(name="heatmaps", dtype="float32")(heatmaps)  # float32 under mixed precision
        kwargs.setdefault("name", f"topdown_{backbone}_{attention.replace('+', '_')}")
        super().__init__(inputs=image, outputs={"heatmaps": heatmaps}, **kwargs)
        # === Config ===
        self.num_keypoints = num_keypoints
        self.crop_shape = input_shape  # ``input_shape`` is a read-only Keras property
        self.backbone = backbone
        self.num_deconv = num_deconv
        self.deconv_filters = deconv_filters
        self.attention = attention
        self.attention_kernel = attention_kernel
        self.crf_iterations = crf_iterations
        self.crf_kernel_size = crf_kernel_size
        self.weight_decay = weight_decay
        self.tiny_widths = tuple(int(w) for w in tiny_widths)
        self.head_meta = HeadMeta.coerce(head_meta)

    def get_config(self):
        return {"name": self.name, "trainable": self.trainable, "num_keypoints": self.num_keypoints,
                "input_shape": list(self.crop_shape), "backbone": self.backbone, "num_deconv": self.num_deconv,
                "deconv_filters": self.deconv_filters, "attention": self.attention,
                "attention_kernel": self.attention_kernel, "crf_iterations": self.crf_iterations,
                "crf_kernel_size": self.crf_kernel_size, "weight_decay": self.weight_decay,
                "tiny_widths": list(self.tiny_widths),
                "head_meta": None if self.head_meta is None else self.head_meta.to_dict()}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def load_backbone_weights(model: TopDownNet, weights: str) -> None:
    """``none``, ``imagenet`` or a ResNet50 weights file into a ``resnet50`` TopDownNet's backbone.

    Raises:
        BackboneWeightsError: as ``resnet_deconv.load_resnet50_weights``; or weights for the tiny backbone.
    """
    if weights in (None, "", "none"):
        return
    if model.backbone != "resnet50":
        raise BackboneWeightsError(f"backbone weights {weights!r}: the {model.backbone} backbone has none to load")
    load_resnet50_weights(model.get_layer("resnet50"), weights)


def build_topdown_network(num_keypoints, input_shape=(256, 192), backbone="resnet50", backbone_weights="none",
                          num_deconv=3, deconv_filters=256, attention="none", attention_kernel="crf",
                          crf_iterations=3, crf_kernel_size=3, weight_decay=0.0, head_meta=None,
                          tiny_widths=TINY_WIDTHS) -> TopDownNet:
    """A :class:`TopDownNet` with its backbone weights loaded (narrow arguments; see ``TopDownConfig``)."""
    model = TopDownNet(num_keypoints, input_shape, backbone, num_deconv, deconv_filters, attention, attention_kernel,
                       crf_iterations, crf_kernel_size, weight_decay, head_meta=head_meta, tiny_widths=tiny_widths)
    load_backbone_weights(model, backbone_weights)
    return model
