"""A volume's entry in results.json: how large the tumour is, where, and how sure the model was."""

from __future__ import annotations

import numpy as np

from saunet.runtime.volumes import Volume


def volume_summary(
    volume: Volume, probability: np.ndarray, mask: np.ndarray, keep_largest: bool, fill_holes: bool, seconds: float
) -> dict:
    """Tumour voxels, millilitres (None without a voxel size), slices with tumour (by the input's
    slice numbers), bounding box, mean probability inside the mask and the time the volume took.

    The bounding box is in the data set's orientation (slice, row, column), inclusive, with
    slices counted from 0 from the inferior end; `slices_with_tumour` gives the input's own numbers.
    `keep_largest` and `fill_holes` record the post-processing the mask went through.
    """
    voxels = int(np.count_nonzero(mask))
    where = np.nonzero(mask)
    return {
        "kind": volume.kind,
        "slices": int(mask.shape[0]),
        "size": [int(mask.shape[2]), int(mask.shape[1])],
        "voxel_ml": volume.voxel_ml,
        "tumour_voxels": voxels,
        "tumour_ml": round(voxels * volume.voxel_ml, 4) if volume.voxel_ml is not None else None,
        "slices_with_tumour": [volume.labels[z] for z in np.flatnonzero(mask.any(axis=(1, 2)))],
        "bbox_slice_row_column": ([[int(a.min()) for a in where], [int(a.max()) for a in where]] if voxels else None),
        "mean_probability_inside": float(probability[mask.astype(bool)].mean()) if voxels else None,
        "largest_component": keep_largest,
        "holes_filled": fill_holes,
        "seconds": round(seconds, 3),
    }
