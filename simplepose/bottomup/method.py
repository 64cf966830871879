"""The bottom-up method: HDF5 data, SimplePoseNet with the focal L2 loss, multi-scale + flip prediction, oracle."""
from __future__ import annotations

import os

from simplepose.errors import ConfigError, ModelFileError, TrainingError
from simplepose.headmeta import HeadMeta
from simplepose.methods import Method, OpenedData, pipeline_workers

#: Output stride of both bottom-up networks (the VGG19 trunk's three 2x2 poolings).
NETWORK_STRIDE = 8


class BottomUp(Method):
    """Simple Pose (spec sections 1-6): one network pass per scale finds every person's keypoints and limbs."""

    name = "bottomup"
    architectures = ("model3", "openpose")
    settings_keys = {"inference": None}

    # === Configuration ===
    def check_config(self, cfg) -> None:
        if cfg.data.stride != NETWORK_STRIDE:
            raise ConfigError(f"data.stride={cfg.data.stride}: model.architecture={cfg.model.architecture} "
                              f"outputs maps at stride {NETWORK_STRIDE}")
        if len(cfg.loss.stage_weights) != cfg.model.num_stages:
            raise ConfigError(f"loss.stage_weights has {len(cfg.loss.stage_weights)} entries but "
                              f"model.num_stages={cfg.model.num_stages}")
        if cfg.model.norm != "none" and cfg.model.backbone_weights != "none":
            raise ConfigError(f"model.norm={cfg.model.norm} has convs without biases, which VGG19 weights do not "
                              f"fit: set model.backbone_weights=none (got {cfg.model.backbone_weights!r})")

    def head_meta(self, cfg) -> HeadMeta:
        skeleton = cfg.skeleton
        return HeadMeta(method=self.name, architecture=cfg.model.architecture, skeleton=skeleton,
                        stride=cfg.data.stride, input_multiple=cfg.data.stride, input_size=None,
                        outputs=(("keypoints", skeleton.num_keypoint_channels), ("limbs", skeleton.num_limbs)),
                        output_key=f"stage_{cfg.model.num_stages}", settings=self.settings(cfg))

    def legacy_meta(self, model, cfg) -> HeadMeta:
        import dataclasses

        from simplepose.bottomup.predictor import last_stage_key

        meta = self.head_meta(cfg)
        try:  # the number of stages is a training setting a run's config may not match (e.g. --set at training)
            return dataclasses.replace(meta, output_key=last_stage_key(model.output))
        except (AttributeError, TypeError, ValueError):
            return meta

    def contract_tree(self, meta) -> dict:
        return {"data": {"skeleton": meta.skeleton.name, "stride": meta.stride},
                "model": {"architecture": meta.architecture}}

    def tta_overrides(self, scales=None, flip=None) -> list:
        extra = []
        if scales:
            extra.append(f"inference.scales=[{', '.join(map(str, scales))}]")
        if flip is not None:
            extra.append(f"inference.flip={'true' if flip else 'false'}")
        return extra

    # === Training ===
    def open_data(self, cfg, path, images=None, *, training: bool):
        path = os.fspath(path)
        if images is not None:
            raise TrainingError(f"{images}: an image folder is only read by top-down configs; bottom-up "
                                "training reads everything from its HDF5 file")
        if path.lower().endswith(".json"):
            raise TrainingError(f"{path}: bottom-up training reads an HDF5 file (training/coco_masks_hdf5.py); "
                                "COCO JSON files are read by top-down configs (model.architecture=topdown)")
        from simplepose.data.hdf5 import HDF5Reader

        try:
            num_samples = len(HDF5Reader(path))
        except (OSError, ValueError) as e:  # missing, foreign, old-schema or truncated files
            raise TrainingError(str(e).splitlines()[0]) from None
        if num_samples == 0:
            raise TrainingError(f"{path}: 0 samples (no image of its annotation file had a main person); "
                                "nothing to train on")
        return OpenedData(path, num_samples)

    def make_dataset(self, data, cfg, *, train: bool, global_batch: int, seed: int):
        import keras

        from simplepose.bottomup import pipeline

        if keras.backend.backend() == "tensorflow":
            return pipeline.build_dataset(data.source, cfg, train=train, global_batch_size=global_batch, seed=seed)
        return pipeline.build_py_dataset(data.source, cfg, train=train, batch_size=global_batch, seed=seed,
                                         workers=pipeline_workers(cfg), max_queue_size=max(1, cfg.data.prefetch))

    def build_model(self, cfg, *, load_weights: bool = True):
        from simplepose.models.simple_pose_net import SimplePoseNet
        from simplepose.models.vgg_backbone import load_backbone_weights

        m, skeleton = cfg.model, cfg.skeleton
        model = SimplePoseNet(
            num_limbs=skeleton.num_limbs, num_keypoint_channels=skeleton.num_keypoint_channels,
            num_stages=m.num_stages, architecture=m.architecture, width_multiplier=m.width_multiplier,
            backbone_width_multiplier=m.backbone_width_multiplier, weight_decay=cfg.loss.weight_decay,
            kernel_init=m.kernel_init, norm=m.norm, seed=cfg.train.seed, head_meta=self.head_meta(cfg).to_dict(),
            name=f"simplepose_{m.architecture}")
        if load_weights:
            load_backbone_weights(model, m.backbone_weights)
        return model

    def loss_and_optimizer(self, cfg, steps_per_epoch: int) -> tuple:
        from simplepose.losses import build_loss
        from simplepose.optimizers import build_optimizer

        return build_loss(cfg.loss), build_optimizer(cfg.train, steps_per_epoch)

    # === Inference and evaluation ===
    def make_predictor(self, model, meta, cfg):
        from simplepose.bottomup.predictor import BottomUpPredictor

        return BottomUpPredictor(model, meta.skeleton, stride=meta.stride, params=cfg.inference, meta=meta)

    def check_model(self, model, meta) -> None:
        from simplepose.bottomup.predictor import output_channels

        have = output_channels(model, meta.output_key)
        want = (meta.channels("keypoints"), meta.channels("limbs"))
        if have is not None and have != want:
            raise ModelFileError(f"model outputs {have[0]} keypoint and {have[1]} limb channels but skeleton "
                                 f"{meta.skeleton.name!r} has {want[0]} and {want[1]} (set data.skeleton to the "
                                 "model's)")

    def evaluate(self, predictor, ann_file, image_dir, *, boxes_file=None, limit=None, out_dir=None,
                 progress: bool = False) -> dict:
        from simplepose.evaluation import evaluate_predictor

        if boxes_file is not None:
            raise ConfigError("a bottom-up model finds people itself: person boxes (--boxes) are for top-down models")
        return evaluate_predictor(predictor, ann_file, image_dir, limit=limit, out_dir=out_dir, progress=progress)

    def oracle_evaluate(self, ann_file, cfg, *, out_dir=None, limit=None, progress: bool = False) -> dict:
        from simplepose.bottomup.oracle import oracle_evaluate

        return oracle_evaluate(ann_file, cfg, out_dir=out_dir, limit=limit, progress=progress)
