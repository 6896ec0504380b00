"""Post-processing of a predicted volume: each slice's enclosed holes filled, as scipy would, without scipy."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from saunet.runtime.components import fill_holes_2d

ndimage = pytest.importorskip("scipy.ndimage")


def scipy_fill(mask: np.ndarray) -> np.ndarray:
    return np.stack([ndimage.binary_fill_holes(s) for s in mask])


@settings(max_examples=300, deadline=None)
@given(
    arrays(
        bool,
        st.tuples(st.integers(1, 4), st.integers(1, 14), st.integers(1, 14)),
        elements=st.booleans(),
    )
)
def test_every_slice_is_filled_as_scipys_binary_fill_holes_fills_it(mask: np.ndarray) -> None:
    out = fill_holes_2d(mask)
    assert out.dtype == bool and out.shape == mask.shape
    np.testing.assert_array_equal(out, scipy_fill(mask))


@pytest.mark.parametrize("density", [0.3, 0.5, 0.7])
def test_dense_random_volumes_with_many_holes_match_scipy(density: float) -> None:
    mask = np.random.default_rng(int(density * 10)).random((6, 60, 70)) < density
    filled = fill_holes_2d(mask)
    assert filled.sum() > mask.sum(), "these masks have holes"
    np.testing.assert_array_equal(filled, scipy_fill(mask))


def test_a_cystic_core_is_filled_but_nothing_outside_the_rim() -> None:
    mask = np.zeros((3, 12, 12), bool)
    mask[1, 2:9, 2:9] = True
    mask[1, 4:7, 4:7] = False  # the dark core inside the bright rim
    mask[1, 0:3, 10] = True  # a stray arc open to the slice's edge: no hole
    out = fill_holes_2d(mask)
    expected = mask.copy()
    expected[1, 4:7, 4:7] = True
    np.testing.assert_array_equal(out, expected)


def test_holes_are_per_slice_not_through_the_volume() -> None:
    """A cavity closed in 3D but open in its own slice stays; a hole of a slice is filled though the slices
    above and below are empty there."""
    cavity = np.ones((3, 7, 7), bool)
    cavity[1, 2:5, 2:7] = False  # open to the right edge of slice 1, closed by slices 0 and 2
    np.testing.assert_array_equal(fill_holes_2d(cavity), cavity)
    ring = np.zeros((3, 7, 7), bool)
    ring[1, 1:6, 1:6] = True
    ring[1, 3, 3] = False
    assert fill_holes_2d(ring)[1, 3, 3]


def test_a_hole_open_only_diagonally_is_filled() -> None:
    """Background joins the outside through faces only (scipy's default), not through corners."""
    mask = np.zeros((1, 5, 5), bool)
    mask[0, 1:4, 1:4] = True
    mask[0, 2, 2] = False
    mask[0, 1, 1] = False  # the hole's corner touches this outside pixel diagonally
    out = fill_holes_2d(mask)
    assert out[0, 2, 2] and not out[0, 1, 1]


def test_empty_and_full_masks_come_back_unchanged_and_2d_is_refused() -> None:
    empty = np.zeros((2, 5, 5), np.uint8)
    assert not fill_holes_2d(empty).any()
    full = np.ones((2, 5, 5), bool)
    np.testing.assert_array_equal(fill_holes_2d(full), full)
    with pytest.raises(ValueError, match="slices, H, W"):
        fill_holes_2d(np.zeros((5, 5), bool))
