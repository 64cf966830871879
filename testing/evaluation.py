"""COCO keypoint evaluation of a trained model (multi-scale, flip) or, with --oracle, of the decoder on true maps."""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from simplepose import cli  # noqa: E402


def parse_args(argv):
    parser = cli.make_parser(__doc__)
    parser.add_argument("--annotations", required=True, metavar="JSON", help="COCO person keypoints JSON")
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--weights", metavar="MODEL.keras", help="trained model to evaluate (its run's config.yaml "
                      "is used unless --config is given)")
    mode.add_argument("--oracle", action="store_true",
                      help="decode ground-truth maps rendered by the training target code (no images or weights)")
    parser.add_argument("--images", metavar="DIR", help="image folder (required with --weights)")
    parser.add_argument("--scales", type=float, nargs="+", help="bottom-up test scales relative to inference.box_size")
    parser.add_argument("--flip", action="store_true", help="average with the horizontally mirrored prediction")
    parser.add_argument("--boxes", metavar="JSON", help="top-down: person boxes as COCO detection results "
                        "(default: ground-truth boxes)")
    parser.add_argument("--limit", type=int, help="evaluate the first N images only (bottom-up)")
    parser.add_argument("--out", metavar="DIR", help="write results.json and metrics.json here")
    cli.add_config_args(parser)
    args = parser.parse_args(argv)
    if args.weights and not args.images:
        parser.error("--images is required with --weights")
    return args


def _check_inputs(args):
    for path, what in ((args.annotations, "annotation file"), (args.weights, "model file"),
                       (args.boxes, "boxes file")):
        if path and not os.path.isfile(path):
            raise cli.UserError(f"{path}: {what} not found")
    if args.images and not os.path.isdir(args.images):
        raise cli.UserError(f"{args.images}: image folder not found")
    if args.limit is not None and args.limit < 1:
        raise cli.UserError("--limit must be >= 1")


def _load(load, path, *args):
    try:
        return load(path, *args)
    except (ValueError, OSError) as e:
        raise cli.UserError(f"{path}: cannot load model ({e})") from None


def _load_keras(path):
    from simplepose.models.registry import load_model

    return load_model(path)


def run_bottomup(args, cfg):
    from simplepose import evaluation

    if args.oracle:
        from simplepose.oracle import oracle_evaluate

        return oracle_evaluate(args.annotations, cfg, out_dir=args.out, limit=args.limit, progress=True)
    from simplepose.inference import Predictor

    predictor = _load(Predictor.from_file, args.weights, cfg)
    try:
        return evaluation.evaluate_predictor(predictor, args.annotations, args.images, limit=args.limit,
                                             out_dir=args.out, progress=True)
    except FileNotFoundError as e:
        raise cli.UserError(str(e)) from None


def run_topdown(args, cfg):
    from simplepose.config import atomic_write_text
    from simplepose.topdown_eval import evaluate_topdown

    model = None if args.oracle else _load(_load_keras, args.weights)
    if args.out:
        os.makedirs(args.out, exist_ok=True)
    results = os.path.join(args.out, "results.json") if args.out else None
    try:
        metrics = evaluate_topdown(cfg, args.annotations, args.images, model=model, oracle=args.oracle,
                                   boxes_file=args.boxes, flip=args.flip or None, results_path=results)
    except ValueError as e:
        raise cli.UserError(str(e)) from None
    if args.out:
        atomic_write_text(os.path.join(args.out, "metrics.json"), json.dumps(metrics, indent=1))
    return metrics


@cli.run_main
def main(argv=None) -> int:
    args = parse_args(argv)
    cli.setup_logging(args.log_level)
    _check_inputs(args)
    cfg = cli.config_from_args(args, weights=args.weights, extra_overrides=cli.tta_overrides(args.scales, args.flip))
    from simplepose import evaluation

    try:
        evaluation.load_coco(args.annotations)
    except Exception as e:  # pycocotools raises assorted errors on malformed files
        raise cli.UserError(f"{args.annotations}: not a COCO annotation file ({type(e).__name__}: {e})") from None
    if cfg.model.architecture == "topdown":
        metrics = run_topdown(args, cfg)
    else:
        metrics = run_bottomup(args, cfg)
    print(evaluation.format_summary(metrics))
    if "timing" in metrics:
        print(evaluation.format_timing(metrics["timing"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
