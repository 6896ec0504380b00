"""A patient's scan as the model sees it, whatever file it came from, and its 3D segmentation."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from saunet.runtime.components import fill_holes_2d, largest_component
from saunet.runtime.preprocess import InputError, read_pixels, to_8_bit
from saunet.runtime.segmenter import Prediction

#: One slice's prediction: HxWx3 uint8 pixels in, probabilities at HxW out. saunet-run passes
#: Segmenter.predict; an ensemble or test-time augmentation is another function of this type.
Predict = Callable[[np.ndarray], Prediction]

#: `<case>_<n>`: a slice of the data set's layout, numbered from 1, not zero-padded.
SLICE_NAME = re.compile(r"^(?P<case>.+)_(?P<number>\d+)$")


@dataclass
class Volume:
    """One patient's scan in the data set's orientation, ready for the model.

    Args:
        name: the stem its outputs are named after (`<name>_seg.nii.gz`, `<name>_montage.png`).
        source: the file or folder it was read from.
        kind: "slices" (a folder of numbered slices), "nifti" or "dicom".
        pixels: slices x H x W x 3 uint8, slices inferior to superior, rows anterior to
            posterior, columns from the patient's right to left (the Kaggle slices' orientation).
        labels: each slice's number as the user knows it (the file's slice number or index).
        voxel_ml: one voxel's volume in millilitres, None where the file does not say (PNG, TIFF).
        slice_files: for a folder of slices, each slice's file, in slice order.
        geometry: for NIfTI and DICOM, how to write a mask back in the input's own voxel order.
    """

    name: str
    source: Path
    kind: str
    pixels: np.ndarray
    labels: list[int]
    voxel_ml: float | None = None
    slice_files: list[Path] = field(default_factory=list)
    geometry: object | None = None


def slice_number(path: Path) -> tuple[str, int] | None:
    """(case, slice number) of a file named in the data set's layout, else None."""
    match = SLICE_NAME.match(path.stem)
    return (match["case"], int(match["number"])) if match else None


def consecutive_case(files: Sequence[Path]) -> tuple[list[Path], list[int]] | None:
    """The files sorted by slice number if they are one case's consecutive slices, else None."""
    numbered = [slice_number(p) for p in files]
    if len(files) < 2 or None in numbered or len({case for case, _ in numbered}) != 1:
        return None
    order = sorted(range(len(files)), key=lambda i: numbered[i][1])
    numbers = [numbered[i][1] for i in order]
    if numbers != list(range(numbers[0], numbers[0] + len(numbers))):
        return None
    return [files[i] for i in order], numbers


def read_slice_folder(folder: Path, files: list[Path], numbers: list[int]) -> Volume:
    """One case's numbered slices as a volume, windowed together (runtime.intensity's rule, per volume)."""
    slices = [read_pixels(path) for path in files]
    first = slices[0]
    for path, pixels in zip(files, slices):
        if pixels.shape != first.shape or pixels.dtype != first.dtype:
            raise InputError(
                path,
                f"{pixels.shape[1]}x{pixels.shape[0]} {pixels.dtype} slice in a volume of "
                f"{first.shape[1]}x{first.shape[0]} {first.dtype} slices ({files[0].name})",
            )
    pixels = to_8_bit(np.stack(slices), folder, grey=first.ndim == 2)
    return Volume(folder.name, folder, "slices", pixels, numbers, None, list(files))


def predict_volume(volume: Volume, predict: Predict) -> tuple[np.ndarray, float]:
    """Probabilities (slices x H x W, float32) of every slice, and the model's invoke time in ms."""
    probability = np.empty(volume.pixels.shape[:3], np.float32)
    invoke_ms = 0.0
    for z, pixels in enumerate(volume.pixels):
        prediction = predict(pixels)
        probability[z] = prediction.probability
        invoke_ms += prediction.invoke_ms
    return probability, invoke_ms


def postprocess(probability: np.ndarray, threshold: float, keep_largest: bool, fill_holes: bool) -> np.ndarray:
    """The thresholded 3D mask (uint8 0/1): only its largest 6-connected component if `keep_largest`,
    then each slice's enclosed holes filled if `fill_holes`.

    The largest component is the data set author's protocol. Filling holes puts back the dark
    cystic or necrotic core that the model tends to leave inside a bright FLAIR rim; rule 2 of
    docs/experiments.md adopted it on the cross-validation's out-of-fold predictions. Both are
    the functions the reported Dice is computed with (saunet.runtime.metrics).
    """
    mask = probability >= threshold
    if keep_largest:
        mask = largest_component(mask)
    if fill_holes:
        mask = fill_holes_2d(mask)
    return mask.astype(np.uint8)
