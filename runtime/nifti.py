"""NIfTI volumes in (nibabel), turned to the data set's slice orientation, and masks out in the file's own.

The model was trained on slices stored as a radiologist views them: rows anterior to posterior,
columns from the patient's right to left, slices inferior to superior; as NIfTI voxel axes that
is (P, L, S). Every volume is turned to the closest such axes (flips and axis swaps only, no
resampling), and its mask turned back exactly, so the mask has the input's shape, affine and
voxel order and a viewer overlays it on the scan with no further step.
"""

from __future__ import annotations

import contextlib
import gzip
import logging
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from saunet.runtime.files import atomic_path
from saunet.runtime.preprocess import InputError, to_8_bit
from saunet.runtime.volumes import Volume

#: The data set's voxel order as nibabel orientation codes (rows, columns, slices).
KAGGLE_AXES = ("P", "L", "S")
NIFTI_SUFFIXES = (".nii", ".nii.gz")
#: Larger volumes are refused before their voxels are read (a 256 x 256 x 88 x 3 patient is 17 million).
MAX_VOXELS = 400_000_000


def is_nifti(path: Path) -> bool:
    return path.name.lower().endswith(NIFTI_SUFFIXES)


def nifti_stem(path: Path) -> str:
    """The name without .nii or .nii.gz."""
    name = path.name
    return name[: -len(".nii.gz")] if name.lower().endswith(".nii.gz") else name[: -len(".nii")]


@dataclass
class Geometry:
    """Where a volume's voxels are in space, and how they map to the data set's orientation.

    Args:
        affine: the input's voxel-to-world (RAS, mm) matrix; the mask gets the same.
        shape: the input's three spatial dimensions, in its own voxel order.
        to_kaggle: nibabel orientation transform from the input's axes to KAGGLE_AXES.
        qform_code, sform_code: the input's codes, kept so viewers treat the mask as the scan.
    """

    affine: np.ndarray
    shape: tuple[int, int, int]
    to_kaggle: np.ndarray
    qform_code: int = 1
    sform_code: int = 1


def orient(data: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, Geometry, list[int]]:
    """X x Y x Z [x C] voxels -> (slices x H x W [x C] in the data set's orientation, geometry,
    each slice's index along the input's own axis)."""
    import nibabel as nib

    to_kaggle = nib.orientations.ornt_transform(nib.io_orientation(affine), nib.orientations.axcodes2ornt(KAGGLE_AXES))
    turned = np.moveaxis(nib.orientations.apply_orientation(data, to_kaggle), 2, 0)
    slice_axis = int(np.flatnonzero(to_kaggle[:, 0] == 2)[0])
    count = data.shape[slice_axis]
    labels = list(range(count))[::-1] if to_kaggle[slice_axis, 1] < 0 else list(range(count))
    return np.ascontiguousarray(turned), Geometry(affine, tuple(data.shape[:3]), to_kaggle), labels


def to_input_order(mask: np.ndarray, geometry: Geometry) -> np.ndarray:
    """A slices x H x W mask in the data set's orientation -> the input's own voxel order."""
    import nibabel as nib

    back = nib.orientations.ornt_transform(
        nib.orientations.axcodes2ornt(KAGGLE_AXES), nib.io_orientation(geometry.affine)
    )
    return np.ascontiguousarray(nib.orientations.apply_orientation(np.moveaxis(mask, 0, 2), back))


def model_channels(data: np.ndarray, path: Path, channels: tuple[int, ...] | None) -> np.ndarray:
    """A 4D file's last axis reordered into the model's channel order (`channels`: the file's
    index of each of the model's channels; None: the file already has the model's order)."""
    if data.shape[3] != 3:
        raise InputError(
            path,
            f"{data.shape[3]} volumes along the 4th axis; saunet-run takes 1 (FLAIR) or "
            "3 (pre-contrast, FLAIR, post-contrast; see --channels)",
        )
    return data if channels is None else data[..., list(channels)]


def _load(path: Path):
    """(image, voxels in the stored type) of a NIfTI file; InputError for anything unusable."""
    import nibabel as nib

    try:
        image = nib.load(path)
        shape = image.shape
        if len(shape) == 4 and shape[3] == 1:
            shape = shape[:3]
        if len(shape) not in (3, 4):
            raise InputError(
                path,
                f"a {len(shape)}D image of shape {tuple(shape)}; saunet-run needs a 3D volume "
                "(or 4D of three sequences); pass 2D slices as PNG or TIFF",
            )
        if int(np.prod(shape, dtype=np.int64)) > MAX_VOXELS:
            raise InputError(path, f"{'x'.join(map(str, shape))} voxels is above the limit of {MAX_VOXELS:,}")
        if not np.isfinite(image.affine).all() or not np.isfinite(image.header.get_zooms()[:3]).all():
            raise InputError(path, "its voxel-to-world matrix or voxel size is not finite")
        data = np.asanyarray(image.dataobj).reshape(shape)
    except InputError:
        raise
    except (
        OSError,
        ValueError,
        EOFError,
        zlib.error,
        MemoryError,
        nib.filebasedimages.ImageFileError,
        nib.spatialimages.HeaderDataError,
    ) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise InputError(path, f"not a readable NIfTI file ({reason})") from None
    if data.dtype.kind not in "uifb":
        raise InputError(path, f"unsupported voxel type {data.dtype}")
    return image, data


@contextlib.contextmanager
def _quiet_nibabel() -> Iterator[None]:
    """Silences nibabel's notes on the header fields it fixes (logged up to ERROR level), which
    would break saunet-run's one line per input; a header it cannot use is still an error."""
    logger = logging.getLogger("nibabel.global")
    level = logger.level
    logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        logger.setLevel(level)


def read_nifti(path: Path, channels: tuple[int, ...] | None = None) -> Volume:
    """A 3D NIfTI (one sequence: FLAIR, copied into the three channels as the data set does for a
    missing sequence) or a 4D one of three sequences, as a Volume in the data set's orientation."""
    if not path.is_file():
        raise InputError(path, "no such file" if not path.exists() else "not a file")
    with _quiet_nibabel():
        image, data = _load(path)
        if data.ndim == 4:
            data = model_channels(data, path, channels)
        turned, geometry, labels = orient(data, image.affine)
        geometry.qform_code = int(image.header.get("qform_code", 1))
        geometry.sform_code = int(image.header.get("sform_code", 1))
        voxel_ml = float(np.prod(image.header.get_zooms()[:3])) / 1000.0
    pixels = to_8_bit(turned, path, grey=data.ndim == 3)
    return Volume(nifti_stem(path), path, "nifti", pixels, labels, voxel_ml or None, geometry=geometry)


def write_mask(mask: np.ndarray, geometry: Geometry, path: Path) -> None:
    """Writes a slices x H x W 0/1 mask as uint8 NIfTI (gzip) in the input's shape, affine and voxel order."""
    import nibabel as nib

    image = nib.Nifti1Image(to_input_order(mask.astype(np.uint8), geometry), geometry.affine)
    image.set_qform(geometry.affine, code=geometry.qform_code or 1)
    image.set_sform(geometry.affine, code=geometry.sform_code or 1)
    image.set_data_dtype(np.uint8)
    data = gzip.compress(image.to_bytes(), compresslevel=1, mtime=0)
    with atomic_path(path) as partial:
        partial.write_bytes(data)
