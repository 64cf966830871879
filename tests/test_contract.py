"""The head contract: a trained model carries what it needs to be used, for both methods (design decision 11)."""
import json
import logging
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from simplepose import jobs
from simplepose.config import load_config
from simplepose.errors import ConfigError, ModelFileError
from simplepose.headmeta import FORMAT_VERSION, HeadMeta
from simplepose.methods import build_model, get_method, method_for_config
from simplepose.predictor import Predictor, load_predictor
from simplepose.skeleton import SKELETONS, Skeleton, register_skeleton

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOPDOWN = os.path.join(REPO, "configs", "topdown_tiny.yaml")


def _poses(predictor, image, boxes=None):
    return [(round(p.score, 6), np.round(p.keypoints, 3).tolist()) for p in predictor.predict(image, boxes)]


@pytest.mark.parametrize("name", ["bottomup", "topdown"])
def test_a_model_moved_alone_predicts_and_scores_as_in_its_run_folder(runs, name, synthetic_coco, tmp_path):
    cfg, run = runs[name]
    alone = tmp_path / "alone" / "renamed.keras"
    alone.parent.mkdir()
    shutil.copy(run / "model.keras", alone)
    in_run, moved = load_predictor(run / "model.keras"), load_predictor(alone)
    assert moved.meta == in_run.meta == method_for_config(cfg).head_meta(cfg)
    assert moved.meta.method == name and get_method(name) is method_for_config(cfg)
    params = moved.params
    for section, values in moved.meta.settings.items():
        for key, value in values.items():  # the run's own inference settings, not the defaults
            assert getattr(getattr(cfg, section), key) == (tuple(value) if isinstance(value, list) else value)
            assert getattr(params, key) == getattr(getattr(cfg, section), key)
    image = synthetic_coco_image(synthetic_coco)
    assert _poses(moved, image) == _poses(in_run, image)
    kwargs = dict(ann_file=synthetic_coco.ann_file, image_dir=synthetic_coco.image_dir, progress=False)
    a = jobs.evaluate_model(run / "model.keras", out_dir=tmp_path / "a", **kwargs)
    b = jobs.evaluate_model(alone, out_dir=tmp_path / "b", **kwargs)
    assert (tmp_path / "a" / "results.json").read_text() == (tmp_path / "b" / "results.json").read_text()
    assert {k: a[k] for k in ("AP", "AR", "results")} == {k: b[k] for k in ("AP", "AR", "results")}
    assert a["results"] > 0


def synthetic_coco_image(data):
    from simplepose.data.codecs import read_image

    return read_image(sorted(data.image_dir.iterdir())[1])


def test_flags_and_set_override_inference_settings_only(runs, tmp_path):
    cfg, run = runs["bottomup"]
    path = run / "model.keras"
    p = load_predictor(path, overrides=["inference.box_size=96"], scales=[1.0], flip=False)
    assert (p.params.box_size, p.params.scales, p.params.flip) == (96, (1.0,), False)
    assert p.params.grouping == "published"  # the rest stays the run's
    with pytest.raises(ConfigError, match="data.skeleton='coco18_limbs24', but the model was trained with"):
        load_predictor(path, overrides=["data.skeleton=coco18_limbs24"])
    with pytest.raises(ConfigError, match="data.stride=4"):
        load_predictor(path, overrides=["data.stride=4"])
    # A config file replaces the model's inference settings; what the model fixes must agree.
    other = tmp_path / "other.yaml"
    load_config(None, ["data.skeleton=coco18_limbs40", "inference.box_size=200"]).to_yaml(other)
    assert load_predictor(path, config=other).params.box_size == 200
    load_config(None, ["data.skeleton=coco18_limbs24"]).to_yaml(other)
    with pytest.raises(ConfigError, match="other.yaml: data.skeleton"):
        load_predictor(path, config=other)
    td_cfg, td_run = runs["topdown"]
    td = load_predictor(td_run / "model.keras", flip=True, overrides=["topdown.oks_nms_threshold=0.7"])
    assert (td.params.flip_test, td.params.oks_nms_threshold, td.params.box_scale) == (True, 0.7, 1.4)
    with pytest.raises(ConfigError, match="--scales"):
        load_predictor(td_run / "model.keras", scales=[1.0, 2.0])
    with pytest.raises(ConfigError, match="topdown.input_shape"):
        load_predictor(td_run / "model.keras", overrides=["topdown.input_shape=[64, 64]"])


