#!/usr/bin/env python
"""Training input pipeline throughput: samples/s on one core and on all cores, and the time per stage.

One core: a single thread, OpenCV and numba held to one thread, the library's batches (``SampleStream.batch``:
a batch's samples rendered together, each image decoded once) with stage timings (read, decode, warp, colour,
targets) plus batching (stacking the samples; images stay uint8, the model casts them on the accelerator).
Stage times are thread CPU time, and ``*_per_cpu_s`` figures divide by process CPU time, so they measure
the work per sample even when other jobs share the cores (wall-clock samples/s are reported too).
All cores: ``build_dataset`` (tf.data, one worker thread per core) consumed batch by batch; the cores it
used come from the process CPU time. Figures are medians over repeats. Last stdout line: one JSON object.

Example:
    python benchmarks/bench_pipeline.py --data /tmp/coco_mini_train.h5 --seconds 20
"""
import json
import logging
import os
import statistics
import sys
import time

from simplepose import cli

LOG = logging.getLogger("bench_pipeline")
STAGES = ("read", "decode", "warp", "colour", "targets", "batching")


def one_core(reader, cfg, seconds: float, batch_size: int, seed: int) -> dict:
    """Samples/s of the library's batches (``SampleStream.batch``) in this thread, and seconds per stage."""
    from simplepose.bottomup.pipeline import SampleStream

    stream = SampleStream(reader, cfg, train=True, seed=seed)
    timings, n = {}, 0
    start, cpu = time.perf_counter(), time.process_time()
    while time.perf_counter() - start < seconds:
        stream.batch(n // batch_size, batch_size, timings)
        n += batch_size
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {"samples_per_s": n / wall, "cpu_ms_per_sample": 1e3 * cpu / n,
            "stage_ms": {s: 1e3 * timings.get(s, 0.0) / n for s in STAGES}}


def full_decode_ms(reader, limit: int = 64) -> float:
    """Thread CPU ms of a plain full-resolution decode per image: a yardstick for this machine's state."""
    from simplepose.data.codecs import decode_image

    raws = [reader.raw(i) for i in range(min(len(reader), limit))]
    start = time.thread_time()
    for raw in raws:
        decode_image(raw.encoded)
    return 1e3 * (time.thread_time() - start) / len(raws)


def all_cores(path, cfg, seconds: float, batch_size: int, workers: int, seed: int) -> dict:
    """Samples/s of ``build_dataset`` with ``workers`` threads, and how many cores it kept busy."""
    from simplepose.bottomup.pipeline import build_dataset

    ds = build_dataset(path, cfg, train=True, global_batch_size=batch_size, seed=seed, num_workers=workers)
    it = iter(ds)
    for _ in range(3):  # warm up: thread pools, numba dispatch, prefetch fill
        next(it)
    n, start, cpu = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - start < seconds:
        next(it)
        n += batch_size
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {"samples_per_s": n / wall, "cores_used": cpu / wall, "samples_per_s_per_core": n / cpu}


def samples_per_decode(reader, cfg, batch_size: int, seed: int) -> float:
    """Samples per distinct image of a batch over the first epochs: how often a decode is shared."""
    from simplepose.bottomup.pipeline import SampleStream

    stream, images, n = SampleStream(reader, cfg, train=True, seed=seed), reader.sample_images, 4 * len(reader)
    decodes = sum(len({int(images[i]) for _, i in stream.elements(k, k + batch_size)})
                  for k in range(0, n, batch_size))
    return n / decodes


def _median(runs, key):
    return statistics.median(r[key] for r in runs)


def _summary(single, multi, workers) -> dict:
    stage_ms = {s: statistics.median(r["stage_ms"][s] for r in single) for s in STAGES}
    total = sum(stage_ms.values())
    return {
        "one_core_samples_per_s": round(_median(single, "samples_per_s"), 1),
        "one_core_cpu_ms_per_sample": round(_median(single, "cpu_ms_per_sample"), 3),
        "one_core_samples_per_cpu_s": round(1e3 / _median(single, "cpu_ms_per_sample"), 1),
        "stage_ms_per_sample": {s: round(v, 3) for s, v in stage_ms.items()},
        "stage_share": {s: round(v / total, 3) for s, v in stage_ms.items()},
        "all_cores_workers": workers,
        "all_cores_samples_per_s": round(_median(multi, "samples_per_s"), 1),
        "all_cores_cores_used": round(_median(multi, "cores_used"), 2),
        "all_cores_samples_per_cpu_s": round(_median(multi, "samples_per_s_per_core"), 1),
    }


def build_parser():
    parser = cli.make_parser(__doc__)
    cli.add_config_args(parser)
    parser.add_argument("--data", required=True, help="HDF5 file from training/coco_masks_hdf5.py")
    parser.add_argument("--seconds", type=float, default=10.0, help="measuring time per repeat and mode")
    parser.add_argument("--repeats", type=int, default=3, help="repeats per mode (the median is reported)")
    parser.add_argument("--batch-size", type=int, default=25, help="batch size")
    parser.add_argument("--workers", type=int, default=0, help="threads for the all-cores run (0 = one per core)")
    parser.add_argument("--seed", type=int, default=0, help="stream seed")
    return parser


@cli.run_main
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    cli.setup_logging(args.log_level)
    if not os.path.isfile(args.data):
        raise cli.UserError(f"{args.data}: no such file")
    cfg = cli.config_from_args(args)
    import cv2
    import numba

    from simplepose.data.hdf5 import HDF5Reader

    workers = args.workers or os.cpu_count() or 1
    reader = HDF5Reader(args.data)
    LOG.info("%s: %d samples, crop %d px, stride %d", args.data, len(reader), cfg.data.input_size, cfg.data.stride)
    cv2.setNumThreads(1)
    numba.set_num_threads(1)
    ungrouped_cfg = cfg.with_overrides(["data.group_by_image=false"])
    one_core(reader, cfg, min(2.0, args.seconds), args.batch_size, args.seed)  # warm up (numba cache load)
    single, ungrouped = [], []
    for r in range(args.repeats):  # interleaved, so a change in machine load hits both alike
        single.append(one_core(reader, cfg, args.seconds, args.batch_size, args.seed + 1 + r))
        ungrouped.append(one_core(reader, ungrouped_cfg, args.seconds, args.batch_size, args.seed + 1 + r))
        LOG.info("one core, repeat %d: %.1f samples/s (%.1f with data.group_by_image=false)", r + 1,
                 single[-1]["samples_per_s"], ungrouped[-1]["samples_per_s"])
    multi = []
    for r in range(args.repeats):
        multi.append(all_cores(args.data, cfg, args.seconds, args.batch_size, workers, args.seed + 1 + r))
        LOG.info("all cores (%d workers), repeat %d: %.1f samples/s using %.2f cores", workers, r + 1,
                 multi[-1]["samples_per_s"], multi[-1]["cores_used"])
    summary = _summary(single, multi, workers)
    cpu_ms_ungrouped = _median(ungrouped, "cpu_ms_per_sample")
    summary.update(
        one_core_samples_per_cpu_s_ungrouped=round(1e3 / cpu_ms_ungrouped, 1),
        stage_ms_per_sample_ungrouped={s: round(statistics.median(r["stage_ms"][s] for r in ungrouped), 3)
                                       for s in STAGES},
        grouped_vs_ungrouped=round(cpu_ms_ungrouped / _median(single, "cpu_ms_per_sample"), 2),
        samples_per_image_decode=round(samples_per_decode(reader, cfg, args.batch_size, args.seed), 2),
        samples_per_image_decode_ungrouped=round(samples_per_decode(reader, ungrouped_cfg, args.batch_size,
                                                                    args.seed), 2))
    summary["full_decode_ms_per_image"] = round(statistics.median(full_decode_ms(reader) for _ in range(3)), 3)
    summary.update(data=os.path.basename(args.data), input_size=cfg.data.input_size, stride=cfg.data.stride,
                   batch_size=args.batch_size, repeats=args.repeats, seconds=args.seconds, cpu_count=os.cpu_count())
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
