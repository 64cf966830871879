#!/usr/bin/env python
"""One prepared accelerator check (JAX; TensorFlow not needed): what a ~10-minute run on a lent GPU measures.

1. ``prep``: coco-mini train -> HDF5 (seconds, MiB).
2. ``sweep``: the published model3 at 368 px (ImageNet weights not needed: the machine may be offline) trained
   on in-memory uint8 batches of each ``--batches`` size, for each ``--precisions`` (float32,
   mixed_bfloat16, mixed_float16): samples/s (median step time after ``--warmup`` compiled steps) and peak
   device memory. Each precision sweeps in its own process, batches ascending, so the peak after a batch size
   is that batch size's; a batch that does not fit is reported as ``"oom"`` and ends that sweep; the sweep
   shares ``--sweep-minutes`` between the precisions (each batch size compiles anew).
3. ``data_wait``: the same model fed by the real pipeline (HDF5 -> augmentation -> targets, one thread per
   core through ``keras.utils.PyDataset``) against the same steps fed from memory: the share of a step spent
   waiting for data is ``1 - t_memory / t_pipeline``; also the pipeline's samples/s alone on this machine.
4. ``inference``: ms per image of model3 at box 368, scales [1] and [0.5, 1, 1.5, 2] + flip (10 coco-mini
   val images, second pass, so compilation is excluded): total and network time per image.
5. ``learn``: ``benchmarks/learn_coco_mini.py`` for ``--learn-minutes`` (memorising coco-mini train with
   ``configs/coco_mini_memorise.yaml``), then AP on those images with pycocotools, and the learning curve PNG.

The last stdout line is one JSON object with every figure (also written to ``OUT/device_check.json``).
``--smoke`` runs every part at toy sizes (a 1/8-width model at 96 px, two small batches, a short learning
run) in a few minutes on a CPU, to prove the script works before a device is lent. ``--no-tensorflow`` makes
TensorFlow unimportable in this process and its children (the check must pass where only JAX is installed).

Example (on the device machine, coco-mini copied to shared/data/coco-mini of the carried tree):
    KERAS_BACKEND=jax python benchmarks/device_check.py --out $OUT
    python benchmarks/device_check.py --smoke --no-tensorflow --out /tmp/device_check_smoke
"""
import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time

if "--no-tensorflow" in sys.argv:
    sys.modules["tensorflow"] = None  # any import of it fails, as where it is not installed
os.environ.setdefault("KERAS_BACKEND", "jax")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from simplepose import cli  # noqa: E402

LOG = logging.getLogger("device_check")

PUBLISHED = os.path.join(REPO, "configs", "published_model3_vgg19_368.yaml")
COCO_CANDIDATES = (os.path.join(REPO, "shared", "data", "coco-mini"),
                   os.path.join(os.path.dirname(REPO), "shared", "data", "coco-mini"))
#: Toy sizes of ``--smoke``: every code path, minutes on a CPU.
SMOKE_MODEL = ["model.width_multiplier=0.125", "model.backbone_width_multiplier=0.125", "data.input_size=96"]


def default_coco():
    return next((c for c in COCO_CANDIDATES if os.path.isdir(c)), COCO_CANDIDATES[-1])


def build_parser():
    parser = cli.make_parser(__doc__)
    parser.add_argument("--out", help="output folder (default: a new temporary folder)")
    parser.add_argument("--coco", default=default_coco(), help="coco-mini folder (annotations/, train2017/, val2017/)")
    parser.add_argument("--smoke", action="store_true", help="toy sizes: prove the script on a CPU in minutes")
    parser.add_argument("--no-tensorflow", action="store_true", help="make TensorFlow unimportable (JAX only)")
    parser.add_argument("--batches", type=int, nargs="+", help="batch sweep (default 8 16 32 64; smoke 2 4)")
    parser.add_argument("--precisions", nargs="+", default=["mixed_bfloat16", "float32", "mixed_float16"],
                        choices=("float32", "mixed_bfloat16", "mixed_float16"), help="precisions of the sweep")
    parser.add_argument("--steps", type=int, help="timed steps per batch size (default 10; smoke 2)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (compilation)")
    parser.add_argument("--sweep-minutes", type=float, default=4.0,
                        help="time for the whole sweep, shared by the precisions: a batch size is not started "
                             "after its precision's share is spent (reported as skipped)")
    parser.add_argument("--wait-batch", type=int, help="batch of the data-wait check (default 32; smoke 4)")
    parser.add_argument("--wait-precision", default="mixed_bfloat16", help="precision of the data-wait check")
    parser.add_argument("--learn-minutes", type=float, help="memorisation run budget (default 5; smoke 0.5)")
    parser.add_argument("--skip", nargs="*", default=[], choices=("sweep", "data_wait", "inference", "learn"),
                        help="parts to leave out")
    parser.add_argument("--part", help=argparse.SUPPRESS)  # internal: one precision's sweep, in a child process
    parser.add_argument("--precision", help=argparse.SUPPRESS)
    parser.add_argument("--budget-s", type=float, default=float("inf"), help=argparse.SUPPRESS)
    return parser


