"""Export to SavedModel, ONNX and LiteRT: parity with Keras, the contract inside, no TensorFlow needed to run."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from simplepose import jobs
from simplepose.commands import export as export_cli
from simplepose.errors import ConfigError, ModelFileError
from simplepose.export import ExportError, export_model, inference_model
from simplepose.models.loading import load_model
from simplepose.predictor import load_predictor
from simplepose.runtime import CONTRACT_KEY, open_model

pytest.importorskip("onnxruntime")
pytest.importorskip("ai_edge_litert")
pytest.importorskip("tf2onnx")
pytest.importorskip("openvino")

FILES = {"saved_model": "model_sm", "onnx": "model.onnx", "litert": "model.tflite", "openvino": "model.xml"}


@pytest.fixture(scope="module")
def exported(runs, tmp_path_factory):
    """Every trained tiny run exported to every format: ``{(method, format): path}``."""
    root = tmp_path_factory.mktemp("exported")
    out = {}
    for name, (_, run) in runs.items():
        for fmt, file in FILES.items():
            out[name, fmt] = root / f"{name}_{file}"
            result = export_model(run / "model.keras", fmt, out[name, fmt])
            assert result.bytes > 0 and os.path.exists(result.path)
    return out


def _images(name):
    """Synthetic test images (smooth noise: textured, so the maps are not constant): two sizes for bottom-up
    models, two crops of the model's crop size for top-down ones."""
    import cv2

    rng = np.random.default_rng(3)
    sizes = ((120, 200), (97, 131)) if name == "bottomup" else ((128, 96), (128, 96))
    return [cv2.resize(rng.integers(0, 256, (h // 8, w // 8, 3), dtype=np.uint8), (w, h)) for h, w in sizes]


@pytest.mark.parametrize("fmt", list(FILES))
@pytest.mark.parametrize("name", ["bottomup", "topdown"])
def test_exported_maps_equal_the_keras_maps(runs, exported, name, fmt):
    model = load_model(runs[name][1] / "model.keras")
    runner, meta = open_model(exported[name, fmt])
    assert runner.format == fmt and meta == model.head_meta
    flat = inference_model(model, meta)
    first, second = _images(name)
    for batch in (first[None, :first.shape[0] // 8 * 8, :first.shape[1] // 8 * 8],
                  np.stack([second[:second.shape[0] // 8 * 8, :second.shape[1] // 8 * 8]] * 3)):
        want = flat.predict(batch, verbose=0)
        got = runner(batch)
        for key, value in want.items():
            scale = max(float(np.ptp(value)), 1e-6)
            assert np.abs(np.asarray(got[key]) - value).max() <= 1e-4 * scale, (key, fmt)


@pytest.mark.parametrize("fmt", list(FILES))
@pytest.mark.parametrize("name", ["bottomup", "topdown"])
def test_exported_models_give_the_same_poses(runs, exported, synthetic_coco, name, fmt):
    keras_predictor, predictor = load_predictor(runs[name][1] / "model.keras"), load_predictor(exported[name, fmt])
    assert predictor.meta == keras_predictor.meta and predictor.params == keras_predictor.params
    from simplepose.data.codecs import read_image

    images = [read_image(p) for p in sorted(synthetic_coco.image_dir.iterdir())[:3]] + _images(name)
    found = 0
    for image in images:
        a, b = keras_predictor.predict(image), predictor.predict(image)
        assert len(a) == len(b)
        for pa, pb in zip(a, b):
            np.testing.assert_allclose(pa.keypoints[:, :2], pb.keypoints[:, :2], atol=0.5)
            assert pa.score == pytest.approx(pb.score, abs=1e-3)
        found += len(a)
    assert found > 0


def test_exported_models_run_in_the_scripts(runs, exported, synthetic_coco, tmp_path):
    kwargs = dict(ann_file=synthetic_coco.ann_file, image_dir=synthetic_coco.image_dir, progress=False)
    for name in ("bottomup", "topdown"):
        keras = jobs.evaluate_model(runs[name][1] / "model.keras", **kwargs)
        onnx = jobs.evaluate_model(exported[name, "onnx"], **kwargs)
        assert onnx["AP"] == pytest.approx(keras["AP"], abs=1e-3) and onnx["results"] == keras["results"]
    found = jobs.draw_image(exported["bottomup", "litert"], sorted(synthetic_coco.image_dir.iterdir())[1],
                            tmp_path / "demo.png", json_path=tmp_path / "demo.json")
    assert (tmp_path / "demo.png").is_file() and json.loads((tmp_path / "demo.json").read_text()) == {
        k: found[k] for k in ("image", "width", "height", "poses")}


NO_TENSORFLOW = r"""
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("tensorflow", "keras", "tf2onnx", "jax", "torch"):
            raise ImportError(f"{name} is blocked in this test")
sys.meta_path.insert(0, Block())
import numpy as np
from simplepose import jobs
from simplepose.predictor import load_predictor
for path in sys.argv[3:]:
    predictor = load_predictor(path)
    poses = predictor.predict(np.full((90, 120, 3), 100, np.uint8))
    metrics = jobs.evaluate_model(path, sys.argv[1], sys.argv[2], progress=False)
    print(path.rsplit(".", 1)[1], predictor.meta.method, len(poses), metrics["results"])
assert not [m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras")]
print("NO-TF-OK")
"""


def test_onnx_and_litert_run_without_tensorflow_or_keras(exported, synthetic_coco):
    paths = [str(exported[name, fmt]) for name in ("bottomup", "topdown") for fmt in ("onnx", "litert", "openvino")]
    done = subprocess.run([sys.executable, "-c", NO_TENSORFLOW, str(synthetic_coco.ann_file),
                           str(synthetic_coco.image_dir), *paths], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and "NO-TF-OK" in done.stdout, done.stderr[-3000:]
    assert len(done.stdout.strip().splitlines()) == 7


def test_a_missing_runtime_is_one_line_naming_the_extra(exported, monkeypatch):
    for module, fmt, extra in (("onnxruntime", "onnx", "onnx"), ("ai_edge_litert", "litert", "litert"),
                               ("openvino", "openvino", "openvino")):
        monkeypatch.setitem(sys.modules, module, None)  # import fails as if not installed
        with pytest.raises(ModelFileError, match=rf"needs {module}, which is not installed .*simplepose\[{extra}\]"):
            load_predictor(exported["bottomup", fmt])


def test_artifacts_without_a_contract_need_a_config(runs, exported, tmp_path):
    import onnx

    bare = onnx.load(exported["bottomup", "onnx"])
    del bare.metadata_props[:]
    onnx.save(bare, tmp_path / "bare.onnx")
    with pytest.raises(ModelFileError, match="carries no head contract .* pass --config"):
        load_predictor(tmp_path / "bare.onnx")
    (tmp_path / "config.yaml").write_text((runs["bottomup"][1] / "config.yaml").read_text())
    assert load_predictor(tmp_path / "bare.onnx").meta.method == "bottomup"  # the run's config beside it


def test_export_errors_are_one_line_and_leave_nothing(runs, tmp_path, capsys, monkeypatch):
    weights = str(runs["bottomup"][1] / "model.keras")
    cases = [(["--format", "onnx", "--out", str(tmp_path / "no" / "m.onnx")], "does not exist"),
             (["--format", "saved_model", "--precision", "int8", "--out", str(tmp_path / "x")], "float32, not 'int8'"),
             (["--format", "onnx", "--precision", "int8", "--out", str(tmp_path / "q.onnx")], "--calibration DIR"),
             (["--format", "onnx", "--precision", "int8", "--calibration", str(tmp_path), "--out",
               str(tmp_path / "q.onnx")], "no .jpg, .png or .bmp images")]
    for extra, message in cases:
        capsys.readouterr()
        assert export_cli.main(["--weights", weights, *extra]) == 2, extra
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and message in err, err
    with pytest.raises(SystemExit):
        export_cli.main(["--weights", weights, "--format", "torchscript", "--out", str(tmp_path / "m.pt")])
    err = capsys.readouterr().err
    assert "invalid choice: 'torchscript'" in err
    assert all(f in err for f in ("saved_model", "onnx", "litert", "openvino"))
    (tmp_path / "m.pt").write_text("not a model")
    with pytest.raises(ModelFileError, match="unknown model format; expected a .keras, .onnx, .tflite or OpenVINO"):
        load_predictor(tmp_path / "m.pt")

    def broken(*args, **kwargs):
        raise ValueError("Conv2D layer 'stage1_limbs_a1': unsupported op")

    import keras

    monkeypatch.setattr(keras.Model, "export", broken)
    with pytest.raises(ExportError, match="export to litert failed: ValueError: Conv2D layer 'stage1_limbs_a1'"):
        export_model(weights, "litert", tmp_path / "m.tflite")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]  # no partial file, no temporary folder


def test_reexport_replaces_the_artifact_whole(runs, tmp_path):
    weights = runs["topdown"][1] / "model.keras"
    out = tmp_path / "sm"
    export_model(weights, "saved_model", out)
    (out / "stale.txt").write_text("from an older export")
    export_model(weights, "saved_model", out)
    assert not (out / "stale.txt").exists() and (out / "saved_model.pb").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sm"]
    with pytest.raises(ConfigError, match="a folder is in the way"):
        export_model(weights, "onnx", out)


@pytest.mark.slow
@pytest.mark.parametrize("fmt, precision", [("litert", "float16"), ("litert", "int8"), ("onnx", "int8"),
                                            ("openvino", "bfloat16")])
def test_reduced_precision_exports_stay_close(runs, synthetic_coco, tmp_path, fmt, precision):
    """Reduced precision changes the maps a little (bounds measured on the tiny trained model)."""
    from simplepose.export import calibration_batches

    weights = runs["bottomup"][1] / "model.keras"
    calibration = None
    if fmt == "onnx":
        calibration = calibration_batches(weights, sorted(synthetic_coco.image_dir.iterdir()), limit=8)
        assert all(b.dtype == np.uint8 and b.shape[0] == 1 for b in calibration)
    out = tmp_path / f"m{ {'onnx': '.onnx', 'litert': '.tflite', 'openvino': '.xml'}[fmt]}"
    result = export_model(weights, fmt, out, precision=precision, calibration=calibration)
    full = export_model(weights, fmt, tmp_path / f"full{out.suffix}")
    assert result.bytes < full.bytes or precision == "bfloat16"  # bfloat16 is arithmetic, not storage
    runner, meta = open_model(out)
    assert meta.to_json() == load_model(weights).head_meta.to_json()
    reference, _ = open_model(tmp_path / f"full{out.suffix}")
    batch = _images("bottomup")[0][None, :120, :200]
    for key, value in reference(batch).items():
        error = np.abs(np.asarray(runner(batch)[key]) - value).max() / max(float(np.ptp(value)), 1e-6)
        assert error < 0.1, (key, error)


def test_dilated_convolutions_export_as_single_onnx_convs(exported):
    """TensorFlow's space-to-batch form of a dilated conv would add ~60 shape ops per conv to the ONNX graph."""
    import onnx

    graph = onnx.load(exported["bottomup", "onnx"]).graph
    ops = {node.op_type for node in graph.node}
    dilated = [n for n in graph.node if n.op_type == "Conv"
               and any(a.name == "dilations" and max(a.ints) > 1 for a in n.attribute)]
    assert dilated and not ops & {"SpaceToDepth", "DepthToSpace", "SpaceToBatchND"}, sorted(ops)
    assert all(a.name != "auto_pad" or a.s in (b"NOTSET", b"VALID") for n in dilated for a in n.attribute)


def test_contract_key_is_in_the_onnx_metadata(exported):
    import onnx

    props = {p.key: p.value for p in onnx.load(exported["topdown", "onnx"]).metadata_props}
    assert json.loads(props[CONTRACT_KEY])["method"] == "topdown"
