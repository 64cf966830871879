"""COCO keypoint evaluation of a trained model (multi-scale, flip) or, with --oracle, of the decoder on true maps.

A model is evaluated with the inference settings it was trained with (stored in the model file); --scales,
--flip/--no-flip, --config and --set change them. Top-down models use the ground-truth person boxes unless
--boxes gives a detector's or --boxes-from a bottom-up model whose people become the boxes.

Examples:
    simplepose evaluate --weights runs/vgg19_368/model.keras \\
        --annotations coco/annotations/person_keypoints_val2017.json --images coco/val2017 \\
        --scales 0.5 1 1.5 2 --flip --out runs/vgg19_368/eval
    simplepose evaluate --weights runs/vgg19_368/model.onnx --annotations ... --images ...
    simplepose evaluate --weights topdown.keras --boxes-from bottomup.onnx --annotations ... --images ...
    simplepose evaluate --oracle --annotations coco/annotations/person_keypoints_val2017.json
"""
import os

from simplepose import cli


def parse_args(argv, prog=None):
    parser = cli.make_parser(__doc__, prog)
    parser.add_argument("--annotations", required=True, metavar="JSON", help="COCO person keypoints JSON")
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--weights", metavar="MODEL", help="trained model to evaluate: .keras, .onnx, .tflite, "
                      "OpenVINO .xml or a SavedModel folder")
    mode.add_argument("--oracle", action="store_true", help="decode ground-truth maps rendered by the training "
                      "target code of --config's method (no images or weights)")
    parser.add_argument("--images", metavar="DIR", help="image folder (required with --weights)")
    cli.add_tta_args(parser)
    boxes = parser.add_mutually_exclusive_group()
    boxes.add_argument("--boxes", metavar="JSON", help="top-down: person boxes as COCO detection results "
                       "(default: ground-truth boxes)")
    cli.add_boxes_from_arg(boxes, "ground-truth boxes")
    parser.add_argument("--limit", type=cli.positive_int, metavar="N", help="evaluate the first N images only")
    parser.add_argument("--out", metavar="DIR", help="write results.json and metrics.json here")
    cli.add_config_args(parser, model=True)
    args = parser.parse_args(argv)
    if args.weights and not args.images:
        parser.error("--images is required with --weights")
    return args


@cli.run_main
def main(argv=None, prog=None) -> int:
    args = parse_args(argv, prog)
    cli.setup_logging(args.log_level)
    from simplepose import evaluation, jobs

    tta = dict(scales=args.scales, flip=args.flip, limit=args.limit, out_dir=args.out)
    if args.oracle:
        metrics = jobs.evaluate_oracle(args.annotations, config=args.config, overrides=args.overrides, **tta)
    else:
        metrics = jobs.evaluate_model(args.weights, args.annotations, args.images, config=args.config,
                                      overrides=args.overrides, boxes_file=args.boxes,
                                      boxes_from=args.boxes_from, **tta)
    print(evaluation.format_summary(metrics))
    print(evaluation.format_timing(metrics["timing"]))
    if args.out:
        print(f"wrote {os.path.join(args.out, 'results.json')} ({metrics['results']} people) and "
              f"{os.path.join(args.out, 'metrics.json')}")
    else:
        print("no --out: nothing saved (--out DIR writes results.json and metrics.json)")
    return 0
