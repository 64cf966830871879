"""Shared command-line plumbing: --config/--set, test-time flags, logging, --version, one-line user errors."""
from __future__ import annotations

import argparse
import contextlib
import errno
import functools
import importlib.abc
import importlib.util
import logging
import os
import re
import signal
import sys
import tempfile

from simplepose._version import __version__
from simplepose.config import load_config
from simplepose.errors import SimplePoseError

LOG = logging.getLogger(__name__)


class UserError(SimplePoseError):
    """A problem with the user's input (file, flag, data) found by a script: one line, no traceback."""


class Terminated(BaseException):
    """SIGTERM, raised in the main thread so that ``finally`` blocks and temporary-file cleanups run."""


class _HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keeps the description's line breaks (examples) and shows defaults (those that say something)."""

    def _get_help_string(self, action):
        if action.required or action.default is None or action.default is False or not action.help:
            return action.help
        return super()._get_help_string(action)


def _number_type(convert, name: str, valid):
    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            value = None
        if value is None or not valid(value):
            raise argparse.ArgumentTypeError(f"invalid {name}: {text!r}")
        return value

    parse.__name__ = name
    return parse


#: argparse types whose errors name the option and the bad value ("argument --batch-size: invalid positive
#: integer: '-4'").
positive_int = _number_type(int, "positive integer", lambda v: v >= 1)
non_negative_int = _number_type(int, "integer >= 0", lambda v: v >= 0)
positive_float = _number_type(float, "positive number", lambda v: v > 0 and v != float("inf"))


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
    parser.add_argument("--scales", type=positive_float, nargs="+", metavar="S",
                        help="bottom-up test scales relative to inference.box_size (default: the model's)")
    parser.add_argument("--flip", action=argparse.BooleanOptionalAction, default=None,
                        help="average with the prediction on the mirrored image (default: the model's setting)")


def add_boxes_from_arg(parser, default: str) -> None:
    """``--boxes-from BOTTOMUP_MODEL`` (on ``parser`` or an argument group): a top-down model refines the people
    a bottom-up model finds (``jobs.open_predictor``); ``default`` says where the boxes come from without it."""
    parser.add_argument("--boxes-from", metavar="BOTTOMUP_MODEL", help="top-down models: boxes around the people "
                        f"a bottom-up model finds (any saved format; --scales apply to it; default: {default})")


def config_from_args(args, extra_overrides=()):
    """The config of ``--config`` (or the defaults) with ``--set`` and ``extra_overrides`` applied."""
    return load_config(args.config, list(args.overrides) + list(extra_overrides))


def setup_logging(level: str = "INFO") -> None:
    logging.basicConfig(level=getattr(logging, level), format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")


def run_main(main):
    """Decorator for a script's ``main(argv) -> int``: user errors become one line on stderr and exit 2.

    - ``SimplePoseError`` and ``OSError`` (a missing folder, a file where a folder is expected, a full disk, no
      permission: on any input or output path) print ``error: <path>: <problem>`` and return 2.
    - SIGTERM raises :class:`Terminated` like Ctrl-C raises ``KeyboardInterrupt``, so temporary files are
      removed (``simplepose.atomic``) on both; they return 143 and 130.
    - TensorFlow's C++ start-up lines are kept off the terminal (:func:`quiet_tensorflow_start`).
    """

    @functools.wraps(main)
    def wrapper(argv=None, prog=None):
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        quiet_tensorflow_start()
        previous = _on_sigterm()
        try:
            return main(argv) if prog is None else main(argv, prog)
        except SimplePoseError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        except OSError as e:
            print(f"error: {describe_os_error(e)}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130
        except Terminated:
            print("terminated", file=sys.stderr)
            return 143
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)

    return wrapper


def describe_os_error(error: OSError) -> str:
    """One line naming the path(s) and the problem of an ``OSError`` (no Python class names)."""
    problem = error.strerror or str(error)
    if error.errno == errno.EEXIST and error.filename is not None and not os.path.isdir(error.filename):
        problem = "exists and is not a folder"  # os.makedirs(..., exist_ok=True) on a file
    if error.errno == errno.ENOSPC:
        problem += " (free some space or write elsewhere)"
    paths = [p for p in (error.filename, error.filename2) if p is not None]
    if paths:
        return f"{' -> '.join(os.fsdecode(p) for p in paths)}: {problem}"
    return problem


def _on_sigterm():
    """Install the SIGTERM handler (main thread only); return the previous one, or None when not installed."""
    def terminate(signum, frame):
        raise Terminated()

    try:
        return signal.signal(signal.SIGTERM, terminate)
    except ValueError:  # not the main thread
        return None


# === TensorFlow's start-up lines ===
#: A line of TensorFlow's C++ logging (absl/TSL format: ``I0000 12:34:56.789 123 file.cc:42] ...``), or absl's
#: notice that it logs to stderr before its initialisation.
NATIVE_LOG_LINE = re.compile(r"^([IWEF]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ \S+:\d+\]|WARNING: All log messages before "
                             r"absl::InitializeLog\(\) is called)")


def quiet_tensorflow_start() -> None:
    """Keep TensorFlow's C++ start-up lines off the terminal, whenever (and if ever) TensorFlow is imported.

    TensorFlow 2.21 writes them to file descriptor 2 from C++: at import, before absl's logging is
    initialised (``oneDNN custom operations are on``, ``Could not find cuda drivers``), where
    ``TF_CPP_MIN_LOG_LEVEL`` has no effect; and when it first looks for GPUs (``failed call to cuInit``,
    an error-level line that only ``TF_CPP_MIN_LOG_LEVEL=3`` would hide, together with every later C++ error).
    So the first ``import tensorflow`` runs with descriptor 2 sent to a temporary file, followed by the GPU
    search; then the descriptor is restored, the C++ log lines go to this module's log at DEBUG level
    (``--log-level DEBUG`` shows them) and any other line is written to stderr as it was. Commands that never
    import TensorFlow (ONNX or LiteRT models, data preparation) pay nothing. ``TF_CPP_MIN_LOG_LEVEL=0`` turns
    this off.
    """
    if os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0") == "0" or "tensorflow" in sys.modules:
        return
    if not any(isinstance(f, _QuietTensorFlowImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietTensorFlowImport())


class _QuietTensorFlowImport(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Import hook for the first ``import tensorflow``: does it with descriptor 2 captured (see above)."""

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)
        return importlib.util.spec_from_loader(name, self)

    def create_module(self, spec):
        with _native_stderr_to_log():
            module = importlib.import_module("tensorflow")  # the real import (this finder is gone)
            module.config.list_physical_devices("GPU")  # the CUDA platform starts here (cuInit)
        self._spec = module.__spec__
        return module

    def exec_module(self, module):
        module.__spec__ = self._spec  # the import system set it to this loader's spec


@contextlib.contextmanager
def _native_stderr_to_log():
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            for line in captured.read().decode(errors="replace").splitlines():
                if NATIVE_LOG_LINE.match(line):
                    LOG.debug("TensorFlow start-up: %s", line)
                elif line.strip():
                    print(line, file=sys.stderr)
