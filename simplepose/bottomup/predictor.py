"""Bottom-up prediction: multi-scale and flip test-time augmentation, decoding, back-projection."""
from __future__ import annotations

import logging
import time

import cv2
import numpy as np

from simplepose.decode import decode, warm_up
from simplepose.decode.flip import flip_back
from simplepose.pose import Pose
from simplepose.predictor import Predictor, as_bgr_uint8
from simplepose.runtime import KerasRunner, Runner

LOG = logging.getLogger(__name__)


def scaled_input_size(height: int, width: int, box_size: int, scale: float, stride: int) -> tuple[int, int]:
    """Network input size for one test scale: height about ``scale * box_size``, aspect kept.

    Both sides are rounded to a multiple of ``stride`` (at least one stride), so every map cell
    covers image pixels only and a horizontal mirror maps cells onto cells exactly; the aspect
    changes by less than half a stride, and back-projection uses the exact per-axis factors.
    """
    m = scale * box_size / height
    hs = max(stride, int(round(height * m / stride)) * stride)
    ws = max(stride, int(round(width * m / stride)) * stride)
    return hs, ws


def to_original(poses, fx: float, fy: float) -> list[Pose]:
    """Map poses from a resized image (``x' = (x + 0.5) * fx - 0.5``) back to the original pixels.

    Absent keypoints (score 0) stay at zero.
    """
    out = []
    for pose in poses:
        kp = pose.keypoints.copy()
        present = kp[:, 2] > 0
        kp[present, 0] = (kp[present, 0] + 0.5) / fx - 0.5
        kp[present, 1] = (kp[present, 1] + 0.5) / fy - 0.5
        out.append(Pose(keypoints=kp, score=pose.score))
    return out


def output_channels(model, output_key=None):
    """``(keypoint channels, limb channels)`` of a bottom-up model's maps, or None if unknown."""
    try:
        outputs = model.output
        last = outputs[output_key] if output_key else last_stage(outputs)
        return int(last["keypoints"].shape[-1]), int(last["limbs"].shape[-1])
    except (AttributeError, ValueError, KeyError, TypeError):
        return None


def last_stage_key(outputs: dict) -> str:
    """The key of the last ``stage_N`` entry of a model's output dict."""
    stages = [k for k in outputs if k.startswith("stage_")]
    if not stages:
        raise ValueError(f"model outputs {sorted(outputs)} have no 'stage_N' entry")
    return max(stages, key=lambda k: int(k.split("_")[1]))


def last_stage(outputs: dict) -> dict:
    """The last ``stage_N`` entry of a model's output dict."""
    return outputs[last_stage_key(outputs)]


