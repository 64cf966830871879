"""Top-down data: person boxes from COCO, crop affine, augmentation, 64x48 targets and the input pipeline."""
from __future__ import annotations

import dataclasses
import logging
import math
import os

import cv2
import numpy as np

from simplepose.data.augment import AugmentParams, transform_keypoints
from simplepose.pose import pixel_to_cell

LOG = logging.getLogger(__name__)

#: Output stride of both top-down backbones (ResNet-50 C5 and the tiny trunk).
BACKBONE_STRIDE = 32


def heatmap_stride(num_deconv: int) -> int:
    """Crop pixels per heatmap cell: the backbone stride halved by each deconvolution (4 for three)."""
    if not 1 <= num_deconv <= 5:
        raise ValueError(f"num_deconv={num_deconv}: expected 1..5 (backbone stride {BACKBONE_STRIDE})")
    return BACKBONE_STRIDE // 2 ** num_deconv


@dataclasses.dataclass(frozen=True)
class PersonInstance:
    """One person box (and its ground truth when known).

    Attributes:
        image_id: COCO image id.
        image_path: path of the image file.
        bbox: float32 ``(4,)`` COCO ``[x, y, w, h]`` in image pixels.
        keypoints: float32 ``(K, 3)`` ``[x, y, v]`` in image pixels (zeros for detections).
        score: the box's detection score (1 for ground-truth boxes).
    """

    image_id: int
    image_path: str
    bbox: np.ndarray
    keypoints: np.ndarray
    score: float = 1.0


def clean_box(bbox, width: int, height: int):
    """The published box clean-up (spec 1.1): clip to the image; None when empty. Shapes: ``(4,)``."""
    x, y, w, h = (float(v) for v in bbox)
    x1, y1 = max(0.0, x), max(0.0, y)
    x2 = min(width - 1.0, x1 + max(0.0, w - 1.0))
    y2 = min(height - 1.0, y1 + max(0.0, h - 1.0))
    if x2 <= x1 or y2 <= y1:
        return None
    return np.array([x1, y1, x2 - x1, y2 - y1], dtype=np.float32)


def load_person_instances(coco, image_dir, skeleton, *, training: bool) -> list[PersonInstance]:
    """Person instances of a pycocotools ``COCO`` object.

    ``training=True`` keeps the published training set (spec 1.1): non-crowd, keypoints labelled, area
    > 0, non-empty cleaned box. ``training=False`` keeps every non-crowd box with a non-empty cleaned box
    (ground-truth boxes at test time; people without keypoints included, as the published test did).
    """
    out = []
    for image_id in sorted(coco.getImgIds()):
        info = coco.imgs[image_id]
        path = os.path.join(os.fspath(image_dir), info["file_name"])
        for ann in coco.loadAnns(coco.getAnnIds(imgIds=image_id, iscrowd=False)):
            kp = np.asarray(ann.get("keypoints", [0] * 51), dtype=np.float32).reshape(-1, 3)
            if training and (ann.get("num_keypoints", 0) == 0 or kp[:, 2].sum() <= 0 or ann.get("area", 0) <= 0):
                continue
            box = clean_box(ann["bbox"], info["width"], info["height"])
            if box is not None:
                out.append(PersonInstance(image_id, path, box, skeleton.from_coco(kp)))
    return out


def box_to_center_size(bbox, aspect: float, box_scale: float):
    """Grow a box to ``aspect`` = width / height (never shrink), then enlarge it by ``box_scale``.

    Shapes: ``(4,)`` ``[x, y, w, h]`` -> centre ``(2,)``, size ``(2,)`` ``[w, h]`` float64.
    """
    x, y, w, h = (float(v) for v in bbox)
    center = np.array([x + w / 2.0, y + h / 2.0])
    if w > aspect * h:
        h = w / aspect
    elif w < aspect * h:
        w = aspect * h
    return center, np.array([w, h]) * box_scale


