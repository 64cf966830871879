"""Draw the people a trained model finds in one image, and write them as JSON.

The model is used with the inference settings it was trained with (stored in the model file); --scales,
--flip/--no-flip, --config and --set change them.

Example:
    simplepose demo --weights runs/vgg19_368/model.keras --image photo.jpg --out photo_poses.png \\
        --json photo_poses.json
    simplepose demo --weights topdown.keras --boxes-from bottomup.keras --image photo.jpg
"""
import os

from simplepose import cli


def parse_args(argv, prog=None):
    parser = cli.make_parser(__doc__, prog)
    parser.add_argument("--weights", required=True, metavar="MODEL",
                        help="trained model: .keras, .onnx, .tflite, OpenVINO .xml or a SavedModel folder")
    parser.add_argument("--image", required=True, metavar="IMG", help="any image OpenCV reads")
    parser.add_argument("--out", metavar="OUT.png", help="annotated image (default: IMG stem + _poses.png here)")
    parser.add_argument("--json", metavar="OUT.json", help="also write the poses as JSON")
    cli.add_tta_args(parser)
    parser.add_argument("--box", type=float, nargs=4, action="append", metavar=("X", "Y", "W", "H"),
                        help="top-down models: a person box (repeat for several; default: the whole image)")
    cli.add_boxes_from_arg(parser, "--box, else the whole image")
    cli.add_config_args(parser, model=True)
    return parser.parse_args(argv)


@cli.run_main
def main(argv=None, prog=None) -> int:
    args = parse_args(argv, prog)
    cli.setup_logging(args.log_level)
    from simplepose import jobs

    out = args.out or os.path.splitext(os.path.basename(args.image))[0] + "_poses.png"
    found = jobs.draw_image(args.weights, args.image, out, json_path=args.json, config=args.config,
                            overrides=args.overrides, scales=args.scales, flip=args.flip, boxes=args.box,
                            boxes_from=args.boxes_from)
    if found["whole_image_box"]:
        print(f"{found['method']} model and no --box given: the whole image is taken as one person box")
    print(f"{len(found['poses'])} people -> {out}" + (f", {args.json}" if args.json else ""))
    return 0
