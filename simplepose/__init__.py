"""simplepose: multi-person 2D pose estimation (Simple Pose bottom-up, Simple Baselines top-down) in Keras 3."""

__version__ = "0.1.0"

from simplepose.config import Config, ConfigError, load_config  # noqa: E402
from simplepose.pose import Pose  # noqa: E402
from simplepose.skeleton import SKELETONS, Skeleton, get_skeleton  # noqa: E402

__all__ = ["Config", "ConfigError", "load_config", "Pose", "SKELETONS", "Skeleton", "get_skeleton", "__version__"]
