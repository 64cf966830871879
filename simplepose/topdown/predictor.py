"""Top-down prediction: crops of person boxes, flip test, decoding, rescoring and OKS-NMS (spec 4)."""
from __future__ import annotations

import logging
import time

import numpy as np

from simplepose.data.augment import AugmentParams
from simplepose.decode.flip import flip_back
from simplepose.decode.topdown import crop_to_image, decode_heatmaps
from simplepose.pose import Pose
from simplepose.predictor import Predictor, as_bgr_uint8
from simplepose.runtime import KerasRunner, Runner
from simplepose.topdown.data import PersonInstance, box_to_center_size, clean_box, make_sample

LOG = logging.getLogger(__name__)

#: Score given to keypoints whose heatmap maximum is not positive: a top-down model localises every keypoint
#: of a box (the published test reported all of them), and a present keypoint has a positive score.
MIN_KEYPOINT_SCORE = 1e-6


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


def image_heatmaps(image, instances, td, skeleton, stride: int, predict=None):
    """Crop every instance of one image and produce its heatmaps (network or ground-truth oracle).

    ``predict`` maps a crop batch ``(B, H, W, 3)`` uint8 to heatmaps ``(B, h, w, K)``; ``None`` renders each
    instance's ground truth with the training target code instead (oracle). With ``td.flip_test`` the
    mirrored crops are predicted (oracle: rendered) too, in the same call as the plain ones (one batch of
    ``2B`` crops), then un-flipped and averaged.

    Returns:
        ``(heatmaps (B, h, w, K), matrices (B, 2, 3), areas (B,))``.
    """
    hw = tuple(td.input_shape)
    flips = (False, True) if td.flip_test else (False,)
    samples = [make_sample(image, inst, hw, AugmentParams(flip=flip), skeleton.keypoint_flip, td.box_scale,
                           stride, td.sigma) for flip in flips for inst in instances]
    if predict is None:
        hm = np.stack([s[1] for s in samples])
    else:
        hm = np.asarray(predict(np.stack([s[0] for s in samples])), dtype=np.float32)
    maps = np.split(hm, len(flips))
    if td.flip_test:
        maps[1] = flip_back(maps[1], skeleton.keypoint_flip, td.flip_shift)
    matrices = np.stack([s[3] for s in samples[:len(instances)]])
    sizes = [box_to_center_size(inst.bbox, hw[1] / hw[0], td.box_scale)[1] for inst in instances]
    return np.mean(maps, axis=0), matrices, np.array([w * h for w, h in sizes])


def image_poses(instances, heatmaps, matrices, areas, td, skeleton, stride: int) -> list[Pose]:
    """Decode one image's heatmaps into people, rescored and OKS-NMS'ed (spec 4 steps 5-8).

    Returns ``Pose`` objects with ``(K, 3)`` ``[x, y, heatmap maximum]`` in image pixels (every keypoint
    present: maxima below :data:`MIN_KEYPOINT_SCORE` are raised to it), best first; people whose score is 0
    (no keypoint above ``td.rescore_threshold``) are dropped.
    """
    coords, kp_scores = decode_heatmaps(heatmaps, stride=stride)
    xy = crop_to_image(coords, matrices)
    scores = np.array([rescore(s, inst.score, td.rescore_threshold) for s, inst in zip(kp_scores, instances)])
    keep = [i for i in oks_nms(xy, scores, areas, skeleton.sigmas, td.oks_nms_threshold) if scores[i] > 0]
    kp_scores = np.maximum(kp_scores, MIN_KEYPOINT_SCORE)
    return [Pose(np.concatenate([xy[i], kp_scores[i][:, None]], axis=1).astype(np.float32), float(scores[i]))
            for i in keep]


def box_instances(boxes, box_scores, height: int, width: int, num_keypoints: int) -> list[PersonInstance]:
    """Person boxes ``(N, 4)`` COCO ``[x, y, w, h]`` as instances, cleaned (spec 1.1); empty boxes are dropped."""
    scores = np.ones(len(boxes)) if box_scores is None else np.asarray(box_scores, dtype=np.float64)
    zeros = np.zeros((num_keypoints, 3), np.float32)
    return [PersonInstance(0, "", b, zeros, float(s)) for b, s in
            ((clean_box(b, width, height), s) for b, s in zip(boxes, scores)) if b is not None]


