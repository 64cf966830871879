"""Attention ablation: one small top-down configuration, the same budget and seeds, five attention variants.

Variants: no attention; holistic with CRF; holistic with softmax; holistic + part-wise with CRF; holistic +
part-wise with softmax. Each (variant, seed) is trained with ``train.fit`` from scratch on the synthetic
train set (``train.seed`` = the seed: the same sample order and augmentation draws in every variant) and
evaluated with ground-truth boxes on the synthetic held-out val set: COCO AP/AR with the config's settings
(flip test, rescoring threshold 0.2), and AP with every box scored (threshold 0: how well the keypoints are
placed while the heatmap maxima are still low). Then each variant's forward time per crop is the
median over interleaved repeats of a traced call on a batch of crops (the variants take turns, so a change
in the machine's load hits them all alike).

Writes ``OUT/ablation.json`` (every run's metrics, per-variant mean and sample standard deviation;
``minutes``: this invocation, ``run_minutes``: training and evaluation of every run, reused ones included),
``OUT/ablation.png`` (bar charts of both APs, error bars one standard deviation, seeds as dots) and each run's
folder under ``OUT/runs``; a finished run's ``metrics.json`` is reused, so an interrupted ablation
continues where it stopped. The synthetic data is generated under ``OUT/data`` unless ``--train-dir`` and
``--val-dir`` give it. The last stdout line is one JSON object of figures.

With configs/topdown_small_synthetic.yaml (2000 steps of 16 crops per run) the whole ablation (5 variants x
3 seeds) took 38.2 min wall on the 2-core machine (runs of 1.3-3.5 min; load average 2-5); see the config
for the probes behind that budget.

Examples:
    python benchmarks/ablate_attention.py --out /tmp/ablation
    python benchmarks/ablate_attention.py --out /tmp/ablation_smoke --smoke   # 2 steps, 1 seed, 3 images
"""
import csv
import io
import json
import logging
import os
import pathlib
import statistics
import sys
import time

import numpy as np

from simplepose import atomic, cli
from simplepose.config import load_config

LOG = logging.getLogger("ablate_attention")
REPO = pathlib.Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "topdown_small_synthetic.yaml"
#: ``(label, topdown.attention, topdown.attention_kernel)``; the kernel of "none" is unused.
VARIANTS = (("none", "none", "crf"), ("holistic CRF", "holistic", "crf"), ("holistic softmax", "holistic", "softmax"),
            ("holistic+partwise CRF", "holistic+partwise", "crf"),
            ("holistic+partwise softmax", "holistic+partwise", "softmax"))
#: The smoke version: two training steps of batch 2, one seed, three images each way, eager training.
SMOKE = ["train.epochs=1", "train.steps_per_epoch=2", "train.batch_size=2", "train.run_eagerly=true"]


def synthetic_data(root: pathlib.Path, smoke: bool):
    """The quickstart's synthetic train (200 images, seed 1) and val (40 images, seed 2) sets, made once."""
    from simplepose.data.synthetic import make_synthetic_coco

    sets = {}
    for split, num, seed in (("train", 3 if smoke else 200, 1), ("val", 3 if smoke else 40, 2)):
        folder = root / split
        if not (folder / "annotations.json").exists():
            make_synthetic_coco(folder, num_images=num, seed=seed)
        sets[split] = (folder / "annotations.json", folder / "images")
    return sets


def run_variant(cfg, run_dir: pathlib.Path, data: dict) -> dict:
    """Train one (variant, seed) and evaluate it with ground-truth boxes; a finished run is not retrained.

    Returns the AP/AR with the model's settings, ``AP_every_box`` (every box scored: rescoring threshold 0,
    which shows how well keypoints are placed while the heatmap maxima are still below the 0.2 threshold),
    the last training loss, parameters and seconds; written to ``run_dir/metrics.json``.
    """
    from simplepose import train
    from simplepose.methods import method_for_config
    from simplepose.models.loading import load_model
    from simplepose.predictor import Predictor

    done = run_dir / "metrics.json"
    out = json.loads(done.read_text()) if done.exists() else {}
    (train_ann, train_images), (val_ann, val_images) = data["train"], data["val"]
    method, model = method_for_config(cfg), None
    if "AP" not in out:
        start = time.perf_counter()
        model = train.fit(cfg, run_dir, train_ann, train_images=train_images, verbose=0).model
        train_s = time.perf_counter() - start
        metrics = method.evaluate(Predictor.from_model(model), val_ann, val_images)
        out.update({name: round(float(metrics[name]), 4) for name in ("AP", "AP50", "AP75", "AR")})
        out.update(params=int(model.count_params()), train_s=round(train_s, 1),
                   eval_s=round(time.perf_counter() - start - train_s, 1))
    if "AP_every_box" not in out:
        model = model or load_model(run_dir / "model.keras")
        predictor = Predictor.from_model(model, overrides=["topdown.rescore_threshold=0.0"])
        out["AP_every_box"] = round(float(method.evaluate(predictor, val_ann, val_images)["AP"]), 4)
    with open(run_dir / "log.csv", newline="") as f:
        out["final_loss"] = round(float(list(csv.DictReader(f))[-1]["loss"]), 6)
    atomic.write_json(done, out, indent=1)
    return out


