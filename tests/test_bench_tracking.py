"""benchmarks/bench_tracking.py: the JSON line it ends with, and its bootstrap interval of the pooled IDF1."""
import json
import os
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "benchmarks"))

import bench_tracking  # noqa: E402


def test_interval_of_identical_clips_is_their_idf1_and_of_two_clips_spans_them():
    same = [{"idtp": 90, "gt": 100, "hyp": 95}] * 5
    assert bench_tracking.idf1_interval(same) == [pytest.approx(180 / 195, abs=1e-4)] * 2
    good, bad = {"idtp": 100, "gt": 100, "hyp": 100}, {"idtp": 50, "gt": 100, "hyp": 100}
    lo, hi = bench_tracking.idf1_interval([good, bad])
    assert lo == pytest.approx(0.5) and hi == pytest.approx(1.0)  # two clips: all-bad and all-good resamples


def test_benchmark_ends_with_its_figures(capsys):
    assert bench_tracking.main(["--clips", "2", "--frames", "40", "--log-level", "WARNING"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    lo, hi = result["idf1_ci95"]
    assert lo <= result["idf1"] <= hi <= 1.0 and result["idf1"] > 0.5
    assert [row["clip"] for row in result["per_clip"]] == [0, 1]
    assert result["keypoint_error_px"]["smoothed"] < result["keypoint_error_px"]["raw"]