def crop_matrix(center, box_width: float, out_hw, angle: float = 0.0, flip: bool = False) -> np.ndarray:
    """The 2x3 image-to-crop affine: ``center`` to the crop centre, ``box_width`` to the crop width.

    Pixel centres are integers (``simplepose.pose``), so the crop centre is ``((W - 1) / 2, (H - 1) / 2)``.
    The linear part is ``F . (W / box_width) R`` with the published rotation ``R = [[cos, sin], [-sin,
    cos]]`` (positive ``angle`` turns the content counter-clockwise on screen) and ``F`` the mirror about
    the crop centre when ``flip`` (the composed-affine form of the published whole-image flip).

    Shapes: ``center`` ``(2,)`` -> ``(2, 3)`` float64.
    """
    out_h, out_w = out_hw
    s = out_w / float(box_width)
    t = math.radians(angle)
    fx = -1.0 if flip else 1.0
    a = np.array([[fx * s * math.cos(t), fx * s * math.sin(t)], [-s * math.sin(t), s * math.cos(t)]])
    mid = np.array([(out_w - 1) / 2.0, (out_h - 1) / 2.0])
    return np.concatenate([a, (mid - a @ np.asarray(center, dtype=np.float64))[:, None]], axis=1)


def invert_matrix(matrix) -> np.ndarray:
    """Inverse of a 2x3 affine. Shapes: ``(2, 3)`` -> ``(2, 3)``."""
    return cv2.invertAffineTransform(np.asarray(matrix, dtype=np.float64))


def draw_augmentation(rng: np.random.Generator, scale_factor=0.3, rotate_prob=0.6, max_rotate_deg=40.0,
                      flip_prob=0.5) -> AugmentParams:
    """One training draw (spec 1.3): scale ``clip(1 + f N, 1 - f, 1 + f)``; with probability
    ``rotate_prob`` an angle ``clip(N * max/2, -max, max)`` (the published ``clip(40 N, -80, 80)`` has
    the same shape with max = 80; the issue asks for at most 40 degrees); a flip with ``flip_prob``.
    """
    scale = float(np.clip(1.0 + scale_factor * rng.standard_normal(), 1.0 - scale_factor, 1.0 + scale_factor))
    angle = 0.0
    if rng.random() < rotate_prob:
        angle = float(np.clip(rng.standard_normal() * max_rotate_deg / 2.0, -max_rotate_deg, max_rotate_deg))
    return AugmentParams(scale=scale, angle=angle, flip=bool(rng.random() < flip_prob))


def render_heatmaps(keypoints, out_hw, input_hw, stride: int = 4, sigma: float = 2.0):
    """Gaussian targets (peak 1) at the keypoints' exact sub-cell positions, and per-keypoint weights.

    The targets are on a 0..1 scale (the published ones peak at 255): the loss is 255**2 smaller and a
    heatmap maximum reads directly as a keypoint score. A keypoint is supervised (weight 1) when it is
    labelled (v > 0) and its centre lies inside the crop; unsupervised keypoints get an all-zero map.

    Shapes: ``(K, 3)`` crop pixels -> heatmaps ``(h, w, K)`` float32, weights ``(K,)`` float32.
    """
    kp = np.asarray(keypoints, dtype=np.float32)
    h, w = out_hw
    in_h, in_w = input_hw
    inside = (kp[:, 0] >= -0.5) & (kp[:, 0] < in_w - 0.5) & (kp[:, 1] >= -0.5) & (kp[:, 1] < in_h - 0.5)
    weights = ((kp[:, 2] > 0) & inside).astype(np.float32)
    cx, cy = pixel_to_cell(kp[:, 0], stride), pixel_to_cell(kp[:, 1], stride)
    gx = np.exp(-((np.arange(w, dtype=np.float32)[None, :] - cx[:, None]) ** 2) / (2 * sigma ** 2))
    gy = np.exp(-((np.arange(h, dtype=np.float32)[None, :] - cy[:, None]) ** 2) / (2 * sigma ** 2))
    maps = np.einsum("ky,kx->yxk", gy * weights[:, None], gx).astype(np.float32)
    maps[maps < np.finfo(np.float32).tiny] = 0.0  # no denormals: backends that flush them would differ
    return maps, weights


