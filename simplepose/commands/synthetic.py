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
    parser.add_argument("out", help="output directory")
    parser.add_argument("--num-images", type=int, default=12, help="number of images")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--image-size", type=int, nargs=2, default=(320, 240), metavar=("W", "H"))
    parser.add_argument("--max-people", type=int, default=4, help="most annotated people per ordinary image")
    parser.add_argument("--image-format", choices=("jpg", "png"), default="jpg")
    parser.add_argument("--no-edge-cases", action="store_true", help="ordinary images only")
    args = parser.parse_args(argv)
    cli.setup_logging(args.log_level)
    if pathlib.Path(args.out).exists() and not pathlib.Path(args.out).is_dir():
        raise cli.UserError(f"{args.out} exists and is not a directory")
    try:
        result = make_synthetic_coco(args.out, num_images=args.num_images, image_size=tuple(args.image_size),
                                     max_people=args.max_people, seed=args.seed, image_format=args.image_format,
                                     edge_cases=not args.no_edge_cases)
    except ValueError as e:
        raise cli.UserError(str(e)) from None
    LOG.info("wrote %s: %s", result.ann_file, result.summary())
    return 0
