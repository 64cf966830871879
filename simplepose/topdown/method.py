"""The top-down method: person crops from COCO json + images, TopDownNet, per-box prediction, boxes, oracle."""
from __future__ import annotations

import os

from simplepose.errors import ConfigError, DataError, ModelFileError, TrainingError
from simplepose.headmeta import HeadMeta
from simplepose.methods import Method, OpenedData, pipeline_workers

#: Output stride of both top-down backbones (ResNet-50 C5 and the tiny trunk); each deconvolution halves it.
BACKBONE_STRIDE = 32


def heatmap_stride(num_deconv: int) -> int:
    """Crop pixels per heatmap cell: the backbone stride halved by each deconvolution (4 for three)."""
    if not 1 <= num_deconv <= 5:
        raise ConfigError(f"topdown.num_deconv={num_deconv}: expected 1..5 (backbone stride {BACKBONE_STRIDE})")
    return BACKBONE_STRIDE // 2 ** num_deconv


class TopDown(Method):
    """Simple Baselines + attention (topdown-attention-spec.md): one crop per person box, one heatmap per keypoint."""

    name = "topdown"
    architectures = ("topdown",)
    takes_boxes = True
    contract_keys = Method.contract_keys + (("topdown", "input_shape"), ("topdown", "num_deconv"))
    settings_keys = {"topdown": ("box_scale", "flip_test", "flip_shift", "rescore_threshold", "oks_nms_threshold")}

    # === Configuration ===
    def check_config(self, cfg) -> None:
        td = cfg.topdown
        stride = heatmap_stride(td.num_deconv)
        if cfg.data.stride != stride:
            raise ConfigError(f"data.stride={cfg.data.stride}: a top-down model with topdown.num_deconv="
                              f"{td.num_deconv} outputs heatmaps at stride {stride}")
        if len(td.input_shape) != 2 or any(v <= 0 or v % BACKBONE_STRIDE for v in td.input_shape):
            raise ConfigError(f"topdown.input_shape={list(td.input_shape)}: need [height, width], both positive "
                              f"multiples of {BACKBONE_STRIDE}")
        if len(td.tiny_widths) != 5 or any(int(w) < 1 for w in td.tiny_widths):
            raise ConfigError(f"topdown.tiny_widths={list(td.tiny_widths)}: need 5 positive channel counts (one "
                              f"per stride-2 layer of the tiny trunk, stride {BACKBONE_STRIDE})")

    def head_meta(self, cfg) -> HeadMeta:
        k = cfg.skeleton.num_keypoints
        return HeadMeta(method=self.name, architecture=cfg.model.architecture, skeleton=cfg.skeleton,
                        stride=cfg.data.stride, input_multiple=BACKBONE_STRIDE,
                        input_size=tuple(cfg.topdown.input_shape), outputs=(("heatmaps", k),), output_key=None,
                        settings=self.settings(cfg))

    def contract_tree(self, meta) -> dict:
        num_deconv = (BACKBONE_STRIDE // meta.stride).bit_length() - 1
        return {"data": {"skeleton": meta.skeleton.name, "stride": meta.stride},
                "model": {"architecture": meta.architecture},
                "topdown": {"input_shape": list(meta.input_size), "num_deconv": num_deconv}}

    def tta_overrides(self, scales=None, flip=None) -> list:
        if scales:
            raise ConfigError("--scales: a top-down model crops each person box at one scale; test scales are for "
                              "bottom-up models")
        return [] if flip is None else [f"topdown.flip_test={'true' if flip else 'false'}"]

    # === Training ===
    def open_data(self, cfg, path, images=None, *, training: bool):
        from simplepose.topdown.data import samples_from_config

        path = os.fspath(path)
        if path.lower().endswith((".h5", ".hdf5")):
            raise TrainingError(f"{path}: top-down training reads a COCO keypoint JSON and its image folder, "
                                "not an HDF5 file")
        if not os.path.isfile(path):
            raise TrainingError(f"{path}: annotation file not found")
        if images is None or not os.path.isdir(images):
            raise TrainingError(f"{path}: top-down training needs the image folder of this annotation file"
                                + (f" ({images} is not a folder)" if images is not None else ""))
        try:
            samples = samples_from_config(cfg, path, images, training=training)
        except DataError as e:
            raise TrainingError(str(e)) from None
        if len(samples) < (cfg.train.batch_size if training else 1):
            raise TrainingError(f"{path}: {len(samples)} usable person instance(s), fewer than "
                                + (f"one batch of {cfg.train.batch_size}" if training else "one"))
        return OpenedData(samples, len(samples))

    def make_dataset(self, data, cfg, *, train: bool, global_batch: int, seed: int):
        import keras

        from simplepose.topdown.data import build_topdown_dataset, topdown_py_dataset

        kwargs = dict(training=train, seed=seed, group_by_image=cfg.data.group_by_image)
        if keras.backend.backend() == "tensorflow":
            return build_topdown_dataset(data.source, global_batch, num_workers=cfg.data.workers,
                                         prefetch=cfg.data.prefetch, **kwargs)
        return topdown_py_dataset(data.source, global_batch, workers=pipeline_workers(cfg),
                                  max_queue_size=max(1, cfg.data.prefetch), **kwargs)

    def build_model(self, cfg, *, load_weights: bool = True):
        from simplepose.models.topdown_net import build_topdown_network

        td = cfg.topdown
        return build_topdown_network(
            num_keypoints=cfg.skeleton.num_keypoints, input_shape=tuple(td.input_shape), backbone=td.backbone,
            backbone_weights=cfg.model.backbone_weights if load_weights else "none", num_deconv=td.num_deconv,
            deconv_filters=td.deconv_filters, attention=td.attention, attention_kernel=td.attention_kernel,
            crf_iterations=td.crf_iterations, crf_kernel_size=td.crf_kernel_size, weight_decay=td.weight_decay,
            tiny_widths=td.tiny_widths, head_meta=self.head_meta(cfg))

    def loss_and_optimizer(self, cfg, steps_per_epoch: int) -> tuple:
        from simplepose.losses import VisibilityWeightedMSE
        from simplepose.optimizers import build_topdown_optimizer

        td = cfg.topdown
        optimizer = build_topdown_optimizer(cfg.train.learning_rate, steps_per_epoch, td.lr_decay_epochs,
                                            td.lr_decay_factor)
        return {"heatmaps": VisibilityWeightedMSE()}, optimizer

    # === Inference and evaluation ===
    def make_predictor(self, model, meta, cfg):
        from simplepose.topdown.predictor import TopDownPredictor

        return TopDownPredictor(model, meta.skeleton, stride=meta.stride, params=cfg.topdown, meta=meta)

    def check_model(self, model, meta) -> None:
        try:
            shape = tuple(model.output["heatmaps"].shape)
        except (AttributeError, KeyError, TypeError, ValueError):
            return
        want = (meta.input_size[0] // meta.stride, meta.input_size[1] // meta.stride, meta.channels("heatmaps"))
        if shape[1:] != want:
            raise ModelFileError(f"model outputs heatmaps of shape {shape[1:]} but its contract says {want} "
                                 f"(skeleton {meta.skeleton.name!r}, crops {meta.input_size}, stride {meta.stride})")

    def evaluate(self, predictor, ann_file, image_dir, *, boxes_file=None, limit=None, out_dir=None,
                 progress: bool = False) -> dict:
        from simplepose.data.coco import load_coco
        from simplepose.evaluation import evaluate_predictor
        from simplepose.topdown.boxes import detection_boxes, ground_truth_boxes

        coco, dropped = load_coco(ann_file), {}
        boxes = ground_truth_boxes(coco) if boxes_file is None else detection_boxes(coco, boxes_file, dropped)
        return evaluate_predictor(predictor, coco, image_dir, boxes=boxes, limit=limit, out_dir=out_dir,
                                  progress=progress,
                                  extra={"box_source": "ground truth" if boxes_file is None else os.fspath(boxes_file),
                                         **({"boxes_dropped": dropped} if boxes_file is not None else {})})

    def oracle_evaluate(self, ann_file, cfg, *, out_dir=None, limit=None, progress: bool = False) -> dict:
        from simplepose.topdown.oracle import oracle_evaluate

        return oracle_evaluate(ann_file, cfg, out_dir=out_dir, limit=limit, progress=progress)
