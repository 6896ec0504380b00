"""The variants rule 2 of docs/experiments.md compares: mirrored averaging and hole filling."""

from __future__ import annotations

import argparse

import numpy as np
import pytest

from saunet.benchmarks.cv_decisions import threshold_variant, thresholds, variant_dice


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


def test_other_thresholds_are_scored_with_the_default_post_processing() -> None:
    truth = np.zeros((2, 9, 9), np.uint8)
    truth[0, 1:8, 1:8] = 1
    probability = truth * np.float32(0.9)
    probability[0, 1, 1:8] = 0.45  # an edge the model is less sure of
    probability[0, 4, 4] = 0.1  # and the core it misses
    scores = variant_dice(probability, probability, truth, 0.5, (0.4,))
    assert scores["holes"] == pytest.approx(2 * 42 / (42 + 49))
    assert scores[threshold_variant(0.4)] == pytest.approx(1.0)


@pytest.mark.parametrize("text", ["0.4,x", "0,0.5", "1.2"])
def test_thresholds_outside_0_1_or_not_numbers_are_refused(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        thresholds(text)
