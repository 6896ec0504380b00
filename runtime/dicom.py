"""DICOM series in (pydicom), as a volume with the series' geometry, so its mask is written as NIfTI.

Slices are ordered by their position along the slice normal (ImagePositionPatient projected on
the cross product of the ImageOrientationPatient direction cosines), never by file name or
InstanceNumber, which scanners and anonymisers do not keep in order. One folder holds one series.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from saunet.runtime.nifti import orient
from saunet.runtime.preprocess import InputError, to_8_bit
from saunet.runtime.volumes import Volume

#: Bytes 128 to 131 of a DICOM Part 10 file.
MAGIC = b"DICM"
#: Slice positions closer than this (mm) are the same position: a repeated slice or another echo.
SAME_POSITION_MM = 1e-3
#: LPS (DICOM's patient axes) to RAS (NIfTI's).
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def is_dicom(path: Path) -> bool:
    """A .dcm file, or a file with the DICOM Part 10 preamble; DICOMDIR (an index, no pixels) is not."""
    if path.name.upper() == "DICOMDIR" or not path.is_file():
        return False
    if path.suffix.lower() == ".dcm":
        return True
    try:
        with open(path, "rb") as handle:
            handle.seek(128)
            return handle.read(4) == MAGIC
    except OSError:
        return False


def _read(path: Path, pixels: bool):
    import pydicom

    try:
        return pydicom.dcmread(path, stop_before_pixels=not pixels)
    except (OSError, ValueError, EOFError, pydicom.errors.InvalidDicomError) as error:
        raise InputError(path, f"not a readable DICOM file ({error})") from None


def _attribute(dataset, name: str, path: Path, count: int) -> np.ndarray:
    value = getattr(dataset, name, None)
    if value is None or len(value) != count:
        raise InputError(path, f"no usable {name}: saunet-run needs each slice's position and orientation")
    return np.asarray([float(v) for v in value])


def one_series(folder: Path, files: list[Path]) -> list:
    """The files' headers, refusing a folder that holds several series (each named)."""
    headers = [(path, _read(path, pixels=False)) for path in files]
    series: dict[str, list] = {}
    for path, header in headers:
        series.setdefault(str(getattr(header, "SeriesInstanceUID", "no SeriesInstanceUID")), []).append(header)
    if len(series) > 1:
        names = "; ".join(f"{uid} ({getattr(items[0], 'SeriesDescription', '') or 'no description'}, "
                          f"{len(items)} files)" for uid, items in series.items())
        raise InputError(folder, f"{len(series)} DICOM series in one folder: {names}; put each series in a folder "
                                 "of its own")
    return headers


def read_series(folder: Path) -> Volume:
    """A folder holding one DICOM series, as a Volume in the data set's orientation.

    The voxels are laid out as NIfTI would (columns, rows, slices along the normal) with the
    series' own affine, then turned like a NIfTI volume (runtime.nifti.orient), so the mask is
    written back as a NIfTI in the series' geometry. Modality rescaling (slope, intercept) is
    applied before the windowing rule; MONOCHROME1 (white background) is inverted.
    """
    from pydicom.pixels import apply_modality_lut

    files = sorted(p for p in folder.iterdir() if is_dicom(p))
    headers = one_series(folder, files)
    orientation = _attribute(headers[0][1], "ImageOrientationPatient", headers[0][0], 6)
    row, column = orientation[:3], orientation[3:]
    normal = np.cross(row, column)
    positions = []
    for path, header in headers:
        if not np.allclose(_attribute(header, "ImageOrientationPatient", path, 6), orientation, atol=1e-4):
            raise InputError(path, "its slice orientation differs from the rest of the series")
        positions.append(_attribute(header, "ImagePositionPatient", path, 3))
    order = np.argsort([float(p @ normal) for p in positions], kind="stable")
    along = np.array([float(positions[i] @ normal) for i in order])
    if len(along) > 1 and np.min(np.diff(along)) < SAME_POSITION_MM:
        first = int(np.argmin(np.diff(along)))
        raise InputError(folder, f"{headers[order[first]][0].name} and {headers[order[first + 1]][0].name} lie at "
                                 "the same position (repeated slices or several echoes in one series)")
    slices = []
    for i in order:
        path = headers[i][0]
        dataset = _read(path, pixels=True)
        try:
            values = apply_modality_lut(dataset.pixel_array, dataset)
        except (ValueError, TypeError, KeyError, AttributeError, RuntimeError, NotImplementedError, OSError) as error:
            raise InputError(path, f"pixel data cannot be decoded ({str(error).splitlines()[0]})") from None
        if getattr(dataset, "PhotometricInterpretation", "") == "MONOCHROME1":
            values = values.max() - values
        slices.append(values)
    shapes = {s.shape for s in slices}
    if len(shapes) != 1:
        raise InputError(folder, f"slices of different sizes {sorted(shapes)}")
    stack = np.stack(slices)  # slices x rows x columns [x 3]
    spacing = _attribute(headers[0][1], "PixelSpacing", headers[0][0], 2)  # row spacing, column spacing
    step = (positions[order[-1]] - positions[order[0]]) / (len(order) - 1) if len(order) > 1 else normal * float(
        getattr(headers[0][1], "SliceThickness", 1.0) or 1.0)
    lps = np.eye(4)
    lps[:3, 0], lps[:3, 1], lps[:3, 2], lps[:3, 3] = row * spacing[1], column * spacing[0], step, positions[order[0]]
    data = np.moveaxis(stack, (0, 1, 2), (2, 1, 0))  # columns x rows x slices [x 3]
    turned, geometry, labels = orient(data, LPS_TO_RAS @ lps)
    if geometry.to_kaggle[2, 0] == 2:  # axial series: label slices by InstanceNumber, as viewers do
        instance = [int(getattr(headers[i][1], "InstanceNumber", None) or k + 1) for k, i in enumerate(order)]
        labels = [instance[k] for k in labels]
    pixels = to_8_bit(turned, folder, grey=stack.ndim == 3)
    voxel_ml = float(spacing[0] * spacing[1] * np.linalg.norm(step)) / 1000.0
    return Volume(folder.name, folder, "dicom", pixels, labels, voxel_ml or None, geometry=geometry)

