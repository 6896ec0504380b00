"""The parity gate's arithmetic on hand-made volumes whose Dice figures are exact binary fractions."""

from __future__ import annotations

import numpy as np
import pytest

from saunet.quantize.choice import pick_int8
from saunet.quantize.parity import compare, markdown, passes_gate
from saunet.training.dataset import Volume

#: Tumour: the first five pixels of a 4x4 slice. "part" finds three of them: Dice 2*3/(3+5) = 0.75.
TRUTH = np.zeros((1, 4, 4), np.uint8)
TRUTH.flat[:5] = 1
PART = np.zeros((1, 4, 4), np.float32)
PART.flat[:3] = 1.0


def volumes() -> list[Volume]:
    """Two one-slice patients; the image's first pixel says which patient it is (0 or 1)."""
    return [Volume(f"P{i}", np.full((1, 4, 4, 3), i, np.uint8), TRUTH.copy()) for i in range(2)]


def predictor(per_patient: dict[int, np.ndarray]):
    return lambda images: per_patient[int(images[0, 0, 0, 0])]


PERFECT = predictor({0: TRUTH.astype(np.float32), 1: TRUTH.astype(np.float32)})
#: Patient 0 drops from 1.0 to 0.75: mean per-patient Dice 0.875, a change of exactly -0.125 against PERFECT.
DROP = predictor({0: PART, 1: TRUTH.astype(np.float32)})


@pytest.mark.parametrize("tolerance, passed", [(0.0, False), (0.1, False), (0.124, False), (0.125, True), (0.2, True)])
def test_a_drop_beyond_the_tolerance_fails_and_one_at_it_passes(tolerance: float, passed: bool) -> None:
    report = compare(volumes(), PERFECT, {"int8": DROP}, threshold=0.5, tolerance=tolerance)
    row = report["exports"]["int8"]
    assert report["float"]["dice_3d_mean"] == 1.0
    assert row["dice_3d_mean"] == 0.875 and row["dice_change"] == -0.125
    assert row["dice_change_per_patient"] == {"P0": -0.25, "P1": 0.0}
    assert row["mask_agreement"] == 1 - 2 / 32  # two of 32 pixels differ
    assert row["passed"] is passed
    assert ("| FAIL |" in markdown(report, {})) is not passed


def test_a_gain_passes_even_with_zero_tolerance() -> None:
    report = compare(volumes(), DROP, {"int8": PERFECT, "same": DROP}, threshold=0.5, tolerance=0.0)
    assert report["exports"]["int8"]["dice_change"] == 0.125 and report["exports"]["int8"]["passed"]
    assert report["exports"]["same"]["dice_change"] == 0.0 and report["exports"]["same"]["passed"]


def test_the_gate_counts_a_drop_equal_to_the_tolerance_as_within_it_despite_rounding() -> None:
    change = (0.7 + 0.1) / 2 - (0.9 + 0.1) / 2  # -0.1 mathematically, -0.10000000000000003 in floats
    assert passes_gate(change, 0.1) and passes_gate(-0.1 - 1e-12, 0.1)
    assert not passes_gate(-0.1 - 1e-6, 0.1) and not passes_gate(-1e-6, 0.0)
    assert passes_gate(0.3, 0.0)


def test_the_bundle_rule_never_picks_a_file_that_failed_the_gate(tmp_path) -> None:
    report = {
        "exports": {
            "int8": {"mask_agreement": 0.999, "dice_change": -0.2, "passed": False},
            "int8-ptq": {"mask_agreement": 0.98, "dice_change": -0.005, "passed": True},
            "float32": {"mask_agreement": 1.0, "dice_change": 0.0, "passed": True},
        },
        "files": {"int8": "a_int8.tflite", "int8-ptq": "a_int8_ptq.tflite"},
    }
    choice = pick_int8([(tmp_path / "a_parity.json", report)])
    assert choice.format == "int8-ptq" and choice.path == tmp_path / "a_int8_ptq.tflite" and choice.candidates == 1
    report["exports"]["int8-ptq"]["passed"] = False
    assert pick_int8([(tmp_path / "a_parity.json", report)]) is None
