#!/usr/bin/env python
"""Real images learned: train a small bottom-up model on coco-mini train until it has memorised it, then AP.

The whole real data path, from COCO JSON to AP: the train split's JSON and JPEGs are prepared into HDF5
(crowd and unlabelled-person miss masks included), ``configs/coco_mini_memorise.yaml`` is trained on it, and
after every epoch the model is evaluated with pycocotools on the *same* images (every image of the train JSON).
This is a memorisation check of the chain (prep, pipeline, targets, loss, optimiser, decoder, COCO
evaluation) on real photographs, crowds and masks: it says nothing about generalisation to unseen images.
By default a crop is centred on every person with a labelled keypoint (``--crops every-person``; one near an
already chosen person shares that crop): the evaluation counts them all, while the published preparation
centres crops only on people with 5+ keypoints and 32x32 px (``--crops main-people``), so the others are
learned only where they share a main person's crop.

Training stops before an epoch that would end past ``--minutes`` (training and per-epoch evaluation together,
judged by the last epoch's length; prep and start-up excluded from the budget but reported) or after
``train.epochs``. Each curve point also has the CPU time the process used
(all its threads): on a shared machine it says how much of the cores the run actually got. Writes
``learning_curve.png`` (loss and AP against minutes) and ``curve.json`` into ``--out`` after every epoch;
the last stdout line is one JSON object with the curve, the best AP, the minutes until AP first reached
``--target`` and the machine load at start and end.

Example:
    python benchmarks/learn_coco_mini.py --out /tmp/learn_coco_mini --minutes 15
"""
import io
import json
import logging
import os
import sys
import tempfile
import time

from simplepose import cli

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COCO_MINI = os.path.join(os.path.dirname(REPO), "shared", "data", "coco-mini")
CONFIG = os.path.join(REPO, "configs", "coco_mini_memorise.yaml")

LOG = logging.getLogger("learn_coco_mini")


def build_parser():
    parser = cli.make_parser(__doc__)
    parser.add_argument("--coco", default=COCO_MINI, help="COCO-layout folder (annotations/, train2017/)")
    parser.add_argument("--split", default="train2017", help="split to prepare, train on and evaluate on")
    cli.add_config_args(parser)
    parser.set_defaults(config=CONFIG)
    parser.add_argument("--out", default=None, help="output folder (default: a new temporary folder)")
    parser.add_argument("--minutes", type=float, default=15.0, help="budget for training + evaluation")
    parser.add_argument("--target", type=float, default=0.5, help="AP whose first crossing time is reported")
    parser.add_argument("--crops", choices=("every-person", "main-people"), default="every-person",
                        help="a training crop centred on every person with a labelled keypoint (all the people "
                             "the evaluation counts), or only on the main people of the published preparation "
                             "(5+ keypoints, 32x32 px)")
    return parser


class EvalEveryEpoch:
    """Keras callback factory: COCO AP on the training images after each epoch, stop at the time budget."""

    def __new__(cls, cfg, ann, images, budget_s, curve, on_point=None):
        import keras

        from simplepose.evaluation import evaluate_predictor
        from simplepose.predictor import Predictor

        class Callback(keras.callbacks.Callback):
            def on_train_begin(self, logs=None):
                self.start, self.cpu_start = time.perf_counter(), time.process_time()
                self.last_end = 0.0
                self.eval_s = 0.0

            def on_epoch_end(self, epoch, logs=None):
                t0 = time.perf_counter()
                metrics = evaluate_predictor(Predictor.from_model(self.model), ann, images)
                self.eval_s += time.perf_counter() - t0
                elapsed = time.perf_counter() - self.start
                curve.append({"epoch": epoch + 1, "steps": (epoch + 1) * cfg.train.steps_per_epoch,
                              "minutes": round(elapsed / 60, 2), "eval_minutes": round(self.eval_s / 60, 2),
                              "cpu_minutes": round((time.process_time() - self.cpu_start) / 60, 2),
                              "loss": round(float(logs["loss"]), 4), "AP": round(metrics["AP"], 4),
                              "AP50": round(metrics["AP50"], 4), "AR": round(metrics["AR"], 4),
                              "load": round(os.getloadavg()[0], 2)})
                LOG.info("epoch %d: loss %.4f, AP %.3f (AP50 %.3f) after %.1f min (load %.2f)", epoch + 1,
                         logs["loss"], metrics["AP"], metrics["AP50"], elapsed / 60, os.getloadavg()[0])
                if on_point is not None:  # the curve so far is on disk while a long run goes on
                    on_point(curve)
                epoch_s, self.last_end = elapsed - self.last_end, elapsed
                if elapsed + epoch_s > budget_s:  # the next epoch would end past the budget
                    self.model.stop_training = True

        return Callback()


