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
from simplepose import cli


def build_parser(prog=None):
    parser = cli.make_parser(__doc__, prog)
    cli.add_config_args(parser)
    parser.add_argument("--train", required=True, metavar="FILE",
                        help="training data: HDF5 file (bottom-up) or COCO keypoint JSON (top-down)")
    parser.add_argument("--train-images", metavar="DIR", help="top-down: image folder of the --train JSON")
    parser.add_argument("--val", metavar="FILE", help="validation data, same kind as --train; model.keras is then "
                        "the best by val_loss")
    parser.add_argument("--val-images", metavar="DIR", help="top-down: image folder of the --val JSON")
    parser.add_argument("--run-dir", required=True, help="output folder: config, logs, checkpoints, backup")
    parser.add_argument("--epochs", type=int, help="shortcut for --set train.epochs=N")
    parser.add_argument("--steps-per-epoch", type=int, help="shortcut for --set train.steps_per_epoch=N")
    parser.add_argument("--batch-size", type=int, help="global batch; shortcut for --set train.batch_size=N")
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
    args = build_parser(prog).parse_args(argv)
    cli.setup_logging(args.log_level)
    cfg = resolve_config(args)
    if args.print_config:
        print(cfg.to_yaml(), end="")
        return 0
    from simplepose.train import fit

    history = fit(cfg, args.run_dir, args.train, args.val, train_images=args.train_images, val_images=args.val_images)
    losses = history.history.get("loss", [])
    if losses:
        print(f"done: {len(losses)} epoch(s) this session, last loss {losses[-1]:.4g}; outputs in {args.run_dir}")
    else:
        print(f"nothing to do: {args.run_dir} already holds {cfg.train.epochs} epoch(s)")
    return 0
