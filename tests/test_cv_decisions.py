"""The variants rule 2 of docs/experiments.md compares: mirrored averaging and hole filling."""

from __future__ import annotations

import numpy as np
import pytest

from saunet.benchmarks.cv_decisions import variant_dice


def test_holes_are_filled_after_the_largest_component_and_mirroring_averages() -> None:
    truth = np.zeros((3, 9, 9), np.uint8)
    truth[1, 2:7, 2:7] = 1
    ring = truth.astype(np.float32)
    ring[1, 4, 4] = 0.0  # the model misses the core, as it does in cystic tumours
    ring[1, 0, 0] = 1.0  # and a stray pixel, not 6-connected to the rest
    scores = variant_dice(ring, ring, truth, 0.5)
    assert scores["plain"] == pytest.approx(2 * 24 / (24 + 25))
    assert scores["holes"] == pytest.approx(1.0)

    confident = truth.astype(np.float32) * 0.8
    unseen = np.zeros_like(confident)
    scores = variant_dice(confident, unseen, truth, 0.5)
    assert (scores["plain"], scores["tta"]) == (pytest.approx(1.0), 0.0), "0.8 averaged with 0 falls below 0.5"
