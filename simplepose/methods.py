"""One interface, one registry, two methods (design decision 12).

Bottom-up Simple Pose (``simplepose.bottomup``) and top-down Simple Baselines + attention
(``simplepose.topdown``) implement :class:`Method`. Training, the Predictor, evaluation, the demo and the
scripts ask the registry for the method of a config (:func:`method_for_config`, by ``model.architecture``)
or of a trained model's head contract (:func:`get_method`, by ``HeadMeta.method``) and call it; no code
outside this module branches on a method's or architecture's name.
"""
from __future__ import annotations

import abc
import dataclasses
import functools
import os


def pipeline_workers(cfg) -> int:
    """Threads rendering training batches: ``data.workers``, or one per CPU core this process may use (0)."""
    if cfg.data.workers > 0:
        return cfg.data.workers
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


@dataclasses.dataclass(frozen=True)
class OpenedData:
    """A training or validation data file opened and checked by a method (:meth:`Method.open_data`).

    Attributes:
        source: what the method's :meth:`Method.make_dataset` reads (a path, a sample set).
        num_samples: samples in one pass.
    """

    source: object
    num_samples: int

    def __len__(self) -> int:
        return self.num_samples


class Method(abc.ABC):
    """What an approach to pose estimation provides to the rest of the library.

    Class attributes:
        name: registry name, stored in every model's head contract.
        architectures: the ``model.architecture`` values whose models this method trains and runs.
        contract_keys: ``(section, key)`` config entries a trained model fixes (skeleton, stride, ...):
            changing them for a trained model is an error.
        settings_keys: ``{section: keys}`` config entries that are inference settings, stored in the head
            contract as the run's defaults and overridable by flags and ``--set`` (``None``: the whole section).
        takes_boxes: its predictor finds people inside given person boxes (else in the whole image).
    """

    name: str = ""
    architectures: tuple = ()
    takes_boxes: bool = False
    contract_keys: tuple = (("data", "skeleton"), ("data", "stride"), ("model", "architecture"))
    settings_keys: dict = {}

    # === Configuration ===
    @abc.abstractmethod
    def check_config(self, cfg) -> None:
        """Raise ``ConfigError`` for settings this method's models cannot produce (e.g. their output stride)."""

    @abc.abstractmethod
    def head_meta(self, cfg):
        """The ``HeadMeta`` of a model trained with ``cfg`` (stored in the model file)."""

    def legacy_meta(self, model, cfg):
        """The contract of a model saved without one, from the config it was trained with (its run's config.yaml)."""
        return self.head_meta(cfg)

    @abc.abstractmethod
    def contract_tree(self, meta) -> dict:
        """The partial config tree that reproduces a head contract's fixed entries (skeleton, stride, ...)."""

    def settings(self, cfg) -> dict:
        """The inference settings of ``cfg`` as a partial config tree (:attr:`settings_keys`)."""
        tree = cfg.to_dict()
        return {section: {k: v for k, v in tree[section].items() if keys is None or k in keys}
                for section, keys in self.settings_keys.items()}

    @abc.abstractmethod
    def tta_overrides(self, scales=None, flip=None) -> list:
        """Test-time-augmentation flags (``--scales``, ``--flip``/``--no-flip``) as ``section.key=value`` strings."""

    # === Training ===
    @abc.abstractmethod
    def open_data(self, cfg, path, images=None, *, training: bool) -> OpenedData:
        """A data file (and image folder, for methods that read one) checked now, before any epoch starts.

        Raises:
            TrainingError: missing, unreadable or wrong kind of file, missing or superfluous image folder.
        """

    @abc.abstractmethod
    def make_dataset(self, data: OpenedData, cfg, *, train: bool, global_batch: int, seed: int):
        """Batches for ``model.fit`` (``tf.data`` on TensorFlow, ``keras.utils.PyDataset`` elsewhere)."""

    @abc.abstractmethod
    def build_model(self, cfg, *, load_weights: bool = True):
        """The Keras model of ``cfg``, carrying its head contract; backbone weights loaded when asked."""

    @abc.abstractmethod
    def loss_and_optimizer(self, cfg, steps_per_epoch: int) -> tuple:
        """``(loss, optimizer)`` for ``model.compile``."""

    # === Inference and evaluation ===
    @abc.abstractmethod
    def make_predictor(self, model, meta, cfg):
        """A :class:`simplepose.predictor.Predictor` running ``model`` with the settings of ``cfg``."""

    @abc.abstractmethod
    def check_model(self, model, meta) -> None:
        """Raise ``ModelFileError`` when the model's outputs do not match the contract (channels, layout)."""

    @abc.abstractmethod
    def evaluate(self, predictor, ann_file, image_dir, *, boxes_file=None, limit=None, out_dir=None,
                 progress: bool = False) -> dict:
        """COCO keypoint metrics of ``predictor`` on an annotation file (see ``simplepose.evaluation``)."""

    @abc.abstractmethod
    def oracle_evaluate(self, ann_file, cfg, *, out_dir=None, limit=None, progress: bool = False) -> dict:
        """The ceiling of target encoding + decoding: ground-truth maps, decoded and scored (decision 7)."""


@functools.cache
def _registry() -> dict:
    # Imported here: the method modules import this one (for ``Method``).
    from simplepose.bottomup.method import BottomUp
    from simplepose.topdown.method import TopDown

    return {method.name: method for method in (BottomUp(), TopDown())}


def methods() -> dict:
    """``{name: Method}`` of every registered method."""
    return dict(_registry())


def register_method(method: Method) -> None:
    """Add a method (a new approach) to the registry; its architectures become valid config values."""
    if method.name in _registry():
        raise ValueError(f"a method named {method.name!r} is already registered")
    _registry()[method.name] = method


def get_method(name: str) -> Method:
    """The method registered under ``name``; unknown names are an error listing the known ones."""
    try:
        return _registry()[name]
    except KeyError:
        raise ValueError(f"unknown method {name!r}; known: {', '.join(sorted(_registry()))}") from None


def architectures() -> tuple:
    """Every ``model.architecture`` value some method handles."""
    return tuple(a for method in _registry().values() for a in method.architectures)


def method_for_architecture(architecture: str) -> Method:
    for method in _registry().values():
        if architecture in method.architectures:
            return method
    raise ValueError(f"unknown model.architecture {architecture!r}; expected one of {', '.join(architectures())}")


def method_for_config(cfg) -> Method:
    """The method that trains and runs ``cfg``'s model (by ``cfg.model.architecture``)."""
    return method_for_architecture(cfg.model.architecture)


def build_model(cfg, *, load_weights: bool = True):
    """The Keras model of ``cfg`` (through its method), carrying its head contract."""
    return method_for_config(cfg).build_model(cfg, load_weights=load_weights)
