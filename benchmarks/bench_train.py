#!/usr/bin/env python
"""Training throughput: samples/s of the tiny and the full (368 px) model, and the data-wait share of a step.

Model figures feed in-memory batches (no input cost); the wait share feeds the tiny model from the real
pipeline (``build_dataset`` on an HDF5 file, prefetching while the step runs) and is the time spent in
``next(iterator)`` over the time of the whole loop. Figures are medians over repeats, after warm-up steps
(graph tracing). Last stdout line: one JSON object.

Example:
    python benchmarks/bench_train.py --data /tmp/coco_mini_train.h5 --steps 10 --repeats 3
"""
import json
import os
import statistics
import sys
import tempfile
import time

import numpy as np

from simplepose import cli
from simplepose.config import load_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = os.path.join(REPO, "configs", "bottomup_tiny.yaml")


def random_batch(cfg, batch):
    rng = np.random.default_rng(0)
    s, h = cfg.data.input_size, cfg.data.input_size // cfg.data.stride
    maps = {"keypoints": rng.uniform(0, 1, (batch, h, h, cfg.skeleton.num_keypoint_channels)),
            "limbs": rng.uniform(0, 1, (batch, h, h, cfg.skeleton.num_limbs)),
            "mask": np.ones((batch, h, h, 1))}
    return rng.uniform(0, 255, (batch, s, s, 3)).astype(np.float32), {k: v.astype(np.float32) for k, v in maps.items()}


def compiled_model(cfg):
    from simplepose.train import build_and_compile

    return build_and_compile(cfg, steps_per_epoch=1000)


def model_throughput(cfg, steps, repeats, warmup=2):
    """Median samples/s of ``train_on_batch`` on one fixed in-memory batch."""
    model = compiled_model(cfg)
    x, y = random_batch(cfg, cfg.train.batch_size)
    for _ in range(warmup):
        model.train_on_batch(x, y)
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(steps):
            model.train_on_batch(x, y)
        rates.append(steps * cfg.train.batch_size / (time.perf_counter() - start))
    return {"samples_per_s": statistics.median(rates), "batch": cfg.train.batch_size,
            "input": cfg.data.input_size, "params": model.count_params(), "steps": steps, "repeats": repeats}


def data_wait_share(cfg, data, steps, repeats, warmup=2):
    """Median share of loop time spent waiting in ``next()`` on the real pipeline, and samples/s."""
    from simplepose.bottomup.pipeline import build_dataset

    model = compiled_model(cfg)
    iterator = iter(build_dataset(data, cfg, train=True, global_batch_size=cfg.train.batch_size, seed=0))
    for _ in range(warmup):
        model.train_on_batch(*next(iterator))
    shares, rates = [], []
    for _ in range(repeats):
        wait, start = 0.0, time.perf_counter()
        for _ in range(steps):
            t0 = time.perf_counter()
            x, y = next(iterator)
            wait += time.perf_counter() - t0
            model.train_on_batch(x, y)
        total = time.perf_counter() - start
        shares.append(wait / total)
        rates.append(steps * cfg.train.batch_size / total)
    return {"data_wait_share": statistics.median(shares), "samples_per_s": statistics.median(rates),
            "workers": cfg.data.workers or os.cpu_count(), "data": os.path.basename(data)}


def synthetic_hdf5(folder):
    from simplepose.data.prepare import prepare_coco_hdf5
    from simplepose.data.synthetic import make_synthetic_coco

    coco = make_synthetic_coco(os.path.join(folder, "coco"), num_images=24, seed=0)
    out = os.path.join(folder, "synthetic.h5")
    prepare_coco_hdf5(coco.ann_file, coco.image_dir, out, progress=False)
    return out


@cli.run_main
def main(argv=None) -> int:
    parser = cli.make_parser(__doc__)
    parser.add_argument("--data", help="HDF5 training file for the data-wait share (default: synthetic)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per repeat (tiny model)")
    parser.add_argument("--full-steps", type=int, default=2, help="timed steps per repeat (full model)")
    parser.add_argument("--full-batch", type=int, default=2, help="batch of the full model")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--full-repeats", type=int, default=2, help="repeats of the full model (slow on CPU)")
    parser.add_argument("--skip-full", action="store_true", help="only the tiny model")
    args = parser.parse_args(argv)
    cli.setup_logging(args.log_level)
    import tensorflow as tf

    device = "gpu" if tf.config.list_physical_devices("GPU") else "cpu"
    tiny = load_config(TINY)
    result = {"device": device, "cpu_count": os.cpu_count(), "tiny": model_throughput(tiny, args.steps, args.repeats)}
    print(f"tiny: {result['tiny']['samples_per_s']:.1f} samples/s", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data or synthetic_hdf5(tmp)
        result["pipeline_tiny"] = data_wait_share(tiny, data, args.steps, args.repeats)
    print(f"data wait share: {result['pipeline_tiny']['data_wait_share']:.3f}", flush=True)
    if not args.skip_full:
        full = load_config(None, [f"train.batch_size={args.full_batch}"])
        result["full_368"] = model_throughput(full, args.full_steps, args.full_repeats, warmup=1)
        print(f"full 368: {result['full_368']['samples_per_s']:.2f} samples/s", flush=True)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
