"""Tests for saunet.runtime.metrics: hand-computed values and scipy as the labelling oracle."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from saunet.runtime.metrics import (
    METRIC_NAMES,
    PatientScores,
    bootstrap_interval,
    dice,
    iou,
    largest_component,
    mask_agreement,
    score_patients,
    soft_dice_pooled,
    summary_rows,
)

# --- dice / iou / agreement ---------------------------------------------------


def test_dice_iou_hand_computed():
    pred = np.array([[1, 1], [0, 0]])
    truth = np.array([[True, False], [True, False]])
    assert dice(pred, truth) == pytest.approx(2 * 1 / (2 + 2))
    assert iou(pred, truth) == pytest.approx(1 / 3)
    pred3 = np.zeros((2, 3, 3), bool)
    truth3 = np.zeros((2, 3, 3), bool)
    pred3[0, :2, :2] = True  # 4 voxels
    truth3[0, :2, :] = True  # 6 voxels, 4 shared
    assert dice(pred3, truth3) == pytest.approx(8 / 10)
    assert iou(pred3, truth3) == pytest.approx(4 / 6)


def test_dice_iou_empty_conventions():
    empty = np.zeros((4, 4), np.uint8)
    some = empty.copy()
    some[1, 1] = 1
    assert dice(empty, empty) == 1.0 and iou(empty, empty) == 1.0
    assert dice(some, empty) == 0.0 and iou(some, empty) == 0.0
    assert dice(empty, some) == 0.0 and iou(empty, some) == 0.0
    assert dice(some, some) == 1.0 and iou(some, some) == 1.0


def test_shape_mismatch_is_refused():
    with pytest.raises(ValueError):
        dice(np.zeros((2, 3)), np.zeros((3, 2)))
    with pytest.raises(ValueError):
        iou(np.zeros((1, 4)), np.zeros(4))


def test_mask_agreement():
    a = np.array([1, 0, 1, 1], np.int8)
    b = np.array([True, True, True, False])
    assert mask_agreement(a, b) == pytest.approx(0.5)
    assert mask_agreement(a, a) == 1.0


# --- largest_component --------------------------------------------------------


def _scipy_largest(mask: np.ndarray) -> np.ndarray:
    ndimage = pytest.importorskip("scipy.ndimage")
    labels, n = ndimage.label(mask)  # default structure = face connectivity
    if n == 0:
        return np.zeros(mask.shape, bool)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == np.argmax(sizes)  # argmax: lowest label on ties


@pytest.mark.parametrize("shape", [(40, 50), (12, 20, 24)])
@pytest.mark.parametrize("density", [0.02, 0.2, 0.4, 0.6, 0.9])
def test_largest_component_matches_scipy(shape, density):
    rng = np.random.default_rng(hash((shape, density)) % 2**32)
    for _ in range(5):
        mask = rng.random(shape) < density
        out = largest_component(mask)
        assert out.dtype == bool and out.shape == shape
        np.testing.assert_array_equal(out, _scipy_largest(mask))


def test_largest_component_diagonal_contact_stays_separate():
    mask2 = np.zeros((6, 6), bool)
    mask2[:2, :2] = True  # 4 pixels
    mask2[2, 2] = mask2[3, 3] = mask2[4, 4] = True  # diagonal chain touching the block
    expected = np.zeros_like(mask2)
    expected[:2, :2] = True
    np.testing.assert_array_equal(largest_component(mask2), expected)

    mask3 = np.zeros((2, 4, 5), bool)
    mask3[0, 0, 0:3] = True  # 3 voxels
    mask3[1, 1, 0:2] = True  # 2 voxels, touch the first only along an edge (y and z differ)
    expected3 = np.zeros_like(mask3)
    expected3[0, 0, 0:3] = True
    np.testing.assert_array_equal(largest_component(mask3), expected3)


def test_largest_component_keeps_larger_blob_and_breaks_ties_in_c_order():
    mask = np.zeros((3, 10, 10), np.uint8)
    mask[0, 0, 0] = 1  # small blob first in C order
    mask[1:3, 4:7, 4:7] = 1  # big blob, 18 voxels
    expected = np.zeros(mask.shape, bool)
    expected[1:3, 4:7, 4:7] = True
    np.testing.assert_array_equal(largest_component(mask), expected)

    tie = np.zeros((5, 5), bool)
    tie[4, 0:2] = True  # same size, later in C order
    tie[0, 3:5] = True
    expected_tie = np.zeros_like(tie)
    expected_tie[0, 3:5] = True
    np.testing.assert_array_equal(largest_component(tie), expected_tie)


def test_largest_component_empty():
    out = largest_component(np.zeros((3, 4, 5), np.int8))
    assert out.shape == (3, 4, 5) and not out.any()


# --- soft dice ----------------------------------------------------------------


def test_soft_dice_pooled_hand_computed():
    prob = np.array([[[0.5, 1.0], [0.0, 0.25]], [[0.0, 0.0], [0.0, 0.0]]])
    truth = np.array([[[1, 1], [0, 0]], [[0, 0], [0, 0]]])
    # sum(p*t)=1.5, sum(p)=1.75, sum(t)=2
    assert soft_dice_pooled(prob, truth, smooth=1.0) == pytest.approx(4.0 / 4.75)
    assert soft_dice_pooled(prob, truth) == pytest.approx(103.0 / 103.75)


# --- score_patients -----------------------------------------------------------


def _two_patients() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    # Patient A, 3 slices of 4x4. Slice 1 has a 2x2 tumour, slices 0 and 2 are empty.
    a_truth = np.zeros((3, 4, 4), np.uint8)
    a_truth[1, 1:3, 1:3] = 1
    a_prob = np.zeros((3, 4, 4), np.float32)
    a_prob[1, 1:3, 1:3] = [[0.9, 0.9], [0.8, 0.5]]  # 0.5 >= threshold counts
    a_prob[1, 0, 0] = 0.6  # FP pixel touching the tumour only diagonally
    a_prob[2, 3, 3] = 0.7  # FP on an empty slice, isolated
    a_prob[0, 2, 2] = 0.49  # below threshold: slice 0 stays clean
    # Patient B, 2 slices, both with tumour, under-segmented.
    b_truth = np.zeros((2, 4, 4), np.uint8)
    b_truth[0, 0, :] = 1
    b_truth[1, 0, 0] = 1
    b_prob = np.zeros((2, 4, 4), np.float32)
    b_prob[0, 0, :] = [0.9, 0.7, 0.3, 0.2]
    b_prob[1, 0, 0] = 0.1
    return {"A": (a_prob, a_truth), "B": (b_prob, b_truth)}


def test_score_patients_hand_computed():
    result = score_patients(_two_patients())
    # A: pred 6 voxels (4 tumour + 2 FP), truth 4, overlap 4 -> 8/10; LCC drops both FP -> 1.
    # B: pred 2, truth 5, overlap 2 -> 4/7, LCC changes nothing.
    assert result["per_patient"] == [
        {
            "patient": "A",
            "slices": 3,
            "dice_3d": pytest.approx(0.8),
            "dice_3d_lcc": pytest.approx(1.0),
            "dice_3d_filled": pytest.approx(1.0),
            "tumour_voxels_true": 4,
            "tumour_voxels_pred": 6,
        },
        {
            "patient": "B",
            "slices": 2,
            "dice_3d": pytest.approx(4 / 7),
            "dice_3d_lcc": pytest.approx(4 / 7),
            "dice_3d_filled": pytest.approx(4 / 7),
            "tumour_voxels_true": 5,
            "tumour_voxels_pred": 2,
        },
    ]
    assert result["per_patient"][0]["dice_3d_lcc"] > result["per_patient"][0]["dice_3d"]
    assert result["dice_3d"] == {"mean": pytest.approx((0.8 + 4 / 7) / 2), "median": pytest.approx((0.8 + 4 / 7) / 2)}
    assert result["dice_3d_lcc"] == {"mean": pytest.approx((1 + 4 / 7) / 2), "median": pytest.approx((1 + 4 / 7) / 2)}
    # Tumour slices: A1 = 8/9, B0 = 2*2/(2+4) = 2/3, B1 = 0/(0+1) = 0.
    assert result["slice_dice_tumour"] == {"mean": pytest.approx(14 / 27), "median": pytest.approx(2 / 3), "slices": 3}
    # Empty slices: A0 clean, A2 has a FP.
    assert result["empty_slice_fp_rate"] == {"rate": 0.5, "slices": 2}
    # sum(p*t) = 3.1 + 2.2, sum(p) = 4.89 + 2.2, sum(t) = 9.
    assert result["seed_soft_dice"] == pytest.approx((2 * 5.3 + 100) / (7.09 + 9 + 100), rel=1e-6)
    # A: 48 px, 2 FP; B: 32 px, 3 FN.
    assert result["pixel_accuracy"] == pytest.approx(75 / 80)
    assert result["threshold"] == 0.5


def test_score_patients_fills_each_slices_holes_after_the_largest_component():
    truth = np.zeros((2, 7, 7), np.uint8)
    truth[0, 1:6, 1:6] = 1
    prob = truth.astype(np.float32)
    prob[0, 3, 3] = 0.2  # the dark core the model leaves out
    prob[1, 6, 6] = 0.9  # a stray voxel, not connected
    (row,) = score_patients({"C": (prob, truth)})["per_patient"]
    assert row["dice_3d"] == pytest.approx(2 * 24 / (25 + 25))
    assert row["dice_3d_lcc"] == pytest.approx(2 * 24 / (24 + 25))
    assert row["dice_3d_filled"] == pytest.approx(1.0)


def test_score_patients_threshold_and_consistency_with_soft_dice():
    volumes = _two_patients()
    result = score_patients(volumes, threshold=0.65)
    # A: pred = {0.9, 0.9, 0.8, 0.7-FP} -> 2*3/(4+4) = 0.75; LCC keeps the 3-pixel tumour part -> 6/7.
    assert result["per_patient"][0]["dice_3d"] == pytest.approx(0.75)
    assert result["per_patient"][0]["dice_3d_lcc"] == pytest.approx(6 / 7)
    probs = np.concatenate([p.reshape(-1) for p, _ in volumes.values()])
    truths = np.concatenate([t.reshape(-1) for _, t in volumes.values()])
    assert result["seed_soft_dice"] == pytest.approx(soft_dice_pooled(probs, truths))


def test_score_patients_json_and_none_for_missing_samples():
    result = score_patients(_two_patients())
    assert set(result) == set(METRIC_NAMES)
    json.dumps(result, allow_nan=False)

    no_tumour = {"C": (np.zeros((2, 3, 3)), np.zeros((2, 3, 3), bool))}
    r = score_patients(no_tumour)
    assert r["slice_dice_tumour"] == {"mean": None, "median": None, "slices": 0}
    assert r["per_patient"][0]["dice_3d"] == 1.0
    assert r["empty_slice_fp_rate"] == {"rate": 0.0, "slices": 2}
    json.dumps(r, allow_nan=False)

    r = score_patients({})
    assert r["dice_3d"] == {"mean": None, "median": None}
    assert r["pixel_accuracy"] is None and r["seed_soft_dice"] is None
    assert r["empty_slice_fp_rate"]["rate"] is None
    json.dumps(r, allow_nan=False)


# --- the interval of a per-patient mean ---------------------------------------


def test_bootstrap_interval_of_zeros_and_ones_is_the_binomial_quantiles():
    # Ten patients, half 0 and half 1: a resampled mean is Binomial(10, 0.5) / 10, whose 2.5%
    # and 97.5% quantiles are 0.2 and 0.8 (P(X <= 1) = 1.1%, P(X <= 2) = 5.5%).
    assert bootstrap_interval([0.0, 1.0] * 5) == pytest.approx((0.2, 0.8))


def test_bootstrap_interval_narrows_with_patients_and_is_reproducible():
    values = [0.86, 0.61, 0.92, 0.61, 0.90, 0.93, 0.86, 0.32, 0.76, 0.92]
    low, high = bootstrap_interval(values)
    assert min(values) < low < np.mean(values) < high < max(values)
    many_low, many_high = bootstrap_interval(values * 10)
    assert high - low > 2.5 * (many_high - many_low)  # about sqrt(10) narrower for ten times the patients
    assert bootstrap_interval(values) == (low, high)
    assert bootstrap_interval([0.7] * 4) == pytest.approx((0.7, 0.7))
    assert bootstrap_interval([]) is None


def test_summary_rows_give_each_per_patient_mean_its_interval():
    scores = score_patients(_two_patients())
    rows = dict(summary_rows(scores, lambda v: "n/a" if v is None else f"{v:.3f}"))
    low, high = bootstrap_interval([p["dice_3d_lcc"] for p in scores["per_patient"]])
    assert len(rows) == 12  # every row's label is its own
    older = {k: v for k, v in scores.items() if k != "dice_3d_filled"}
    assert len(summary_rows(older, str)) == 10, "reports written before hole filling still read"
    lcc_row = "per-patient 3D Dice, largest component, mean: 95% bootstrap interval (2 patients)"
    assert dict(summary_rows(scores, str))[lcc_row] == f"{low} to {high}"
    assert (
        dict(summary_rows(score_patients({}), lambda v: "n/a" if v is None else str(v)))[
            "per-patient 3D Dice, mean: 95% bootstrap interval (0 patients)"
        ]
        == "n/a"
    )


def test_patient_scores_is_frozen():
    row = PatientScores("A", 3, 0.8, 1.0, 1.0, 4, 6)
    with pytest.raises(AttributeError):
        row.dice_3d = 0.0  # type: ignore[misc]


def test_score_patients_rejects_non_volumes():
    with pytest.raises(ValueError):
        score_patients({"A": (np.zeros((4, 4)), np.zeros((4, 4)))})


# --- dependency hygiene -------------------------------------------------------


def test_imports_without_scipy_or_tensorflow():
    code = textwrap.dedent(
        """
        import importlib.abc, sys

        BLOCKED = {"scipy", "tensorflow"}

        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.partition(".")[0] in BLOCKED:
                    raise ImportError(f"blocked: {name}")
                return None

        sys.meta_path.insert(0, Block())
        for name in BLOCKED:
            try:
                __import__(name)
            except ImportError:
                pass
            else:
                raise SystemExit(f"{name} was not blocked")

        import numpy as np
        import saunet.runtime.metrics as m

        mask = np.zeros((3, 8, 8), bool)
        mask[1, 2:5, 2:5] = True
        mask[0, 0, 0] = True
        assert m.largest_component(mask).sum() == 9
        assert not any(k.partition(".")[0] in BLOCKED for k in sys.modules)
        print("ok")
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"
