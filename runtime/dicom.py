"""DICOM series in (pydicom), as a volume with the series' geometry, so its mask is written as NIfTI.

Slices are ordered by their position along the slice normal (ImagePositionPatient projected on
the cross product of the ImageOrientationPatient direction cosines), never by file name or
InstanceNumber, which scanners and anonymisers do not keep in order. One folder holds one series.
"""

from __future__ import annotations

import contextlib
import struct
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
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
#: What pydicom raises, often lazily on first access to an element, for a damaged file.
BROKEN = (
    ValueError,
    TypeError,
    KeyError,
    AttributeError,
    IndexError,
    RuntimeError,
    NotImplementedError,
    OSError,
    OverflowError,
    EOFError,
    struct.error,
)


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


@dataclass
class Slice:
    """What saunet-run needs from one file's header."""

    path: Path
    series: str
    description: str
    orientation: np.ndarray  # row and column direction cosines (6)
    position: np.ndarray  # ImagePositionPatient (3, mm)
    spacing: np.ndarray  # PixelSpacing: row spacing, column spacing (mm)
    instance: int | None
    thickness: float


@contextlib.contextmanager
def _quiet_pydicom() -> Iterator[None]:
    """pydicom warns (and logs) about every odd value it meets; saunet-run's one line per input
    says what matters, so those are silenced while a series is read."""
    import pydicom

    mode = pydicom.config.settings.reading_validation_mode
    pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        pydicom.config.settings.reading_validation_mode = mode


def _numbers(dataset, name: str, count: int) -> np.ndarray:
    value = getattr(dataset, name, None)
    if value is None or len(value) != count:
        raise KeyError(f"no usable {name}")
    numbers = np.asarray([float(v) for v in value])
    if not np.isfinite(numbers).all():
        raise ValueError(f"{name} is not finite")
    return numbers


def _positive(values: np.ndarray, name: str) -> np.ndarray:
    if (values <= 0).any():
        raise ValueError(f"{name} is not positive")
    return values


def read_header(path: Path) -> Slice:
    """One file's header fields; InputError naming the file for a damaged or incomplete one."""
    import pydicom

    try:
        dataset = pydicom.dcmread(path, stop_before_pixels=True)
        instance = getattr(dataset, "InstanceNumber", None)
        return Slice(
            path,
            str(getattr(dataset, "SeriesInstanceUID", "no SeriesInstanceUID")),
            str(getattr(dataset, "SeriesDescription", "") or "no description"),
            _numbers(dataset, "ImageOrientationPatient", 6),
            _numbers(dataset, "ImagePositionPatient", 3),
            _positive(_numbers(dataset, "PixelSpacing", 2), "PixelSpacing"),
            int(instance) if instance not in (None, "") else None,
            max(float(getattr(dataset, "SliceThickness", None) or 1.0), 1e-3),
        )
    except pydicom.errors.InvalidDicomError as error:
        raise InputError(path, f"not a readable DICOM file ({error})") from None
    except (*BROKEN, pydicom.errors.BytesLengthException) as error:
        raise InputError(
            path,
            f"DICOM header not usable ({str(error).splitlines()[0] or type(error).__name__}); "
            "saunet-run needs each slice's position, orientation and pixel spacing",
        ) from None


def read_pixels(path: Path) -> np.ndarray:
    """One file's pixel values after the modality rescale (slope, intercept); MONOCHROME1 inverted."""
    import pydicom
    from pydicom.pixels import apply_modality_lut

    try:
        dataset = pydicom.dcmread(path)
        frames = int(getattr(dataset, "NumberOfFrames", 1) or 1)
        if frames > 1:
            raise InputError(
                path,
                f"a multi-frame DICOM file ({frames} frames); saunet-run reads series of "
                "single-frame files (most converters can write those)",
            )
        values = apply_modality_lut(dataset.pixel_array, dataset)
        if getattr(dataset, "PhotometricInterpretation", "") == "MONOCHROME1":
            values = values.max() - values
    except InputError:
        raise
    except (*BROKEN, pydicom.errors.BytesLengthException, pydicom.errors.InvalidDicomError) as error:
        raise InputError(
            path, f"pixel data cannot be decoded ({str(error).splitlines()[0] or type(error).__name__})"
        ) from None
    if not (values.ndim == 2 or (values.ndim == 3 and values.shape[2] == 3)):
        raise InputError(path, f"pixel data of shape {values.shape}; saunet-run reads grey or RGB slices")
    return values


def one_series(folder: Path, slices: list[Slice]) -> None:
    """Refuses a folder that holds several series, naming each."""
    series: dict[str, list[Slice]] = {}
    for item in slices:
        series.setdefault(item.series, []).append(item)
    if len(series) > 1:
        names = "; ".join(f"{uid} ({items[0].description}, {len(items)} files)" for uid, items in series.items())
        raise InputError(
            folder, f"{len(series)} DICOM series in one folder: {names}; put each series in a folder of its own"
        )


def read_series(folder: Path) -> Volume:
    """A folder holding one DICOM series, as a Volume in the data set's orientation.

    The voxels are laid out as NIfTI would (columns, rows, slices along the normal) with the
    series' own affine, then turned like a NIfTI volume (runtime.nifti.orient), so the mask is
    written back as a NIfTI in the series' geometry. Modality rescaling (slope, intercept) is
    applied before the windowing rule.
    """
    with _quiet_pydicom():
        slices = [read_header(path) for path in sorted(p for p in folder.iterdir() if is_dicom(p))]
        one_series(folder, slices)
        orientation = slices[0].orientation
        for item in slices:
            if not np.allclose(item.orientation, orientation, atol=1e-4):
                raise InputError(item.path, "its slice orientation differs from the rest of the series")
        row, column = orientation[:3], orientation[3:]
        normal = np.cross(row, column)
        slices.sort(key=lambda item: float(item.position @ normal))
        along = np.array([float(item.position @ normal) for item in slices])
        if len(along) > 1 and np.min(np.diff(along)) < SAME_POSITION_MM:
            first = int(np.argmin(np.diff(along)))
            raise InputError(
                folder,
                f"{slices[first].path.name} and {slices[first + 1].path.name} lie at the same "
                "position (repeated slices or several echoes in one series)",
            )
        values = [read_pixels(item.path) for item in slices]
    shapes = {v.shape for v in values}
    if len(shapes) != 1:
        raise InputError(folder, f"slices of different sizes {sorted(shapes)}")
    stack = np.stack(values)  # slices x rows x columns [x 3]
    spacing = slices[0].spacing  # row spacing, column spacing
    step = (
        (slices[-1].position - slices[0].position) / (len(slices) - 1)
        if len(slices) > 1
        else normal * slices[0].thickness
    )
    lps = np.eye(4)
    lps[:3, 0], lps[:3, 1], lps[:3, 2], lps[:3, 3] = row * spacing[1], column * spacing[0], step, slices[0].position
    data = np.moveaxis(stack, (0, 1, 2), (2, 1, 0))  # columns x rows x slices [x 3]
    turned, geometry, labels = orient(data, LPS_TO_RAS @ lps)
    if geometry.to_kaggle[2, 0] == 2:  # an axial series: slices labelled by InstanceNumber, as viewers do
        labels = [slices[k].instance if slices[k].instance is not None else k + 1 for k in labels]
    pixels = to_8_bit(turned, folder, grey=stack.ndim == 3)
    voxel_ml = float(spacing[0] * spacing[1] * np.linalg.norm(step)) / 1000.0
    return Volume(folder.name, folder, "dicom", pixels, labels, voxel_ml or None, geometry=geometry)
