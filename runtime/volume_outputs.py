"""What saunet-run writes for a volume: its mask in the input's own form and one picture to look at."""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np

from saunet.runtime.montage import montage, save_montage
from saunet.runtime.nifti import write_mask
from saunet.runtime.outputs import overlay, save_png
from saunet.runtime.preprocess import InputError
from saunet.runtime.volumes import Volume


def write_volume(
    volume: Volume, mask: np.ndarray, out: Path, stem: str, used: set[str], overlays: bool
) -> dict[str, str | list[str]]:
    """Writes a volume's outputs and returns their paths for results.json.

    NIfTI and DICOM: `<stem>_seg.nii.gz` (uint8 0/1, the input's shape, affine and voxel order).
    A folder of slices: `<slice>_pred.png` for each slice, as for loose slices. Both:
    `<stem>_montage.png`; with `overlays`, each slice's overlay too. A file that cannot be
    written is an InputError naming it, and the files already written for the volume are removed.
    """
    done: list[Path] = []

    def write(path: Path, writer) -> str:
        try:
            writer(path)
        except OSError as error:
            with contextlib.suppress(OSError):  # an earlier run's file there would describe another mask
                path.unlink(missing_ok=True)
            raise InputError(path, f"cannot be written ({error.strerror or error})") from None
        done.append(path)
        return str(path)

    written: dict[str, str | list[str]] = {}
    try:
        if volume.geometry is not None:
            written["seg"] = write(out / f"{stem}_seg.nii.gz", lambda p: write_mask(mask, volume.geometry, p))
            slice_stems = [unique_name(f"{stem}_slice{label}", used) for label in volume.labels]
        else:
            slice_stems = [unique_name(path.stem, used) for path in volume.slice_files]
            written["masks"] = [
                write(out / f"{s}_pred.png", lambda p, z=z: save_png(p, mask[z] * 255))
                for z, s in enumerate(slice_stems)
            ]
        written["montage"] = write(
            out / f"{stem}_montage.png", lambda p: save_montage(p, montage(volume.pixels, mask, volume.labels))
        )
        if overlays:
            written["overlays"] = [
                write(out / f"{s}_overlay.png", lambda p, z=z: save_png(p, overlay(volume.pixels[z], mask[z])))
                for z, s in enumerate(slice_stems)
            ]
    except BaseException:
        for path in done:  # no file is left behind for a volume whose entry is an error
            path.unlink(missing_ok=True)
        raise
    return written


def unique_name(stem: str, used: set[str]) -> str:
    """`stem`, numbered if another output of this run already has it."""
    name, n = stem, 2
    while name in used:
        name, n = f"{stem}_{n}", n + 1
    used.add(name)
    return name
