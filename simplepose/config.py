"""Experiment configuration: frozen dataclasses < YAML file < ``--set section.key=value``."""
from __future__ import annotations

import dataclasses
import os
import typing

import yaml

from simplepose import atomic
from simplepose.errors import ConfigError
from simplepose.skeleton import SKELETONS, get_skeleton

__all__ = ["Config", "ConfigError", "load_config", "saved_config_path"]


@dataclasses.dataclass(frozen=True)
class DataConfig:
    #: Skeleton (limb set) name, see ``simplepose.skeleton.SKELETONS``. ``coco18_limbs40`` adds redundant
    #: links to the published ``coco18_limbs24`` (oracle AP on coco-mini train/val: 0.959/0.992 vs 0.868/0.903).
    skeleton: str = "coco18_limbs40"
    #: Square training crop side, in pixels (bottom-up; top-down crops are ``topdown.input_shape``).
    input_size: int = 368
    #: Output stride of the network maps: fixed by the architecture (model3, openpose: 8; top-down:
    #: 32 / 2 ** topdown.num_deconv); a value the model cannot produce is an error.
    stride: int = 8
    #: Parallel workers of the input pipeline (0 = one per CPU core).
    workers: int = 0
    #: Batches kept ready ahead of the training step.
    prefetch: int = 4
    #: Training order: images shuffled, the samples of one image (one per main person) next to each other,
    #: so the image is decoded once for all of them (2.6 per image in coco-mini train; the JPEG decode was
    #: half of the pipeline's time). False: samples shuffled independently. Each sample keeps its own
    #: augmentation draw either way. A batch then holds ~2 crops of each of its images: the quickstart
    #: (configs/quickstart.yaml) reached AP 0.699 with it and 0.736 without (one seed each).
    group_by_image: bool = True


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    #: The main person's bbox height becomes this fraction of the crop side.
    target_dist: float = 0.6
    #: Probability of a random scale jitter (the seed's inverted test made it never fire).
    scale_prob: float = 1.0
    #: Scale jitter range.
    scale_min: float = 0.8
    scale_max: float = 1.2
    #: If > 0, every sample is scaled so that its whole source image is this many crop pixels high (the
    #: predictor's geometry at scale 1 with ``inference.box_size`` = this), instead of bringing the main person
    #: to ``target_dist`` of the crop: people keep their relative sizes. The jitter still multiplies it.
    image_height: float = 0.0
    #: Rotation is uniform in [-max_rotate_deg, max_rotate_deg].
    max_rotate_deg: float = 40.0
    #: Centre shift, uniform in [-center_shift_px, center_shift_px] crop pixels on each axis.
    center_shift_px: float = 40.0
    #: Probability of a horizontal flip (with left/right swap).
    flip_prob: float = 0.5
    #: Probability of an HSV colour jitter (the seed's inverted test made it 0.8).
    tint_prob: float = 0.2
    #: HSV jitter half-ranges (OpenCV units: hue 0..179, saturation and value 0..255).
    hue_shift: int = 10
    sat_shift: int = 40
    val_shift: int = 30
    #: Image resampling of the affine warp: ``linear`` or ``cubic`` (the seed's).
    interpolation: str = "linear"
    #: Decode JPEGs at 1/2, 1/4 or 1/8 when the warp shrinks the image at least that much anyway.
    reduced_decode: bool = True


@dataclasses.dataclass(frozen=True)
class TargetConfig:
    #: Keypoint Gaussian sigma, input pixels.
    keypoint_sigma: float = 7.0
    #: Limb Gaussian sigma (distance to the limb), input pixels.
    limb_sigma: float = 5.0
    #: Target values at or below this are zeroed.
    threshold: float = 0.01
    #: ``capsule``: distance to the segment; ``seed_box``: the seed's line cut by a widened box.
    limb_shape: str = "capsule"


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    #: ``model3`` (published Simple Pose net), ``openpose`` (CMU-style stages) or ``topdown``.
    architecture: str = "model3"
    #: Number of prediction stages.
    num_stages: int = 3
    #: Multiplies every head width (1.0 = published); small values give the tiny test model.
    width_multiplier: float = 1.0
    #: Multiplies the VGG backbone widths (1.0 = published, required for ImageNet weights).
    backbone_width_multiplier: float = 1.0
    #: ``none``, ``imagenet`` or a path to a weights file.
    backbone_weights: str = "none"
    #: Conv kernel initialiser: ``gaussian`` (N(0, 0.01), published) or ``he_normal`` (training from scratch).
    kernel_init: str = "gaussian"
    #: ``none`` (published: no normalisation) or ``batch`` (BatchNormalization after every hidden conv of the
    #: bottom-up network; trains faster from scratch, no ImageNet weights then).
    norm: str = "none"


