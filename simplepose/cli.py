"""Shared command-line plumbing: --config/--set, test-time flags, logging, --version, one-line user errors."""
from __future__ import annotations

import argparse
import functools
import logging
import os
import sys

from simplepose._version import __version__
from simplepose.config import load_config
from simplepose.errors import SimplePoseError

LOG = logging.getLogger(__name__)


class UserError(SimplePoseError):
    """A problem with the user's input (file, flag, data) found by a script: one line, no traceback."""


class _HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keeps the description's line breaks (examples) and shows defaults."""


def make_parser(doc: str, prog: str | None = None) -> argparse.ArgumentParser:
    """A parser with ``--version`` and ``--log-level``; ``prog`` names the command in usage lines."""
    parser = argparse.ArgumentParser(prog=prog, description=doc, formatter_class=_HelpFormatter)
    parser.add_argument("--version", action="version", version=f"simplepose {__version__}")
    parser.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"),
                        help="logging verbosity")
    return parser


def add_config_args(parser: argparse.ArgumentParser, *, model: bool = False) -> None:
    """``--config`` and ``--set``; with ``model``, worded for scripts that load a trained model."""
    parser.add_argument("--config", help="experiment YAML file (see configs/)" if not model else
                        "YAML config whose inference settings replace the model's own (a model saved before "
                        "simplepose 0.2 needs its training config, found automatically as config.yaml beside it)")
    parser.add_argument("--set", dest="overrides", nargs="+", action="extend", default=[], metavar="SECTION.KEY=VALUE",
                        help="override config values, e.g. --set train.learning_rate=1e-4 inference.box_size=320 "
                             "(may be repeated)")


def add_tta_args(parser: argparse.ArgumentParser) -> None:
    """``--scales`` and ``--flip``/``--no-flip``: test-time augmentation, default the model's own settings."""
    parser.add_argument("--scales", type=float, nargs="+",
                        help="bottom-up test scales relative to inference.box_size (default: the model's)")
    parser.add_argument("--flip", action=argparse.BooleanOptionalAction, default=None,
                        help="average with the prediction on the mirrored image (default: the model's setting)")


def config_from_args(args, extra_overrides=()):
    """The config of ``--config`` (or the defaults) with ``--set`` and ``extra_overrides`` applied."""
    return load_config(args.config, list(args.overrides) + list(extra_overrides))


def setup_logging(level: str = "INFO") -> None:
    logging.basicConfig(level=getattr(logging, level), format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")


def run_main(main):
    """Decorator for a script's ``main(argv) -> int``: user errors become one line on stderr and exit 2.

    Also keeps TensorFlow's C++ start-up chatter off the terminal (scripts import TensorFlow inside ``main``;
    set ``TF_CPP_MIN_LOG_LEVEL=0`` to see it).
    """

    @functools.wraps(main)
    def wrapper(argv=None, prog=None):
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        try:
            return main(argv) if prog is None else main(argv, prog)
        except SimplePoseError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130

    return wrapper
