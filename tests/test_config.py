"""Config: defaults < YAML < --set, typed parsing, clear errors, round trips."""
import pathlib

import pytest
import yaml

from simplepose.config import Config, ConfigError, load_config

CONFIGS = sorted((pathlib.Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


def test_layers_override_in_order(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("train:\n  learning_rate: 0.5\n  batch_size: 4\ninference:\n  scales: [0.5, 1]\n")
    cfg = load_config(path, ["train.batch_size=8", "train.learning_rate=1e-3", "inference.flip=true"])
    assert cfg.train.batch_size == 8
    assert cfg.train.learning_rate == pytest.approx(1e-3)
    assert cfg.inference.scales == (0.5, 1.0)
    assert cfg.inference.flip is True
    assert cfg.model.num_stages == Config().model.num_stages


def test_yaml_round_trip(tmp_path):
    cfg = load_config(None, ["data.skeleton=coco18_limbs30", "loss.stage_weights=[1, 2, 3]"])
    path = tmp_path / "resolved.yaml"
    cfg.to_yaml(path)
    assert load_config(path) == cfg
    assert Config.from_dict(yaml.safe_load(cfg.to_yaml())) == cfg


@pytest.mark.parametrize("overrides, message", [
    (["train.lr=1"], "unknown key 'lr'"),
    (["nope.x=1"], "unknown section 'nope'"),
    (["train.batch_size"], "expected section.key=value"),
    (["train.batch_size=abc"], "expected int"),
    (["train.batch_size=2.5"], "expected int"),
    (["data.stride=4"], "model.architecture=model3 outputs maps at stride 8"),
    (["model.architecture=openpose", "data.stride=4"], "openpose outputs maps at stride 8"),
    (["model.architecture=topdown"], "data.stride=8: a top-down model with topdown.num_deconv=3 outputs heatmaps "
                                     "at stride 4"),
    (["model.architecture=topdown", "data.stride=4", "topdown.input_shape=[250, 192]"], "multiples of 32"),
    (["model.architecture=topdown", "data.stride=4", "topdown.num_deconv=7"], "expected 1..5"),
    (["model.architecture=nope"], "expected one of model3, openpose, topdown"),
    (["data.input_size=100"], "multiple of data.stride"),
    (["loss.stage_weights=[1, 1]"], "model.num_stages=3"),
    (["train.optimizer=rmsprop"], "expected one of adam, sgd"),
    (["augment.flip_prob=1.5"], "probability"),
    (["inference.scales=[]"], "positive scales"),
    (["data.skeleton=coco99"], "expected one of"),
    (["model.norm=group"], "expected one of none, batch"),
    (["model.norm=batch", "model.backbone_weights=imagenet"], "VGG19 weights do not fit"),
])
def test_bad_values_are_clear_errors(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, overrides)


def test_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("train:\n  epochz: 3\n")
    with pytest.raises(ConfigError, match=r"unknown.yaml.*'epochz'"):
        load_config(unknown)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_load(path):
    assert isinstance(load_config(path), Config)