@dataclasses.dataclass(frozen=True)
class LossConfig:
    #: ``focal_l2`` (published) or ``l2``.
    kind: str = "focal_l2"
    #: Focal exponent: weight (1 - p_t) ** gamma.
    gamma: float = 2.0
    #: Target values above this are positives for the focal weight.
    positive_threshold: float = 0.01
    #: Weight of each stage's loss, first stage first.
    stage_weights: tuple[float, ...] = (0.5, 0.8, 1.0)
    #: Weight of the limb branch relative to the keypoint branch.
    limb_weight: float = 0.3333
    #: L2 penalty on conv kernels (Keras ``L2``: coefficient * sum(w^2)).
    weight_decay: float = 5e-4


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    #: ``adam`` or ``sgd`` (momentum).
    optimizer: str = "adam"
    learning_rate: float = 1e-4
    #: Per-iteration inverse-time decay of the learning rate (Keras 2 ``decay``).
    lr_time_decay: float = 2e-5
    #: Step schedule: multiply the rate by ``lr_step_factor`` every ``lr_step_epochs`` epochs (0 = never).
    lr_step_factor: float = 0.6
    lr_step_epochs: float = 10.2
    momentum: float = 0.9
    #: Per-layer learning-rate multipliers (spec 5.3).
    lr_multipliers: bool = True
    #: Global batch size (split evenly over replicas).
    batch_size: int = 25
    epochs: int = 100
    #: Steps per epoch (0 = one pass over the training file).
    steps_per_epoch: int = 0
    seed: int = 0
    #: ``auto`` (every local device: several GPUs, or the JAX host devices), ``one``, ``mirrored`` (data
    #: parallel over the local devices) or ``multiworker`` (several machines: tf.distribute's
    #: ``MultiWorkerMirroredStrategy`` from ``TF_CONFIG``, or JAX multi-host through
    #: ``keras.distribution.initialize`` from the ``KERAS_DISTRIBUTION_*`` variables).
    strategy: str = "auto"
    #: Keras dtype policy while the model is built: ``float32``, ``mixed_float16`` (with loss scaling) or
    #: ``mixed_bfloat16``; the loss is computed in float32 either way.
    precision: str = "float32"
    #: Older configs' switch, kept so their files still load: true means ``precision: mixed_float16``.
    mixed_precision: bool = False
    #: XLA compilation of the train step: None = Keras' ``"auto"`` (XLA where every layer supports it; JAX
    #: always compiles), true or false (TensorFlow graph without XLA; under JAX, eager steps).
    jit_compile: typing.Optional[bool] = None
    #: Run train steps eagerly (debugging; fast tiny tests, where tracing the graph costs more than the steps).
    run_eagerly: bool = False


