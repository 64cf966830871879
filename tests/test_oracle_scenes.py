"""Oracle scenes from real skeletons and the error breakdown: invariants, causes on hand-made cases, real data."""
import contextlib
import io

import numpy as np
import pytest

from simplepose.bottomup import breakdown
from simplepose.bottomup.oracle import oracle_evaluate
from simplepose.config import load_config
from simplepose.data.oracle_scenes import COCO_FLIP, SceneRules, SourcePerson, _transform, as_coco, make_oracle_scenes
from simplepose.skeleton import COCO_KEYPOINTS, UPRIGHT_POSE


def upright(height, x, y):
    kp = np.zeros((17, 3))
    kp[:, :2] = UPRIGHT_POSE * height + [x, y]
    kp[:, 2] = 2
    return kp


# === Scenes ===
def test_scenes_are_deterministic_and_keep_the_invariants(synthetic_coco):
    rules = SceneRules(people=(3, 9))
    a = make_oracle_scenes(synthetic_coco.ann_file, 12, seed=4, rules=rules)
    assert a == make_oracle_scenes(synthetic_coco.ann_file, 12, seed=4, rules=rules)
    assert a != make_oracle_scenes(synthetic_coco.ann_file, 12, seed=5, rules=rules)
    sizes = {(i["width"], i["height"]) for i in a["images"]}
    for img in a["images"]:
        anns = [x for x in a["annotations"] if x["image_id"] == img["id"]]
        assert len(anns) <= 9
        for ann in anns:
            kp = np.reshape(ann["keypoints"], (17, 3))
            labelled = kp[:, 2] > 0
            assert ann["num_keypoints"] == labelled.sum() and ann["area"] > 0 and ann["iscrowd"] == 0
            assert (kp[labelled, 0] >= 0).all() and (kp[labelled, 0] < img["width"]).all()
            assert (kp[labelled, 1] >= 0).all() and (kp[labelled, 1] < img["height"]).all()
            assert (kp[~labelled] == 0).all()
            x, y, w, h = ann["bbox"]
            assert x >= 0 and y >= 0 and x + w <= img["width"] + 1e-6 and y + h <= img["height"] + 1e-6
    assert len({a["id"] for a in a["annotations"]}) == len(a["annotations"])
    assert sizes <= {(i["width"], i["height"]) for i in as_coco(a).imgs.values()}
    assert np.mean([x["num_keypoints"] for x in a["annotations"]]) > 3  # people are mostly kept


def test_transform_mirrors_left_and_right_and_keeps_the_scale():
    kp = upright(200, 50, 10)
    kp[9, 2] = 0  # an unlabelled wrist stays unlabelled (and zero) after the mirror
    src = SourcePerson(kp, np.array([20.0, 10.0, 60.0, 200.0]), 6000.0)
    out, corners = _transform(src, 0.5, 0.0, True, np.array([300.0, 300.0]))
    left, right = COCO_KEYPOINTS.index("left_shoulder"), COCO_KEYPOINTS.index("right_shoulder")
    assert out[left, 0] == pytest.approx(out[right, 0] + 0.5 * (kp[left, 0] - kp[right, 0]))
    assert (out[COCO_FLIP[9]] == 0).all() and out[9, 2] > 0
    assert np.ptp(corners, axis=0) == pytest.approx([30.0, 100.0])
    assert corners.mean(axis=0) == pytest.approx([300.0, 300.0])


def test_oracle_decodes_scenes_of_synthetic_people(synthetic_coco):
    scenes = as_coco(make_oracle_scenes(synthetic_coco.ann_file, 10, seed=1, rules=SceneRules(people=(2, 6))))
    assert oracle_evaluate(scenes, load_config())["AP"] > 0.8


# === Breakdown ===
def test_oks_matches_pycocotools():
    from pycocotools.cocoeval import COCOeval

    rng = np.random.default_rng(0)
    gt = np.stack([upright(150, 40, 20), upright(90, 200, 60)])
    gt[1, 3:5, 2] = 0
    dt = gt + np.concatenate([rng.normal(0, 3, (2, 17, 2)), np.zeros((2, 17, 1))], axis=2)
    dt[:, :, 2] = 1
    areas = np.array([5000.0, 2000.0])
    ev = COCOeval(iouType="keypoints")
    with contextlib.redirect_stdout(io.StringIO()):
        ev._gts = {(1, 1): [{"keypoints": g.ravel().tolist(), "area": a, "bbox": [0, 0, 1, 1]}
                            for g, a in zip(gt, areas)]}
        ev._dts = {(1, 1): [{"keypoints": d.ravel().tolist(), "score": 1.0} for d in dt]}
        ev.params.imgIds, ev.params.catIds = [1], [1]
        reference = ev.computeOks(1, 1)
    np.testing.assert_allclose(breakdown.oks(gt, areas, dt), np.asarray(reference).T, rtol=1e-9)


