"""Prepare COCO person keypoints (json + images) into one HDF5 file for training and validation.

Example:
    simplepose prepare --annotations coco/annotations/person_keypoints_train2017.json \\
        --images coco/train2017 --out data/coco_train.h5 --workers 4
"""
from simplepose import cli


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(text)
    return value


positive_int.__name__ = "positive integer"  # argparse's message: "invalid positive integer value"


def build_parser(prog=None):
    parser = cli.make_parser(__doc__, prog)
    parser.add_argument("--annotations", required=True, help="COCO person_keypoints_*.json file")
    parser.add_argument("--images", required=True, help="folder holding the json's image files")
    parser.add_argument("--out", required=True, help="HDF5 file to write (replaced atomically when done)")
    parser.add_argument("--limit", type=positive_int, help="only the first N images of the json")
    parser.add_argument("--workers", type=positive_int, default=1, help="image-reading threads")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


@cli.run_main
def main(argv=None, prog=None) -> int:
    args = build_parser(prog).parse_args(argv)
    cli.setup_logging(args.log_level)
    from simplepose.data.prepare import prepare_coco_hdf5

    try:
        summary = prepare_coco_hdf5(args.annotations, args.images, args.out, limit=args.limit,
                                    workers=args.workers, progress=not args.no_progress)
    except OSError as e:  # missing/unreadable inputs, unwritable output, disk full
        raise cli.UserError(str(e)) from None
    print(f"wrote {args.out}\n{summary.format()}")
    return 0