@dataclasses.dataclass(frozen=True)
class InferenceConfig:
    #: Reference box size: scale 1 resizes the image height to this.
    box_size: int = 368
    #: Test-time scales relative to ``box_size``.
    scales: tuple[float, ...] = (1.0,)
    #: Average with the horizontally mirrored prediction.
    flip: bool = False
    #: Keypoint peak threshold.
    peak_threshold: float = 0.15
    #: Limb sample threshold.
    limb_threshold: float = 0.15
    #: Fraction of limb samples that must exceed ``limb_threshold``.
    limb_min_fraction: float = 0.9
    #: Minimum keypoints per person (the seed: 2; 1 keeps unconnected peaks as one-keypoint people),
    #: and minimum mean score per keypoint.
    min_keypoints: int = 1
    min_mean_score: float = 0.45
    #: ``improved`` (global greedy with fragment merging) or ``published`` (the seed's find_people).
    grouping: str = "improved"
    #: Sub-pixel peak refinement (parabola through log values); off = integer cells, as the seed.
    peak_refine: bool = True
    #: Gaussian smoothing sigma (map cells) before peak NMS; 0 = none.
    peak_smoothing: float = 0.0
    #: At most this many peaks per keypoint type.
    max_peaks: int = 64
    #: Limb samples: ``samples_per_cell`` per cell of length, clamped to [min, max].
    limb_min_samples: int = 5
    limb_max_samples: int = 20
    limb_samples_per_cell: float = 2.0
    #: Reject a limb longer than this many times the person's longest (the seed's len_rate 4); 0 = off.
    max_length_ratio: float = 0.0
    #: ``published`` grouping: disjoint people merge if the limb score >= this times their weakest.
    merge_tolerance: float = 0.85
    #: Upsample the averaged maps to the scaled input size before decoding (the seed's way; slower).
    decode_upsample: bool = False
    #: The network input is padded right/bottom to a multiple of this (shape buckets: fewer retraces).
    pad_multiple: int = 64
    #: ``improved`` grouping: a person lacking a keypoint type gets the peak best supported by a limb from
    #: one of its keypoints, even one another person holds (keypoints less than a cell apart share a peak).
    fill_missing: bool = True
    #: ``fill_missing`` completes people with at least this many keypoints.
    fill_min_keypoints: int = 2
    #: Extra peaks where a map exceeds the Gaussian models of the found peaks by more than this (two people's
    #: keypoints less than a cell apart make one 3x3 maximum); 0 = off (NMS peaks only, as the seed).
    peak_split_margin: float = 0.45
    #: ``improved`` grouping's person score: ``mean`` (keypoint scores summed, divided by K) or ``shared`` (a peak
    #: held by n people counts 1/n in each; a fragment of n possible owners counts 1/(1 + n)): fragments and
    #: copies rank below whole people (oracle AP on ``oracle_scenes`` of coco-mini val people: 0.847 -> 0.870).
    person_score: str = "shared"
    #: ``shared`` score: person p could own fragment f when every keypoint of f is within this many times the
    #: bone chain between them (``Skeleton.reach``, scaled to p's smallest possible height) of p's; 0 = off.
    fragment_reach: float = 1.0
    #: ``improved`` grouping: two people merge, and a person gains a keypoint, only when more of the limbs between
    #: them pass the limb test than fail it, as in ``fill_missing`` (oracle AP, coco-mini val 0.983 -> 0.992;
    #: scenes of val people 0.870 -> 0.877).
    verify_merges: bool = True
    #: ``improved`` grouping: a fragment with exactly one possible owner (``fragment_reach``) also gives the owner
    #: joined with it as a second guess ranked after every person (``grouping.joined_guesses``); the output then
    #: holds both (oracle AP, coco-mini train 0.959 -> 0.966; scenes of val people 0.877 -> 0.882).
    joined_guesses: bool = True


@dataclasses.dataclass(frozen=True)
class TopDownConfig:
    #: Crop input (height, width) in pixels; heatmaps are this divided by 4.
    input_shape: tuple[int, ...] = (256, 192)
    #: Person boxes are grown to this width/height aspect, then enlarged by ``box_scale``.
    box_scale: float = 1.25
    #: Heatmap Gaussian sigma, heatmap cells.
    sigma: float = 2.0
    #: Number of transposed-conv upsampling layers in the head.
    num_deconv: int = 3
    deconv_filters: int = 256
    #: ``none``, ``holistic`` or ``holistic+partwise``.
    attention: str = "none"
    #: ``crf`` (mean-field with a learned spatial kernel) or ``softmax`` (spatial softmax).
    attention_kernel: str = "crf"
    #: Mean-field iterations and pairwise kernel size of the CRF attention.
    crf_iterations: int = 3
    crf_kernel_size: int = 3
    #: Training augmentation: scale factor range, rotation probability and bound, flip probability.
    scale_factor: float = 0.3
    rotate_prob: float = 0.6
    max_rotate_deg: float = 40.0
    flip_prob: float = 0.5
    #: ``resnet50`` (keras.applications layout; ``model.backbone_weights`` applies) or ``tiny`` (tests, smoke runs).
    backbone: str = "resnet50"
    #: Channels of the tiny trunk's five stride-2 conv/BN/ReLU layers (output stride 32; ``tiny`` only).
    tiny_widths: tuple[int, ...] = (8, 16, 16, 32, 32)
    #: L2 penalty on conv and deconv kernels (Keras ``L2`` coefficient; slim's 1e-5 * sum(w^2) / 2).
    weight_decay: float = 5e-6
    #: Step decay of the learning rate: multiply by ``lr_decay_factor`` at each of these epochs.
    lr_decay_epochs: tuple[int, ...] = (90, 120)
    lr_decay_factor: float = 0.1
    #: Test time: average with the flipped crop; columns to shift the un-flipped heatmap right (0 for
    #: the pixel-centre convention of ``simplepose.pose``; the published 4j convention needed 1).
    flip_test: bool = True
    flip_shift: int = 0
    #: Keypoint scores above this enter the instance score; OKS-NMS suppression threshold.
    rescore_threshold: float = 0.2
    oks_nms_threshold: float = 0.9


