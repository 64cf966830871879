"""Draw the people a trained model finds in one image, and write them as JSON."""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from simplepose import cli  # noqa: E402
from simplepose.config import atomic_write_text  # noqa: E402


def parse_args(argv):
    parser = cli.make_parser(__doc__)
    parser.add_argument("--weights", required=True, metavar="MODEL.keras",
                        help="trained model (its run's config.yaml is used unless --config is given)")
    parser.add_argument("--image", required=True, metavar="IMG", help="any image OpenCV reads")
    parser.add_argument("--out", metavar="OUT.png", help="annotated image (default: IMG stem + _poses.png here)")
    parser.add_argument("--json", metavar="OUT.json", help="also write the poses as JSON")
    parser.add_argument("--scales", type=float, nargs="+", help="test scales relative to inference.box_size")
    parser.add_argument("--flip", action="store_true", help="average with the horizontally mirrored prediction")
    parser.add_argument("--box", type=float, nargs=4, action="append", metavar=("X", "Y", "W", "H"),
                        help="top-down models: a person box (repeat for several; default: the whole image)")
    cli.add_config_args(parser)
    return parser.parse_args(argv)


def read_image(path):
    """BGR uint8; EXIF orientation applied, grayscale/alpha/16-bit converted by OpenCV's IMREAD_COLOR."""
    import cv2

    from simplepose.inference import as_bgr_uint8

    if not os.path.isfile(path):
        raise cli.UserError(f"{path}: image not found")
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    if image is None:
        raise cli.UserError(f"{path}: not a readable image")
    return as_bgr_uint8(image)


def load_predictor(path, cfg):
    """The bottom-up predictor, with a clear error for a missing or unloadable model file."""
    from simplepose.inference import Predictor

    if not os.path.isfile(path):
        raise cli.UserError(f"{path}: model file not found")
    try:
        return Predictor.from_file(path, cfg)
    except (ValueError, OSError) as e:
        raise cli.UserError(f"{path}: cannot load model ({e})") from None


def predict_topdown(path, cfg, image, boxes):
    """Top-down poses in the given boxes, or in the whole image taken as one box (said on stdout)."""
    from simplepose.models.registry import load_model
    from simplepose.topdown_eval import predict_image

    if not os.path.isfile(path):
        raise cli.UserError(f"{path}: model file not found")
    try:
        model = load_model(path)
    except (ValueError, OSError) as e:
        raise cli.UserError(f"{path}: cannot load model ({e})") from None
    if boxes:
        print(f"top-down model: {len(boxes)} person box(es) from --box")
    else:
        print("top-down model and no --box given: the whole image is taken as one person box")
    return predict_image(model, image, cfg, boxes=boxes or None)


@cli.run_main
def main(argv=None) -> int:
    args = parse_args(argv)
    cli.setup_logging(args.log_level)
    cfg = cli.config_from_args(args, weights=args.weights, extra_overrides=cli.tta_overrides(args.scales, args.flip))
    image = read_image(args.image)
    from simplepose.visualize import draw_poses, poses_to_json, write_image

    if cfg.model.architecture == "topdown":
        poses = predict_topdown(args.weights, cfg, image, args.box)
    else:
        if args.box:
            raise cli.UserError("--box is for top-down models; this config is bottom-up")
        poses = load_predictor(args.weights, cfg).predict(image)
    out = args.out or os.path.splitext(os.path.basename(args.image))[0] + "_poses.png"
    write_image(out, draw_poses(image, poses, cfg.skeleton))
    if args.json:
        atomic_write_text(args.json, json.dumps({"image": args.image, "width": image.shape[1], "height": image.shape[0],
                                                 "poses": poses_to_json(poses, cfg.skeleton)}, indent=1))
    print(f"{len(poses)} people -> {out}" + (f", {args.json}" if args.json else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
