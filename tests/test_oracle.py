"""Oracle mode: ground-truth maps rendered by the training target code decode back to high AP."""
import json
import pathlib
import subprocess
import sys

import pytest

from simplepose.config import load_config
from simplepose.bottomup.oracle import oracle_evaluate

REPO = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = REPO / "testing" / "evaluation.py"


def test_oracle_on_synthetic_data(synthetic_coco, tmp_path):
    cfg = load_config(None, ["data.skeleton=coco18_limbs40"])
    metrics = oracle_evaluate(synthetic_coco.ann_file, cfg, out_dir=tmp_path)
    assert metrics["AP"] >= 0.95, metrics
    assert metrics["images"] == synthetic_coco.num_images
    assert len(metrics["decode_by_people"]) == synthetic_coco.num_images
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["AP"] == pytest.approx(metrics["AP"])
    results = json.loads((tmp_path / "results.json").read_text())
    assert results and all(len(r["keypoints"]) == 51 for r in results)


def test_published_settings_stay_reachable(synthetic_coco):
    published = load_config(None, ["data.skeleton=coco18_limbs24", "inference.grouping=published",
                                   "inference.peak_refine=false", "inference.min_keypoints=2",
                                   "inference.max_length_ratio=4", "inference.peak_split_margin=0"])
    improved = load_config(None, ["data.skeleton=coco18_limbs40"])
    ap_published = oracle_evaluate(synthetic_coco.ann_file, published)["AP"]
    ap_improved = oracle_evaluate(synthetic_coco.ann_file, improved)["AP"]
    assert 0.3 < ap_published < ap_improved


def test_oracle_reaches_target_on_coco_mini_val(coco_mini):
    ann = coco_mini / "annotations" / "person_keypoints_val2017.json"
    metrics = oracle_evaluate(ann, load_config(None, ["data.skeleton=coco18_limbs40"]))
    assert metrics["AP"] >= 0.98, metrics
    assert metrics["images"] == 79


def test_oracle_reaches_target_on_coco_mini_train(coco_mini):
    # crowded small people: keypoints of two people in neighbouring cells (split peaks) or in one cell
    # (fill-in shares the peak); without both, 0.933
    ann = coco_mini / "annotations" / "person_keypoints_train2017.json"
    assert oracle_evaluate(ann, load_config(None, ["data.skeleton=coco18_limbs40"]))["AP"] >= 0.96
    plain = load_config(None, ["data.skeleton=coco18_limbs40", "inference.fill_missing=false",
                               "inference.peak_split_margin=0", "inference.joined_guesses=false"])
    assert oracle_evaluate(ann, plain)["AP"] < 0.94


def test_oracle_limit(coco_mini):
    ann = coco_mini / "annotations" / "person_keypoints_train2017.json"
    metrics = oracle_evaluate(ann, load_config(), limit=5)
    assert metrics["images"] == 5 and metrics["timing"]["decode"]["count"] == 5


def run(*args):
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True,
                          cwd=REPO, timeout=300)


def test_cli_oracle_writes_results_and_metrics(synthetic_coco, tmp_path):
    done = run("--oracle", "--annotations", synthetic_coco.ann_file, "--out", tmp_path / "out", "--limit", "6",
               "--set", "data.skeleton=coco18_limbs40")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "AP50" in done.stdout and "decode" in done.stdout
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert {"AP", "AP50", "AP75", "APm", "APl", "AR"} <= set(metrics)
    assert {"median", "mean"} <= set(metrics["timing"]["decode"])
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["metrics.json", "results.json"]


def test_cli_help_and_bad_input(tmp_path):
    assert run("--help").returncode == 0
    assert "--oracle" in run("--help").stdout
    done = run("--oracle", "--annotations", tmp_path / "missing.json")
    expected = f"error: {tmp_path / 'missing.json'}: annotation file not found"
    assert done.returncode == 2 and done.stderr.strip().splitlines() == [expected]
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    done = run("--oracle", "--annotations", bad)
    assert done.returncode == 2 and "not a COCO keypoint file" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    done = run("--weights", tmp_path / "m.keras", "--annotations", bad)
    assert done.returncode == 2 and "--images is required" in done.stderr
    done = run("--oracle", "--annotations", bad, "--set", "inference.grouping=magic")
    assert done.returncode == 2 and "inference.grouping" in done.stderr