def model_config(args, overrides=()):
    from simplepose.config import load_config

    return load_config(PUBLISHED, ["model.backbone_weights=none", "data.workers=0"]
                       + (SMOKE_MODEL if args.smoke else []) + list(overrides))


def device_info() -> dict:
    import jax
    import keras

    device = jax.local_devices()[0]
    return {"backend": keras.backend.backend(), "platform": device.platform,
            "device_kind": getattr(device, "device_kind", ""), "local_devices": jax.local_device_count(),
            "cpu_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            "jax": jax.__version__, "keras": keras.__version__,
            "tensorflow_loaded": sys.modules.get("tensorflow") is not None}


def peak_memory_mib():
    """Peak bytes in use on the first local device (None where the platform does not say, e.g. CPU)."""
    import jax

    stats = jax.local_devices()[0].memory_stats() or {}
    peak = stats.get("peak_bytes_in_use")
    return None if peak is None else round(peak / 2**20, 1)


def fixed_batch(cfg, batch):
    import numpy as np

    rng = np.random.default_rng(0)
    s, h = cfg.data.input_size, cfg.data.input_size // cfg.data.stride
    y = {"keypoints": rng.uniform(0, 1, (batch, h, h, cfg.skeleton.num_keypoint_channels)).astype("float32"),
         "limbs": rng.uniform(0, 1, (batch, h, h, cfg.skeleton.num_limbs)).astype("float32"),
         "mask": np.ones((batch, h, h, 1), "float32")}
    return rng.integers(0, 256, (batch, s, s, 3), dtype=np.uint8), y


def timed_steps(model, batches, steps, warmup):
    """Median seconds of one ``train_on_batch`` (it returns the loss as a number: the step has finished)."""
    for _ in range(warmup):
        model.train_on_batch(*next(batches))
    times = []
    for _ in range(steps):
        x, y = next(batches)
        start = time.perf_counter()
        model.train_on_batch(x, y)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _is_oom(error) -> bool:
    text = str(error).lower()
    return "resource_exhausted" in text or "out of memory" in text or "oom" in text


def sweep_part(args) -> dict:
    """One precision's batch sweep (child process): samples/s and peak memory per batch size."""
    import itertools

    import keras

    from simplepose.train import build_and_compile

    rows, start = {}, time.perf_counter()
    for batch in sorted(args.batches):
        if time.perf_counter() - start > args.budget_s:
            rows[str(batch)] = "skipped (time budget)"
            continue
        cfg = model_config(args, [f"train.precision={args.precision}", f"train.batch_size={batch}"])
        try:
            keras.utils.set_random_seed(0)
            model = build_and_compile(cfg, steps_per_epoch=1000)
            step_s = timed_steps(model, itertools.repeat(fixed_batch(cfg, batch)), args.steps, args.warmup)
        except Exception as e:  # noqa: BLE001 - a batch that does not fit ends the sweep, reported
            if not _is_oom(e):
                raise
            rows[str(batch)] = "oom"
            break
        rows[str(batch)] = {"samples_per_s": round(batch / step_s, 2), "step_ms": round(step_s * 1e3, 1),
                            "peak_memory_mib": peak_memory_mib()}
        LOG.info("%s batch %d: %.1f samples/s", args.precision, batch, batch / step_s)
        keras.backend.clear_session()
    return {"params": model.count_params() if rows else None, "input_size": cfg.data.input_size, "batches": rows}


