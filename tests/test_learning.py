"""Learning check in CI: the quickstart model overfits a handful of synthetic images, and AP rises from ~0."""
import os

import pytest

from simplepose.config import load_config
from simplepose.evaluation import evaluate_predictor
from simplepose.inference import Predictor
from simplepose.models.registry import build_model
from simplepose.train import fit

QUICKSTART = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "quickstart.yaml")
STEPS = 300
#: An untrained network finds nobody (AP ~0). After STEPS steps on these 12 images the model has seen each
#: sample ~50 times; MIN_AP is set well below the AP measured here (see the test's message) so that it
#: catches a pipeline, loss or decoding regression, not run-to-run noise (training is seeded).
MIN_AP = 0.3


@pytest.mark.slow  # ~4 min on 2 busy cores: over the 2-minute budget of `make test`; runs in `make test-slow`
def test_quickstart_model_overfits_a_few_synthetic_images(synthetic_coco, tiny_hdf5, tmp_path):
    cfg = load_config(QUICKSTART, ["train.epochs=1", f"train.steps_per_epoch={STEPS}", "train.seed=0"])

    def ap(model):
        predictor = Predictor(model, cfg.skeleton, stride=cfg.data.stride, params=cfg.inference)
        return evaluate_predictor(predictor, synthetic_coco.ann_file, synthetic_coco.image_dir)["AP"]

    before = ap(build_model(cfg))
    fit(cfg, tmp_path / "run", tiny_hdf5, verbose=0)
    after = ap(Predictor.from_file(tmp_path / "run" / "model.keras").model)
    assert before < 0.05, f"an untrained model should find nobody, got AP {before:.3f}"
    assert after > MIN_AP, f"AP after {STEPS} steps: {after:.3f} (before: {before:.3f})"
