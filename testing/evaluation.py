"""COCO keypoint evaluation of a bottom-up model (multi-scale, flip) or, with --oracle, of the decoder on true maps."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from simplepose import cli  # noqa: E402
from simplepose.config import load_config  # noqa: E402


def parse_args(argv):
    parser = cli.make_parser(__doc__)
    parser.add_argument("--annotations", required=True, metavar="JSON", help="COCO person keypoints JSON")
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--weights", metavar="MODEL.keras", help="trained model to evaluate")
    mode.add_argument("--oracle", action="store_true",
                      help="decode ground-truth maps rendered by the training target code (no images or weights)")
    parser.add_argument("--images", metavar="DIR", help="image folder (required with --weights)")
    parser.add_argument("--scales", type=float, nargs="+", help="test scales relative to inference.box_size")
    parser.add_argument("--flip", action="store_true", help="average with the horizontally mirrored prediction")
    parser.add_argument("--limit", type=int, help="evaluate the first N images only")
    parser.add_argument("--out", metavar="DIR", help="write results.json and metrics.json here")
    cli.add_config_args(parser)
    args = parser.parse_args(argv)
    if args.weights and not args.images:
        parser.error("--images is required with --weights")
    return args


def _check_inputs(args):
    for path, what in ((args.annotations, "annotation file"), (args.weights, "model file")):
        if path and not os.path.isfile(path):
            raise cli.UserError(f"{path}: {what} not found")
    if args.images and not os.path.isdir(args.images):
        raise cli.UserError(f"{args.images}: image folder not found")
    if args.limit is not None and args.limit < 1:
        raise cli.UserError("--limit must be >= 1")


@cli.run_main
def main(argv=None) -> int:
    args = parse_args(argv)
    cli.setup_logging(args.log_level)
    _check_inputs(args)
    overrides = list(args.overrides)
    if args.scales:
        overrides.append(f"inference.scales=[{', '.join(map(str, args.scales))}]")
    if args.flip:
        overrides.append("inference.flip=true")
    cfg = load_config(args.config, overrides)
    from simplepose import evaluation

    try:
        evaluation.load_coco(args.annotations)
    except Exception as e:  # pycocotools raises assorted errors on malformed files
        raise cli.UserError(f"{args.annotations}: not a COCO annotation file ({type(e).__name__}: {e})") from None
    if args.oracle:
        from simplepose.oracle import oracle_evaluate

        metrics = oracle_evaluate(args.annotations, cfg, out_dir=args.out, limit=args.limit, progress=True)
    else:
        from simplepose.inference import Predictor

        try:
            predictor = Predictor.from_file(args.weights, cfg)
        except (ValueError, OSError) as e:
            raise cli.UserError(f"{args.weights}: cannot load model ({e})") from None
        try:
            metrics = evaluation.evaluate_predictor(predictor, args.annotations, args.images, limit=args.limit,
                                                    out_dir=args.out, progress=True)
        except FileNotFoundError as e:
            raise cli.UserError(str(e)) from None
    print(evaluation.format_summary(metrics))
    print(evaluation.format_timing(metrics["timing"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