def crop_predictor(runner, batch_size: int = 64):
    """Wrap a top-down network as ``crops (B, H, W, 3) uint8 -> heatmaps (B, h, w, K)`` numpy.

    Batches are zero-padded to the next power of two (at most ``batch_size``), so a traced or compiled
    network is reused across images with different person counts instead of retraced for each count.
    """

    def predict(crops):
        parts = []
        for i in range(0, len(crops), batch_size):
            chunk = crops[i:i + batch_size]
            padded = min(batch_size, 1 << (len(chunk) - 1).bit_length())
            if padded > len(chunk):
                chunk = np.concatenate([chunk, np.zeros((padded - len(chunk),) + chunk.shape[1:], chunk.dtype)])
            parts.append(np.asarray(runner(chunk)["heatmaps"], np.float32)[:len(crops[i:i + batch_size])])
        return np.concatenate(parts, axis=0)

    return predict


class TopDownPredictor(Predictor):
    """People in given person boxes, from a top-down model: one crop per box (flip test, rescoring, OKS-NMS).

    Args:
        model: a ``simplepose.runtime.Runner`` (any saved format) or a top-down Keras model (or any callable)
            giving ``{"heatmaps": (B, h, w, K)}`` for ``(B, H, W, 3)`` crops.
        skeleton: the model's skeleton (K keypoints).
        stride: crop pixels per heatmap cell.
        params: a ``TopDownConfig`` (crop size, box scale, flip test and shift, rescoring, OKS-NMS).
        meta: the model's ``HeadMeta``, if any.
        batch_size: most crops per forward pass (an image's crops and, with the flip test, their mirrors
            go through together; 64 = 32 people with the flip test).

    After each :meth:`predict`, ``last_timings`` holds ms spent in ``crop``, ``network`` and ``decode``.
    """

    takes_boxes = True

    def __init__(self, model, skeleton, *, stride: int = 4, params=None, meta=None, batch_size: int = 64):
        from simplepose.config import TopDownConfig

        self.model, self.skeleton, self.stride, self.meta = model, skeleton, int(stride), meta
        self.params = params if params is not None else TopDownConfig()
        self.last_timings = {}
        self.runner = model if isinstance(model, Runner) else KerasRunner(model)
        self._predict = crop_predictor(self.runner, batch_size)

    def predict(self, image, boxes=None, box_scores=None) -> list[Pose]:
        """People in ``boxes`` of ``image`` (None: the whole image is one box), best first, in image pixels."""
        image = as_bgr_uint8(image)
        h, w = image.shape[:2]
        if boxes is None:
            LOG.info("no person boxes given: using the whole image (%dx%d) as one box", w, h)
            boxes = [[0, 0, w, h]]
        instances = box_instances(boxes, box_scores, h, w, self.skeleton.num_keypoints)
        self.last_timings = {"network": 0.0, "crop": 0.0, "decode": 0.0}
        if not instances:
            return []
        timed = _Timed(self._predict)
        start = time.perf_counter()
        heatmaps, matrices, areas = image_heatmaps(image, instances, self.params, self.skeleton, self.stride,
                                                   timed)
        mid = time.perf_counter()
        poses = image_poses(instances, heatmaps, matrices, areas, self.params, self.skeleton, self.stride)
        self.last_timings = {"network": 1000.0 * timed.seconds,
                             "crop": 1000.0 * (mid - start - timed.seconds),
                             "decode": 1000.0 * (time.perf_counter() - mid)}
        return poses


class _Timed:
    """A callable that adds the seconds spent in ``fn`` to ``self.seconds``."""

    def __init__(self, fn):
        self.fn, self.seconds = fn, 0.0

    def __call__(self, *args):
        start = time.perf_counter()
        try:
            return self.fn(*args)
        finally:
            self.seconds += time.perf_counter() - start
