"""Export a trained model to a TensorFlow SavedModel folder, ONNX or LiteRT, with its head contract inside.

The exported network takes uint8 BGR images (batch, height and width free for bottom-up models; top-down
models take their crop size) and returns the maps of the last stage. Predictor.from_file, evaluation and the
demo use the exported file like the .keras file; ONNX and LiteRT files need neither TensorFlow nor Keras.

Examples:
    simplepose export --weights runs/qs/model.keras --format onnx --out runs/qs/model.onnx
    simplepose export --weights runs/qs/model.keras --format litert --precision float16 --out model_fp16.tflite
    simplepose export --weights runs/qs/model.keras --format onnx --precision int8 --calibration val_images/ \\
        --out model_int8.onnx
"""
from __future__ import annotations

import glob
import os

from simplepose import cli


def build_parser(prog=None):
    from simplepose.export import FORMATS, PRECISIONS

    parser = cli.make_parser(__doc__, prog)
    parser.add_argument("--weights", required=True, metavar="MODEL.keras", help="trained model")
    parser.add_argument("--format", required=True, choices=FORMATS, help="export format")
    parser.add_argument("--out", required=True, metavar="PATH", help="file (.onnx, .tflite) or folder (saved_model)")
    parser.add_argument("--precision", default="float32",
                        choices=sorted({p for ps in PRECISIONS.values() for p in ps}),
                        help="; ".join(f"{f}: {', '.join(p)}" for f, p in PRECISIONS.items()))
    parser.add_argument("--calibration", metavar="DIR", help="int8 ONNX: images to calibrate activation ranges on")
    parser.add_argument("--calibration-images", type=int, default=32, metavar="N", help="use at most N of them")
    return parser


@cli.run_main
def main(argv=None, prog=None) -> int:
    args = build_parser(prog).parse_args(argv)
    cli.setup_logging(args.log_level)
    from simplepose.export import calibration_batches, export_model

    calibration = None
    if args.calibration:
        paths = sorted(p for p in glob.glob(os.path.join(args.calibration, "*"))
                       if p.lower().endswith((".jpg", ".jpeg", ".png", ".bmp")))
        if not paths:
            raise cli.UserError(f"{args.calibration}: no .jpg, .png or .bmp images to calibrate on")
        calibration = calibration_batches(args.weights, paths, limit=args.calibration_images)
    result = export_model(args.weights, args.format, args.out, precision=args.precision, calibration=calibration)
    print(f"wrote {result.path} ({result.format}, {result.precision}, {result.bytes / 1e6:.1f} MB, "
          f"{result.seconds:.1f} s)")
    return 0
