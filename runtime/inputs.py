"""What saunet-run's arguments hold: loose slices, folders of one case's slices, NIfTI files, DICOM series.

- a file: a NIfTI volume (.nii, .nii.gz) or a slice (PNG, TIFF, JPEG);
- a folder: its DICOM files are one series; its scans are one volume if they are one case's
  consecutive slices in the data set's layout (`<case>_<n>`, `_mask` files left out), else
  loose slices as named files; its NIfTI files are volumes each; its sub-folders are looked
  into the same way, one level down (a folder of case folders is many volumes);
- a folder in which none of that is found is an error, not an empty success.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from saunet.runtime.dicom import is_dicom
from saunet.runtime.nifti import is_nifti
from saunet.runtime.preprocess import IMAGE_SUFFIXES
from saunet.runtime.volumes import consecutive_case, slice_number

KINDS = ("slice", "slices", "nifti", "dicom", "error")


@dataclass
class Item:
    """One thing to segment, or a problem to report: `kind` is one of KINDS.

    `files` and `numbers` are a slice folder's slices in order; `problem` is an error's one line.
    """

    path: Path
    kind: str
    files: list[Path] = field(default_factory=list)
    numbers: list[int] = field(default_factory=list)
    problem: str = ""
    from_folder: bool = False


def is_scan(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.stem.endswith("_mask") and path.is_file()


def visible(folder: Path) -> list[Path]:
    """A folder's entries, sorted, without hidden ones (such as a writer's partial files)."""
    return sorted(p for p in folder.iterdir() if not p.name.startswith("."))


def folder_items(folder: Path, depth: int = 1) -> tuple[list[Item], list[str]]:
    """The items found in a folder, and notes to print (a case whose slices are not consecutive)."""
    entries = visible(folder)
    if any(is_dicom(p) for p in entries):
        return [Item(folder, "dicom", from_folder=True)], []
    items, notes = [], []
    scans = [p for p in entries if is_scan(p)]
    case = consecutive_case(scans)
    if case:
        items.append(Item(folder, "slices", case[0], case[1], from_folder=True))
    else:
        items += [Item(p, "slice", from_folder=True) for p in scans]
        cases = {slice_number(p)[0] for p in scans if slice_number(p)}
        if len(scans) > 1 and len(cases) == 1 and all(slice_number(p) for p in scans):
            notes.append(
                f"note: {folder}: the slices of {cases.pop()} are not consecutive; each is segmented on its "
                "own, without 3D post-processing"
            )
    items += [Item(p, "nifti", from_folder=True) for p in entries if is_nifti(p) and p.is_file()]
    if depth > 0:
        for sub in (p for p in entries if p.is_dir()):
            found, more = folder_items(sub, depth - 1)
            items += [item for item in found if item.kind != "error"]
            notes += more
    if not items and depth > 0:
        items.append(
            Item(folder, "error", problem="no scans found (PNG, TIFF, JPEG, NIfTI or a DICOM series)", from_folder=True)
        )
    return items, notes


def collect(inputs: tuple[Path, ...]) -> tuple[list[Item], list[str]]:
    """Every argument expanded to items, in order, and the notes to print about them."""
    items, notes = [], []
    for path in inputs:
        if path.is_dir():
            found, more = folder_items(path)
            items += found
            notes += more
        elif is_nifti(path):
            items.append(Item(path, "nifti"))
        elif path.suffix.lower() == ".dcm":
            items.append(Item(path, "error", problem="a single DICOM file; pass the folder of its series"))
        else:
            items.append(Item(path, "slice"))
    return items, notes
