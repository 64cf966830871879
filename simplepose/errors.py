"""Exceptions for problems with a user's inputs: scripts report them as one line and exit 2 (``cli.run_main``)."""


class SimplePoseError(Exception):
    """Base class: something the user gave (a file, a flag, a config value) is wrong; the message says what."""


class ConfigError(SimplePoseError, ValueError):
    """A configuration value, key or file is wrong; the message says which and why."""


class DataError(SimplePoseError, ValueError):
    """A data file (annotations, images, prepared HDF5) is missing, unreadable or unusable for the task."""


class ModelFileError(SimplePoseError, ValueError):
    """A model file is missing, is not a model simplepose can load, or lacks what is needed to use it."""


class TrainingError(SimplePoseError, RuntimeError):
    """Training cannot start or continue (bad data, run dir, batch split, divergence); one-line message."""