class BottomUpPredictor(Predictor):
    """Multi-person poses from a bottom-up model, with multi-scale and flip test-time augmentation.

    Args:
        model: a ``simplepose.runtime.Runner`` (any saved format), or a Keras model (or any callable) taking
            BGR 0..255 ``(B, H, W, 3)`` and returning ``{"stage_N": {"keypoints": (B, H/s, W/s, K+1), "limbs":
            (B, H/s, W/s, L)}}``.
        skeleton: the model's skeleton.
        stride: the model's output stride.
        params: an ``InferenceConfig`` (box size, scales, flip, decoding thresholds).
        meta: the model's ``HeadMeta``, if any (its ``output_key`` names the stage to read; default: the last).

    After each :meth:`predict`, ``last_timings`` holds ms spent in ``network``, ``resize`` and ``decode``.

    Example:
        >>> poses = Predictor.from_file("model.keras").predict(cv2.imread("people.jpg"))
    """

    def __init__(self, model, skeleton, *, stride: int = 8, params=None, meta=None):
        from simplepose.config import InferenceConfig

        self.model = model
        self.skeleton = skeleton
        self.stride = int(stride)
        self.params = params if params is not None else InferenceConfig()
        self.meta = meta
        self.last_timings = {}
        self.runner = model if isinstance(model, Runner) else KerasRunner(model, meta.output_key if meta else None)
        warm_up(skeleton, self.params)

    # === Maps ===
    def _network(self, images):
        """Run the padded batch; return cropped keypoint and limb maps. Shapes: ``(B, hs, ws, 3)`` uint8.

        Inputs are padded right and bottom to shape buckets (``pad_multiple``), so a traced or compiled
        network sees few distinct shapes.
        """
        b, hs, ws, _ = images.shape
        pm = max(int(self.params.pad_multiple), self.stride)
        hp, wp = -(-hs // pm) * pm, -(-ws // pm) * pm
        batch = np.full((b, hp, wp, 3), 128, dtype=np.uint8)
        batch[:, :hs, :ws] = images
        out = self.runner(batch)
        if "keypoints" not in out:  # a bare network's per-stage dict
            out = last_stage(out)
        h, w = hs // self.stride, ws // self.stride
        return (np.asarray(out["keypoints"], np.float32)[:, :h, :w],
                np.asarray(out["limbs"], np.float32)[:, :h, :w])

    def _scale_maps(self, image, hs, ws, timings):
        """Maps of one scale, flip-averaged. Shapes: -> ``(hs/s, ws/s, K+1)``, ``(hs/s, ws/s, L)``."""
        start = time.perf_counter()
        scaled = image if (hs, ws) == image.shape[:2] else _resize_image(image, hs, ws)
        batch = np.stack([scaled, scaled[:, ::-1]]) if self.params.flip else scaled[None]
        timings["resize"] += time.perf_counter() - start
        start = time.perf_counter()
        heat, limbs = self._network(batch)
        timings["network"] += time.perf_counter() - start
        if not self.params.flip:
            return heat[0], limbs[0]
        heat_m = flip_back(heat[1], self.skeleton.keypoint_channel_flip)
        limbs_m = flip_back(limbs[1], self.skeleton.limb_flip)
        return 0.5 * (heat[0] + heat_m), 0.5 * (limbs[0] + limbs_m)

    def predict_maps(self, image):
        """Scale- and flip-averaged maps on the grid of the largest scale's input.

        Returns:
            ``(keypoint maps, limb maps, (fx, fy))``: the largest scale's input is the original image
            resized by (fx, fy). Every cell grid spans the whole image, so the grids of smaller scales
            are resized onto it (bicubic) without any shift.

        Shapes: ``image (H, W, 3)`` BGR uint8 -> ``(h, w, K+1)``, ``(h, w, L)`` float32.
        """
        image = as_bgr_uint8(image)
        p, s = self.params, self.stride
        height, width = image.shape[:2]
        hb, wb = scaled_input_size(height, width, p.box_size, max(p.scales), s)
        timings = {"network": 0.0, "resize": 0.0}
        heat_sum = limb_sum = None
        for scale in p.scales:
            heat, limbs = self._scale_maps(image, *scaled_input_size(height, width, p.box_size, scale, s), timings)
            start = time.perf_counter()
            if heat.shape[:2] != (hb // s, wb // s):
                heat = _resize_maps(heat, wb // s, hb // s)
                limbs = _resize_maps(limbs, wb // s, hb // s)
            heat_sum = heat if heat_sum is None else heat_sum + heat
            limb_sum = limbs if limb_sum is None else limb_sum + limbs
            timings["resize"] += time.perf_counter() - start
        self.last_timings = {k: 1000.0 * v for k, v in timings.items()}
        n = float(len(p.scales))
        return heat_sum / n, limb_sum / n, (wb / width, hb / height)

    def predict(self, image, boxes=None, box_scores=None) -> list[Pose]:
        """People in ``image`` (BGR; grayscale, alpha and 16-bit are converted), in original pixels, best first.

        A bottom-up model finds every person itself: ``boxes`` must be None.
        """
        if boxes is not None:
            raise ValueError("a bottom-up model finds people itself: person boxes are for top-down models")
        heat, limbs, (fx, fy) = self.predict_maps(image)
        poses, timings = decode_maps(heat, limbs, self.skeleton, self.stride, self.params)
        self.last_timings["resize"] += timings["resize"]
        self.last_timings["decode"] = timings["decode"]
        return to_original(poses, fx, fy)


def decode_maps(heat, limbs, skeleton, stride: int, params):
    """Decode maps at their stride, or (``params.decode_upsample``) after a bicubic upsampling to stride 1.

    Returns:
        ``(poses in the maps' input pixels, {"resize": ms, "decode": ms})``.

    Shapes: ``heat (h, w, K+1)``, ``limbs (h, w, L)``.
    """
    start = time.perf_counter()
    if params.decode_upsample and stride > 1:
        h, w = heat.shape[:2]
        heat = _resize_maps(heat, w * stride, h * stride)
        limbs = _resize_maps(limbs, w * stride, h * stride)
        stride = 1
    mid = time.perf_counter()
    poses = decode(heat, limbs, skeleton, stride, params)
    return poses, {"resize": 1000.0 * (mid - start), "decode": 1000.0 * (time.perf_counter() - mid)}


def _resize_image(image, height: int, width: int):
    """Bicubic resize as the seed; pixel-area averaging when shrinking below half size (large photos alias)."""
    shrink = height < 0.5 * image.shape[0]
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)


def _resize_maps(maps, width: int, height: int):
    """Bicubic resize of a multi-channel map; cell grids spanning the same image stay aligned.

    Shapes: ``(h, w, C)`` -> ``(height, width, C)`` float32.
    """
    out = cv2.resize(np.ascontiguousarray(maps), (width, height), interpolation=cv2.INTER_CUBIC)
    return out.reshape(height, width, maps.shape[2])
