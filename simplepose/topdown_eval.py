"""Top-down COCO evaluation: person boxes, crops, flip test, decoding, rescoring, OKS-NMS and pycocotools."""
from __future__ import annotations

import json
import logging
import os
from collections import defaultdict

import numpy as np

from simplepose.config import atomic_write_text
from simplepose.data.augment import AugmentParams
from simplepose.data.topdown import (PersonInstance, box_to_center_size, clean_box, heatmap_stride,
                                     load_person_instances, make_sample, read_image)
from simplepose.decode.topdown import crop_to_image, decode_heatmaps, flip_back
from simplepose.evaluation import load_coco, run_coco_eval
from simplepose.pose import Pose

LOG = logging.getLogger(__name__)


def detection_instances(coco, image_dir, skeleton, boxes_file) -> list[PersonInstance]:
    """Person boxes from a COCO results JSON (image_id, category_id, bbox, score), spec 4 step 1.

    Keeps category 1 boxes with score > 0 on images of the ground truth, cleaned as training boxes,
    sorted by image then descending score.
    """
    try:
        with open(boxes_file) as f:
            dets = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"boxes file {boxes_file!r}: cannot read it as JSON ({e})") from None
    if not isinstance(dets, list):
        raise ValueError(f"boxes file {boxes_file!r}: expected a list of COCO detection records")
    zeros = np.zeros((skeleton.num_keypoints, 3), np.float32)
    out = []
    for d in sorted(dets, key=lambda d: (d.get("image_id", -1), -float(d.get("score", 0)))):
        info = coco.imgs.get(d.get("image_id"))
        if info is None or d.get("category_id", 1) != 1 or float(d.get("score", 0)) <= 0:
            continue
        box = clean_box(d["bbox"], info["width"], info["height"])
        if box is not None:
            out.append(PersonInstance(info["id"], os.path.join(os.fspath(image_dir), info["file_name"]), box,
                                      zeros, float(d["score"])))
    return out


def oks_nms(keypoints, scores, areas, sigmas, threshold: float = 0.9) -> list[int]:
    """Greedy OKS non-maximum suppression in score order (spec 4 step 8); returns kept indices.

    ``OKS(g, d) = mean_k exp(-|g_k - d_k|^2 / ((2 sigma_k)^2 ((a_g + a_d) / 2) 2))`` over all keypoints.

    Shapes: ``keypoints`` ``(N, K, 2)``, ``scores`` ``(N,)``, ``areas`` ``(N,)``, ``sigmas`` ``(K,)``.
    """
    kp = np.asarray(keypoints, dtype=np.float64)
    areas = np.asarray(areas, dtype=np.float64)
    var = (2.0 * np.asarray(sigmas, dtype=np.float64)) ** 2
    order = list(np.argsort(-np.asarray(scores), kind="stable"))
    keep = []
    while order:
        i, rest = order[0], np.array(order[1:], dtype=np.int64)
        keep.append(int(i))
        if not len(rest):
            break
        d2 = ((kp[rest] - kp[i]) ** 2).sum(axis=2)
        oks = np.exp(-d2 / (var[None] * ((areas[rest] + areas[i]) / 2.0)[:, None] * 2.0 + np.spacing(1))).mean(1)
        order = [int(j) for j in rest[oks <= threshold]]
    return keep


def rescore(keypoint_scores, box_score: float, threshold: float = 0.2) -> float:
    """Instance score: mean of the keypoint scores above ``threshold`` times the box score (0 if none)."""
    s = np.asarray(keypoint_scores, dtype=np.float64)
    good = s[s > threshold]
    return float(good.mean() * box_score) if len(good) else 0.0


