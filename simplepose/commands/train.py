"""Train a pose network into a run directory (resumes an interrupted run in place).

Bottom-up configs read HDF5 files (training/coco_masks_hdf5.py); top-down configs (model.architecture=topdown)
read COCO person keypoint JSON files with their image folders (--train-images, --val-images).

Examples:
    simplepose train --config configs/bottomup_tiny.yaml --train data/train.h5 \\
        --val data/val.h5 --run-dir runs/tiny --epochs 20
    simplepose train --config configs/topdown_tiny.yaml \\
        --train coco/annotations/person_keypoints_train2017.json --train-images coco/train2017 \\
        --val coco/annotations/person_keypoints_val2017.json --val-images coco/val2017 --run-dir runs/td
"""
import sys

from simplepose import atomic, cli


def build_parser(prog=None):
    parser = cli.make_parser(__doc__, prog)
    cli.add_config_args(parser)
    parser.add_argument("--train", metavar="FILE",
                        help="training data: HDF5 file (bottom-up) or COCO keypoint JSON (top-down); required unless "
                        "--print-config")
    parser.add_argument("--train-images", metavar="DIR", help="top-down: image folder of the --train JSON")
    parser.add_argument("--val", metavar="FILE", help="validation data, same kind as --train; model.keras is then "
                        "the best by val_loss")
    parser.add_argument("--val-images", metavar="DIR", help="top-down: image folder of the --val JSON")
    parser.add_argument("--run-dir", help="output folder: config, logs, checkpoints, backup; required unless "
                        "--print-config")
    parser.add_argument("--epochs", type=cli.positive_int, metavar="N", help="shortcut for --set train.epochs=N")
    parser.add_argument("--steps-per-epoch", type=cli.non_negative_int, metavar="N",
                        help="shortcut for --set train.steps_per_epoch=N (0: one pass over --train)")
    parser.add_argument("--batch-size", type=cli.positive_int, metavar="N",
                        help="global batch; shortcut for --set train.batch_size=N")
    parser.add_argument("--strategy", choices=("auto", "one", "mirrored", "multiworker"),
                        help="shortcut for --set train.strategy=NAME")
    parser.add_argument("--backbone-weights", help="imagenet, none or a backbone weights file (model.backbone_weights)")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    return parser


def resolve_config(args):
    shortcuts = {"train.epochs": args.epochs, "train.steps_per_epoch": args.steps_per_epoch,
                 "train.batch_size": args.batch_size, "train.strategy": args.strategy,
                 "model.backbone_weights": args.backbone_weights}
    extra = [f"{key}={value}" for key, value in shortcuts.items() if value is not None]
    return cli.config_from_args(args, extra_overrides=extra)


@cli.run_main
def main(argv=None, prog=None) -> int:
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    cli.setup_logging(args.log_level)
    cfg = resolve_config(args)
    if args.print_config:
        print(cfg.to_yaml(), end="")
        return 0
    missing = [flag for flag, value in (("--train", args.train), ("--run-dir", args.run_dir)) if not value]
    if missing:
        parser.error(f"the following arguments are required: {', '.join(missing)}")
    atomic.check_output_folder(args.run_dir)  # now, not after the data and the model are ready
    from simplepose.run_dir import session_summary
    from simplepose.train import fit

    # Keras' progress bar writes terminal escape codes; one plain line per epoch when stdout is a file or pipe
    history = fit(cfg, args.run_dir, args.train, args.val, train_images=args.train_images,
                  val_images=args.val_images, verbose="auto" if sys.stdout.isatty() else 2)
    print(session_summary(args.run_dir, history, cfg.train.epochs))
    return 0
