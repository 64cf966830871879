#!/usr/bin/env python
"""Inference latency per runtime (Keras on TensorFlow and JAX, ONNX Runtime, LiteRT, OpenVINO), reduced precision.

For the quickstart model and the published model3 (random weights: ImageNet weights change no timing), at
one scale of ``--size`` px, batch 1: the network alone on a fixed image (median of ``--repeats`` after two
warm-up calls) and end to end (read + resize + network + decode, median over ``--images``), each also as a
ratio to Keras-TensorFlow measured in this run. Efficiency = network FLOPs (TensorFlow's profiler) / time /
the machine's float32 matmul rate (numpy, 2048x2048, all cores): 1.0 is the float32 floor. Reduced
precision: LiteRT float16 and dynamic-range int8, ONNX static int8 (calibrated on ``--calibration``
images; report on held-out ``--images``), OpenVINO bfloat16 arithmetic, each with its AP on
``--annotations`` (the quickstart model at its own settings) next to float32's. Keras-JAX runs in a
subprocess (``KERAS_BACKEND=jax``). Last stdout line: one JSON object.

Example:
    python benchmarks/bench_runtime.py --quickstart quickstart/run/model.keras \\
        --images quickstart/data/val/images --annotations quickstart/data/val/annotations.json \\
        --calibration quickstart/data/train/images --work /tmp/bench_runtime
"""
import glob
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

from simplepose import cli

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: (format, precision) variants exported and timed, after Keras itself.
VARIANTS = (("onnx", "float32"), ("litert", "float32"), ("openvino", "float32"), ("onnx", "int8"),
            ("litert", "float16"), ("litert", "int8"), ("openvino", "bfloat16"))


def median_ms(fn, repeats: int) -> float:
    fn()
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000.0 * statistics.median(times)


def matmul_gflops(n: int = 2048) -> float:
    a = np.random.default_rng(0).random((n, n), dtype=np.float32)
    return 2 * n ** 3 / median_ms(lambda: a @ a, 7) / 1e6


def network_gflop(model, size: int) -> float:
    """Float operations of one forward pass at ``size`` x ``size`` (TensorFlow's profiler; a multiply-add is 2)."""
    import tensorflow as tf
    from tensorflow.python.profiler.model_analyzer import profile
    from tensorflow.python.profiler.option_builder import ProfileOptionBuilder

    graph = tf.function(lambda x: model(x, training=False)).get_concrete_function(
        tf.TensorSpec([1, size, size, 3], tf.float32)).graph
    options = ProfileOptionBuilder(ProfileOptionBuilder.float_operation()).with_empty_output().build()
    return profile(graph=graph, options=options).total_float_ops / 1e9


def end_to_end_ms(path, images, size: int) -> float:
    """Median ms per image of read + predict (one scale of ``size`` px, no flip)."""
    from simplepose.data.codecs import read_image
    from simplepose.predictor import load_predictor

    predictor = load_predictor(path, scales=[1.0], flip=False, overrides=[f"inference.box_size={size}"])
    predictor.predict(read_image(images[0]))
    times = []
    for image in images:
        start = time.perf_counter()
        predictor.predict(read_image(image))
        times.append(time.perf_counter() - start)
    return 1000.0 * statistics.median(times)


def jax_network_ms(path, size: int, repeats: int):
    """Keras-JAX network ms in a subprocess (None when JAX is not installed or fails)."""
    code = ("import sys, json; sys.argv = sys.argv[:1]; from bench_runtime import jax_worker; "
            f"print(json.dumps(jax_worker({str(path)!r}, {size}, {repeats})))")
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu", PYTHONPATH=os.path.dirname(__file__))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=1800)
    if done.returncode:
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


def jax_worker(path, size: int, repeats: int) -> float:
    from simplepose.runtime import KerasRunner, open_model

    model, meta = open_model(path)
    runner = KerasRunner(model, meta.output_key)
    x = np.random.default_rng(0).integers(0, 256, (1, size, size, 3), dtype=np.uint8)
    return median_ms(lambda: runner(x), repeats)


def export_variants(keras_path, work, name, calibration):
    from simplepose.export import EXTENSIONS, export_model

    out = {}
    for fmt, precision in VARIANTS:
        if fmt == "openvino" and importlib.util.find_spec("openvino") is None:
            continue
        path = os.path.join(work, f"{name}_{fmt}_{precision}{EXTENSIONS[fmt]}")
        result = export_model(keras_path, fmt, path, precision=precision,
                              calibration=calibration if precision == "int8" and fmt == "onnx" else None)
        out[fmt, precision] = {"path": path, "export_s": round(result.seconds, 1), "mb": round(result.bytes / 1e6, 2)}
    return out