def image_heatmaps(image, instances, td, skeleton, predict=None):
    """Crop every instance of one image and produce its heatmaps (network or ground-truth oracle).

    ``predict`` maps a crop batch ``(B, H, W, 3)`` to heatmaps ``(B, h, w, K)``; ``None`` renders each
    instance's ground truth with the training target code instead (oracle). With ``td.flip_test`` the
    mirrored crops are predicted (oracle: rendered) too, un-flipped and averaged.

    Returns:
        ``(heatmaps (B, h, w, K), matrices (B, 2, 3), areas (B,))``.
    """
    hw = tuple(td.input_shape)
    flips = (False, True) if td.flip_test else (False,)
    stride = heatmap_stride(td.num_deconv)
    maps, matrices = [], None
    for flip in flips:
        samples = [make_sample(image, inst, hw, AugmentParams(flip=flip), skeleton.keypoint_flip, td.box_scale,
                               stride, td.sigma) for inst in instances]
        if predict is None:
            hm = np.stack([s[1] for s in samples])
        else:
            hm = np.asarray(predict(np.stack([s[0] for s in samples])), dtype=np.float32)
        if flip:
            hm = flip_back(hm, skeleton.keypoint_flip, td.flip_shift)
        else:
            matrices = np.stack([s[3] for s in samples])
        maps.append(hm)
    sizes = [box_to_center_size(inst.bbox, hw[1] / hw[0], td.box_scale)[1] for inst in instances]
    return np.mean(maps, axis=0), matrices, np.array([w * h for w, h in sizes])


def image_poses(instances, heatmaps, matrices, areas, td, skeleton) -> list[Pose]:
    """Decode one image's heatmaps into people, rescored and OKS-NMS'ed (spec 4 steps 5-8).

    Returns ``Pose`` objects with ``(K, 3)`` ``[x, y, heatmap maximum]`` in image pixels, best first;
    people whose score is 0 (no keypoint above ``td.rescore_threshold``) are dropped.
    """
    coords, kp_scores = decode_heatmaps(heatmaps, stride=heatmap_stride(td.num_deconv))
    xy = crop_to_image(coords, matrices)
    scores = np.array([rescore(s, inst.score, td.rescore_threshold) for s, inst in zip(kp_scores, instances)])
    keep = [i for i in oks_nms(xy, scores, areas, skeleton.sigmas, td.oks_nms_threshold) if scores[i] > 0]
    return [Pose(np.concatenate([xy[i], kp_scores[i][:, None]], axis=1).astype(np.float32), float(scores[i]))
            for i in keep]


def pose_record(pose: Pose, skeleton, image_id) -> dict:
    """A COCO result record; every keypoint is reported (v = 1), as the published test did."""
    kp = skeleton.to_coco(np.concatenate([pose.keypoints[:, :2], np.ones((len(pose.keypoints), 1))], axis=1))
    return {"image_id": int(image_id), "category_id": 1, "score": round(float(pose.score), 4),
            "keypoints": [round(float(v), 3) for v in kp.reshape(-1)]}


def predict_image(model, image, cfg, boxes=None, box_scores=None) -> list[Pose]:
    """People in one image from a top-down model, given person boxes (the demo's entry point).

    Args:
        model: a top-down Keras model.
        image: uint8 BGR ``(H, W, 3)``.
        cfg: the resolved ``Config`` (``cfg.topdown``, ``cfg.skeleton``).
        boxes: ``(N, 4)`` COCO ``[x, y, w, h]`` person boxes; ``None`` uses the whole image as one box.
        box_scores: ``(N,)`` detection scores (default 1).

    Returns:
        ``Pose`` list in image pixels, best first.
    """
    h, w = image.shape[:2]
    if boxes is None:
        LOG.info("no person boxes given: using the whole image (%dx%d) as one box", w, h)
        boxes = [[0, 0, w, h]]
    scores = np.ones(len(boxes)) if box_scores is None else np.asarray(box_scores, dtype=np.float64)
    zeros = np.zeros((cfg.skeleton.num_keypoints, 3), np.float32)
    instances = [PersonInstance(0, "", b, zeros, float(s)) for b, s in
                 ((clean_box(b, w, h), s) for b, s in zip(boxes, scores)) if b is not None]
    if not instances:
        return []
    heatmaps, matrices, areas = image_heatmaps(image, instances, cfg.topdown, cfg.skeleton, keras_predictor(model))
    return image_poses(instances, heatmaps, matrices, areas, cfg.topdown, cfg.skeleton)