@dataclasses.dataclass(frozen=True)
class Config:
    """The whole experiment. Every section has documented defaults; see ``configs/`` for experiments."""

    data: DataConfig = DataConfig()
    augment: AugmentConfig = AugmentConfig()
    targets: TargetConfig = TargetConfig()
    model: ModelConfig = ModelConfig()
    loss: LossConfig = LossConfig()
    train: TrainConfig = TrainConfig()
    inference: InferenceConfig = InferenceConfig()
    topdown: TopDownConfig = TopDownConfig()

    def __post_init__(self):
        _validate(self)

    # === Building ===
    @classmethod
    def from_dict(cls, tree: dict, *, source: str = "config") -> "Config":
        """Build from a nested dict; unknown sections or keys are a ``ConfigError``."""
        return _build(cls, tree or {}, source)

    @classmethod
    def from_yaml(cls, path) -> "Config":
        try:
            with open(path) as f:
                tree = yaml.safe_load(f)
        except FileNotFoundError:
            raise ConfigError(f"{path}: config file not found") from None
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
        if tree is not None and not isinstance(tree, dict):
            raise ConfigError(f"{path}: expected a mapping of sections at the top level")
        return cls.from_dict(tree or {}, source=str(path))

    def with_overrides(self, overrides) -> "Config":
        """Apply ``section.key=value`` strings; values are parsed as YAML (``[0.5, 1]``, ``true``, ``1e-4``)."""
        tree = self.to_dict()
        for item in overrides or ():
            key, sep, raw = item.partition("=")
            parts = key.strip().split(".")
            if not sep or len(parts) != 2 or not all(parts):
                raise ConfigError(f"--set {item!r}: expected section.key=value")
            section, name = parts
            if section not in tree:
                raise ConfigError(f"--set {item!r}: unknown section {section!r}; known: {', '.join(tree)}")
            if name not in tree[section]:
                raise ConfigError(f"--set {item!r}: unknown key {name!r} in section {section!r}; "
                                  f"known: {', '.join(tree[section])}")
            try:
                tree[section][name] = yaml.safe_load(raw) if raw.strip() else ""
            except yaml.YAMLError:
                raise ConfigError(f"--set {item!r}: value is not valid YAML") from None
        return Config.from_dict(tree, source="--set")

    # === Writing ===
    def to_dict(self) -> dict:
        return {f.name: _plain(dataclasses.asdict(getattr(self, f.name))) for f in dataclasses.fields(self)}

    def to_yaml(self, path=None) -> str:
        text = yaml.safe_dump(self.to_dict(), sort_keys=False)
        if path is not None:
            atomic.write_text(path, text)
        return text

    @property
    def skeleton(self):
        return get_skeleton(self.data.skeleton)


def load_config(path=None, overrides=()) -> Config:
    """Defaults < YAML file at ``path`` (optional) < ``overrides`` (``section.key=value`` strings)."""
    cfg = Config.from_yaml(path) if path else Config()
    return cfg.with_overrides(overrides)


def saved_config_path(model_path):
    """The ``config.yaml`` that training wrote beside ``model_path``, or None when there is none."""
    path = os.path.join(os.path.dirname(os.path.abspath(os.fspath(model_path))), "config.yaml")
    return path if os.path.isfile(path) else None


def _plain(value):
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return value


