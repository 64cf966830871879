"""demo_image.py: any readable image works (gray, RGBA, 16-bit, EXIF-rotated, large); bad input is one line, exit 2."""
import importlib.util
import json
import pathlib
import struct
import subprocess
import sys

import cv2
import numpy as np
import pytest

from simplepose.skeleton import get_skeleton

REPO = pathlib.Path(__file__).resolve().parents[1]
SKELETON = "coco18_limbs40"


def load_demo():
    spec = importlib.util.spec_from_file_location("demo_image", REPO / "demo_image.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    """A tiny bottom-up model built from a config, carrying its head contract, saved as .keras."""
    from simplepose.config import load_config
    from simplepose.methods import build_model

    cfg = load_config(REPO / "configs" / "bottomup_tiny.yaml", [
        f"data.skeleton={SKELETON}", "model.num_stages=1", "loss.stage_weights=[1]", "inference.peak_threshold=0.05"])
    path = tmp_path_factory.mktemp("model") / "tiny.keras"
    build_model(cfg).save(path)
    return path


@pytest.fixture(scope="module")
def legacy_model_file(tmp_path_factory):
    """A functional model with the bottom-up output structure and no head contract, its config.yaml beside it."""
    import keras

    from simplepose.config import load_config

    skeleton = get_skeleton(SKELETON)
    keras.utils.set_random_seed(0)
    x = keras.Input((None, None, 3))
    y = keras.layers.AveragePooling2D(8)(keras.layers.Rescaling(1 / 255.0)(x))
    heat = keras.layers.Conv2D(skeleton.num_keypoint_channels, 3, padding="same", activation="sigmoid")(y)
    limbs = keras.layers.Conv2D(skeleton.num_limbs, 3, padding="same", activation="sigmoid")(y)
    folder = tmp_path_factory.mktemp("legacy")
    keras.Model(x, {"stage_1": {"keypoints": heat, "limbs": limbs}}).save(folder / "model.keras")
    load_config(None, [f"data.skeleton={SKELETON}"]).to_yaml(folder / "config.yaml")
    return folder / "model.keras"


def exif_rotated_jpeg(path, h, w):
    """A JPEG of h x w pixels whose EXIF orientation (6) says: rotate 90 degrees clockwise to display."""
    ok, data = cv2.imencode(".jpg", np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8))
    tiff = b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", 1) + struct.pack("<HHIHH", 0x0112, 3, 1, 6, 0) \
        + struct.pack("<I", 0)
    app1 = b"Exif\x00\x00" + tiff
    data = data.tobytes()
    path.write_bytes(data[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + data[2:])


def make_images(tmp_path):
    rng = np.random.default_rng(1)
    images = {"gray.png": rng.integers(0, 255, (120, 90), dtype=np.uint8),
              "rgba.png": rng.integers(0, 255, (100, 140, 4), dtype=np.uint8),
              "deep.png": rng.integers(0, 65535, (90, 120, 3), dtype=np.uint16),
              "large.jpg": cv2.resize(rng.integers(0, 255, (30, 40, 3), dtype=np.uint8), (4000, 3000))}
    for name, image in images.items():
        assert cv2.imwrite(str(tmp_path / name), image)
    exif_rotated_jpeg(tmp_path / "rotated.jpg", 40, 100)
    return {"gray.png": (120, 90), "rgba.png": (100, 140), "deep.png": (90, 120), "large.jpg": (3000, 4000),
            "rotated.jpg": (100, 40)}


def test_demo_reads_every_kind_of_image(model_file, tmp_path, capsys):
    demo = load_demo()
    for name, (h, w) in make_images(tmp_path).items():
        out, js = tmp_path / f"{name}.out.png", tmp_path / f"{name}.json"
        code = demo.main(["--weights", str(model_file), "--image", str(tmp_path / name), "--out", str(out),
                          "--json", str(js), "--log-level", "WARNING"])
        assert code == 0, capsys.readouterr().err
        drawn = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
        assert drawn.shape == (h, w, 3), name
        meta = json.loads(js.read_text())
        assert (meta["height"], meta["width"]) == (h, w)
        for pose in meta["poses"]:
            assert set(pose["keypoints"]) <= set(get_skeleton(SKELETON).keypoints)
            assert all(-1 <= x <= w and -1 <= y <= h for x, y, _ in pose["keypoints"].values())


def test_demo_bad_inputs_are_one_line(model_file, legacy_model_file, tmp_path, capsys):
    demo = load_demo()
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not really a jpeg")
    cases = [(["--image", str(broken)], "not a readable image"),
             (["--image", str(tmp_path / "nope.png")], "image not found")]
    good = tmp_path / "ok.png"
    cv2.imwrite(str(good), np.zeros((20, 20, 3), np.uint8))
    cases.append((["--image", str(good), "--weights", str(tmp_path / "none.keras")], "model file not found"))
    cases.append((["--image", str(good), "--set", "data.skeleton=coco18_limbs24"],
                  "data.skeleton='coco18_limbs24', but the model was trained with 'coco18_limbs40'"))
    cases.append((["--image", str(good), "--box", "1", "2", "3", "4"], "--box) are for top-down models"))
    cases.append((["--image", str(good), "--json", str(tmp_path / "nowhere" / "x.json")], "does not exist"))
    cases.append((["--image", str(good), "--weights", str(legacy_model_file), "--set", "data.skeleton=coco18_limbs24"],
                  "40 limb channels but skeleton"))
    for extra, message in cases:
        argv = ["--weights", str(model_file), *extra, "--out", str(tmp_path / "x.png")]
        capsys.readouterr()
        assert demo.main(argv) == 2, extra
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and message in err, err
    assert not (tmp_path / "x.png").exists()


def test_demo_help():
    done = subprocess.run([sys.executable, str(REPO / "demo_image.py"), "--help"], capture_output=True, text=True,
                          cwd=REPO, timeout=120)
    assert done.returncode == 0 and "--weights" in done.stdout and "--json" in done.stdout
