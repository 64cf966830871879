"""Top-down data: person boxes from COCO, crop affine, augmentation, 64x48 targets and the input pipeline."""
from __future__ import annotations

import collections
import dataclasses
import logging
import math
import os

import cv2
import numpy as np

from simplepose.data import stream
from simplepose.data.augment import AugmentParams, transform_keypoints
from simplepose.data.codecs import read_image
from simplepose.data.coco import image_people, load_coco
from simplepose.errors import DataError
from simplepose.pose import pixel_to_cell

LOG = logging.getLogger(__name__)


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
    """Person instances of a pycocotools ``COCO`` object (people read by ``simplepose.data.coco.image_people``).

    ``training=True`` keeps the published training set (spec 1.1): keypoints labelled, area > 0, non-empty
    cleaned box. ``training=False`` keeps every non-crowd box with a non-empty cleaned box (ground-truth
    boxes at test time; people without keypoints included, as the published test did).
    """
    out = []
    for image_id in sorted(coco.getImgIds()):
        info = coco.imgs[image_id]
        path = os.path.join(os.fspath(image_dir), info["file_name"])
        for person in image_people(coco, image_id):
            labelled = person.keypoints[:, 2].sum() > 0
            if training and (person.num_keypoints == 0 or not labelled or person.area <= 0):
                continue
            box = clean_box(person.bbox, info["width"], info["height"])
            if box is not None:
                out.append(PersonInstance(image_id, path, box, skeleton.from_coco(person.keypoints)))
    return out


def check_image_file(path, width: int, height: int):
    """None when ``path`` is an image of ``width`` x ``height`` pixels, else why not (``missing``, ``empty``,
    ``not_an_image``, ``size_mismatch``).

    Reads the file's header only (Pillow), so a whole training set is checked in seconds before training
    starts; sizes are of the stored bitmap (EXIF orientation ignored, as COCO annotations are).
    """
    from PIL import Image, UnidentifiedImageError

    try:
        if os.path.getsize(path) == 0:
            return "empty"
        with Image.open(path) as image:
            size = image.size
    except FileNotFoundError:
        return "missing"
    except (UnidentifiedImageError, OSError, ValueError):
        return "not_an_image"
    return None if size == (int(width), int(height)) else "size_mismatch"