def plot_curve(curve, target, png_path, title):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    from simplepose.atomic import write_bytes

    minutes = [c["minutes"] for c in curve]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.plot(minutes, [c["AP"] for c in curve], marker="o", color="tab:blue", label="AP (train images)")
    ax.plot(minutes, [c["AP50"] for c in curve], marker=".", color="tab:cyan", label="AP50")
    ax.axhline(target, color="gray", linestyle="--", linewidth=1, label=f"target AP {target}")
    ax.set(xlabel="minutes (training + evaluation)", ylabel="COCO keypoint AP", ylim=(0, 1), title=title)
    loss_ax = ax.twinx()
    loss_ax.plot(minutes, [c["loss"] for c in curve], marker=".", color="tab:red", alpha=0.6, label="training loss")
    loss_ax.set(ylabel="training loss", yscale="log")
    lines = ax.get_legend_handles_labels()
    more = loss_ax.get_legend_handles_labels()
    ax.legend(lines[0] + more[0], lines[1] + more[1], loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=4,
              fontsize=8, frameon=False)
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    write_bytes(png_path, buf.getvalue())


def run(args) -> dict:
    from simplepose.atomic import write_text
    from simplepose.data.coco import MainPersonRules
    from simplepose.data.prepare import prepare_coco_hdf5
    from simplepose.train import fit

    ann = os.path.join(args.coco, "annotations", f"person_keypoints_{args.split}.json")
    images = os.path.join(args.coco, args.split)
    if not os.path.isfile(ann) or not os.path.isdir(images):
        raise cli.UserError(f"{args.coco}: needs annotations/person_keypoints_{args.split}.json and {args.split}/")
    out = args.out or tempfile.mkdtemp(prefix="learn_coco_mini_")
    os.makedirs(out, exist_ok=True)
    cfg = cli.config_from_args(args)
    load_start = os.getloadavg()[0]
    t0 = time.perf_counter()
    h5 = os.path.join(out, "train.h5")
    rules = MainPersonRules(min_keypoints=1, min_area=0.0) if args.crops == "every-person" else MainPersonRules()
    summary = prepare_coco_hdf5(ann, images, h5, progress=False, rules=rules)
    prep_s = time.perf_counter() - t0
    curve = []
    title = f"coco-mini {args.split}: memorisation ({summary.samples_written} crops, {cpu_count()} cores)"

    def on_point(points):
        plot_curve(points, args.target, os.path.join(out, "learning_curve.png"), title)
        write_text(os.path.join(out, "curve.json"), json.dumps(points, indent=1))

    t1 = time.perf_counter()
    fit(cfg, os.path.join(out, "run"), h5, verbose=0,
        callbacks=[EvalEveryEpoch(cfg, ann, images, args.minutes * 60, curve, on_point)])
    total_s = time.perf_counter() - t1
    reached = next((c for c in curve if c["AP"] >= args.target), None)
    best = max(curve, key=lambda c: c["AP"])
    result = {"final_AP": curve[-1]["AP"], "best_AP": best["AP"], "best_epoch": best["epoch"],
              "target": args.target, "minutes_to_target": reached["minutes"] if reached else None,
              "epochs": len(curve), "steps": curve[-1]["steps"], "fit_minutes": round(total_s / 60, 2),
              "prep_s": round(prep_s, 2), "samples": summary.samples_written, "images": _image_count(ann),
              "crops": args.crops, "config": os.path.relpath(args.config, REPO), "overrides": args.overrides,
              "cpu_count": cpu_count(), "load_start": round(load_start, 2), "load_end": round(os.getloadavg()[0], 2),
              "curve": curve, "out": out}
    write_text(os.path.join(out, "curve.json"), json.dumps(result, indent=1))
    return result


def _image_count(ann) -> int:
    with open(ann) as f:
        return len(json.load(f)["images"])


def cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


@cli.run_main
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    cli.setup_logging(args.log_level)
    result = run(args)
    LOG.info("best AP %.3f at epoch %d; AP >= %.2f after %s min; curve: %s", result["best_AP"],
             result["best_epoch"], args.target, result["minutes_to_target"],
             os.path.join(result["out"], "learning_curve.png"))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
