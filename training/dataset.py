"""Finding, checking, splitting and loading the LGG slices (numpy only, no TensorFlow).

Reads the Kaggle `kaggle_3m` layout, `<case>/<case>_<n>.tif` with `<case>_<n>_mask.tif`, and
the same pairs as PNG, in case folders or flat. The patient and slice number come from the
file name, slices are sorted by number (they are not zero-padded), and `data.csv` is joined
on the patient id where it is present.
"""

from __future__ import annotations

import csv
import math
import re
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from saunet.runtime.preprocess import (
    IMAGE_SUFFIXES,
    InputError,
    read_image,
    read_mask,
    resize_image,
    resize_mask,
)

SLICE_NAME = re.compile(r"^(?P<case>.+)_(?P<index>\d+)$")
SPLITS = ("train", "val", "test")
#: How masks are taken to the model's input size for training (see `training_mask`).
MASK_TARGETS = ("nearest", "area")


class DataError(ValueError):
    """The data folder as a whole cannot be used (one line, naming the folder or file)."""


@dataclass(frozen=True)
class Slice:
    case: str
    index: int
    image: Path
    mask: Path


@dataclass
class Case:
    """One patient's volume: a case folder of the data set (one MRI study of one patient)."""

    name: str
    slices: list[Slice]
    info: dict = field(default_factory=dict)

    @property
    def patient(self) -> str:
        """TCGA_<institution>_<patient>, the id `data.csv` uses (the case name less its date)."""
        parts = self.name.split("_")
        return "_".join(parts[:3]) if len(parts) >= 4 and parts[0] == "TCGA" else self.name


@dataclass
class Volume:
    """A case's slices in memory: images (n, s, s, 3) uint8, masks (n, s, s) uint8 0/1 (or, as
    "area" training targets, float16 tumour shares)."""

    case: str
    images: np.ndarray
    masks: np.ndarray


class BadFiles:
    """Collects problems when --skip-bad is on; raises the first one otherwise."""

    def __init__(self, skip: bool):
        self.skip = skip
        self.problems: list[str] = []

    def report(self, message: str) -> None:
        if not self.skip:
            raise DataError(message)
        self.problems.append(message)
        print(f"skipped: {message}", file=sys.stderr)


def find_cases(root: Path | str, bad: BadFiles | None = None) -> list[Case]:
    """Finds every image/mask pair below `root`, grouped by case and sorted by slice number.

    Raises DataError for a missing folder, a folder without pairs, and (unless `bad` skips
    them) an image without its mask, a mask without its image, or an unparseable name.
    """
    root = Path(root)
    bad = bad or BadFiles(skip=False)
    if not root.is_dir():
        raise DataError(f"{root}: no such data folder")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    masks = {p.with_name(p.stem[: -len("_mask")] + p.suffix): p for p in files if p.stem.endswith("_mask")}
    images = [p for p in files if not p.stem.endswith("_mask")]
    by_case: dict[str, list[Slice]] = defaultdict(list)
    for image in images:
        mask = masks.pop(image, None)
        if mask is None:
            bad.report(f"{image}: image without its mask ({image.stem}_mask{image.suffix})")
            continue
        match = SLICE_NAME.match(image.stem)
        if not match:
            bad.report(f"{image}: name does not end in _<slice number>")
            continue
        by_case[match["case"]].append(Slice(match["case"], int(match["index"]), image, mask))
    for mask in masks.values():
        bad.report(f"{mask}: mask without its image")
    if not by_case:
        raise DataError(f"{root}: no image/mask pairs (<case>_<n>.tif with <case>_<n>_mask.tif) found")
    info = _read_table(root)
    cases = [Case(name, sorted(slices, key=lambda s: s.index)) for name, slices in sorted(by_case.items())]
    for case in cases:
        case.info = info.get(case.patient, {})
    return cases


def _read_table(root: Path) -> dict[str, dict]:
    """The data set's patient table (data.csv), by patient id; empty when there is none."""
    tables = [root / "data.csv", root / "kaggle_3m" / "data.csv"]
    for table in tables:
        if table.is_file():
            with table.open(newline="", encoding="utf-8-sig") as handle:
                return {row["Patient"]: row for row in csv.DictReader(handle) if row.get("Patient")}
    return {}


def split_cases(
    names: list[str], fractions: tuple[float, float, float] = (0.85, 0.10, 0.05), seed: int = 0
) -> dict[str, list[str]]:
    """Splits case names into train/val/test by patient, deterministically for a seed.

    All cases of one patient (TCGA id) go to the same side, so no patient's slices leak
    across the split. Validation and test get round(fraction * patients), at least one each
    when their fraction is positive; training gets the rest.
    """
    if (
        len(fractions) != 3
        or not all(math.isfinite(f) and f >= 0 for f in fractions)
        or not math.isclose(sum(fractions), 1.0, abs_tol=1e-6)
    ):
        raise ValueError(f"split fractions must be three non-negative numbers summing to 1, got {fractions}")
    patients = sorted({Case(name, []).patient for name in names})
    order = [patients[i] for i in np.random.default_rng(seed).permutation(len(patients))]
    counts = [max(1, round(f * len(patients))) if f > 0 else 0 for f in fractions[1:]]
    if sum(counts) >= len(patients):
        raise ValueError(f"{len(patients)} patients are too few for the split {fractions}")
    val = set(order[: counts[0]])
    test = set(order[counts[0] : counts[0] + counts[1]])
    side = {p: "val" if p in val else "test" if p in test else "train" for p in patients}
    split: dict[str, list[str]] = {name: [] for name in SPLITS}
    for name in sorted(names):
        split[side[Case(name, []).patient]].append(name)
    return split