def _build(cls, tree, source):
    if not isinstance(tree, dict):
        raise ConfigError(f"{source}: expected a mapping for {cls.__name__}, got {type(tree).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(tree) - names)
    if unknown:
        raise ConfigError(f"{source}: unknown key(s) {', '.join(map(repr, unknown))} for "
                          f"{cls.__name__}; known: {', '.join(sorted(names))}")
    kwargs = {}
    for name, value in tree.items():
        kind = hints[name]
        if dataclasses.is_dataclass(kind):
            kwargs[name] = _build(kind, value or {}, f"{source}: {name}")
        else:
            kwargs[name] = _coerce(value, kind, f"{source}: {name}")
    try:
        return cls(**kwargs)
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}") from None


def _coerce(value, kind, where):
    origin = typing.get_origin(kind)
    if origin is typing.Union:  # Optional[X]
        if value is None:
            return None
        (kind,) = [a for a in typing.get_args(kind) if a is not type(None)]
        return _coerce(value, kind, where)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            value = [value]
        (item, _) = typing.get_args(kind)
        return tuple(_coerce(v, item, where) for v in value)
    if kind is bool:
        if isinstance(value, bool):
            return value
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-4" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif kind is str:
        if isinstance(value, str):
            return value
    raise ConfigError(f"{where}: expected {getattr(kind, '__name__', kind)}, got {value!r}")


_CHOICES = {
    ("targets", "limb_shape"): ("capsule", "seed_box"),
    ("augment", "interpolation"): ("linear", "cubic"),
    ("model", "kernel_init"): ("gaussian", "he_normal"),
    ("model", "norm"): ("none", "batch"),
    ("loss", "kind"): ("focal_l2", "l2"),
    ("train", "optimizer"): ("adam", "sgd"),
    ("train", "strategy"): ("auto", "one", "mirrored", "multiworker"),
    ("train", "precision"): ("float32", "mixed_float16", "mixed_bfloat16"),
    ("topdown", "attention"): ("none", "holistic", "holistic+partwise"),
    ("topdown", "attention_kernel"): ("crf", "softmax"),
    ("inference", "grouping"): ("improved", "published"),
    ("inference", "person_score"): ("mean", "shared"),
    ("topdown", "backbone"): ("resnet50", "tiny"),
}


def _validate(cfg: Config) -> None:
    for (section, key), choices in _CHOICES.items():
        value = getattr(getattr(cfg, section), key)
        if value not in choices:
            raise ConfigError(f"{section}.{key}={value!r}: expected one of {', '.join(choices)}")
    if cfg.data.skeleton not in SKELETONS:
        raise ConfigError(f"data.skeleton={cfg.data.skeleton!r}: expected one of {', '.join(SKELETONS)}")
    d = cfg.data
    if d.stride < 1 or d.input_size <= 0 or d.input_size % d.stride:
        raise ConfigError(f"data.input_size={d.input_size} must be a positive multiple of data.stride={d.stride}")
    if cfg.model.num_stages < 1:
        raise ConfigError("model.num_stages must be >= 1")
    a = cfg.augment
    if not 0 < a.scale_min <= a.scale_max:
        raise ConfigError(f"augment.scale_min={a.scale_min} and scale_max={a.scale_max}: need 0 < min <= max")
    if a.image_height < 0:
        raise ConfigError(f"augment.image_height={a.image_height}: need >= 0 (0: scale by the main person)")
    for name in ("scale_prob", "flip_prob", "tint_prob"):
        if not 0.0 <= getattr(a, name) <= 1.0:
            raise ConfigError(f"augment.{name}={getattr(a, name)}: must be a probability in [0, 1]")
    if cfg.train.batch_size < 1 or cfg.train.epochs < 0 or cfg.train.steps_per_epoch < 0:
        raise ConfigError("train.batch_size must be >= 1, train.epochs and train.steps_per_epoch >= 0")
    if not cfg.inference.scales or min(cfg.inference.scales) <= 0:
        raise ConfigError(f"inference.scales={cfg.inference.scales}: need one or more positive scales")
    if cfg.inference.fragment_reach < 0:
        raise ConfigError(f"inference.fragment_reach={cfg.inference.fragment_reach}: must be >= 0 (0 = off)")
    from simplepose.methods import method_for_architecture  # the methods know what their models produce

    try:
        method = method_for_architecture(cfg.model.architecture)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    method.check_config(cfg)
