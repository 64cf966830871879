"""``build_model(cfg)``: the one place that turns a ``Config`` into a Keras model."""
from __future__ import annotations

import keras

from simplepose.config import Config
from simplepose.models.simple_pose_net import ARCHITECTURES, SimplePoseNet
from simplepose.models.vgg_backbone import load_backbone_weights


def build_bottomup_model(cfg: Config, *, load_weights: bool = True) -> keras.Model:
    """The bottom-up ``SimplePoseNet`` of ``cfg.model`` for ``cfg.skeleton``, backbone weights loaded."""
    m, skeleton = cfg.model, cfg.skeleton
    model = SimplePoseNet(
        num_limbs=skeleton.num_limbs, num_keypoint_channels=skeleton.num_keypoint_channels,
        num_stages=m.num_stages, architecture=m.architecture, width_multiplier=m.width_multiplier,
        backbone_width_multiplier=m.backbone_width_multiplier, weight_decay=cfg.loss.weight_decay,
        kernel_init=m.kernel_init, seed=cfg.train.seed, name=f"simplepose_{m.architecture}")
    if load_weights:
        load_backbone_weights(model, m.backbone_weights)
    return model


def build_model(cfg: Config, *, load_weights: bool = True) -> keras.Model:
    """Build the network chosen by ``cfg.model.architecture`` (``model3``, ``openpose`` or ``topdown``)."""
    if cfg.model.architecture == "topdown":
        from simplepose.models.topdown_net import build_topdown_model

        return build_topdown_model(cfg)
    if cfg.model.architecture in ARCHITECTURES:
        return build_bottomup_model(cfg, load_weights=load_weights)
    raise ValueError(f"unknown model.architecture {cfg.model.architecture!r}")


def load_model(path, *, compile: bool = False) -> keras.Model:
    """Load a ``.keras`` model saved by simplepose (safe mode: no Lambda layers, no arbitrary code).

    Every simplepose serialisable class (networks, attention, losses, optimisers, schedules) is
    registered first. ``compile=False`` (the default, for inference) skips the optimiser and loss.
    """
    import simplepose.losses  # noqa: F401  (registers the serialisable classes)
    import simplepose.models.topdown_net  # noqa: F401
    import simplepose.optimizers  # noqa: F401

    return keras.saving.load_model(path, compile=compile, safe_mode=True)