def bench_model(name, keras_path, args, rate, images) -> dict:
    from simplepose.export import calibration_batches
    from simplepose.runtime import KerasRunner, open_model

    model, meta = open_model(keras_path)
    gflop = network_gflop(model, args.size)
    calibration = calibration_batches(keras_path, args.calibration_paths, limit=args.calibration_images,
                                      overrides=[f"inference.box_size={args.size}", "inference.scales=[1.0]",
                                                 "inference.flip=false"])
    exported = export_variants(keras_path, args.work, name, calibration)
    x = np.random.default_rng(0).integers(0, 256, (1, args.size, args.size, 3), dtype=np.uint8)
    repeats = args.repeats if gflop > 10 else 4 * args.repeats
    keras_runner = KerasRunner(model, meta.output_key)
    rows = {"keras-tensorflow": {"network_ms": median_ms(_call(keras_runner, x), repeats),
                                 "end_to_end_ms": end_to_end_ms(keras_path, images, args.size)},
            # Keras' own predict loop (what a user calls first): a callback-driven loop around the same graph
            "keras-tensorflow-predict": {"network_ms": median_ms(lambda: model.predict(x, verbose=0), repeats)}}
    jax_ms = jax_network_ms(keras_path, args.size, repeats) if not args.no_jax else None
    if jax_ms is not None:
        rows["keras-jax"] = {"network_ms": jax_ms}
    for (fmt, precision), info in exported.items():
        runner, _ = open_model(info["path"])
        rows[f"{fmt}-{precision}"] = dict(info, network_ms=median_ms(_call(runner, x), repeats),
                                          end_to_end_ms=end_to_end_ms(info["path"], images, args.size))
        rows[f"{fmt}-{precision}"].pop("path")
    base = rows["keras-tensorflow"]
    for row in rows.values():
        row["efficiency"] = round(gflop / (row["network_ms"] / 1000.0) / rate, 3)
        row["network_vs_keras_tf"] = round(row["network_ms"] / base["network_ms"], 3)
        if "end_to_end_ms" in row:
            row["end_to_end_vs_keras_tf"] = round(row["end_to_end_ms"] / base["end_to_end_ms"], 3)
        for key in ("network_ms", "end_to_end_ms"):
            if key in row:
                row[key] = round(row[key], 2)
    return {"gflop": round(gflop, 2), "floor_ms": round(1000.0 * gflop / rate, 1), "runtimes": rows,
            "exported": {f"{f}-{p}": v["path"] for (f, p), v in exported.items()}}


def _call(runner, x):
    return lambda: runner(x)


def accuracy(keras_path, paths, annotations, image_dir) -> dict:
    """AP of the quickstart model in every format, at its own inference settings."""
    from simplepose import jobs

    out = {"keras": jobs.evaluate_model(keras_path, annotations, image_dir, progress=False)["AP"]}
    for name, path in paths.items():
        out[name] = jobs.evaluate_model(path, annotations, image_dir, progress=False)["AP"]
    return {k: round(v, 4) for k, v in out.items()}


def published_model3(work) -> str:
    from simplepose.config import load_config
    from simplepose.methods import build_model

    path = os.path.join(work, "model3.keras")
    cfg = load_config(os.path.join(REPO, "configs", "published_model3_vgg19_368.yaml"),
                      ["model.backbone_weights=none"])
    build_model(cfg).save(path)
    return path


def image_files(folder):
    return sorted(p for p in glob.glob(os.path.join(folder, "*")) if p.lower().endswith((".jpg", ".jpeg", ".png")))


@cli.run_main
def main(argv=None) -> int:
    parser = cli.make_parser(__doc__)
    parser.add_argument("--quickstart", required=True, metavar="MODEL.keras", help="the quickstart model")
    parser.add_argument("--images", required=True, metavar="DIR", help="held-out images (end to end, AP)")
    parser.add_argument("--annotations", required=True, metavar="JSON", help="their COCO annotations (AP)")
    parser.add_argument("--calibration", required=True, metavar="DIR", help="int8 calibration images (not --images)")
    parser.add_argument("--calibration-images", type=int, default=16)
    parser.add_argument("--work", required=True, metavar="DIR", help="folder for the exported files")
    parser.add_argument("--size", type=int, default=368, help="network input side (one scale)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs of model3 (4x for the quickstart model)")
    parser.add_argument("--e2e-images", type=int, default=10, help="images timed end to end")
    parser.add_argument("--no-jax", action="store_true", help="skip Keras-JAX")
    args = parser.parse_args(argv)
    cli.setup_logging(args.log_level)
    os.makedirs(args.work, exist_ok=True)
    args.calibration_paths = image_files(args.calibration)
    images = image_files(args.images)[:args.e2e_images]
    if not args.calibration_paths or not images:
        raise cli.UserError("no images in --calibration or --images")
    rate = matmul_gflops()
    figures = {"size": args.size, "cpu_count": os.cpu_count(), "matmul_gflops": round(rate, 1),
               "threads": {"tensorflow": "default (all cores)", "onnxruntime": "default (one per physical core)",
                           "litert": os.cpu_count()}}
    figures["quickstart"] = bench_model("quickstart", args.quickstart, args, rate, images)
    figures["model3"] = bench_model("model3", published_model3(args.work), args, rate, images)
    figures["quickstart_ap"] = accuracy(args.quickstart, figures["quickstart"].pop("exported"), args.annotations,
                                        args.images)
    figures["model3"].pop("exported")
    for name in ("quickstart", "model3"):
        print(f"{name}: {figures[name]['gflop']} GFLOP at {args.size} px, float32 floor "
              f"{figures[name]['floor_ms']} ms at {figures['matmul_gflops']} GFLOP/s")
        for runtime, row in figures[name]["runtimes"].items():
            print(f"  {runtime:18s} network {row['network_ms']:8.1f} ms ({row['network_vs_keras_tf']:.2f}x, "
                  f"efficiency {row['efficiency']:.2f})  end to end {row.get('end_to_end_ms', float('nan')):8.1f} ms")
    print("quickstart AP:", figures["quickstart_ap"])
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