def fold_split(
    names: list[str], fractions: tuple[float, float, float], seed: int, folds: int, fold: int
) -> dict[str, list[str]]:
    """Patient-level K-fold cross-validation: fold `fold` of `folds` over the non-test patients.

    The test patients are exactly those of split_cases(names, fractions, seed), so the held-out
    test set of a cross-validation is the one a single run with the same --split and --seed keeps
    aside. The other patients are shuffled (by seed) and dealt into `folds` folds; fold `fold`
    validates, the rest trains. Every non-test patient validates in exactly one fold.
    """
    if folds < 2 or not 0 <= fold < folds:
        raise ValueError(f"fold {fold} of {folds}: need at least 2 folds and 0 <= fold < folds")
    test_names = set(split_cases(names, fractions, seed)["test"])
    pool = sorted({Case(name, []).patient for name in names if name not in test_names})
    if len(pool) < folds:
        raise ValueError(f"{len(pool)} non-test patients are too few for {folds} folds")
    order = [pool[i] for i in np.random.default_rng([seed, folds]).permutation(len(pool))]
    val = set(order[fold::folds])
    split: dict[str, list[str]] = {name: [] for name in SPLITS}
    for name in sorted(names):
        patient = Case(name, []).patient
        side = "test" if name in test_names else "val" if patient in val else "train"
        split[side].append(name)
    return split


def training_mask(mask: np.ndarray, size: int, targets: str) -> np.ndarray:
    """A 0/1 mask at size x size as a training target.

    "nearest" keeps it 0/1 (uint8) by picking one pixel of each block: at 256 -> 128 the target
    sits half a pixel off its image (resized bilinearly) and every edge moves to the block grid.
    "area" gives each pixel the share of it covered by tumour (float16, box filter), which the
    runtime's bilinear resizing of the prediction back to the scan's size can reproduce: the true
    masks of the validation patients taken to 128 and back score per-patient 3D Dice 0.957 as
    nearest targets, 0.991 as area ones (README, "Mask targets").
    """
    if targets == "nearest":
        return resize_mask(mask, size, size)
    if targets != "area":
        raise ValueError(f"mask targets {targets!r}: choose one of {', '.join(MASK_TARGETS)}")
    if mask.shape == (size, size):
        return mask.astype(np.float16)
    shrunk = Image.fromarray(mask.astype(np.float32), mode="F").resize((size, size), Image.BOX)
    return np.clip(np.asarray(shrunk), 0.0, 1.0).astype(np.float16)


def load_case(
    case: Case, size: int | None, bad: BadFiles | None = None, mask_targets: str = "nearest"
) -> Volume | None:
    """Reads a case's slices at size x size (None: as stored); None when every slice was skipped as bad.

    Training reads at the model's input size, masks as `training_mask` makes them; scoring reads
    as stored, so that Dice is measured on the masks at their own resolution, as saunet-run
    would produce them.

    A corrupt or unreadable file, an image and mask of different sizes, or a mask that is not
    a single-channel image raises DataError naming the file, unless `bad` skips the slice.
    """
    bad = bad or BadFiles(skip=False)
    images, masks = [], []
    for item in case.slices:
        try:
            image, mask = read_image(item.image), read_mask(item.mask)
        except InputError as error:
            bad.report(str(error))
            continue
        if image.shape[:2] != mask.shape:
            bad.report(
                f"{item.mask}: mask is {mask.shape[1]}x{mask.shape[0]}, its image {image.shape[1]}x{image.shape[0]}"
            )
            continue
        if size is None and images and image.shape[:2] != images[0].shape[:2]:
            bad.report(
                f"{item.image}: is {image.shape[1]}x{image.shape[0]}, the case's first slice "
                f"{images[0].shape[1]}x{images[0].shape[0]}"
            )
            continue
        images.append(image if size is None else resize_image(image, size))
        masks.append(mask if size is None else training_mask(mask, size, mask_targets))
    if not images:
        return None
    return Volume(case.name, np.stack(images), np.stack(masks))


def load_cases(
    cases: list[Case], size: int | None, bad: BadFiles | None = None, mask_targets: str = "nearest"
) -> list[Volume]:
    """Loads several cases, dropping those with no usable slice."""
    volumes = [load_case(case, size, bad, mask_targets) for case in cases]
    return [v for v in volumes if v is not None]


def stack(volumes: list[Volume]) -> tuple[np.ndarray, np.ndarray]:
    """All slices of several volumes as two arrays (images, masks), for training."""
    return np.concatenate([v.images for v in volumes]), np.concatenate([v.masks for v in volumes])
