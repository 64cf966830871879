"""Prepare COCO person keypoints (json + images) into one HDF5 file for training and validation.

Example:
    simplepose prepare --annotations coco/annotations/person_keypoints_train2017.json \\
        --images coco/train2017 --out data/coco_train.h5 --workers 4
"""
import sys

from simplepose import cli


def build_parser(prog=None):
    parser = cli.make_parser(__doc__, prog)
    parser.add_argument("--annotations", required=True, help="COCO person_keypoints_*.json file")
    parser.add_argument("--images", required=True, help="folder holding the json's image files")
    parser.add_argument("--out", required=True, help="HDF5 file to write (replaced atomically when done)")
    parser.add_argument("--limit", type=cli.positive_int, help="only the first N images of the json")
    parser.add_argument("--workers", type=cli.positive_int, default=1, help="image-reading threads")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--allow-empty", action="store_true",
                        help="write the file even when no image has a main person (0 samples); otherwise an error")
    return parser


@cli.run_main
def main(argv=None, prog=None) -> int:
    args = build_parser(prog).parse_args(argv)
    cli.setup_logging(args.log_level)
    from simplepose.data.prepare import prepare_coco_hdf5

    summary = prepare_coco_hdf5(args.annotations, args.images, args.out, limit=args.limit, workers=args.workers,
                                progress=not args.no_progress, allow_empty=args.allow_empty)
    print(f"wrote {args.out}\n{summary.format()}")
    if summary.samples_written == 0:
        print(f"warning: {args.out} holds 0 samples (--allow-empty); training cannot use it", file=sys.stderr)
    return 0
