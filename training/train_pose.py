#!/usr/bin/env python
"""Train a pose network from HDF5 files into a run directory (resumes an interrupted run in place).

Example:
    python training/train_pose.py --config configs/bottomup_tiny.yaml --train data/train.h5 \\
        --val data/val.h5 --run-dir runs/tiny --epochs 20
"""
import sys

from simplepose import cli


def build_parser():
    parser = cli.make_parser(__doc__)
    cli.add_config_args(parser)
    parser.add_argument("--train", required=True, help="training HDF5 file (training/coco_masks_hdf5.py)")
    parser.add_argument("--val", help="validation HDF5 file; model.keras is then the best by val_loss")
    parser.add_argument("--run-dir", required=True, help="output folder: config, logs, checkpoints, backup")
    parser.add_argument("--epochs", type=int, help="shortcut for --set train.epochs=N")
    parser.add_argument("--steps-per-epoch", type=int, help="shortcut for --set train.steps_per_epoch=N")
    parser.add_argument("--batch-size", type=int, help="global batch; shortcut for --set train.batch_size=N")
    parser.add_argument("--strategy", choices=("auto", "one", "mirrored", "multiworker"),
                        help="shortcut for --set train.strategy=NAME")
    parser.add_argument("--backbone-weights", help="imagenet, none or a VGG19 weights file (model.backbone_weights)")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    return parser


def resolve_config(args):
    shortcuts = {"train.epochs": args.epochs, "train.steps_per_epoch": args.steps_per_epoch,
                 "train.batch_size": args.batch_size, "train.strategy": args.strategy,
                 "model.backbone_weights": args.backbone_weights}
    extra = [f"{key}={value}" for key, value in shortcuts.items() if value is not None]
    return cli.config_from_args(args, extra_overrides=extra)


@cli.run_main
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    cli.setup_logging(args.log_level)
    cfg = resolve_config(args)
    if args.print_config:
        print(cfg.to_yaml(), end="")
        return 0
    from simplepose.models.vgg_backbone import BackboneWeightsError
    from simplepose.train import TrainingError, fit

    try:
        history = fit(cfg, args.run_dir, args.train, args.val)
    except (TrainingError, BackboneWeightsError) as e:
        raise cli.UserError(str(e)) from None
    losses = history.history.get("loss", [])
    if losses:
        print(f"done: {len(losses)} epoch(s) this session, last loss {losses[-1]:.4g}; outputs in {args.run_dir}")
    else:
        print(f"nothing to do: {args.run_dir} already holds {cfg.train.epochs} epoch(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