def test_models_saved_without_a_contract_use_their_runs_config_once(runs, tmp_path, caplog):
    """Runs written before the contract existed keep loading: their config.yaml is read, with a log line."""
    cfg, run = runs["bottomup"]
    model = build_model(cfg)
    model.head_meta = None  # what simplepose 0.1 saved
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    model.save(legacy / "model.keras")
    with pytest.raises(ModelFileError, match="no head contract .* no config.yaml lies beside it"):
        load_predictor(legacy / "model.keras")
    shutil.copy(run / "config.yaml", legacy / "config.yaml")
    with caplog.at_level(logging.WARNING):
        predictor = load_predictor(legacy / "model.keras")
    assert "carries no head contract" in caplog.text and "config.yaml" in caplog.text
    assert predictor.meta == method_for_config(cfg).head_meta(cfg)
    assert predictor.params.box_size == 160


def test_contract_round_trips_and_refuses_what_it_cannot_read(runs):
    for name in ("bottomup", "topdown"):
        meta = load_predictor(runs[name][1] / "model.keras").meta
        assert HeadMeta.from_json(meta.to_json()) == meta == HeadMeta.from_dict(json.loads(json.dumps(meta.to_dict())))
    data = meta.to_dict()
    with pytest.raises(ValueError, match="upgrade simplepose"):
        HeadMeta.from_dict(dict(data, version=FORMAT_VERSION + 1))
    with pytest.raises(ValueError, match="malformed head contract"):
        HeadMeta.from_dict({k: v for k, v in data.items() if k != "stride"})
    with pytest.raises(ValueError, match="unknown preprocessing"):
        HeadMeta.from_dict(dict(data, preprocessing="rgb_0_1"))


def test_every_skeleton_round_trips_and_names_mean_one_layout():
    for skeleton in list(SKELETONS.values()):
        assert Skeleton.from_dict(json.loads(json.dumps(skeleton.to_dict()))) == skeleton
        assert register_skeleton(Skeleton.from_dict(skeleton.to_dict())) is skeleton
    fewer = Skeleton("coco17", SKELETONS["coco17"].keypoints, SKELETONS["coco17"].limbs[:4])
    with pytest.raises(ValueError, match="already registered"):
        register_skeleton(fewer)


CUSTOM = """
import sys
import numpy as np
from simplepose.predictor import load_predictor
from simplepose.skeleton import SKELETONS
assert "coco17_arms" not in SKELETONS
predictor = load_predictor(sys.argv[1])
assert predictor.skeleton.name == "coco17_arms" and predictor.skeleton.num_limbs == 4
print(len(predictor.predict(np.zeros((64, 48, 3), np.uint8))), "OK")
"""


def test_a_custom_skeleton_survives_in_a_process_that_never_registered_it(synthetic_coco, tmp_path):
    from simplepose.skeleton import COCO_KEYPOINTS

    arms = Skeleton("coco17_arms", COCO_KEYPOINTS, ((5, 7), (7, 9), (6, 8), (8, 10)))
    register_skeleton(arms)
    try:
        cfg = load_config(TOPDOWN, ["data.skeleton=coco17_arms"])
        build_model(cfg).save(tmp_path / "arms.keras")
    finally:
        del SKELETONS["coco17_arms"]
    done = subprocess.run([sys.executable, "-c", CUSTOM, str(tmp_path / "arms.keras")], capture_output=True,
                          text=True, timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert done.returncode == 0 and done.stdout.strip().endswith("OK"), done.stderr[-2000:]


def test_predictor_from_an_in_memory_model_and_bad_files(runs, tmp_path):
    cfg, _ = runs["topdown"]
    predictor = Predictor.from_model(build_model(cfg))
    assert predictor.meta.method == "topdown" and predictor.params.box_scale == 1.4
    text = tmp_path / "text.keras"
    text.write_text("not a model")
    empty = tmp_path / "empty.keras"
    empty.write_bytes(b"")
    for path, message in ((tmp_path / "none.keras", "model file not found"), (text, "this one starts with b.not a mo"),
                          (empty, "the file is empty")):
        with pytest.raises(ModelFileError, match=message):
            load_predictor(path)
