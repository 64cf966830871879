"""Oracle mode: decode ground-truth maps rendered by the training target code (design decision 7)."""
from __future__ import annotations

import logging

import numpy as np

from simplepose import evaluation
from simplepose.bottomup.predictor import decode_maps, scaled_input_size, to_original
from simplepose.bottomup.targets import render_targets
from simplepose.data.coco import image_people, load_coco
from simplepose.decode import warm_up

LOG = logging.getLogger(__name__)


def labelled_people(gt, image_id: int, skeleton) -> np.ndarray:
    """Keypoints of the non-crowd people with at least one labelled keypoint, in skeleton order.

    Shapes: -> ``(N, K, 3)`` float32 ``[x, y, v]`` (COCO v coding).
    """
    coco = [p.keypoints for p in image_people(gt, image_id) if p.num_keypoints > 0]
    if not coco:
        return np.zeros((0, skeleton.num_keypoints, 3), np.float32)
    return skeleton.from_coco(np.stack(coco))


def oracle_maps(people, height: int, width: int, cfg):
    """Ground-truth maps of one image at the inference input size (scale 1, single scale).

    Returns:
        ``(maps, (fx, fy))``: ``render_targets``'s dict and the resize factors from the original image.

    Shapes: ``people (N, K, 3)`` in original image pixels.
    """
    stride = cfg.data.stride
    hs, ws = scaled_input_size(height, width, cfg.inference.box_size, 1.0, stride)
    fx, fy = ws / width, hs / height
    kp = people.copy()
    kp[..., 0] = (kp[..., 0] + 0.5) * fx - 0.5
    kp[..., 1] = (kp[..., 1] + 0.5) * fy - 0.5
    t = cfg.targets
    maps = render_targets(kp, None, cfg.skeleton, (hs // stride, ws // stride), stride, t.keypoint_sigma,
                          t.limb_sigma, t.threshold, t.limb_shape)
    return maps, (fx, fy)


def oracle_image(people, height: int, width: int, cfg):
    """Render one image's ground-truth maps, decode them, back-project to the original pixels.

    Returns:
        ``(poses in original pixels, {"resize": ms, "decode": ms})`` (resize: ``inference.decode_upsample``).
    """
    maps, (fx, fy) = oracle_maps(people, height, width, cfg)
    poses, timings = decode_maps(maps["keypoints"], maps["limbs"], cfg.skeleton, cfg.data.stride, cfg.inference)
    return to_original(poses, fx, fy), timings


def oracle_evaluate(ann_file, cfg, *, out_dir=None, limit=None, progress: bool = False) -> dict:
    """Ceiling AP of target encoding + decoding on real annotations; no images or weights needed.

    Args:
        ann_file: COCO person keypoints JSON.
        cfg: the full ``Config`` (skeleton, stride, target shapes, inference thresholds).
        out_dir: if given, ``results.json`` and ``metrics.json`` are written there atomically.
        limit: evaluate the first ``limit`` images (by id) only.
        progress: show a tqdm progress bar.

    Returns:
        the COCO metrics plus ``"timing": {"decode": {...}}`` (ms/image) and
        ``"decode_by_people": [[num_people, ms], ...]`` (one row per image).
    """
    gt = load_coco(ann_file)
    ids = sorted(gt.getImgIds())[: limit if limit else None]
    timer, by_people, poses_by_image = evaluation.StageTimer(), [], {}
    warm_up(cfg.skeleton, cfg.inference)
    for image_id in evaluation.progress_bar(ids, progress, "oracle"):
        info = gt.loadImgs([image_id])[0]
        people = labelled_people(gt, image_id, cfg.skeleton)
        poses, timings = oracle_image(people, info["height"], info["width"], cfg)
        poses_by_image[image_id] = poses
        timer.add(timings)
        by_people.append([len(people), timings["decode"]])
    metrics = evaluation.finish_evaluation(gt, poses_by_image, cfg.skeleton, ids, timer, out_dir,
                                           extra={"decode_by_people": by_people})
    LOG.info("oracle: %d images, AP %.4f, decode median %.2f ms", len(ids), metrics["AP"],
             metrics["timing"]["decode"]["median"] if ids else float("nan"))
    return metrics
