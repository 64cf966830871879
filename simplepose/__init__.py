"""simplepose: multi-person 2D pose estimation (Simple Pose bottom-up, Simple Baselines top-down) in Keras 3."""

__version__ = "0.1.0"

from simplepose.config import Config, ConfigError, load_config  # noqa: E402
from simplepose.pose import Pose  # noqa: E402
from simplepose.skeleton import SKELETONS, Skeleton, get_skeleton  # noqa: E402

__all__ = ["Config", "ConfigError", "load_config", "Pose", "Predictor", "SKELETONS", "Skeleton", "build_model",
           "get_skeleton", "__version__"]

_LAZY = {"Predictor": "simplepose.inference", "build_model": "simplepose.models.registry"}


def __getattr__(name):
    # Heavy parts (numba kernels, Keras) load on first use, so `import simplepose` stays light.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'simplepose' has no attribute {name!r}")
