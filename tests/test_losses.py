"""Focal L2 loss: hand-computed values, masking, per-stage/branch weights, batch-size normalisation."""
import numpy as np
import pytest

from simplepose.config import LossConfig
from simplepose.losses import FocalL2Loss, build_loss, focal_l2_per_sample


def _maps(values):
    """(1, 1, n, 1) float32 map from a list of n values."""
    return np.asarray(values, np.float32).reshape(1, 1, -1, 1)


def test_focal_l2_hand_computed():
    # positive cell: p_t = 0.2 -> weight 0.8^2 = 0.64, error 0.3^2 = 0.09; negative: p_t = 0.7 -> 0.09 * 0.09
    out = focal_l2_per_sample(_maps([0.5, 0.0]), _maps([0.2, 0.3]), _maps([1, 1]), gamma=2.0, threshold=0.01)
    assert np.asarray(out) == pytest.approx([(0.64 * 0.09 + 0.09 * 0.09) / 2], rel=1e-6)


def test_gamma_zero_is_plain_l2_over_two():
    out = focal_l2_per_sample(_maps([0.5, 0.0, 1.0]), _maps([0.2, 0.3, 1.0]), _maps([1, 1, 1]), gamma=0.0)
    assert np.asarray(out) == pytest.approx([(0.09 + 0.09) / 2], rel=1e-6)


def test_threshold_is_strict():
    # G = 0.01 is not a positive: p_t = 1 - P = 1 -> weight 0
    out = focal_l2_per_sample(_maps([0.01]), _maps([0.0]), _maps([1]), gamma=2.0, threshold=0.01)
    assert float(np.asarray(out)[0]) == 0.0


def test_masked_cells_contribute_nothing():
    target, mask = _maps([0.5, 0.0]), _maps([1, 0])
    base = focal_l2_per_sample(target, _maps([0.2, 0.0]), mask)
    for junk in (100.0, -7.0, 0.6):
        out = focal_l2_per_sample(target, _maps([0.2, junk]), mask)
        assert np.asarray(out) == pytest.approx(np.asarray(base), abs=0)
    assert np.asarray(base) == pytest.approx([0.64 * 0.09 / 2], rel=1e-6)


def _batch(num_limbs=3, num_kp=4):
    """Sample 0: 2 positive limb cells and 3 positive keypoint cells (value 1); sample 1: all zero."""
    limbs = np.zeros((2, 2, 2, num_limbs), np.float32)
    kps = np.zeros((2, 2, 2, num_kp), np.float32)
    limbs[0, 0, 0, 0] = limbs[0, 1, 1, 2] = 1.0
    kps[0, 0, 1, 1] = kps[0, 1, 0, 3] = kps[0, 1, 1, 0] = 1.0
    return {"limbs": limbs, "keypoints": kps, "mask": np.ones((2, 2, 2, 1), np.float32)}


def _zero_prediction(y, stages):
    return {f"stage_{t}": {"limbs": np.zeros_like(y["limbs"]), "keypoints": np.zeros_like(y["keypoints"])}
            for t in range(1, stages + 1)}


def test_stage_and_branch_weights_hand_computed():
    y = _batch()
    loss = FocalL2Loss(stage_weights=(0.5, 1.0), limb_weight=0.25)
    # P = 0: every positive cell costs 1/2 (weight 1, error 1), negatives cost 0 (p_t = 1).
    # sample 0: stage 1 0.5 * (0.25 * 2 + 3) / 2, stage 2 1.0 * (0.25 * 2 + 3) / 2; sample 1: 0; mean of 2.
    expected = (0.5 * 3.5 / 2 + 1.0 * 3.5 / 2) / 2
    assert float(loss(y, _zero_prediction(y, 2))) == pytest.approx(expected, rel=1e-6)


def test_normalised_by_actual_batch_size():
    y = _batch()
    loss = FocalL2Loss(stage_weights=(1.0,), limb_weight=1.0)
    rng = np.random.default_rng(0)
    pred = {"stage_1": {"limbs": rng.normal(size=y["limbs"].shape).astype(np.float32),
                        "keypoints": rng.normal(size=y["keypoints"].shape).astype(np.float32)}}
    doubled_y = {k: np.concatenate([v, v]) for k, v in y.items()}
    doubled_pred = {"stage_1": {k: np.concatenate([v, v]) for k, v in pred["stage_1"].items()}}
    assert float(loss(doubled_y, doubled_pred)) == pytest.approx(float(loss(y, pred)), rel=1e-6)
    per_sample = [float(focal_l2_per_sample(y[b][i:i + 1], pred["stage_1"][b][i:i + 1], y["mask"][i:i + 1])[0])
                  for i in range(2) for b in ("limbs", "keypoints")]
    assert float(loss(y, pred)) == pytest.approx(sum(per_sample) / 2, rel=1e-5)


def test_stage_count_mismatch_is_an_error():
    y = _batch()
    with pytest.raises(ValueError, match="3 stages"):
        FocalL2Loss(stage_weights=(1.0, 1.0))(y, _zero_prediction(y, 3))


def test_build_loss_and_config_round_trip():
    loss = build_loss(LossConfig(kind="l2", stage_weights=(0.5, 0.8, 1.0)))
    assert loss.gamma == 0.0
    clone = FocalL2Loss.from_config(loss.get_config())
    assert clone.get_config() == loss.get_config()
    assert build_loss(LossConfig()).gamma == 2.0
