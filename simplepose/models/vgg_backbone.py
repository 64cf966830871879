"""VGG19 conv1_1..conv4_2 trunk (Keras ``block*_conv*`` names), Caffe preprocessing and weight loading."""
from __future__ import annotations

import logging
import os

import keras
from keras import layers, ops

from simplepose.errors import SimplePoseError

LOG = logging.getLogger(__name__)

#: Caffe-style ImageNet mean, BGR order: what Keras' VGG19 ImageNet weights were trained with.
CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)

#: (layer name, filters) of the VGG19 convs kept, in order; ``None`` marks a 2x2 max pool.
VGG19_LAYERS = (
    ("block1_conv1", 64), ("block1_conv2", 64), None,
    ("block2_conv1", 128), ("block2_conv2", 128), None,
    ("block3_conv1", 256), ("block3_conv2", 256), ("block3_conv3", 256), ("block3_conv4", 256), None,
    ("block4_conv1", 512), ("block4_conv2", 512),
)
VGG19_LAYER_NAMES = tuple(spec[0] for spec in VGG19_LAYERS if spec)


class BackboneWeightsError(SimplePoseError, RuntimeError):
    """Backbone weights could not be obtained or do not fit; the message is one line."""


@keras.saving.register_keras_serializable(package="simplepose")
class CaffePreprocess(layers.Layer):
    """Subtract a per-channel mean from BGR 0..255 pixels (no scaling), as Caffe-trained VGG expects.

    Shapes:
        inputs: (B, H, W, 3) float BGR in 0..255 -> same shape, mean-subtracted.
    """

    def __init__(self, mean=CAFFE_BGR_MEAN, **kwargs):
        super().__init__(**kwargs)
        self.mean = tuple(float(m) for m in mean)

    def call(self, inputs):
        mean = ops.convert_to_tensor(self.mean, dtype=inputs.dtype)
        return inputs - mean

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "mean": list(self.mean)}


def scaled(filters: int, multiplier: float) -> int:
    """Channel count scaled by ``multiplier``, at least 1."""
    return max(1, int(round(filters * multiplier)))


def vgg19_trunk(x, conv, width_multiplier: float = 1.0):
    """Apply VGG19 conv1_1..conv4_2 (ReLU after every conv, three 2x2 max pools).

    Args:
        x: preprocessed image tensor.
        conv: a ``stages.ConvFactory`` (``conv(x, filters, kernel, name, role=...)`` applies a ReLU conv).
        width_multiplier: scales every conv width (1.0 = VGG19, needed for ImageNet weights).

    Returns:
        dict with ``pool2`` (stride 4), ``pool3`` (stride 8) and ``conv4_2`` (stride 8) tensors.

    Shapes:
        x: (B, H, W, 3) -> pool2 (B, H/4, W/4, 128m), pool3 (B, H/8, W/8, 256m), conv4_2 (B, H/8, W/8, 512m).
    """
    feats = {}
    pools = 0
    for i, spec in enumerate(VGG19_LAYERS):
        if spec is None:
            pools += 1
            x = layers.MaxPooling2D(2, 2, padding="valid", name=f"block{pools}_pool")(x)
            feats[f"pool{pools}"] = x
        else:
            name, filters = spec
            x = conv(x, scaled(filters, width_multiplier), 3, name, role="input" if i == 0 else "hidden")
    feats["conv4_2"] = x
    return feats


def load_backbone_weights(model: keras.Model, weights: str) -> None:
    """Copy VGG19 weights into the ``block*_conv*`` layers of ``model``.

    Args:
        model: a model holding layers named as ``VGG19_LAYER_NAMES``.
        weights: ``none`` (keep the initialisation), ``imagenet`` (Keras' ImageNet VGG19, downloaded
            on first use) or a path to a ``.h5`` / ``.weights.h5`` / ``.keras`` file with those layers.

    Raises:
        BackboneWeightsError: download impossible, file missing, or shapes that do not fit.
    """
    if weights in (None, "", "none"):
        return
    source = _imagenet_vgg19() if weights == "imagenet" else _vgg19_from_file(weights)
    for name in VGG19_LAYER_NAMES:
        target = model.get_layer(name)
        values = source[name]
        expected = [tuple(v.shape) for v in target.weights]
        if [tuple(v.shape) for v in values] != expected:
            raise BackboneWeightsError(f"backbone weights {weights!r}: layer {name} has shapes "
                                       f"{[tuple(v.shape) for v in values]}, the model needs {expected} "
                                       "(set model.backbone_width_multiplier=1.0)")
        target.set_weights(values)
    LOG.info("loaded VGG19 weights from %s into %d layers", weights, len(VGG19_LAYER_NAMES))


def _imagenet_vgg19() -> dict:
    try:
        vgg = keras.applications.VGG19(weights="imagenet", include_top=False)
    except Exception as e:  # download errors come as URLError, OSError, Exception("URL fetch failure ...")
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise BackboneWeightsError("could not obtain the ImageNet VGG19 weights (no network access?): "
                                   f"{reason}. Use model.backbone_weights=none or a local weights file") from None
    return {name: vgg.get_layer(name).get_weights() for name in VGG19_LAYER_NAMES}


def _vgg19_from_file(path: str) -> dict:
    if not os.path.isfile(path):
        raise BackboneWeightsError(f"backbone weights file {path!r} not found")
    vgg = keras.applications.VGG19(weights=None, include_top=False)
    try:
        if path.endswith(".keras"):
            vgg = keras.saving.load_model(path, compile=False)
        else:
            vgg.load_weights(path, skip_mismatch=False)
        return {name: vgg.get_layer(name).get_weights() for name in VGG19_LAYER_NAMES}
    except Exception as e:
        raise BackboneWeightsError(f"backbone weights file {path!r} is not a VGG19 weights file: "
                                   f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
