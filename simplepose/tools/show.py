"""Write PNGs of augmented training samples with keypoints, limb maps and the loss mask overlaid.

One PNG per sample, four panels side by side: the crop with the people's keypoints and limbs | keypoint
heatmaps (max over channels) | limb maps (max over channels) | the loss mask (red = not supervised).

Example:
    python -m simplepose.tools.show data/coco_train.h5 --out /tmp/show -n 8
"""
from __future__ import annotations

import logging
import os
import sys

import cv2
import numpy as np

from simplepose import cli
from simplepose.visualize import write_image

LOG = logging.getLogger(__name__)


def _overlay(image, values):
    """Blend a [0, 1] map (output grid) over the crop as a JET heat overlay."""
    size = image.shape[0]
    up = cv2.resize(values.astype(np.float32), (size, size), interpolation=cv2.INTER_LINEAR)
    heat = cv2.applyColorMap(np.clip(up * 255, 0, 255).astype(np.uint8), cv2.COLORMAP_JET)
    alpha = np.clip(up, 0, 1)[..., None] * 0.7
    return (image * (1 - alpha) + heat * alpha).astype(np.uint8)


def draw_people(image, keypoints, skeleton):
    """Limbs as lines, keypoints as dots (filled = visible, ring = occluded); left side green, right blue."""
    out = image.copy()
    for person in keypoints:
        for a, b in skeleton.limbs:
            if person[a, 2] > 0 and person[b, 2] > 0:
                cv2.line(out, tuple(np.round(person[a, :2]).astype(int)), tuple(np.round(person[b, :2]).astype(int)),
                         (0, 255, 255), 1, cv2.LINE_AA)
        for name, (x, y, v) in zip(skeleton.keypoints, person):
            if v > 0:
                color = (0, 200, 0) if name.startswith("left") else (255, 80, 0) if name.startswith("right") \
                    else (0, 0, 255)
                cv2.circle(out, (int(round(x)), int(round(y))), 3, color, -1 if v >= 2 else 1, cv2.LINE_AA)
    return out


def render_panels(sample, targets, skeleton) -> np.ndarray:
    """The four panels of one sample. Shapes: -> ``(S, 4 * S, 3)`` uint8 BGR."""
    image = sample.image
    k = skeleton.num_keypoints
    unsupervised = _upsample(1.0 - targets["mask"][..., 0], image.shape[0])[..., None] * 0.6
    masked = (image * (1 - unsupervised) + np.array([0, 0, 255]) * unsupervised).astype(np.uint8)
    return np.concatenate([draw_people(image, sample.keypoints, skeleton),
                           _overlay(image, targets["keypoints"][..., :k].max(axis=-1)),
                           _overlay(image, targets["limbs"].max(axis=-1, initial=0.0)), masked], axis=1)


def _upsample(values, size):
    return cv2.resize(values.astype(np.float32), (size, size), interpolation=cv2.INTER_NEAREST)


def build_parser():
    parser = cli.make_parser(__doc__)
    cli.add_config_args(parser)
    parser.add_argument("data", help="HDF5 file from training/coco_masks_hdf5.py")
    parser.add_argument("--out", required=True, help="folder for the PNGs (created)")
    parser.add_argument("-n", "--num", type=int, default=8, help="number of samples")
    parser.add_argument("--seed", type=int, default=0, help="augmentation seed")
    parser.add_argument("--epoch", type=int, default=0, help="epoch whose draws to show")
    parser.add_argument("--val", action="store_true", help="validation mode: centred, no random augmentation")
    return parser


@cli.run_main
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    cli.setup_logging(args.log_level)
    cfg = cli.config_from_args(args)
    from simplepose.bottomup.pipeline import augment_sample, sample_targets
    from simplepose.data.hdf5 import HDF5Reader
    from simplepose.data.stream import sample_rng

    try:
        reader = HDF5Reader(args.data)
    except (FileNotFoundError, ValueError) as e:
        raise cli.UserError(str(e)) from None
    if len(reader) == 0 or args.num < 1:
        raise cli.UserError(f"{args.data}: nothing to show ({len(reader)} samples, -n {args.num})")
    os.makedirs(args.out, exist_ok=True)
    for i in range(args.num):
        index = i % len(reader)
        sample = augment_sample(reader, index, sample_rng(args.seed, args.epoch, index), cfg, not args.val)
        panels = render_panels(sample, sample_targets(sample, cfg), cfg.skeleton)
        path = os.path.join(args.out, f"sample_{i:03d}_index{index}.png")
        write_image(path, panels)
        LOG.info("%s: %s, decoded at 1/%d", path, sample.params, sample.reduce)
    LOG.info("wrote %d PNGs to %s", args.num, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
