"""The attention ablation benchmark's two-step smoke version (the full ablation is out of the test suites)."""
import importlib.util
import json
import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LABELS = ["none", "holistic CRF", "holistic softmax", "holistic+partwise CRF", "holistic+partwise softmax"]


def _smoke(capsys, out, *extra):
    spec = importlib.util.spec_from_file_location("ablate_attention", os.path.join(REPO, "benchmarks",
                                                                                   "ablate_attention.py"))
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.main(["--smoke", "--out", str(out), "--repeats", "2", "--time-batch", "2", *extra]) == 0
    stdout = capsys.readouterr().out
    return json.loads(stdout.strip().splitlines()[-1]), stdout


def _check(figures, out, labels):
    assert list(figures["variants"]) == labels and figures["budget"]["steps"] == 2
    for v in figures["variants"].values():
        assert 0.0 <= v["AP_mean"] <= 1.0 and v["AP_std"] == 0.0 and len(v["AP_per_seed"]) == 1
        assert 0.0 <= v["AP_every_box_mean"] <= 1.0 and v["final_loss_mean"] > 0
        assert v["params"] > 0 and v["ms_per_crop"] > 0
    assert (out / "ablation.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads((out / "ablation.json").read_text())
    assert saved["variants"] == figures["variants"] and set(saved["runs"]) == set(labels)
    assert not [p for p in os.listdir(out) if p.startswith(".tmp-")]


def test_smoke_runs_two_steps_per_variant(capsys, tmp_path):
    labels = [LABELS[0], LABELS[-1]]
    figures, stdout = _smoke(capsys, tmp_path, "--variants", *labels)
    _check(figures, tmp_path, labels)
    assert figures["variants"][labels[1]]["params"] > figures["variants"][labels[0]]["params"]  # attention weights
    assert f"chart: {tmp_path / 'ablation.png'}" in stdout


@pytest.mark.slow
def test_smoke_every_variant_and_finished_runs_are_reused(capsys, tmp_path):
    figures, _ = _smoke(capsys, tmp_path)
    _check(figures, tmp_path, LABELS)
    stamps = {p: p.stat().st_mtime_ns for p in tmp_path.glob("runs/*/seed0/model.keras")}
    again, _ = _smoke(capsys, tmp_path)
    assert [v["AP_per_seed"] for v in again["variants"].values()] == [v["AP_per_seed"] for v in
                                                                      figures["variants"].values()]
    assert len(stamps) == 5 and all(p.stat().st_mtime_ns == t for p, t in stamps.items())  # not retrained
