"""A volume's picture and its results.json entry, on small made-up volumes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from saunet.runtime.montage import GAP, montage
from saunet.runtime.outputs import OUTLINE
from saunet.runtime.report import volume_summary
from saunet.runtime.volumes import Volume, consecutive_case


def volume(slices: int = 5, size: int = 12, voxel_ml: float | None = 0.002) -> Volume:
    pixels = np.full((slices, size, size, 3), 60, np.uint8)
    return Volume("p", Path("p.nii.gz"), "nifti", pixels, [10 + z for z in range(slices)], voxel_ml)


def test_montage_shows_the_tumour_slices_outlined() -> None:
    v = volume()
    mask = np.zeros(v.pixels.shape[:3], np.uint8)
    mask[1, 3:8, 3:8] = 1
    mask[3, 2:5, 6:10] = 1
    picture = montage(v.pixels, mask, v.labels)
    assert picture.shape == (12, 2 * 12 + GAP, 3)  # two tiles side by side
    outlined = (picture == OUTLINE).all(axis=2)
    assert outlined[:, :12].any() and outlined[:, 12 + GAP :].any()  # each tile with its tumour's outline
    nothing = montage(v.pixels, np.zeros_like(mask), v.labels)
    assert nothing.shape == (12, 12, 3)  # the middle slice, labelled "no tumour found"


def test_volume_summary_reports_size_place_and_confidence() -> None:
    v = volume()
    mask = np.zeros(v.pixels.shape[:3], np.uint8)
    mask[1, 3:5, 4:7] = 1
    mask[2, 3, 4] = 1
    probability = np.where(mask > 0, 0.8, 0.1).astype(np.float32)
    summary = volume_summary(v, probability, mask, keep_largest=True, fill_holes=True, seconds=1.23456)
    assert summary["tumour_voxels"] == 7
    assert summary["tumour_ml"] == pytest.approx(7 * 0.002)
    assert summary["slices_with_tumour"] == [11, 12]
    assert summary["bbox_slice_row_column"] == [[1, 3, 4], [2, 4, 6]]
    assert summary["mean_probability_inside"] == pytest.approx(0.8)
    assert summary["seconds"] == 1.235 and summary["largest_component"] is True
    assert summary["holes_filled"] is True
    empty = volume_summary(volume(voxel_ml=None), probability, np.zeros_like(mask), False, False, 0.0)
    assert empty["tumour_ml"] is None and empty["bbox_slice_row_column"] is None
    assert empty["mean_probability_inside"] is None and empty["slices_with_tumour"] == []


def test_a_folder_is_a_volume_only_for_one_cases_consecutive_slices() -> None:
    names = [Path(f"TCGA_XX_1_2000_{n}.tif") for n in (3, 1, 2, 10, 4, 5, 6, 7, 8, 9)]
    files, numbers = consecutive_case(names)
    assert numbers == list(range(1, 11)) and [f.name for f in files][:3] == [
        f"TCGA_XX_1_2000_{n}.tif" for n in (1, 2, 3)
    ]
    assert consecutive_case([Path("A_1.png"), Path("A_3.png")]) is None  # a gap
    assert consecutive_case([Path("A_1.png"), Path("B_2.png")]) is None  # two cases
    assert consecutive_case([Path("A_1.png"), Path("scan.png")]) is None  # not numbered
    assert consecutive_case([Path("A_1.png")]) is None  # one slice is a slice
