"""``Predictor``: image -> people, for every method; loading a model with its head contract and the settings to use.

``Predictor.from_file(path)`` loads a saved model, reads the head contract it carries (skeleton, stride,
input geometry, output layout, the run's inference settings) and returns the predictor of its method.
Overrides (``section.key=value``, the scripts' ``--set``, ``--scales`` and ``--flip``) change inference
settings only: an override of what the model fixes (its skeleton, stride, architecture) is an error.
Models saved before the contract existed are used with the ``config.yaml`` of their run, read once.
"""
from __future__ import annotations

import abc
import logging

import cv2
import numpy as np

from simplepose.config import Config, ConfigError, load_config, saved_config_path
from simplepose.errors import ModelFileError
from simplepose.headmeta import HeadMeta
from simplepose.skeleton import register_skeleton

LOG = logging.getLogger(__name__)


class Predictor(abc.ABC):
    """People in images, found by a trained model.

    Attributes:
        model: the network (a Keras model or any callable with the same outputs).
        skeleton: the keypoint layout of the poses it returns.
        meta: the model's ``HeadMeta`` (None for a predictor built around a bare network).
        last_timings: ms per stage (``network``, ``resize``, ``decode``, ...) of the last :meth:`predict`.
        takes_boxes: :meth:`predict` finds people inside given person boxes (top-down; without boxes the whole
            image is one box) rather than finding them itself (bottom-up, or top-down refining its own
            bottom-up proposals).

    Example:
        >>> predictor = Predictor.from_file("runs/vgg19_368/model.keras")
        >>> poses = predictor.predict(cv2.imread("people.jpg"))
    """

    model = None
    skeleton = None
    meta = None
    last_timings: dict = {}
    takes_boxes: bool = False

    @abc.abstractmethod
    def predict(self, image, boxes=None, box_scores=None) -> list:
        """People in ``image``, best first, as ``Pose`` objects in original image pixels.

        Args:
            image: BGR uint8 ``(H, W, 3)``; grayscale, alpha, 16-bit and float images are converted.
            boxes: person boxes ``(N, 4)`` COCO ``[x, y, w, h]`` for methods that need them (top-down; None:
                the whole image is one box); methods that find people themselves refuse boxes.
            box_scores: ``(N,)`` detection scores of the boxes (default 1).
        """

    @classmethod
    def from_file(cls, path, config=None, overrides=(), *, scales=None, flip=None) -> "Predictor":
        """The predictor of a saved model; see :func:`load_predictor`."""
        return load_predictor(path, config=config, overrides=overrides, scales=scales, flip=flip)

    @classmethod
    def from_model(cls, model, config=None, overrides=(), *, scales=None, flip=None) -> "Predictor":
        """The predictor of an in-memory Keras model that carries its head contract (or given ``config``)."""
        meta = _contract_of(model)
        meta, cfg, method = resolve_contract(model, meta, config=config, overrides=overrides, scales=scales,
                                             flip=flip)
        return method.make_predictor(model, meta, cfg)


def load_predictor(path, *, config=None, overrides=(), scales=None, flip=None) -> Predictor:
    """Load a saved model and make its method's predictor, with the model's own inference settings.

    Args:
        path: a model in any format: ``.keras``, a SavedModel folder, ``.onnx`` or ``.tflite``
            (``simplepose.runtime.open_model``); ONNX and LiteRT files run without TensorFlow or Keras.
        config: optional YAML config: its inference settings replace the model's (what the model fixes
            must agree); models saved without a head contract need it, or a ``config.yaml`` beside them.
        overrides: ``section.key=value`` inference settings, applied after ``config``.
        scales, flip: test-time augmentation (the scripts' ``--scales``, ``--flip``/``--no-flip``), applied
            last; None keeps the model's setting.

    Raises:
        ModelFileError: unreadable file, no contract and no config, outputs that do not match the contract.
        ConfigError: a config or override that changes what the model fixes, or a bad value.
    """
    from simplepose.runtime import open_model

    model, meta = open_model(path)
    meta, cfg, method = resolve_contract(model, meta, path=path, config=config, overrides=overrides, scales=scales,
                                         flip=flip)
    predictor = method.make_predictor(model, meta, cfg)
    LOG.info("loaded %s: %s model (%s, %s), skeleton %s, stride %d", path, meta.method, meta.architecture,
             getattr(model, "format", "keras"), meta.skeleton.name, meta.stride)
    return predictor


