"""Find, track and draw the people of a video file, an image folder (or glob, in name order) or a webcam.

Writes the annotated video (same size and frame rate as the input; .mp4: MPEG-4 Part 2 'mp4v', .avi:
Motion JPEG) and, with --json, one JSON line per frame with the poses and their track ids. Ctrl-C stops
cleanly: the frames done so far are in a playable video and the JSON lines are complete.

Example:
    simplepose video --weights runs/vgg19_368/model.keras --source walk.mp4 --out walk_poses.mp4 \\
        --json walk_poses.jsonl
    simplepose video --weights model.onnx --source 'frames/*.png' --fps 30 --out frames.mp4
    simplepose video --weights model.keras --source 0 --out webcam.mp4 --limit 300
    simplepose video --weights topdown.keras --boxes-from bottomup.onnx --source walk.mp4 --out walk.mp4
"""
from simplepose import cli


def parse_args(argv, prog=None):
    parser = cli.make_parser(__doc__, prog)
    parser.add_argument("--weights", required=True, metavar="MODEL",
                        help="trained model: .keras, .onnx, .tflite, OpenVINO .xml or a SavedModel folder")
    parser.add_argument("--source", required=True, metavar="SRC",
                        help="video file, image folder, quoted glob pattern, or webcam index (0, 1, ...)")
    parser.add_argument("--out", metavar="OUT.mp4", help="annotated video (.mp4 or .avi)")
    parser.add_argument("--json", metavar="OUT.jsonl", help="also write one JSON line of poses per frame")
    cli.add_boxes_from_arg(parser, "the whole frame")
    parser.add_argument("--fps", type=float, help="frame rate of an image folder (default 25)")
    parser.add_argument("--limit", type=int, metavar="N", help="stop after N frames")
    parser.add_argument("--no-tracking", action="store_true", help="no track ids (and no smoothing)")
    parser.add_argument("--no-smoothing", action="store_true", help="track ids, but raw keypoint positions")
    parser.add_argument("--max-age", type=int, default=15, help="frames a track survives unmatched")
    parser.add_argument("--min-hits", type=int, default=None,
                        help="matched frames before a track gets its id (default: TrackerSettings.min_hits, 2)")
    parser.add_argument("--track-cost", choices=("oks", "iou", "oks+iou"), default="oks",
                        help="similarity used to match poses to tracks")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    cli.add_tta_args(parser)
    cli.add_config_args(parser, model=True)
    return parser.parse_args(argv)


@cli.run_main
def main(argv=None, prog=None) -> int:
    args = parse_args(argv, prog)
    cli.setup_logging(args.log_level)
    from simplepose.jobs import open_predictor
    from simplepose.tracking import PoseTracker, SmoothingSettings, TrackerSettings
    from simplepose.video import check_output_path, open_source, process_video

    if not args.out and not args.json:
        raise cli.UserError("nothing to write: give --out OUT.mp4 and/or --json OUT.jsonl")
    if args.limit is not None and args.limit < 1 or args.fps is not None and not args.fps > 0:
        raise cli.UserError("--limit must be >= 1 and --fps > 0")
    for path in (args.out, args.json):
        if path:
            check_output_path(path)
    try:
        settings = TrackerSettings(cost=args.track_cost, max_age=args.max_age,
                                   min_hits=TrackerSettings.min_hits if args.min_hits is None else args.min_hits)
    except ValueError as e:
        raise cli.UserError(str(e)) from None
    source = open_source(args.source, fps=args.fps)
    try:
        predictor = open_predictor(args.weights, boxes_from=args.boxes_from, config=args.config,
                                   overrides=args.overrides, scales=args.scales, flip=args.flip)
    except BaseException:
        source.close()
        raise
    tracker = None if args.no_tracking else PoseTracker(
        predictor.skeleton.sigmas, settings, None if args.no_smoothing else SmoothingSettings())
    summary = process_video(predictor, source, args.out, json_path=args.json, tracker=tracker, limit=args.limit,
                            progress=not args.no_progress)
    print(summary.report())
    return 130 if summary.interrupted else 0
