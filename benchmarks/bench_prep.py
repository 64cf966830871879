"""Benchmark COCO -> HDF5 preparation: images/s, peak memory, file size vs raw pixels, mask codecs (the stored
one, 1-bit PNG, RLE: size and decode time), reads.

Each measurement runs in a fresh subprocess so its peak RSS is its own. Datasets: coco-mini train and val
(when ../shared/data/coco-mini exists) and synthetic sets of growing size: memory may grow with the parsed
annotation json (reported alone as ``tracemalloc_json_only_mib``) but not with the number of images.
The last stdout line is one JSON object of figures (medians over ``--repeats``).

Example:
    python benchmarks/bench_prep.py --repeats 3 --synthetic 150 600
"""
import argparse
import json
import os
import pathlib
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc

REPO = pathlib.Path(__file__).resolve().parents[1]
COCO_MINI = REPO.parent / "shared" / "data" / "coco-mini"


def measure(ann, images, workers, repeats, tmp):
    """Run the prep ``repeats`` times (then once under tracemalloc) in this process; return figures."""
    import cv2
    import numpy as np
    from pycocotools import mask as mask_utils

    from simplepose.data.coco import load_coco_keypoints
    from simplepose.data.codecs import decode_mask
    from simplepose.data.hdf5 import HDF5Reader
    from simplepose.data.prepare import prepare_coco_hdf5

    out = pathlib.Path(tmp) / "bench.h5"
    runs = [prepare_coco_hdf5(ann, images, out, workers=workers, progress=False) for _ in range(repeats)]
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    tracemalloc.start()
    prepare_coco_hdf5(ann, images, out, workers=workers, progress=False)
    traced_mib = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    tracemalloc.start()
    load_coco_keypoints(ann)  # the parsed json alone: memory grows with it, not with the images
    json_mib = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    s = runs[-1]
    reader = HDF5Reader(out)
    with __import__("h5py").File(out, "r") as f:
        sizes, mask_range = f["images/size"][()], f["images/mask_range"][()]
    raw_bytes = int((sizes[:, 0].astype(np.int64) * sizes[:, 1] * 4).sum())  # BGR + mask, uint8
    stored_bytes = int(mask_range[:, 1].sum())
    masks, seen = [], set()
    for i in range(len(reader)):
        raw = reader.raw(i)
        if raw.image_row not in seen and raw.mask:
            seen.add(raw.image_row)
            masks.append((raw.mask, decode_mask(raw.mask, raw.height, raw.width)))
    pngs = [cv2.imencode(".png", m, [cv2.IMWRITE_PNG_BILEVEL, 1, cv2.IMWRITE_PNG_COMPRESSION, 9])[1].tobytes()
            for _, m in masks]
    rle_bytes = sum(len(mask_utils.encode(np.asfortranarray(m))["counts"]) for _, m in masks)
    mask_ms = {"stored": [], "png": []}  # decode time per mask, interleaved
    for _ in range(repeats if masks else 0):
        for (enc, m), png in zip(masks, pngs):
            t0 = time.perf_counter()
            decode_mask(enc, *m.shape)
            t1 = time.perf_counter()
            decode_mask(png, *m.shape)
            mask_ms["stored"].append(t1 - t0)
            mask_ms["png"].append(time.perf_counter() - t1)
    mask_figures = {"masks": len(masks), "mask_stored_kib": round(stored_bytes / 1024, 1),
                    "mask_png_kib": round(sum(map(len, pngs)) / 1024, 1), "mask_rle_kib": round(rle_bytes / 1024, 1)}
    mask_figures.update({f"mask_decode_ms_{k}": round(1e3 * statistics.median(v), 3) for k, v in mask_ms.items() if v})
    reductions = (1, 2, 4, 8)
    times = {r: [] for r in reductions}  # interleaved, so load changes on a shared machine hit all alike
    for _ in range(repeats):
        for i in range(len(reader)):
            for r in reductions:
                t0 = time.perf_counter()
                reader.read(i, reduce=r)
                times[r].append(time.perf_counter() - t0)
    read_rates = {f"read_ms_median_reduce{r}": round(1e3 * statistics.median(t), 3) for r, t in times.items()}
    seconds = statistics.median(r.seconds for r in runs)
    return {"images_total": s.images_total, "images_read": s.images_read, "samples": s.samples_written,
            "skipped": s.images_skipped, "seconds": round(seconds, 3),
            "images_total_per_s": round(s.images_total / seconds, 1),
            "images_read_per_s": round(s.images_read / seconds, 1),
            "peak_rss_mib": round(rss_mib, 1), "tracemalloc_peak_mib": round(traced_mib, 2),
            "tracemalloc_json_only_mib": round(json_mib, 2),
            "file_mib": round(s.bytes_written / 2**20, 2), "raw_pixels_mib": round(raw_bytes / 2**20, 2),
            "file_vs_raw": round(s.bytes_written / raw_bytes, 3),
            **mask_figures, **read_rates}


def child(args):
    with tempfile.TemporaryDirectory() as tmp:
        print(json.dumps(measure(args.ann, args.images, args.workers[0], args.repeats, tmp)))


def run_child(name, extra, repeats, workers):
    cmd = [sys.executable, __file__, "--child", "--repeats", str(repeats), "--workers", str(workers), *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    if proc.returncode:
        sys.stderr.write(proc.stderr)
        raise SystemExit(f"{name}: child failed")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"{name} workers={workers}: {result}", flush=True)
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--synthetic", type=int, nargs="*", default=[150, 600], help="synthetic set sizes")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--ann", help=argparse.SUPPRESS)
    parser.add_argument("--images", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)
    figures = {"cpu_count": os.cpu_count(), "repeats": args.repeats}
    if (COCO_MINI / "annotations").exists():
        for split in ("train", "val"):
            extra = ["--ann", str(COCO_MINI / "annotations" / f"person_keypoints_{split}2017.json"),
                     "--images", str(COCO_MINI / f"{split}2017")]
            for w in args.workers:
                figures[f"coco_mini_{split}_w{w}"] = run_child(f"coco-mini {split}", extra, args.repeats, w)
    with tempfile.TemporaryDirectory() as tmp:
        from simplepose.data.synthetic import make_synthetic_coco

        for n in args.synthetic:
            syn = make_synthetic_coco(pathlib.Path(tmp) / str(n), num_images=n, image_size=(640, 480), seed=0)
            extra = ["--ann", str(syn.ann_file), "--images", str(syn.image_dir)]
            figures[f"synthetic_{n}_w1"] = run_child(f"synthetic {n}", extra, args.repeats, 1)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
