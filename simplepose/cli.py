"""Shared command-line plumbing: --config/--set, logging, --version, and clean one-line user errors."""
from __future__ import annotations

import argparse
import functools
import logging
import os
import sys

# Scripts import this module before TensorFlow: keep TF's C++ start-up chatter off the user's terminal
# (set TF_CPP_MIN_LOG_LEVEL=0 to see it again).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import simplepose  # noqa: E402
from simplepose.config import ConfigError, load_config, saved_config_path  # noqa: E402

LOG = logging.getLogger(__name__)


class UserError(Exception):
    """A problem with the user's input (file, flag, data): reported as one line, no traceback."""


class _HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keeps the description's line breaks (examples) and shows defaults."""


def make_parser(doc: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=doc, formatter_class=_HelpFormatter)
    parser.add_argument("--version", action="version", version=f"simplepose {simplepose.__version__}")
    parser.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"),
                        help="logging verbosity")
    return parser


def add_config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="experiment YAML file (see configs/)")
    parser.add_argument("--set", dest="overrides", nargs="+", action="extend", default=[], metavar="SECTION.KEY=VALUE",
                        help="override config values, e.g. --set train.learning_rate=1e-4 data.stride=8 "
                             "(may be repeated)")


def config_from_args(args, weights=None, extra_overrides=()):
    """Resolve ``--config``/``--set``. Without ``--config``, a model's ``config.yaml`` saved beside
    ``weights`` (what training writes into its run directory) is used, so a trained model is evaluated
    with the input size, stride and skeleton it was trained with."""
    path = args.config
    if path is None and weights:
        path = saved_config_path(weights)
        if path:
            LOG.info("config: %s (saved beside the model; --config replaces it)", path)
    return load_config(path, list(args.overrides) + list(extra_overrides))


def tta_overrides(scales=None, flip: bool = False) -> list:
    """``--scales``/``--flip`` flags as ``inference.*`` config overrides."""
    extra = []
    if scales:
        extra.append(f"inference.scales=[{', '.join(map(str, scales))}]")
    if flip:
        extra.append("inference.flip=true")
    return extra


def setup_logging(level: str = "INFO") -> None:
    logging.basicConfig(level=getattr(logging, level), format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")


def run_main(main):
    """Decorator for a script's ``main(argv) -> int``: user errors become one line on stderr and exit 2."""

    @functools.wraps(main)
    def wrapper(argv=None):
        try:
            return main(argv)
        except (UserError, ConfigError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130

    return wrapper
