"""Top-down backbones (Keras ResNet-50 or a tiny test trunk) and the Simple Baselines deconvolution head."""
from __future__ import annotations

import logging
import os

import keras
from keras import layers

from simplepose.models.vgg_backbone import BackboneWeightsError

LOG = logging.getLogger(__name__)

#: Widths of the tiny test backbone: one stride-2 conv per entry, so the output stride is 2 ** len.
TINY_WIDTHS = (8, 16, 16, 32, 32)


def resnet50_backbone(inputs) -> keras.Model:
    """``keras.applications.ResNet50`` without its top (random weights), as a nested model for ``inputs``.

    Load weights into it with :func:`load_resnet50_weights`.

    Args:
        inputs: preprocessed (Caffe-style BGR minus mean) input tensor, ``(B, H, W, 3)``.

    Returns:
        The backbone model (name ``resnet50``); its output is C5, ``(B, H/32, W/32, 2048)``.
    """
    return keras.applications.ResNet50(include_top=False, weights=None, input_shape=tuple(inputs.shape[1:]))


def load_resnet50_weights(net: keras.Model, weights: str) -> None:
    """Copy ResNet50 (no top) weights into the backbone ``net``.

    Args:
        net: a model from :func:`resnet50_backbone`.
        weights: ``none`` (keep the initialisation), ``imagenet`` (downloaded by Keras on first use; offline
            this fails with a ``BackboneWeightsError``) or a path to a ResNet50 ``.h5`` / ``.weights.h5`` file.

    Raises:
        BackboneWeightsError: download impossible, file missing, or not a ResNet50 weights file.
    """
    if weights in (None, "", "none"):
        return
    shape = tuple(net.input.shape[1:])
    if weights == "imagenet":
        try:
            source = keras.applications.ResNet50(include_top=False, weights="imagenet", input_shape=shape)
        except Exception as e:  # noqa: BLE001  (download errors come in many types)
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise BackboneWeightsError("could not obtain the ImageNet ResNet50 weights (no network access?): "
                                       f"{reason}. Use model.backbone_weights=none or a local weights file"
                                       ) from None
        net.set_weights(source.get_weights())
        return
    if not os.path.exists(weights):
        raise BackboneWeightsError(f"backbone weights file {weights!r} not found")
    try:
        net.load_weights(weights)
    except Exception as e:  # noqa: BLE001
        raise BackboneWeightsError(f"backbone weights file {weights!r} is not a ResNet50 (no top) weights file: "
                                   f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    LOG.info("loaded ResNet50 weights from %s", weights)


def tiny_backbone(x, widths=TINY_WIDTHS):
    """A small conv/BN/ReLU trunk with stride ``2 ** len(widths)``, for tests and smoke runs.

    Shapes: ``(B, H, W, 3)`` -> ``(B, H / 2**n, W / 2**n, widths[-1])``.
    """
    for i, w in enumerate(widths):
        x = layers.Conv2D(w, 3, strides=2, padding="same", use_bias=False, name=f"tiny_conv{i + 1}")(x)
        x = layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name=f"tiny_bn{i + 1}")(x)
        x = layers.ReLU(name=f"tiny_relu{i + 1}")(x)
    return x


def deconv_head(x, num_deconv: int, filters: int, weight_decay: float = 0.0):
    """Simple Baselines upsampling: ``num_deconv`` x (transposed conv 4x4/2, no bias -> BN -> ReLU).

    Returns every deconv output, coarsest first (the holistic attention taps them).

    Shapes: ``(B, h, w, C)`` -> list of ``(B, h * 2**i, w * 2**i, filters)`` for i = 1..num_deconv.
    """
    outputs = []
    reg = keras.regularizers.L2(weight_decay) if weight_decay > 0 else None
    for i in range(num_deconv):
        x = layers.Conv2DTranspose(filters, 4, strides=2, padding="same", use_bias=False,
                                   kernel_initializer=keras.initializers.TruncatedNormal(0.0, 0.01),
                                   kernel_regularizer=reg, name=f"deconv{i + 1}")(x)
        x = layers.BatchNormalization(momentum=0.99, epsilon=1e-5, name=f"deconv{i + 1}_bn")(x)
        x = layers.ReLU(name=f"deconv{i + 1}_relu")(x)
        outputs.append(x)
    return outputs


def heatmap_conv(num_keypoints: int, weight_decay: float = 0.0, name: str = "heatmap_conv"):
    """The final 1x1 conv to one heatmap per keypoint (bias, MSRA-style init, no activation)."""
    return layers.Conv2D(num_keypoints, 1, use_bias=True, name=name,
                         kernel_initializer=keras.initializers.VarianceScaling(2.0, "fan_in", "truncated_normal"),
                         kernel_regularizer=keras.regularizers.L2(weight_decay) if weight_decay > 0 else None)


def add_kernel_decay(model: keras.Model, weight_decay: float) -> None:
    """Put an L2 penalty on every conv kernel of an already built model (keras.applications has no hook).

    The layer's ``kernel_regularizer`` is set too, so a saved model reloads with the same penalty.
    """
    if weight_decay <= 0:
        return
    for layer in model.layers:
        if isinstance(layer, (layers.Conv2D, layers.Conv2DTranspose)):
            layer.kernel_regularizer = keras.regularizers.L2(weight_decay)
            layer.kernel.regularizer = layer.kernel_regularizer
