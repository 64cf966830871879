"""Decoder benchmark on ground-truth maps of a COCO annotation file: oracle AP and ms/image by number of people.

With ``--scenes N`` the maps are of N oracle scenes built from the file's labelled people
(``simplepose.data.oracle_scenes``) instead of its own images; ``--breakdown`` adds the error breakdown
(``simplepose.bottomup.breakdown``): per labelled person the best OKS and the cause of a miss, the surplus
detections and their scores against true ones, by people per image and by size.

Example:
    python benchmarks/bench_decode.py --scenes 200 --breakdown \
        --annotations ../shared/data/coco-mini/annotations/person_keypoints_val2017.json
"""
import json
import os
import sys

import numpy as np

from simplepose import atomic, cli, evaluation
from simplepose.bottomup.breakdown import Breakdown, format_tables
from simplepose.bottomup.oracle import labelled_people, oracle_maps
from simplepose.bottomup.predictor import decode_maps, to_original
from simplepose.config import load_config
from simplepose.data.coco import load_coco
from simplepose.data.oracle_scenes import SceneRules, as_coco, make_oracle_scenes
from simplepose.decode import warm_up

BINS = ((0, 0), (1, 1), (2, 3), (4, 7), (8, 12), (13, 1000))


def time_image(maps, cfg, repeats):
    """Median decode and upsampling times (ms) over ``repeats`` runs and the poses of the last run."""
    decode_ms, resize_ms = [], []
    for _ in range(repeats):
        poses, timings = decode_maps(maps["keypoints"], maps["limbs"], cfg.skeleton, cfg.data.stride, cfg.inference)
        decode_ms.append(timings["decode"])
        resize_ms.append(timings["resize"])
    return float(np.median(decode_ms)), float(np.median(resize_ms)), poses


def by_people(rows):
    out = {}
    for lo, hi in BINS:
        ms = [t for n, t in rows if lo <= n <= hi]
        if ms:
            name = f"{lo}-{hi}" if hi < 1000 else f"{lo}+"
            out[name] = {"images": len(ms), "median_ms": float(np.median(ms)), "max_ms": float(np.max(ms))}
    return out


def breakdown(gt, ids, results) -> dict:
    """:class:`Breakdown` summary of COCO result records against the labelled non-crowd people of ``gt``."""
    by_image = {i: [] for i in ids}
    for r in results:
        by_image[r["image_id"]].append(r)
    table = Breakdown()
    for image_id in ids:
        anns = [a for a in gt.imgToAnns.get(image_id, []) if not a.get("iscrowd") and a.get("num_keypoints", 0) > 0]
        dets = by_image[image_id]
        table.add(np.array([a["keypoints"] for a in anns], np.float64).reshape(-1, 17, 3),
                  np.array([a["area"] for a in anns], np.float64),
                  np.array([d["keypoints"] for d in dets], np.float64).reshape(-1, 17, 3),
                  np.array([d["score"] for d in dets], np.float64))
    return table.summary()


@cli.run_main
def main(argv=None) -> int:
    parser = cli.make_parser(__doc__)
    parser.add_argument("--annotations", required=True, metavar="JSON")
    parser.add_argument("--repeats", type=int, default=5, help="decode each image this many times (median)")
    parser.add_argument("--limit", type=int)
    parser.add_argument("--scenes", type=int, metavar="N", help="decode N oracle scenes of the file's people")
    parser.add_argument("--seed", type=int, default=0, help="seed of --scenes")
    parser.add_argument("--people", type=int, nargs=2, default=(2, 20), metavar=("MIN", "MAX"),
                        help="people per scene (--scenes)")
    parser.add_argument("--write-scenes", metavar="JSON", help="also save the --scenes annotations (COCO format)")
    parser.add_argument("--breakdown", action="store_true", help="print the error breakdown")
    cli.add_config_args(parser)
    args = parser.parse_args(argv)
    cli.setup_logging(args.log_level)
    if not os.path.isfile(args.annotations):
        raise cli.UserError(f"{args.annotations}: annotation file not found")
    cfg = load_config(args.config, args.overrides)
    gt = load_coco(args.annotations)
    if args.scenes:
        rules = SceneRules(people=tuple(args.people))
        scenes = make_oracle_scenes(args.annotations, args.scenes, seed=args.seed, rules=rules)
        if args.write_scenes:
            atomic.write_json(args.write_scenes, scenes)
        gt = as_coco(scenes)
    ids = sorted(gt.getImgIds())[: args.limit]
    warm_up(cfg.skeleton, cfg.inference)
    rows, resize, poses_by_image = [], [], {}
    for image_id in evaluation.progress_bar(ids, True, "decode"):
        info = gt.loadImgs([image_id])[0]
        people = labelled_people(gt, image_id, cfg.skeleton)
        maps, (fx, fy) = oracle_maps(people, info["height"], info["width"], cfg)
        ms, resize_ms, poses = time_image(maps, cfg, args.repeats)
        poses_by_image[image_id] = to_original(poses, fx, fy)
        rows.append((len(people), ms))
        resize.append(resize_ms)
    results = evaluation.poses_to_results(poses_by_image, cfg.skeleton)
    metrics = evaluation.run_coco_eval(gt, results, ids)
    ms = np.array([t for _, t in rows])
    figures = {"annotations": os.path.basename(args.annotations), "scenes": args.scenes, "seed": args.seed,
               "images": len(ids),
               "skeleton": cfg.skeleton.name, "grouping": cfg.inference.grouping,
               "fill_missing": cfg.inference.fill_missing, "peak_split_margin": cfg.inference.peak_split_margin,
               "oracle_AP": metrics["AP"], "oracle_AP50": metrics["AP50"], "oracle_AP75": metrics["AP75"],
               "oracle_AR": metrics["AR"], "decode_ms_median": float(np.median(ms)),
               "decode_ms_p95": float(np.percentile(ms, 95)), "decode_ms_max": float(ms.max()),
               "upsample": cfg.inference.decode_upsample, "upsample_ms_median": float(np.median(resize)),
               "by_people": by_people(rows)}
    if args.breakdown:
        figures["breakdown"] = breakdown(gt, ids, results)
        print(format_tables(figures["breakdown"]))
    print(evaluation.format_summary(metrics))
    for name, row in figures["by_people"].items():
        print(f"people {name:>5}: {row['images']:3d} images  median {row['median_ms']:6.2f} ms  "
              f"max {row['max_ms']:6.2f} ms")
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