def keras_predictor(model, batch_size: int = 32):
    """Wrap a top-down Keras model as ``crops (B, H, W, 3) -> heatmaps (B, h, w, K)`` numpy.

    Batches are zero-padded to the next power of two (at most ``batch_size``), so the traced predict
    function is reused across images with different person counts instead of retraced for each count.
    """

    def predict(crops):
        parts = []
        for i in range(0, len(crops), batch_size):
            chunk = crops[i:i + batch_size]
            padded = min(batch_size, 1 << (len(chunk) - 1).bit_length())
            if padded > len(chunk):
                chunk = np.concatenate([chunk, np.zeros((padded - len(chunk),) + chunk.shape[1:], chunk.dtype)])
            parts.append(np.asarray(model.predict_on_batch(chunk)["heatmaps"])[:len(crops[i:i + batch_size])])
        return np.concatenate(parts, axis=0)

    return predict


def evaluate_topdown(cfg, ann_file, image_dir, *, model=None, oracle: bool = False, boxes_file=None,
                     flip=None, results_path=None, batch_size: int = 32, progress: bool = True) -> dict:
    """Evaluate a top-down model (or the ground-truth oracle) on a COCO keypoint annotation file.

    Args:
        cfg: the resolved ``Config``; uses ``cfg.topdown`` (crop geometry, sigma, flip test and shift,
            rescoring and OKS-NMS thresholds) and ``cfg.skeleton``.
        ann_file: COCO ``person_keypoints_*.json``.
        image_dir: folder of that split's images (not read by the oracle; may be None then).
        model: a Keras model from ``build_topdown_model`` (or loaded); required unless ``oracle``.
        oracle: render each box's ground-truth heatmaps with the training target code instead of
            running a network (needs ground-truth boxes, i.e. no ``boxes_file``).
        boxes_file: COCO detection results JSON of person boxes; ``None`` uses the ground-truth boxes.
        flip: override ``cfg.topdown.flip_test``.
        results_path: if given, the COCO results JSON is written there atomically.
        batch_size: crops per forward pass.
        progress: show a tqdm bar over images.

    Returns:
        ``simplepose.evaluation.run_coco_eval``'s metrics (``AP`` ... ``ARl``) plus ``num_instances``
        (boxes cropped) and ``num_results`` (people kept after rescoring and OKS-NMS).
    """
    import dataclasses

    from tqdm import tqdm

    if oracle and boxes_file is not None:
        raise ValueError("the oracle renders each box's own ground truth: it needs ground-truth boxes, not --boxes")
    if not oracle and model is None:
        raise ValueError("evaluate_topdown needs a model unless oracle=True")
    td = cfg.topdown if flip is None else dataclasses.replace(cfg.topdown, flip_test=bool(flip))
    skeleton = cfg.skeleton
    coco = load_coco(ann_file)
    image_dir = image_dir if image_dir is not None else ""
    if boxes_file is None:
        instances = load_person_instances(coco, image_dir, skeleton, training=False)
    else:
        instances = detection_instances(coco, image_dir, skeleton, boxes_file)
    by_image = defaultdict(list)
    for inst in instances:
        by_image[inst.image_id].append(inst)
    predict = None if oracle else keras_predictor(model, batch_size)
    results = []
    for image_id, group in tqdm(sorted(by_image.items()), desc="top-down eval", disable=not progress):
        if oracle:  # ground truth needs no pixels: a blank frame of the annotated size
            info = coco.imgs[image_id]
            image = np.zeros((info["height"], info["width"], 3), np.uint8)
        else:
            image = read_image(group[0].image_path)
        heatmaps, matrices, areas = image_heatmaps(image, group, td, skeleton, predict)
        poses = image_poses(group, heatmaps, matrices, areas, td, skeleton)
        results.extend(pose_record(pose, skeleton, image_id) for pose in poses)
    if results_path is not None:
        atomic_write_text(results_path, json.dumps(results))
    stats = run_coco_eval(coco, results)
    LOG.info("top-down %s: AP %.4f on %d boxes, %d results", "oracle" if oracle else "model", stats["AP"],
             len(instances), len(results))
    return {**stats, "num_instances": len(instances), "num_results": len(results)}