def run_sweeps(args) -> dict:
    """Every precision's sweep in its own process (its own peak memory); stderr of a failure is kept."""
    out = {}
    for precision in args.precisions:
        cmd = [sys.executable, os.path.abspath(__file__), "--part", "sweep", "--precision", precision,
               "--batches", *map(str, args.batches), "--steps", str(args.steps), "--warmup", str(args.warmup),
               "--log-level", args.log_level, "--budget-s", str(args.sweep_minutes * 60 / len(args.precisions))] \
            + (["--smoke"] if args.smoke else []) \
            + (["--no-tensorflow"] if args.no_tensorflow else [])
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode:
            out[precision] = {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "failed"}
        else:
            out[precision] = json.loads(proc.stdout.strip().splitlines()[-1])
        out[precision]["seconds"] = round(time.perf_counter() - start, 1)
        print(f"sweep {precision}: {json.dumps(out[precision])}", flush=True)
    return out


class _Fixed:
    """A ``keras.utils.PyDataset`` of one fixed batch (no input cost), for the in-memory reference."""

    def __new__(cls, batch, length):
        import keras

        class Fixed(keras.utils.PyDataset):
            def __len__(self):
                return length

            def __getitem__(self, i):
                return batch

        return Fixed()


def _epoch_seconds(model, dataset, steps) -> float:
    """Seconds of the second of two ``fit`` epochs of ``steps`` steps (the first compiles and fills queues)."""
    import keras

    times = []

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            float(logs["loss"])  # the step results are on the host: the epoch has finished
            times.append(time.perf_counter() - self.start)

    model.fit(dataset, epochs=2, steps_per_epoch=steps, verbose=0, callbacks=[Timer()], shuffle=False)
    return times[-1]


def data_wait(args, h5) -> dict:
    """Share of a training step spent waiting for the real pipeline, and the pipeline's own rate."""
    import keras

    from simplepose.methods import method_for_config, pipeline_workers
    from simplepose.train import build_and_compile

    batch = args.wait_batch
    cfg = model_config(args, [f"train.precision={args.wait_precision}", f"train.batch_size={batch}"])
    method = method_for_config(cfg)
    opened = method.open_data(cfg, h5, training=True)
    steps = max(4, args.steps * 2)
    keras.utils.set_random_seed(0)
    model = build_and_compile(cfg, steps_per_epoch=1000)
    memory_s = _epoch_seconds(model, _Fixed(fixed_batch(cfg, batch), steps), steps)
    pipeline = method.make_dataset(opened, cfg, train=True, global_batch=batch, seed=0)
    pipeline_s = _epoch_seconds(model, pipeline, steps)
    alone = method.make_dataset(opened, cfg, train=True, global_batch=batch, seed=1)
    start, cpu = time.perf_counter(), time.process_time()
    for i in range(steps):  # rendered in this thread: the per-core rate
        alone[i % len(alone)]
    render_s, render_cpu = time.perf_counter() - start, time.process_time() - cpu
    return {"batch": batch, "precision": args.wait_precision, "steps": steps, "workers": pipeline_workers(cfg),
            "step_ms_memory": round(memory_s / steps * 1e3, 1), "step_ms_pipeline": round(pipeline_s / steps * 1e3, 1),
            "data_wait_share": round(max(0.0, 1 - memory_s / pipeline_s), 3),
            "train_samples_per_s_pipeline": round(steps * batch / pipeline_s, 1),
            "pipeline_samples_per_cpu_s_one_thread": round(steps * batch / render_cpu, 1),
            "pipeline_samples_per_s_one_thread": round(steps * batch / render_s, 1)}


def inference(args) -> dict:
    """ms per image of model3 at 1 scale and at 4 scales + flip on coco-mini val (second pass timed)."""
    import keras

    from simplepose.data.codecs import read_image
    from simplepose.methods import build_model
    from simplepose.predictor import Predictor

    images_dir = os.path.join(args.coco, "val2017")
    names = sorted(os.listdir(images_dir))[:3 if args.smoke else 10]
    images = [read_image(os.path.join(images_dir, n)) for n in names]
    keras.utils.set_random_seed(0)
    model = build_model(model_config(args))
    out = {"images": len(images), "box_size": 368}
    for name, scales, flip in (("1_scale", [1.0], False), ("4_scales_flip", [0.5, 1.0, 1.5, 2.0], True)):
        predictor = Predictor.from_model(model, scales=scales, flip=flip, overrides=["inference.box_size=368"])
        for image in images:  # compiles each padded shape once
            predictor.predict(image)
        total, network = [], []
        for image in images:
            start = time.perf_counter()
            predictor.predict(image)
            total.append((time.perf_counter() - start) * 1e3)
            network.append(predictor.last_timings.get("network", float("nan")))
        out[name] = {"ms_per_image": round(statistics.median(total), 1),
                     "network_ms_per_image": round(statistics.median(network), 1)}
    out["note"] = "untrained weights: the decoder finds few peaks, so its share is under-counted"
    return out


