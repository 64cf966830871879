"""simplepose: multi-person 2D pose estimation (Simple Pose bottom-up, Simple Baselines top-down) in Keras 3."""

from simplepose._version import __version__
from simplepose.config import Config, ConfigError, load_config
from simplepose.headmeta import HeadMeta
from simplepose.pose import Pose
from simplepose.skeleton import SKELETONS, Skeleton, get_skeleton, register_skeleton

__all__ = ["Config", "ConfigError", "HeadMeta", "HybridPredictor", "load_config", "Pose", "Predictor", "SKELETONS",
           "Skeleton", "build_model", "get_method", "get_skeleton", "load_model", "register_skeleton", "__version__"]

_LAZY = {"Predictor": "simplepose.predictor", "build_model": "simplepose.methods", "get_method": "simplepose.methods",
         "load_model": "simplepose.models.loading", "HybridPredictor": "simplepose.topdown.hybrid"}


def __getattr__(name):
    # Heavy parts (numba kernels, Keras) load on first use, so `import simplepose` stays light.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'simplepose' has no attribute {name!r}")