def make_sample(image, instance: PersonInstance, input_hw, params: AugmentParams, flip_perm,
                aspect_scale=1.25, stride: int = 4, sigma: float = 2.0):
    """Crop, targets and weights of one person under one augmentation draw.

    Returns:
        ``(crop float32 BGR 0..255 (H, W, 3), heatmaps (H/stride, W/stride, K), weights (K,), matrix (2, 3))``.
    """
    in_h, in_w = input_hw
    center, size = box_to_center_size(instance.bbox, in_w / in_h, aspect_scale)
    m = crop_matrix(center, size[0] * params.scale, input_hw, params.angle, params.flip)
    crop = cv2.warpAffine(image, m, (in_w, in_h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=(0, 0, 0))
    kp = transform_keypoints(instance.keypoints[None], m, flip_perm if params.flip else None)[0]
    heatmaps, weights = render_heatmaps(kp, (in_h // stride, in_w // stride), input_hw, stride, sigma)
    return crop.astype(np.float32), heatmaps, weights, m


def read_image(path: str) -> np.ndarray:
    """A BGR uint8 image; a missing or unreadable file is an error naming it."""
    image = cv2.imread(os.fspath(path), cv2.IMREAD_COLOR)
    if image is None:
        raise FileNotFoundError(f"could not read image {path!r}")
    return image


class TopDownSamples:
    """Per-sample numpy access to top-down training or validation crops.

    Args:
        instances: the people, e.g. from :func:`load_person_instances`.
        skeleton: gives the flip permutation and the keypoint count.
        input_hw: crop ``(height, width)``; the heatmaps are this divided by ``stride``.
        box_scale: box enlargement after growing it to the crop aspect.
        sigma: Gaussian sigma in heatmap cells.
        augment: ``None`` (no augmentation) or keyword arguments of :func:`draw_augmentation`.
        stride: crop pixels per heatmap cell.
    """

    def __init__(self, instances, skeleton, input_hw=(256, 192), box_scale=1.25, sigma=2.0, augment=None,
                 stride: int = 4):
        self.instances = list(instances)
        self.skeleton = skeleton
        self.input_hw = tuple(int(v) for v in input_hw)
        self.box_scale = float(box_scale)
        self.sigma = float(sigma)
        self.augment = augment
        self.stride = int(stride)

    def __len__(self) -> int:
        return len(self.instances)

    def get(self, index: int, rng: np.random.Generator | None = None):
        """One sample: ``(crop (H, W, 3) float32 BGR 0..255, {"heatmaps": (h, w, K), "weights": (1, 1, K)})``."""
        inst = self.instances[int(index)]
        params = AugmentParams()
        if self.augment is not None:
            params = draw_augmentation(rng if rng is not None else np.random.default_rng(), **self.augment)
        crop, maps, weights, _ = make_sample(read_image(inst.image_path), inst, self.input_hw, params,
                                             self.skeleton.keypoint_flip, self.box_scale, self.stride, self.sigma)
        return crop, {"heatmaps": maps, "weights": weights.reshape(1, 1, -1)}


def samples_from_config(cfg, ann_file, image_dir, *, training: bool) -> TopDownSamples:
    """:class:`TopDownSamples` for a COCO keypoint file, with the augmentation of ``cfg.topdown`` when training."""
    from simplepose.evaluation import load_coco

    td = cfg.topdown
    coco = load_coco(ann_file)
    instances = load_person_instances(coco, image_dir, cfg.skeleton, training=training)
    augment = dict(scale_factor=td.scale_factor, rotate_prob=td.rotate_prob, max_rotate_deg=td.max_rotate_deg,
                   flip_prob=td.flip_prob) if training else None
    LOG.info("%d person instances from %s", len(instances), ann_file)
    return TopDownSamples(instances, cfg.skeleton, td.input_shape, td.box_scale, td.sigma, augment,
                          heatmap_stride(td.num_deconv))


def build_topdown_dataset(samples: TopDownSamples, batch_size: int, *, training: bool, seed: int = 0,
                          sample_weight: bool = False):
    """A ``tf.data.Dataset`` of batches ``(crops (B, H, W, 3), {"heatmaps": (B, h, w, K), "weights": (B, 1, 1, K)})``.

    With ``sample_weight=True`` the batches are ``(crops, {"heatmaps": maps}, {"heatmaps": weights})``
    instead: what ``model.fit`` feeds to ``compile(loss={"heatmaps": VisibilityWeightedMSE()})``.

    Training reshuffles every pass, draws fresh augmentation every pass (reproducible from ``seed``) and
    drops the last partial batch, as the published loader; evaluation keeps the order and every sample.
    The per-sample numpy work runs in parallel ``tf.numpy_function`` calls (OpenCV releases the GIL).
    """
    import tensorflow as tf

    in_h, in_w = samples.input_hw
    k = samples.skeleton.num_keypoints
    h, w = in_h // samples.stride, in_w // samples.stride

    def load(index, draw_seed):
        crop, y = samples.get(int(index), np.random.default_rng([int(draw_seed) & 0x7FFFFFFF, int(index)]))
        return crop, y["heatmaps"], y["weights"]

    def tf_load(index, draw_seed):
        crop, maps, weights = tf.numpy_function(load, [index, draw_seed], [tf.float32] * 3, stateful=False)
        crop.set_shape((in_h, in_w, 3))
        maps.set_shape((h, w, k))
        weights.set_shape((1, 1, k))
        return crop, {"heatmaps": maps, "weights": weights}

    indices = tf.data.Dataset.range(len(samples))
    if training:
        indices = indices.shuffle(len(samples), seed=seed, reshuffle_each_iteration=True)
    draws = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
    ds = tf.data.Dataset.zip((indices, draws)).map(tf_load, num_parallel_calls=tf.data.AUTOTUNE,
                                                   deterministic=True)
    ds = ds.batch(batch_size, drop_remainder=training)
    if sample_weight:
        ds = ds.map(lambda x, y: (x, {"heatmaps": y["heatmaps"]}, {"heatmaps": y["weights"]}))
    return ds.prefetch(tf.data.AUTOTUNE)


def topdown_py_dataset(samples: TopDownSamples, batch_size: int, *, training: bool, seed: int = 0,
                       sample_weight: bool = False, **kwargs):
    """The same batches as :func:`build_topdown_dataset` as a ``keras.utils.PyDataset`` (any backend).

    ``kwargs`` go to ``PyDataset`` (``workers``, ``use_multiprocessing``, ``max_queue_size``).
    """
    import keras

    class _TopDownPyDataset(keras.utils.PyDataset):
        def __init__(self):
            super().__init__(**kwargs)
            self.epoch = 0

        def __len__(self):
            n = len(samples)
            return n // batch_size if training else -(-n // batch_size)

        def __getitem__(self, i):
            order = np.arange(len(samples))
            if training:
                order = np.random.default_rng([seed, self.epoch]).permutation(len(samples))
            items = [samples.get(j, np.random.default_rng([seed, self.epoch, int(j)]))
                     for j in order[i * batch_size:(i + 1) * batch_size]]
            x = np.stack([c for c, _ in items])
            maps, weights = (np.stack([y[key] for _, y in items]) for key in ("heatmaps", "weights"))
            if sample_weight:
                return x, {"heatmaps": maps}, {"heatmaps": weights}
            return x, {"heatmaps": maps, "weights": weights}

        def on_epoch_end(self):
            self.epoch += 1

    return _TopDownPyDataset()
