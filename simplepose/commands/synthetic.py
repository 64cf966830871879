"""Write a synthetic COCO person-keypoints dataset of stick people (annotations.json + images/).

Example:
    simplepose synthetic data/synthetic_train --num-images 200 --seed 1
"""
from __future__ import annotations

import logging
import pathlib

from simplepose import cli
from simplepose.data.synthetic import make_synthetic_coco

LOG = logging.getLogger(__name__)


@cli.run_main
def main(argv=None, prog=None) -> int:
    parser = cli.make_parser(__doc__, prog)
    parser.add_argument("out", help="output directory (created; must be empty or new unless --overwrite)")
    parser.add_argument("--num-images", type=cli.positive_int, default=12, help="number of images")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--image-size", type=int, nargs=2, default=(320, 240), metavar=("W", "H"),
                        help="image width and height in pixels (each >= 32)")
    parser.add_argument("--max-people", type=cli.positive_int, default=4,
                        help="most annotated people per ordinary image")
    parser.add_argument("--image-format", choices=("jpg", "png"), default="jpg",
                        help="jpg (like COCO) or png (lossless, exact colours)")
    parser.add_argument("--no-edge-cases", action="store_true", help="ordinary images only")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a non-empty OUT folder whole (its old contents are deleted)")
    args = parser.parse_args(argv)
    cli.setup_logging(args.log_level)
    out = pathlib.Path(args.out)
    if out.exists() and not out.is_dir():
        raise cli.UserError(f"{args.out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not args.overwrite:
        raise cli.UserError(f"{args.out} is not empty; choose a new folder, or --overwrite to replace it whole")
    try:
        result = make_synthetic_coco(args.out, num_images=args.num_images, image_size=tuple(args.image_size),
                                     max_people=args.max_people, seed=args.seed, image_format=args.image_format,
                                     edge_cases=not args.no_edge_cases, replace=True)
    except ValueError as e:
        raise cli.UserError(str(e)) from None
    LOG.info("wrote %s: %s", result.ann_file, result.summary())
    return 0
