"""The ``simplepose`` command: one subcommand per job, each also a module (``python -m simplepose CMD ...``).

The four seed-named scripts (``training/coco_masks_hdf5.py``, ``training/train_pose.py``,
``testing/evaluation.py``, ``demo_image.py``) are wrappers around ``prepare``, ``train``, ``evaluate`` and
``demo``.
"""
from __future__ import annotations

import importlib
import sys

from simplepose._version import __version__

#: Subcommand -> (module, one-line summary).
COMMANDS = {
    "synthetic": ("simplepose.commands.synthetic", "write a synthetic COCO dataset of stick people"),
    "prepare": ("simplepose.commands.prepare", "COCO json + images -> one HDF5 file for training"),
    "show": ("simplepose.commands.show", "PNGs of augmented training samples with their targets"),
    "train": ("simplepose.commands.train", "train a config into a run directory (resumes)"),
    "evaluate": ("simplepose.commands.evaluate", "COCO keypoint AP of a model, or of the decoder (--oracle)"),
    "demo": ("simplepose.commands.demo", "draw the people a model finds in one image; JSON too"),
    "video": ("simplepose.commands.video", "find, track and draw the people of a video, image folder or webcam"),
    "export": ("simplepose.commands.export", "a trained model as SavedModel, ONNX or LiteRT, with its contract"),
}
ALIASES = {"predict": "demo"}


def usage() -> str:
    width = max(map(len, COMMANDS))
    rows = "\n".join(f"  {name:<{width}}  {summary}" for name, (_, summary) in COMMANDS.items())
    return (f"usage: simplepose COMMAND [options]   (simplepose COMMAND --help for its options)\n\n"
            f"commands:\n{rows}\n  {'predict':<{width}}  the same as demo\n")


def main(argv=None) -> int:
    """``simplepose COMMAND ...``: run one subcommand; ``--help`` lists them, ``--version`` prints the version."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage(), end="")
        return 0 if argv else 2
    if argv[0] == "--version":
        print(f"simplepose {__version__}")
        return 0
    name = ALIASES.get(argv[0], argv[0])
    if name not in COMMANDS:
        print(f"error: unknown command {argv[0]!r}; expected one of {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    return module.main(argv[1:], prog=f"simplepose {argv[0]}")