def drop_unusable_images(coco, instances: list, source) -> tuple:
    """The instances whose image file is usable (:func:`check_image_file`), and ``{reason: images}`` skipped.

    Each skipped image is logged with its reason, like the bottom-up preparation does.
    """
    reasons = {}
    for inst in instances:
        if inst.image_id not in reasons:
            info = coco.imgs[inst.image_id]
            reasons[inst.image_id] = check_image_file(inst.image_path, info["width"], info["height"])
            if reasons[inst.image_id]:
                LOG.warning("%s: skipped %s: %s", source, inst.image_path, reasons[inst.image_id].replace("_", " "))
    skipped = collections.Counter(r for r in reasons.values() if r)
    return [inst for inst in instances if not reasons[inst.image_id]], dict(skipped)


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
        ``(crop uint8 BGR (H, W, 3), heatmaps (H/stride, W/stride, K), weights (K,), matrix (2, 3))``.
    """
    in_h, in_w = input_hw
    center, size = box_to_center_size(instance.bbox, in_w / in_h, aspect_scale)
    m = crop_matrix(center, size[0] * params.scale, input_hw, params.angle, params.flip)
    crop = cv2.warpAffine(image, m, (in_w, in_h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=(0, 0, 0))
    kp = transform_keypoints(instance.keypoints[None], m, flip_perm if params.flip else None)[0]
    heatmaps, weights = render_heatmaps(kp, (in_h // stride, in_w // stride), input_hw, stride, sigma)
    return crop, heatmaps, weights, m


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

    @property
    def sample_images(self) -> np.ndarray:
        """Image number of every instance (instances of one image share its decode in a batch)."""
        ids = np.array([inst.image_id for inst in self.instances], dtype=np.int64)
        return np.unique(ids, return_inverse=True)[1].reshape(-1) if len(ids) else ids

    def get(self, index: int, rng: np.random.Generator | None = None, decoded: dict | None = None):
        """One sample: ``(crop (H, W, 3) uint8 BGR, {"heatmaps": (h, w, K), "weights": (1, 1, K)})``.

        ``decoded`` is a dict shared by samples rendered together: each image is read once for all of them.
        """
        inst = self.instances[int(index)]
        params = AugmentParams()
        if self.augment is not None:
            params = draw_augmentation(rng if rng is not None else np.random.default_rng(), **self.augment)
        try:
            image = stream.cached({} if decoded is None else decoded, inst.image_path,
                                  lambda: read_image(inst.image_path))
        except DataError as e:  # checked before training; changed since: no weight, rather than a dead run
            LOG.warning("%s; its person gets no weight in this batch", e)
            (h, w), k = self.input_hw, self.skeleton.num_keypoints
            return np.zeros((h, w, 3), np.uint8), {"heatmaps": np.zeros((h // self.stride, w // self.stride, k),
                                                                        np.float32),
                                                   "weights": np.zeros((1, 1, k), np.float32)}
        crop, maps, weights, _ = make_sample(image, inst, self.input_hw, params, self.skeleton.keypoint_flip,
                                             self.box_scale, self.stride, self.sigma)
        return crop, {"heatmaps": maps, "weights": weights.reshape(1, 1, -1)}


class CropStream(stream.Stream):
    """The top-down crops a run consumes (see :class:`simplepose.data.stream.Stream`): seeded per
    ``(seed, epoch, index)`` like the bottom-up samples; batches are ``(crops, {"heatmaps": maps},
    {"heatmaps": weights})``, what ``model.fit`` feeds to ``compile(loss={"heatmaps": VisibilityWeightedMSE()})``.

    Args:
        samples: :class:`TopDownSamples` (augmenting or not). train, seed, group_by_image: as for ``Stream``.
    """

    def __init__(self, samples: TopDownSamples, *, train: bool, seed: int = 0, group_by_image: bool = False):
        super().__init__(samples.sample_images, train=train, seed=seed, group_by_image=group_by_image)
        self.samples = samples

    def render(self, elements, timings: dict | None = None) -> tuple:
        decoded, items = {}, []
        for epoch, index in elements:
            items.append(self.samples.get(index, self.rng(epoch, index), decoded))
        return (np.stack([crop for crop, _ in items]),
                np.stack([y["heatmaps"] for _, y in items]), np.stack([y["weights"] for _, y in items]))

    def signature(self) -> list:
        (h, w), s, k = self.samples.input_hw, self.samples.stride, self.samples.skeleton.num_keypoints
        return [("uint8", (h, w, 3)), ("float32", (h // s, w // s, k)), ("float32", (1, 1, k))]

    def pack(self, flat):
        return flat[0], {"heatmaps": flat[1]}, {"heatmaps": flat[2]}


def samples_from_config(cfg, ann_file, image_dir, *, training: bool) -> TopDownSamples:
    """:class:`TopDownSamples` for a COCO keypoint file, with the augmentation of ``cfg.topdown`` when training.

    People on image files that are missing, empty, not images or of another size than annotated are
    skipped, counted and logged (:func:`drop_unusable_images`).
    """
    td = cfg.topdown
    coco = load_coco(ann_file)
    instances, skipped = drop_unusable_images(coco, load_person_instances(coco, image_dir, cfg.skeleton,
                                                                          training=training), ann_file)
    augment = dict(scale_factor=td.scale_factor, rotate_prob=td.rotate_prob, max_rotate_deg=td.max_rotate_deg,
                   flip_prob=td.flip_prob) if training else None
    LOG.info("%d person instances from %s; images skipped: %d%s", len(instances), ann_file, sum(skipped.values()),
             f" ({', '.join(f'{k}: {v}' for k, v in sorted(skipped.items()))})" if skipped else "")
    return TopDownSamples(instances, cfg.skeleton, td.input_shape, td.box_scale, td.sigma, augment, cfg.data.stride)


def build_topdown_dataset(samples: TopDownSamples, batch_size: int, *, training: bool, seed: int = 0,
                          group_by_image: bool = False, num_workers: int = 0, prefetch: int = 4):
    """A ``tf.data.Dataset`` of :class:`CropStream` batches ``(crops uint8 (B, H, W, 3), {"heatmaps": (B, h, w,
    K)}, {"heatmaps": weights (B, 1, 1, K)})``.

    Training streams forever (a new order and new augmentation draws every epoch, reproducible from
    ``seed``); evaluation is one pass in file order with every sample.
    """
    return stream.tf_dataset(CropStream(samples, train=training, seed=seed, group_by_image=group_by_image),
                             batch_size, num_workers=num_workers, prefetch=prefetch,
                             name=f"{len(samples)} top-down crops")


def topdown_py_dataset(samples: TopDownSamples, batch_size: int, *, training: bool, seed: int = 0,
                       group_by_image: bool = False, **kwargs):
    """The same batches as :func:`build_topdown_dataset` as a ``keras.utils.PyDataset`` (any backend).

    ``kwargs`` go to ``PyDataset`` (``workers``, ``use_multiprocessing``, ``max_queue_size``).
    """
    return stream.py_dataset(CropStream(samples, train=training, seed=seed, group_by_image=group_by_image),
                             batch_size, **kwargs)