def causes(gt, dt, scores=None):
    people, dets = breakdown.image_breakdown(gt, np.full(len(gt), 6000.0), dt,
                                             np.ones(len(dt)) if scores is None else scores)
    return [p["cause"] for p in people], [d["kind"] for d in dets], people


def test_breakdown_names_each_cause():
    a, b = upright(150, 40, 20), upright(150, 140, 20)
    gt = np.stack([a, b])
    assert causes(gt, gt.copy())[:2] == ([None, None], ["true", "true"])
    mirrored = a.copy()
    mirrored[:, :2] = a[COCO_FLIP, :2]  # left and right joints exchanged
    assert causes(gt, np.stack([mirrored, b]))[0] == ["swapped", None]
    upper, lower = a.copy(), a.copy()
    upper[11:, :] = 0
    lower[:11, :] = 0
    who, kinds, people = causes(gt, np.stack([upper, lower, b]), np.array([0.9, 0.2, 0.8]))
    assert who == ["split", None] and kinds == ["true", "fragment", "true"]
    assert sum(people[0]["lost"].values()) == pytest.approx(1 - people[0]["best_oks"])
    merged = a.copy()
    merged[11:, :2] = b[11:, :2]  # a's legs are b's
    assert causes(gt, np.stack([merged, b]))[0] == ["merged", None]
    assert causes(gt, np.stack([upper, b]))[0] == ["missing", None]
    assert causes(gt, np.zeros((0, 17, 3)))[0] == ["missing", "missing"]


def test_breakdown_summary_counts_by_group_and_size():
    table = breakdown.Breakdown()
    a = upright(150, 40, 20)
    table.add(a[None], np.array([6000.0]), np.stack([a, a]), np.array([0.9, 0.1]))
    table.add(np.zeros((0, 17, 3)), np.zeros(0), a[None], np.array([0.5]))
    s = table.summary()
    assert s["all"]["people"] == 1 and s["all"]["true"] == 1 and s["all"]["surplus"] == 2
    assert s["all"]["surplus_kinds"] == {"fragment": 0, "duplicate": 1, "phantom": 1}
    assert s["by_size"]["medium"]["people"] == 1 and s["by_people"]["1-1"]["detections"] == 2
    assert "surplus" in breakdown.format_tables(s)


# === Real skeletons ===
@pytest.mark.parametrize("split", ["val", "train"])
def test_scenes_of_real_people_decode_well(coco_mini, split):
    ann = coco_mini / "annotations" / f"person_keypoints_{split}2017.json"
    scenes = as_coco(make_oracle_scenes(ann, 40, seed=7))
    assert 200 < sum(a["num_keypoints"] > 0 for a in scenes.anns.values()) < 800
    improved = oracle_evaluate(scenes, load_config())["AP"]
    plain = oracle_evaluate(scenes, load_config(None, ["inference.person_score=mean",
                                                       "inference.verify_merges=false"]))["AP"]
    assert improved > 0.84 and improved > plain + 0.01, (improved, plain)


@pytest.mark.slow  # a subprocess that loads numba's cache: ~20 s on a busy machine
def test_bench_decode_writes_scenes_and_prints_the_breakdown(synthetic_coco, tmp_path):
    import json
    import pathlib
    import subprocess
    import sys

    repo = pathlib.Path(__file__).resolve().parents[1]
    out = tmp_path / "scenes.json"
    done = subprocess.run([sys.executable, str(repo / "benchmarks" / "bench_decode.py"), "--annotations",
                           str(synthetic_coco.ann_file), "--scenes", "4", "--seed", "3", "--repeats", "1",
                           "--breakdown", "--write-scenes", str(out)], capture_output=True, text=True, cwd=repo,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert figures["images"] == 4 and figures["breakdown"]["all"]["people"] > 0
    assert "surplus" in done.stdout and "OKS lost" in done.stdout
    assert json.loads(out.read_text()) == json.loads(json.dumps(make_oracle_scenes(synthetic_coco.ann_file, 4, seed=3)))
