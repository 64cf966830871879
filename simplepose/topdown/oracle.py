"""Top-down oracle: each ground-truth box's target heatmaps, decoded like a network's (design decision 7)."""
from __future__ import annotations

import collections
import logging

import numpy as np

from simplepose import evaluation
from simplepose.data.coco import load_coco
from simplepose.topdown.data import load_person_instances
from simplepose.topdown.predictor import image_heatmaps, image_poses

LOG = logging.getLogger(__name__)


def oracle_evaluate(ann_file, cfg, *, out_dir=None, limit=None, progress: bool = False) -> dict:
    """Ceiling AP of top-down target encoding + decoding with ground-truth boxes; no images or weights needed.

    Every box's ground-truth heatmaps are rendered with the training target code (flip test as
    ``cfg.topdown.flip_test``), then decoded, rescored and OKS-NMS'ed exactly as network heatmaps are.

    Returns:
        the COCO metrics plus ``timing``, ``images``, ``results`` and ``boxes`` (see
        ``simplepose.evaluation.finish_evaluation``).
    """
    coco = load_coco(ann_file)
    ids = sorted(coco.getImgIds())[: limit if limit else None]
    by_image = collections.defaultdict(list)
    for inst in load_person_instances(coco, "", cfg.skeleton, training=False):
        by_image[inst.image_id].append(inst)
    timer, poses_by_image = evaluation.StageTimer(), {}
    for image_id in evaluation.progress_bar(ids, progress, "oracle"):
        group = by_image.get(image_id, [])
        if not group:
            continue
        info = coco.imgs[image_id]
        blank = np.zeros((info["height"], info["width"], 3), np.uint8)  # ground truth needs no pixels
        heatmaps, matrices, areas = image_heatmaps(blank, group, cfg.topdown, cfg.skeleton, cfg.data.stride)
        poses_by_image[image_id] = image_poses(group, heatmaps, matrices, areas, cfg.topdown, cfg.skeleton,
                                               cfg.data.stride)
    metrics = evaluation.finish_evaluation(coco, poses_by_image, cfg.skeleton, ids, timer, out_dir,
                                           extra={"boxes": sum(len(by_image.get(i, ())) for i in ids)})
    LOG.info("top-down oracle: %d images, AP %.4f", len(ids), metrics["AP"])
    return metrics