def _benchmark_module(name):
    """A sibling benchmark script as a module (the benchmarks folder is not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, os.path.join(REPO, "benchmarks", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def learn(args, out_dir) -> dict:
    learn_coco_mini = _benchmark_module("learn_coco_mini")

    # an accelerator runs 100 steps in seconds: 500 per evaluation keeps the evaluations a small share
    overrides = ["train.epochs=1", "train.steps_per_epoch=5", "data.input_size=96"] if args.smoke else \
        ["train.epochs=1000", "train.steps_per_epoch=500"]
    learn_args = learn_coco_mini.build_parser().parse_args(
        ["--coco", args.coco, "--out", os.path.join(out_dir, "learn"), "--minutes", str(args.learn_minutes),
         "--set", *overrides])
    result = learn_coco_mini.run(learn_args)
    return {k: result[k] for k in ("final_AP", "best_AP", "minutes_to_target", "epochs", "steps", "fit_minutes",
                                   "curve", "overrides")} | {"png": os.path.join(result["out"], "learning_curve.png")}


def defaults(args):
    smoke = args.smoke
    args.batches = args.batches or ([2, 4] if smoke else [8, 16, 32, 64])
    args.steps = args.steps or (2 if smoke else 10)
    args.wait_batch = args.wait_batch or (4 if smoke else 32)
    args.learn_minutes = args.learn_minutes if args.learn_minutes is not None else (0.5 if smoke else 5.0)
    return args


@cli.run_main
def main(argv=None) -> int:
    args = defaults(build_parser().parse_args(argv))
    cli.setup_logging(args.log_level)
    if args.part == "sweep":
        print(json.dumps(sweep_part(args)))
        return 0
    for need in ("annotations/person_keypoints_train2017.json", "train2017", "val2017"):
        if not os.path.exists(os.path.join(args.coco, need)):
            raise cli.UserError(f"{args.coco}: no {need} (copy coco-mini there or pass --coco)")
    from simplepose.data.prepare import prepare_coco_hdf5

    out_dir = args.out or tempfile.mkdtemp(prefix="device_check_")
    os.makedirs(out_dir, exist_ok=True)
    start = time.perf_counter()
    result = {"smoke": args.smoke, "device": device_info(), "load_start": round(os.getloadavg()[0], 2)}
    print(f"device: {json.dumps(result['device'])}", flush=True)
    h5 = os.path.join(out_dir, "coco_mini_train.h5")
    t0 = time.perf_counter()
    prep = prepare_coco_hdf5(os.path.join(args.coco, "annotations", "person_keypoints_train2017.json"),
                             os.path.join(args.coco, "train2017"), h5, progress=False)
    result["prep"] = {"seconds": round(time.perf_counter() - t0, 2), "images_read": prep.images_read,
                      "samples": prep.samples_written, "mib": round(os.path.getsize(h5) / 2**20, 2)}
    parts = (("sweep", lambda: run_sweeps(args)), ("data_wait", lambda: data_wait(args, h5)),
             ("inference", lambda: inference(args)), ("learn", lambda: learn(args, out_dir)))
    for name, part in parts:
        if name in args.skip:
            continue
        t0 = time.perf_counter()
        result[name] = part()
        result.setdefault("part_seconds", {})[name] = round(time.perf_counter() - t0, 1)
        print(f"{name}: {json.dumps(result[name])}", flush=True)
    result.update(minutes=round((time.perf_counter() - start) / 60, 2), load_end=round(os.getloadavg()[0], 2),
                  out=out_dir)
    from simplepose.atomic import write_json

    write_json(os.path.join(out_dir, "device_check.json"), result, indent=1)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
