"""Top-down benchmark: forward ms per crop (ResNet-50, 256x192) per attention variant, parameter counts, oracle AP.

Each variant is built with random weights (ImageNet weights change no timing) and timed with a traced
inference call after warm-up; the variants take turns within each repeat and figures are medians over
``--repeats`` of wall-clock and process CPU ms per crop (CPU time is steadier on a shared machine).
The oracle AP renders every ground-truth box's target heatmaps and decodes them (flip test on), on
coco-mini val and train.
The last stdout line is one JSON object of figures.

Example:
    python benchmarks/bench_topdown.py --batch-sizes 1 32 --repeats 5
"""
import json
import logging
import os
import pathlib
import statistics
import sys
import time

import numpy as np

from simplepose import cli
from simplepose.config import load_config

LOG = logging.getLogger("bench_topdown")
REPO = pathlib.Path(__file__).resolve().parents[1]
COCO_MINI = REPO.parent / "shared" / "data" / "coco-mini"
VARIANTS = ("none", "holistic", "holistic+partwise")


def forward_fn(model, batch_size: int, shape):
    """A traced inference call on a fixed random batch, warmed up; returns a no-argument callable."""
    import keras
    import tensorflow as tf

    forward = tf.function(lambda x: model(x, training=False)["heatmaps"])
    x = tf.constant(np.random.default_rng(0).uniform(0, 255, (batch_size, *shape, 3)).astype(np.float32))
    for _ in range(2):
        keras.ops.convert_to_numpy(forward(x))
    return lambda: keras.ops.convert_to_numpy(forward(x))


def bench_variants(cfg, kernel: str, batch_sizes, repeats: int) -> dict:
    """Parameters and ms per crop (wall and process CPU) of each variant, median over interleaved repeats.

    The variants take turns within each repeat, so a change in the machine's load hits them all alike.
    """
    from tqdm import tqdm

    from simplepose.methods import build_model

    models, out = {}, {}
    for attention in VARIANTS:
        vcfg = cfg.with_overrides([f"topdown.attention={attention}", f"topdown.attention_kernel={kernel}",
                                   "model.backbone_weights=none"])
        models[attention] = build_model(vcfg)
        out[attention] = {"params": int(models[attention].count_params())}
    shape = tuple(cfg.topdown.input_shape)
    for b in batch_sizes:
        calls = {a: forward_fn(m, b, shape) for a, m in models.items()}
        wall, cpu = {a: [] for a in calls}, {a: [] for a in calls}
        for _ in tqdm(range(repeats), desc=f"batch {b}"):
            for a, call in calls.items():
                w0, c0 = time.perf_counter(), time.process_time()
                call()
                wall[a].append(1000.0 * (time.perf_counter() - w0) / b)
                cpu[a].append(1000.0 * (time.process_time() - c0) / b)
        for a in calls:
            out[a][f"ms_per_crop_b{b}"] = round(statistics.median(wall[a]), 3)
            out[a][f"cpu_ms_per_crop_b{b}"] = round(statistics.median(cpu[a]), 3)
        LOG.info("batch %d: %s", b, {a: out[a][f"ms_per_crop_b{b}"] for a in calls})
    return out


def bench_oracle(cfg, root: pathlib.Path) -> dict:
    from simplepose.topdown.oracle import oracle_evaluate

    out = {}
    for split in ("val", "train"):
        ann = root / "annotations" / f"person_keypoints_{split}2017.json"
        if not ann.exists():
            LOG.warning("%s missing: no oracle AP for %s", ann, split)
            continue
        start = time.perf_counter()
        stats = oracle_evaluate(ann, cfg)
        out[f"oracle_ap_{split}"] = round(stats["AP"], 4)
        out[f"oracle_s_{split}"] = round(time.perf_counter() - start, 2)
    return out


@cli.run_main
def main(argv=None) -> int:
    parser = cli.make_parser(__doc__)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--repeats", type=int, default=5, help="timed forward passes per batch size (median)")
    parser.add_argument("--kernel", default="crf", choices=("crf", "softmax"), help="attention kernel")
    parser.add_argument("--coco-mini", type=pathlib.Path, default=COCO_MINI, help="coco-mini root (oracle AP)")
    cli.add_config_args(parser)
    args = parser.parse_args(argv)
    cli.setup_logging(args.log_level)
    if args.config is None:
        args.config = str(REPO / "configs" / "topdown_resnet50_256x192.yaml")
    cfg = load_config(args.config, args.overrides)
    from simplepose.methods import method_for_config
    from simplepose.topdown.method import TopDown

    if not isinstance(method_for_config(cfg), TopDown):
        raise cli.UserError(f"{args.config}: not a top-down config (model.architecture={cfg.model.architecture})")
    figures = {"kernel": args.kernel, "input_shape": list(cfg.topdown.input_shape), "cpu_count": os.cpu_count()}
    figures["variants"] = bench_variants(cfg, args.kernel, args.batch_sizes, args.repeats)
    figures.update(bench_oracle(cfg, args.coco_mini))
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
