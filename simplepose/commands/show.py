"""Write PNGs of augmented training samples with keypoints, limb maps and the loss mask overlaid.

One PNG per sample (the file's first N samples), four titled panels side by side under a caption (sample
and augmentation draw): the crop with the people's keypoints and limbs | keypoint heatmaps (max over
channels) | limb maps (max over channels) | the loss mask (red = not supervised).

Example:
    simplepose show data/coco_train.h5 --out /tmp/show -n 8
"""
from __future__ import annotations

import dataclasses
import logging
import os

from simplepose import cli
from simplepose.visualize import sample_panels, write_image

LOG = logging.getLogger(__name__)


def build_parser(prog=None):
    parser = cli.make_parser(__doc__, prog)
    cli.add_config_args(parser)
    parser.add_argument("data", help="HDF5 file from training/coco_masks_hdf5.py")
    parser.add_argument("--out", required=True, help="folder for the PNGs (created)")
    parser.add_argument("-n", "--num", type=cli.positive_int, default=8,
                        help="number of samples (the first N; at most the file's)")
    parser.add_argument("--seed", type=int, default=0, help="augmentation seed")
    parser.add_argument("--epoch", type=int, default=0, help="epoch whose draws to show")
    parser.add_argument("--val", action="store_true", help="validation mode: centred, no random augmentation")
    return parser


@cli.run_main
def main(argv=None, prog=None) -> int:
    args = build_parser(prog).parse_args(argv)
    cli.setup_logging(args.log_level)
    cfg = cli.config_from_args(args)
    from simplepose.bottomup.pipeline import augment_sample, sample_targets
    from simplepose.data.hdf5 import HDF5Reader
    from simplepose.data.stream import sample_rng

    try:
        reader = HDF5Reader(args.data)
    except (FileNotFoundError, ValueError) as e:
        raise cli.UserError(str(e)) from None
    if len(reader) == 0:
        raise cli.UserError(f"{args.data}: nothing to show (0 samples)")
    count = min(args.num, len(reader))
    if count < args.num:
        LOG.warning("%s holds %d samples: showing each once (-n %d asked for more)", args.data, count, args.num)
    os.makedirs(args.out, exist_ok=True)
    for index in range(count):
        sample = augment_sample(reader, index, sample_rng(args.seed, args.epoch, index), cfg, not args.val)
        draw = ", ".join(f"{k} {_short(v)}" for k, v in dataclasses.asdict(sample.params).items())
        caption = f"sample {index} of {len(reader)}: {draw}"
        panels = sample_panels(sample.image, sample.keypoints, sample_targets(sample, cfg), cfg.skeleton,
                               caption=caption)
        path = os.path.join(args.out, f"sample_{index:03d}.png")
        write_image(path, panels)
        LOG.info("%s: %s, decoded at 1/%d", path, sample.params, sample.reduce)
    print(f"wrote {count} PNG(s) to {args.out}")
    return 0


def _short(value) -> str:
    """A number with 2 decimals, a tuple of them, or anything else as it prints."""
    if isinstance(value, float):
        return f"{value:.2f}"
    if isinstance(value, (tuple, list)):
        return "(" + ", ".join(_short(v) for v in value) + ")"
    return str(value)