def forward_ms(models: dict, batch_size: int, repeats: int, shape) -> dict:
    """Median ms per crop of each model on a batch of random crops, variants interleaved in each repeat."""
    import keras
    import tensorflow as tf

    x = tf.constant(np.random.default_rng(0).integers(0, 255, (batch_size, *shape, 3)).astype(np.float32))
    calls = {}
    for name, model in models.items():
        fn = tf.function(lambda x, m=model: m(x, training=False)["heatmaps"])
        for _ in range(2):
            keras.ops.convert_to_numpy(fn(x))
        calls[name] = fn
    times = {name: [] for name in calls}
    for _ in range(repeats):
        for name, fn in calls.items():
            start = time.perf_counter()
            keras.ops.convert_to_numpy(fn(x))
            times[name].append(1000.0 * (time.perf_counter() - start) / batch_size)
    return {name: round(statistics.median(t), 3) for name, t in times.items()}


def summarise(results: dict, seeds) -> dict:
    """Per variant: mean and sample standard deviation over the seeds of AP, AR, AP with every box scored and
    the last training loss; the per-seed APs; parameters."""
    out = {}
    for label, runs in results.items():
        row = {}
        for key in ("AP", "AR", "AP_every_box", "final_loss"):
            values = [runs[s][key] for s in seeds]
            row[f"{key}_mean"] = round(statistics.mean(values), 6 if key == "final_loss" else 4)
            row[f"{key}_std"] = round(statistics.stdev(values), 6 if key == "final_loss" else 4) \
                if len(values) > 1 else 0.0
        per_seed = {f"{key}_per_seed": [runs[s][key] for s in seeds] for key in ("AP", "AP_every_box")}
        out[label] = dict(row, **per_seed, params=runs[seeds[0]]["params"])
    return out


