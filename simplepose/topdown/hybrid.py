"""Top-down refinement of bottom-up proposals: person boxes from a bottom-up model's poses, no detector needed."""
from __future__ import annotations

import logging
import time

import numpy as np

from simplepose.errors import ConfigError
from simplepose.pose import Pose
from simplepose.predictor import Predictor, as_bgr_uint8

LOG = logging.getLogger(__name__)

#: Fraction of the keypoints' extent added on each side of a proposal box. Keypoints lie inside a person, so
#: their box is tighter than an annotated person box. The margin that makes the keypoints' box (grown to the
#: 3:4 crop aspect) as large as the ground-truth box, median over people with >= 2 labelled keypoints:
#: synthetic train 0.05, coco-mini train 0.15, val 0.12 (real people are more often partly labelled).
DEFAULT_MARGIN = 0.1


def pose_boxes(keypoints, aspect: float, margin: float = DEFAULT_MARGIN, min_keypoints: int = 2):
    """Person boxes around poses: the present keypoints' extent, ``margin`` of it added on each side, then
    grown (never shrunk) about its centre to ``aspect`` = width / height (the top-down crop's).

    A keypoint is present when its score (third column) is > 0; poses with fewer than ``min_keypoints``
    present keypoints, or whose keypoints all lie on one point, give no box.

    Shapes: ``keypoints`` ``(N, K, 3)`` ``[x, y, score]`` -> boxes ``(M, 4)`` COCO ``[x, y, w, h]`` float32 and
    the indices ``(M,)`` of the poses they came from.
    """
    boxes, kept = [], []
    for i, person in enumerate(np.asarray(keypoints, dtype=np.float64)):
        xy = person[person[:, 2] > 0, :2]
        if len(xy) < max(min_keypoints, 1):
            continue
        lo, hi = xy.min(axis=0), xy.max(axis=0)
        size = (hi - lo) * (1.0 + 2.0 * margin)
        if size.max() <= 0:
            continue
        w, h = max(size[0], aspect * size[1]), max(size[1], size[0] / aspect)
        cx, cy = (lo + hi) / 2.0
        boxes.append([cx - w / 2.0, cy - h / 2.0, w, h])
        kept.append(i)
    return np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(kept, np.int64)


class HybridPredictor(Predictor):
    """People found by a bottom-up model, refined by a top-down model in boxes around them (no detector).

    Each bottom-up person becomes a box (:func:`pose_boxes` with the top-down crop's aspect); the top-down
    predictor crops every box of the image in one batch (with the flip test's mirrors), decodes, rescores
    (mean keypoint score above the threshold, times the box score) and removes duplicates with OKS-NMS, so
    two bottom-up fragments of one person give one refined pose.

    Args:
        topdown: a top-down :class:`~simplepose.predictor.Predictor` (one that takes boxes).
        bottomup: a predictor that finds people itself (a bottom-up one; any format).
        margin: fraction of a pose's keypoint extent added on each side of its box.
        min_keypoints: bottom-up people with fewer present keypoints give no box.
        proposal_scores: box score = the bottom-up person's score clipped to [0, 1] (True) or 1 (False, as
            ground-truth boxes).

    After each :meth:`predict`, ``last_timings`` holds the bottom-up stages prefixed ``proposal_``, ``boxes``
    and the top-down stages (``crop``, ``network``, ``decode``), in ms; ``last_boxes`` the boxes used.

    Example:
        >>> hybrid = HybridPredictor.from_files("topdown.keras", "bottomup.onnx")
        >>> poses = hybrid.predict(cv2.imread("people.jpg"))
    """

    takes_boxes = False  # it proposes its own

    def __init__(self, topdown: Predictor, bottomup: Predictor, *, margin: float = DEFAULT_MARGIN,
                 min_keypoints: int = 2, proposal_scores: bool = False):
        if not topdown.takes_boxes:
            raise ConfigError("refining bottom-up proposals needs a top-down model (one that takes person boxes) "
                              "as the refining model")
        if bottomup.takes_boxes:
            raise ConfigError("the proposals must come from a model that finds people itself (bottom-up), not "
                              "from one that needs person boxes")
        if margin < 0 or min_keypoints < 1:
            raise ConfigError(f"proposal margin {margin} / min_keypoints {min_keypoints}: need >= 0 / >= 1")
        self.topdown, self.bottomup = topdown, bottomup
        self.model, self.skeleton, self.meta = topdown.model, topdown.skeleton, topdown.meta
        self.margin, self.min_keypoints, self.proposal_scores = float(margin), int(min_keypoints), proposal_scores
        h, w = topdown.params.input_shape
        self.aspect = w / h
        self.last_timings, self.last_boxes = {}, np.zeros((0, 4), np.float32)

    @classmethod
    def from_files(cls, topdown_path, bottomup_path, config=None, overrides=(), *, scales=None, flip=None,
                   **kwargs) -> "HybridPredictor":
        """Both models from files of any saved format (``simplepose.predictor.load_predictor``).

        ``config`` (a YAML file) gives the top-down model's settings; ``overrides`` (``section.key=value``)
        and ``flip`` go to both models (each reads its own method's settings), ``scales`` to the bottom-up
        one. ``kwargs`` are the constructor's (``margin``, ...).

        Raises:
            ConfigError: the first model does not take boxes, or the second does.
        """
        from simplepose.predictor import load_predictor

        topdown = load_predictor(topdown_path, config=config, overrides=overrides, flip=flip)
        if not topdown.takes_boxes:
            raise ConfigError(f"{topdown_path}: not a top-down model (it finds people itself); bottom-up "
                              "proposals are refined by a model that takes person boxes")
        bottomup = load_predictor(bottomup_path, overrides=overrides, scales=scales, flip=flip)
        if bottomup.takes_boxes:
            raise ConfigError(f"{bottomup_path}: a top-down model needs person boxes itself; proposals come from "
                              "a bottom-up model")
        return cls(topdown, bottomup, **kwargs)

    def proposals(self, image):
        """The bottom-up people of ``image`` as boxes: ``(boxes (N, 4) [x, y, w, h], scores (N,))``."""
        people = self.bottomup.predict(image)
        kp = np.stack([p.keypoints for p in people]) if people else np.zeros((0, 0, 3), np.float32)
        boxes, kept = pose_boxes(kp, self.aspect, self.margin, self.min_keypoints)
        scores = (np.clip([people[i].score for i in kept], 0.0, 1.0) if self.proposal_scores
                  else np.ones(len(kept)))
        return boxes, np.asarray(scores, np.float64)

    def predict(self, image, boxes=None, box_scores=None) -> list[Pose]:
        """People in ``image``, best first, in image pixels (the bottom-up model proposes the boxes)."""
        if boxes is not None:
            raise ValueError("a hybrid predictor proposes its own person boxes: call its top-down predictor "
                             "to use given boxes")
        image = as_bgr_uint8(image)
        start = time.perf_counter()
        boxes, scores = self.proposals(image)
        timings = {f"proposal_{k}": v for k, v in self.bottomup.last_timings.items()}
        timings["boxes"] = 1000.0 * (time.perf_counter() - start) - sum(timings.values())
        self.last_boxes = boxes
        poses = self.topdown.predict(image, boxes, scores) if len(boxes) else []
        self.last_timings = dict(timings, **(self.topdown.last_timings if len(boxes) else {}))
        return poses