def _contract_of(model):
    try:
        return HeadMeta.of_model(model)
    except ValueError as e:
        raise ModelFileError(f"model: {e}") from None


def resolve_contract(model, meta, *, path=None, config=None, overrides=(), scales=None, flip=None):
    """The contract to use for ``model`` (``meta``, what it carries, or its run's config), the config of the
    settings to use, and its method.

    Returns:
        ``(HeadMeta, Config, Method)``.
    """
    from simplepose.methods import get_method, method_for_config
    from simplepose.runtime import Runner

    if meta is None:
        cfg_path = config or (saved_config_path(path) if path is not None else None)
        if cfg_path is None:
            raise ModelFileError(f"{path or 'model'}: carries no head contract (saved before simplepose 0.2, or "
                                 "not by simplepose) and no config.yaml lies beside it: pass --config with the "
                                 "config it was trained with")
        LOG.warning("%s carries no head contract (saved before simplepose 0.2): using the config %s",
                    path or "model", cfg_path)
        cfg = load_config(cfg_path, overrides)
        method = method_for_config(cfg)
        cfg = cfg.with_overrides(method.tta_overrides(scales, flip))
        meta = method.legacy_meta(model, cfg)
    else:
        try:
            method = get_method(meta.method)
            register_skeleton(meta.skeleton)
        except ValueError as e:
            raise ModelFileError(f"{path or 'model'}: {e}") from None
        overrides = list(overrides) + method.tta_overrides(scales, flip)
        cfg = _settings_config(meta, method, config, overrides)
    if isinstance(model, Runner):
        missing = [name for name, _ in meta.outputs if name not in model.output_names]
        if missing:
            raise ModelFileError(f"{path or 'model'}: the {model.format} model has outputs {list(model.output_names)}"
                                 f" but its contract needs {[name for name, _ in meta.outputs]}")
    else:
        method.check_model(model, meta)
    return meta, cfg, method


def _settings_config(meta, method, config, overrides) -> Config:
    """The model's contract and settings, then the settings of ``config`` (a YAML path), then ``overrides``."""
    tree = Config.from_dict(method.contract_tree(meta)).to_dict()
    _merge(tree, meta.settings)
    fixed = Config.from_dict(tree)
    if config is not None:
        chosen = load_config(config)
        _check_fixed(method, fixed, chosen, f"{config}")
        _merge(tree, method.settings(chosen))
    cfg = Config.from_dict(tree, source="model settings").with_overrides(overrides)
    _check_fixed(method, fixed, cfg, "--set")
    return cfg


def _merge(tree: dict, settings: dict) -> None:
    for section, values in settings.items():
        tree.setdefault(section, {}).update(values)


def _check_fixed(method, fixed: Config, cfg: Config, source: str) -> None:
    for section, key in method.contract_keys:
        have, want = getattr(getattr(cfg, section), key), getattr(getattr(fixed, section), key)
        if have != want:
            raise ConfigError(f"{source}: {section}.{key}={have!r}, but the model was trained with {want!r} "
                              "(only inference settings can change for a trained model)")


def as_bgr_uint8(image) -> np.ndarray:
    """Any decoded image as 3-channel BGR uint8: grayscale is expanded, alpha dropped, 16-bit and float rescaled.

    Shapes: ``(H, W)``, ``(H, W, 1)``, ``(H, W, 3)`` or ``(H, W, 4)`` -> ``(H, W, 3)`` uint8.
    """
    img = np.asarray(image)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] not in (3, 4)) or min(img.shape[:2]) < 1:
        raise ValueError(f"expected an (H, W), (H, W, 3) or (H, W, 4) image, got shape {img.shape}")
    if img.dtype == np.uint16:
        img = (img.astype(np.float32) * (255.0 / 65535.0) + 0.5).astype(np.uint8)
    elif img.dtype != np.uint8:
        img = np.clip(np.asarray(img, np.float32) * (255.0 if img.max(initial=0) <= 1.0 else 1.0), 0, 255)
        img = (img + 0.5).astype(np.uint8)
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    return np.ascontiguousarray(img[:, :, :3])