def bar_chart(summary: dict, path, title: str) -> None:
    """PNG bar charts of both APs' means with one-standard-deviation error bars and each seed as a dot."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    labels = list(summary)
    pos = np.arange(len(labels))
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    for ax, key, name in ((axes[0], "AP", "AP (rescoring threshold 0.2)"),
                          (axes[1], "AP_every_box", "AP, every box scored (threshold 0)")):
        ax.bar(pos, [summary[k][f"{key}_mean"] for k in labels], yerr=[summary[k][f"{key}_std"] for k in labels],
               capsize=6, color="#8fb3d9", edgecolor="#2c5d8f")
        for i, k in enumerate(labels):
            ax.plot([i] * len(summary[k][f"{key}_per_seed"]), summary[k][f"{key}_per_seed"], "o", color="#1b1b1b",
                    ms=4)
        ax.set_xticks(pos, [k.replace("+", "\n+").replace(" ", "\n") for k in labels])
        ax.set(title=name)
        ax.set_ylim(bottom=0)
    axes[0].set_ylabel("COCO AP, ground-truth boxes, synthetic val")
    fig.suptitle(title)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    atomic.write_bytes(path, buf.getvalue())


def run_ablation(args) -> dict:
    from simplepose.models.loading import load_model

    out = pathlib.Path(args.out)
    data = {"train": (args.train_dir / "annotations.json", args.train_dir / "images"),
            "val": (args.val_dir / "annotations.json", args.val_dir / "images")} if args.train_dir else \
        synthetic_data(out / "data", args.smoke)
    seeds = list(args.seeds[:1] if args.smoke else args.seeds)
    base = load_config(args.config, (SMOKE if args.smoke else []) + list(args.overrides))
    results, models, start = {}, {}, time.perf_counter()
    variants = [v for v in VARIANTS if args.variants is None or v[0] in args.variants]
    total, done = len(variants) * len(seeds), 0
    for seed in seeds:  # seeds outermost: a partial ablation has every variant at the first seeds
        for label, attention, kernel in variants:
            cfg = base.with_overrides([f"topdown.attention={attention}", f"topdown.attention_kernel={kernel}",
                                       f"train.seed={seed}"])
            run_dir = out / "runs" / label.replace(" ", "_").replace("+", "_") / f"seed{seed}"
            results.setdefault(label, {})[seed] = run_variant(cfg, run_dir, data)
            done += 1
            elapsed = time.perf_counter() - start
            LOG.info("[%d/%d] %s seed %d: AP %.4f (train %.0f s) | %.1f min elapsed", done, total, label, seed,
                     results[label][seed]["AP"], results[label][seed]["train_s"], elapsed / 60)
            if seed == seeds[0]:
                models[label] = load_model(run_dir / "model.keras")
    summary = summarise(results, seeds)
    ms = forward_ms(models, args.time_batch, 2 if args.smoke else args.repeats, tuple(base.topdown.input_shape))
    for label in summary:
        summary[label]["ms_per_crop"] = ms[label]
    budget = {"steps": base.train.epochs * base.train.steps_per_epoch, "batch_size": base.train.batch_size,
              "learning_rate": base.train.learning_rate, "lr_decay_epochs": list(base.topdown.lr_decay_epochs),
              "steps_per_epoch": base.train.steps_per_epoch, "seeds": seeds}
    figures = {"config": str(args.config), "budget": budget, "variants": summary,
               "ms_per_crop_batch": args.time_batch, "cpu_count": os.cpu_count(),
               "minutes": round((time.perf_counter() - start) / 60, 1), "chart": str(out / "ablation.png"),
               "run_minutes": round(sum(r["train_s"] + r["eval_s"] for by_seed in results.values()
                                        for r in by_seed.values()) / 60, 1)}
    bar_chart(summary, out / "ablation.png", f"attention ablation: {budget['steps']} steps x batch "
              f"{budget['batch_size']}, {len(seeds)} seed(s) (bars: mean \u00b1 sample std; dots: seeds)")
    runs = {label: {str(seed): v for seed, v in by_seed.items()} for label, by_seed in results.items()}
    atomic.write_json(out / "ablation.json", dict(figures, runs=runs), indent=1)
    return figures


@cli.run_main
def main(argv=None) -> int:
    parser = cli.make_parser(__doc__)
    parser.add_argument("--out", required=True, type=pathlib.Path, help="output folder (runs, chart, JSON)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="train.seed values")
    parser.add_argument("--train-dir", type=pathlib.Path, help="synthetic train set (annotations.json, images/)")
    parser.add_argument("--val-dir", type=pathlib.Path, help="synthetic val set (with --train-dir)")
    parser.add_argument("--smoke", action="store_true", help="two training steps, one seed, three images")
    parser.add_argument("--variants", nargs="+", choices=[v[0] for v in VARIANTS], metavar="VARIANT",
                        help=f"run these only (default: all of {', '.join(repr(v[0]) for v in VARIANTS)})")
    parser.add_argument("--time-batch", type=int, default=16, help="crops per timed forward pass")
    parser.add_argument("--repeats", type=int, default=10, help="timed forward passes per variant (median)")
    cli.add_config_args(parser)
    args = parser.parse_args(argv)
    if (args.train_dir is None) != (args.val_dir is None):
        parser.error("--train-dir and --val-dir go together")
    cli.setup_logging(args.log_level)
    args.config = args.config or str(CONFIG)
    figures = run_ablation(args)
    for label, v in figures["variants"].items():
        print(f"{label:>26}: AP {v['AP_mean']:.3f} +- {v['AP_std']:.3f}  AR {v['AR_mean']:.3f}  every box: AP "
              f"{v['AP_every_box_mean']:.3f} +- {v['AP_every_box_std']:.3f}  loss {v['final_loss_mean']:.5f}  "
              f"{v['params']:,} params  {v['ms_per_crop']:.2f} ms/crop")
    print(f"chart: {figures['chart']}, figures: {args.out / 'ablation.json'} ({figures['minutes']} min)")
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
