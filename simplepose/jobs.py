"""What the scripts run, one function per job: evaluate a saved model or the oracle, draw the people of an image.

Each job checks its inputs before the slow part starts (a bad annotation file fails before the network
runs) and raises ``simplepose.errors`` exceptions with one-line messages naming the file and the problem.
"""
from __future__ import annotations

import logging
import os

from simplepose import atomic
from simplepose.config import load_config
from simplepose.data.codecs import read_image
from simplepose.data.coco import load_coco
from simplepose.errors import ConfigError, DataError
from simplepose.methods import get_method, method_for_config
from simplepose.predictor import as_bgr_uint8, load_predictor

LOG = logging.getLogger(__name__)


def open_predictor(weights, *, boxes_from=None, config=None, overrides=(), scales=None, flip=None):
    """The predictor of a saved model (any format), or with ``boxes_from`` (a bottom-up model, any format) a
    ``simplepose.topdown.hybrid.HybridPredictor`` refining its people with the top-down ``weights``.

    ``config`` gives ``weights``' settings; ``overrides`` and ``flip`` go to both models, ``scales`` to the
    bottom-up one (see ``simplepose.predictor.load_predictor``).
    """
    if boxes_from is None:
        return load_predictor(weights, config=config, overrides=overrides, scales=scales, flip=flip)
    from simplepose.topdown.hybrid import HybridPredictor

    return HybridPredictor.from_files(weights, boxes_from, config=config, overrides=overrides, scales=scales,
                                      flip=flip)


def evaluate_model(weights, ann_file, image_dir, *, config=None, overrides=(), scales=None, flip=None,
                   boxes_file=None, boxes_from=None, limit=None, out_dir=None, progress: bool = True) -> dict:
    """COCO keypoint metrics of a saved model on an annotation file (its method's evaluation).

    Args:
        weights: the ``.keras`` model file.
        ann_file, image_dir: COCO person keypoints JSON and its image folder.
        config, overrides, scales, flip: inference settings over the model's own (see
            ``simplepose.predictor.load_predictor``).
        boxes_file: person boxes as COCO detection results, for methods that take boxes (default: the
            ground-truth boxes).
        boxes_from: a bottom-up model whose people give the top-down model's boxes (see :func:`open_predictor`).
        limit: the first ``limit`` images only. out_dir: where ``results.json`` and ``metrics.json`` go.
    """
    _check_limit(limit)
    if out_dir is not None:
        atomic.check_output_folder(out_dir)
    if image_dir is None or not os.path.isdir(image_dir):
        raise DataError(f"{image_dir}: image folder not found")
    if boxes_file is not None and not os.path.isfile(boxes_file):
        raise DataError(f"{boxes_file}: boxes file not found")
    if boxes_file is not None and boxes_from is not None:
        raise ConfigError("--boxes and --boxes-from: give the person boxes one way")
    coco = load_coco(ann_file)
    predictor = open_predictor(weights, boxes_from=boxes_from, config=config, overrides=overrides, scales=scales,
                               flip=flip)
    if boxes_from is not None:
        from simplepose.evaluation import evaluate_predictor

        return evaluate_predictor(predictor, coco, image_dir, limit=limit, out_dir=out_dir, progress=progress,
                                  extra={"box_source": f"bottom-up model {os.fspath(boxes_from)}"})
    method = get_method(predictor.meta.method)
    return method.evaluate(predictor, coco, image_dir, boxes_file=boxes_file, limit=limit, out_dir=out_dir,
                           progress=progress)


def evaluate_oracle(ann_file, *, config=None, overrides=(), scales=None, flip=None, limit=None, out_dir=None,
                    progress: bool = True) -> dict:
    """The encoding + decoding ceiling of the method of ``config`` on an annotation file (no images, no model)."""
    _check_limit(limit)
    if out_dir is not None:
        atomic.check_output_folder(out_dir)
    cfg = load_config(config, overrides)
    method = method_for_config(cfg)
    cfg = cfg.with_overrides(method.tta_overrides(scales, flip))
    coco = load_coco(ann_file)
    return method.oracle_evaluate(coco, cfg, out_dir=out_dir, limit=limit, progress=progress)


def draw_image(weights, image_path, out_path, *, json_path=None, config=None, overrides=(), scales=None, flip=None,
               boxes=None, boxes_from=None) -> dict:
    """The people of one image file, drawn into ``out_path`` (PNG/JPEG by extension) and optionally as JSON.

    Args:
        boxes: ``(N, 4)`` COCO ``[x, y, w, h]`` person boxes for methods that take boxes (None: the whole
            image is one box); an error for methods that find people themselves.
        boxes_from: a bottom-up model whose people give the top-down model's boxes (see :func:`open_predictor`).

    Returns:
        ``{"image", "width", "height", "poses": [Pose.to_dict, ...]}`` (what ``json_path`` receives) plus
        ``"method"`` and ``"whole_image_box"`` (a box-taking method ran on the whole image).
    """
    from simplepose.visualize import draw_poses, write_image

    for path in (out_path, json_path):
        folder = os.path.dirname(os.path.abspath(path)) if path else None
        if folder and not os.path.isdir(folder):
            raise DataError(f"{path}: folder {folder} does not exist")
        if path:
            atomic.check_replaceable(path)  # before the network runs, and before the other file is written
    if boxes and boxes_from is not None:
        raise ConfigError("--box and --boxes-from: give the person boxes one way")
    image = as_bgr_uint8(read_image(image_path, orient=True))
    predictor = open_predictor(weights, boxes_from=boxes_from, config=config, overrides=overrides, scales=scales,
                               flip=flip)
    method = get_method(predictor.meta.method)
    if boxes and not method.takes_boxes:
        raise ConfigError(f"person boxes (--box) are for top-down models; {weights} is a {method.name} model")
    poses = [pose.inside(image.shape[1], image.shape[0]) for pose in predictor.predict(image, boxes or None)]
    write_image(out_path, draw_poses(image, poses, predictor.skeleton))
    found = {"image": os.fspath(image_path), "width": image.shape[1], "height": image.shape[0],
             "poses": [pose.to_dict(predictor.skeleton) for pose in poses]}
    if json_path:
        atomic.write_json(json_path, found, indent=1)
    return dict(found, method=method.name, whole_image_box=method.takes_boxes and not boxes and boxes_from is None)


def _check_limit(limit) -> None:
    if limit is not None and limit < 1:
        raise ConfigError(f"--limit {limit}: must be >= 1")
