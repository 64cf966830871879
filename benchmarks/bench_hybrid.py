"""Top-down without a detector: bottom-up alone, top-down on ground-truth boxes, top-down on bottom-up boxes.

Evaluates on one COCO keypoint file, each with the models' own inference settings:
  - ``bottomup``: the bottom-up model alone;
  - ``topdown_gt``: the top-down model on the ground-truth person boxes;
  - ``hybrid``: the top-down model on boxes around the bottom-up model's people
    (``simplepose.topdown.hybrid.HybridPredictor``), box scores 1; ``hybrid_proposal_scores``: the same with
    the bottom-up people's scores as box scores;
  - ``topdown_gt_per_crop`` (with ``--per-crop``): the ground-truth run again with one crop per network call
    (the flip test's mirrors too), to measure what batching an image's crops buys.
For each: COCO AP/AR, ms per image (median of the evaluation's per-image totals, image reading excluded)
and, for the top-down runs, ms per person (median over images of top-down ms / boxes). The figures come
from one process, one after another, so their ratios are comparable on a shared machine.
The last stdout line is one JSON object of figures.

Example:
    python benchmarks/bench_hybrid.py --bottomup quickstart/run/model.keras --topdown td/model.keras \\
        --annotations quickstart/data/val/annotations.json --images quickstart/data/val/images --per-crop
"""
import json
import logging
import statistics
import sys

import numpy as np

from simplepose import cli

LOG = logging.getLogger("bench_hybrid")
TOPDOWN_STAGES = ("crop", "network", "decode")


class _Recorder:
    """Wraps a predictor: records, per image, the boxes it got and the top-down ms (crop + network + decode)."""

    def __init__(self, predictor, boxes_of=None):
        self.predictor, self.boxes_of = predictor, boxes_of
        self.skeleton, self.meta = predictor.skeleton, predictor.meta
        self.per_person, self.last_timings = [], {}

    def predict(self, image, boxes=None, box_scores=None):
        poses = self.predictor.predict(image, boxes, box_scores)
        self.last_timings = self.predictor.last_timings
        n = len(boxes) if self.boxes_of is None else len(self.boxes_of())
        if n:
            self.per_person.append(sum(self.last_timings.get(s, 0.0) for s in TOPDOWN_STAGES) / n)
        return poses


def summary(metrics: dict, recorder=None) -> dict:
    out = {name: round(metrics[name], 4) for name in ("AP", "AP50", "AP75", "AR")}
    out["ms_per_image"] = round(metrics["timing"]["total"]["median"], 2)
    out["ms_per_image_mean"] = round(metrics["timing"]["total"]["mean"], 2)
    out["people_reported"] = metrics["results"]
    for stage in ("network", "proposal_network", "proposal_decode", "decode"):
        if stage in metrics["timing"]:
            out[f"{stage}_ms"] = round(metrics["timing"][stage]["median"], 2)
    if recorder is not None and recorder.per_person:
        out["topdown_ms_per_person"] = round(statistics.median(recorder.per_person), 2)
    return out


def run(args) -> dict:
    from simplepose.data.coco import load_coco
    from simplepose.evaluation import evaluate_predictor
    from simplepose.predictor import load_predictor
    from simplepose.topdown.boxes import ground_truth_boxes
    from simplepose.topdown.hybrid import HybridPredictor
    from simplepose.topdown.predictor import TopDownPredictor

    coco = load_coco(args.annotations)
    gt_boxes = ground_truth_boxes(coco)
    bottomup, topdown = load_predictor(args.bottomup), load_predictor(args.topdown)
    hybrid = HybridPredictor(topdown, bottomup, margin=args.margin)
    scored = HybridPredictor(topdown, bottomup, margin=args.margin, proposal_scores=True)
    runs = [("bottomup", bottomup, None, None),
            ("topdown_gt", _Recorder(topdown), gt_boxes, None),
            ("hybrid", _Recorder(hybrid, lambda: hybrid.last_boxes), None, None),
            ("hybrid_proposal_scores", _Recorder(scored, lambda: scored.last_boxes), None, None)]
    if args.per_crop:
        one = TopDownPredictor(topdown.runner, topdown.skeleton, stride=topdown.stride, params=topdown.params,
                               meta=topdown.meta, batch_size=1)
        runs.append(("topdown_gt_per_crop", _Recorder(one), gt_boxes, None))
    figures = {"annotations": str(args.annotations), "images": len(coco.getImgIds()),
               "gt_boxes": int(sum(len(b) for b, _ in gt_boxes.values())), "margin": args.margin}
    image = np.zeros((240, 320, 3), np.uint8)
    for name, predictor, boxes, _ in runs:  # traces and numba compilation out of the timed runs
        if args.warmup:
            evaluate_predictor(predictor, coco, args.images, boxes=boxes, limit=args.warmup)
        for n in (1, 2, 4, 8, 16) if boxes is not None else ():
            predictor.predict(image, [[40, 20, 80, 200]] * n)
        if isinstance(predictor, _Recorder):
            predictor.per_person = []
    for name, predictor, boxes, _ in runs:
        metrics = evaluate_predictor(predictor, coco, args.images, boxes=boxes, limit=args.limit)
        figures[name] = summary(metrics, predictor if isinstance(predictor, _Recorder) else None)
        LOG.info("%s: %s", name, figures[name])
    return figures


@cli.run_main
def main(argv=None) -> int:
    parser = cli.make_parser(__doc__)
    parser.add_argument("--bottomup", required=True, metavar="MODEL", help="bottom-up model (any saved format)")
    parser.add_argument("--topdown", required=True, metavar="MODEL", help="top-down model (any saved format)")
    parser.add_argument("--annotations", required=True, metavar="JSON")
    parser.add_argument("--images", required=True, metavar="DIR")
    parser.add_argument("--limit", type=int, help="the first N images only")
    parser.add_argument("--margin", type=float, default=0.1, help="proposal box margin (HybridPredictor)")
    parser.add_argument("--per-crop", action="store_true", help="also run top-down on GT boxes one crop per call")
    parser.add_argument("--warmup", type=int, default=5, help="images predicted untimed by each run first")
    args = parser.parse_args(argv)
    cli.setup_logging(args.log_level)
    figures = run(args)
    for name in ("bottomup", "topdown_gt", "hybrid", "hybrid_proposal_scores", "topdown_gt_per_crop"):
        if name in figures:
            f = figures[name]
            print(f"{name:>22}: AP {f['AP']:.3f}  AR {f['AR']:.3f}  {f['ms_per_image']:.1f} ms/image"
                  + (f"  {f['topdown_ms_per_person']:.2f} ms/person" if "topdown_ms_per_person" in f else ""))
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
