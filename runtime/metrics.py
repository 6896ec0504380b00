"""Segmentation metrics in pure numpy.

This module runs on the Raspberry Pi next to the int8 model, where only numpy
is installed, so it must not import scipy or TensorFlow. The same code scores
the float model on the workstation, which keeps both sets of numbers
comparable.

Conventions: masks are binary arrays (bool or 0/1) of any shape; a prediction
and its truth must have the same shape. Statistics without samples are
reported as ``None`` (never NaN) so the output of :func:`score_patients` is
valid JSON.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from saunet.runtime.components import fill_holes_2d, largest_component

METRIC_NAMES: dict[str, str] = {
    "per_patient": "per-patient rows: slices, 3D Dice without and with LCC (and holes filled), true and predicted tumour voxels",
    "dice_3d": "per-patient 3D Dice of the thresholded mask, mean/median over patients",
    "dice_3d_lcc": "per-patient 3D Dice after keeping the largest 6-connected component, mean/median over patients",
    "dice_3d_filled": "per-patient 3D Dice after keeping the largest component and filling each slice's enclosed holes "
    "(saunet-run's default for volumes), mean/median over patients",
    "slice_dice_tumour": "2D Dice per slice, only slices whose truth has tumour, mean/median over those slices",
    "empty_slice_fp_rate": "fraction of tumour-free slices where the thresholded mask has any positive pixel",
    "seed_soft_dice": "seed project's soft Dice on probabilities, pooled over all slices, smoothing 100",
    "pixel_accuracy": "fraction of pixels where the thresholded mask equals the truth",
    "threshold": "probability threshold at or above which a pixel counts as tumour",
}


def _binary_pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cast two masks to bool, refusing shape mismatches that broadcasting would hide."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch: {a.shape} vs {b.shape}")
    return a.astype(bool, copy=False), b.astype(bool, copy=False)


def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    """Dice coefficient 2|P∩T| / (|P|+|T|) of two binary masks.

    Both empty gives 1.0: the model correctly agrees there is no tumour, and
    scoring that 0 would punish correct empty predictions.
    """
    p, t = _binary_pair(pred, truth)
    total = np.count_nonzero(p) + np.count_nonzero(t)
    if total == 0:
        return 1.0
    return float(2.0 * np.count_nonzero(p & t) / total)


def iou(pred: np.ndarray, truth: np.ndarray) -> float:
    """Intersection over union |P∩T| / |P∪T|; both empty gives 1.0, as for :func:`dice`."""
    p, t = _binary_pair(pred, truth)
    union = np.count_nonzero(p | t)
    if union == 0:
        return 1.0
    return float(np.count_nonzero(p & t) / union)


def mask_agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Fraction of equal pixels of two binary masks.

    Used to check how often the int8 model's mask matches the float model's;
    unlike Dice it also counts agreement on background.
    """
    a, b = _binary_pair(a, b)
    if a.size == 0:
        raise ValueError("empty masks have no agreement fraction")
    return float(np.count_nonzero(a == b) / a.size)


def _soft_dice_from_sums(intersection: float, sum_prob: float, sum_truth: float, smooth: float) -> float:
    return (2.0 * intersection + smooth) / (sum_prob + sum_truth + smooth)


def soft_dice_pooled(prob: np.ndarray, truth: np.ndarray, smooth: float = 100.0) -> float:
    """The seed project's metric: (2·Σpt + s) / (Σp + Σt + s) over the whole batch.

    Pooled over all pixels of all slices, on soft probabilities, empty slices
    included. Reported only to compare with the seed project's numbers: the
    large smoothing term inflates it on mostly-empty data.
    """
    p = np.asarray(prob, dtype=np.float64)
    t = np.asarray(truth, dtype=np.float64)
    if p.shape != t.shape:
        raise ValueError(f"shape mismatch: {p.shape} vs {t.shape}")
    return _soft_dice_from_sums(float(np.sum(p * t)), float(p.sum()), float(t.sum()), smooth)


@dataclass(frozen=True)
class PatientScores:
    """One patient's row of the report; tumour_voxels_pred counts the mask before LCC."""

    patient: str
    slices: int
    dice_3d: float
    dice_3d_lcc: float
    dice_3d_filled: float
    tumour_voxels_true: int
    tumour_voxels_pred: int


def _mean_median(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"mean": None, "median": None}
    return {"mean": float(np.mean(values)), "median": float(np.median(values))}


def bootstrap_interval(
    values: Sequence[float], level: float = 0.95, draws: int = 10_000, seed: int = 0
) -> tuple[float, float] | None:
    """Percentile-bootstrap interval of the mean of per-patient values (patients drawn with replacement).

    A test set here has ten patients, and one failed volume moves their mean by up to 0.09;
    the interval says how far the mean over other patients like these could land, which a
    goal such as "mean Dice of at least 0.85" has to be read against. Patients, not slices,
    are the units drawn: slices of one patient are not independent. Seeded, so a report is
    reproducible. None for no values.
    """
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return None
    means = v[np.random.default_rng(seed).integers(0, v.size, size=(draws, v.size))].mean(axis=1)
    tail = 50.0 * (1.0 - level)
    low, high = np.percentile(means, [tail, 100.0 - tail])
    return float(low), float(high)


def paired_difference(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> dict:
    """Mean of the per-patient differences a - b over the same patients, with its bootstrap interval.

    Two configurations scored on the same patients differ far less from each other than either
    varies across patients; pairing removes that spread, so a change is judged by its own effect.
    """
    diffs = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    if diffs.size == 0:
        return {"mean": None, "interval": None, "better": 0, "worse": 0, "patients": 0}
    return {
        "mean": float(diffs.mean()),
        "interval": bootstrap_interval(diffs, level),
        "better": int(np.count_nonzero(diffs > 0)),
        "worse": int(np.count_nonzero(diffs < 0)),
        "patients": int(diffs.size),
    }


def format_difference(difference: dict) -> str:
    """One paired_difference as printed everywhere: mean, 95% interval, patients better and worse."""
    if difference["mean"] is None:
        return "no shared patients"
    low, high = difference["interval"]
    return (
        f"{difference['mean']:+.4f} (95% bootstrap {low:+.4f} to {high:+.4f}), "
        f"better {difference['better']}, worse {difference['worse']}"
    )


def _slice_dice(pred: np.ndarray, truth: np.ndarray) -> list[float]:
    """2D Dice of each slice of (slices, H, W) stacks; callers pass only slices with tumour."""
    inter = np.count_nonzero(pred & truth, axis=(1, 2))
    total = np.count_nonzero(pred, axis=(1, 2)) + np.count_nonzero(truth, axis=(1, 2))
    return [float(d) for d in 2.0 * inter / total]


def score_patients(volumes: Mapping[str, tuple[np.ndarray, np.ndarray]], threshold: float = 0.5) -> dict:
    """Score per-patient volumes of probabilities against truth; returns a JSON-able dict.

    ``volumes`` maps patient id to (probabilities in [0, 1], binary truth),
    both shaped (slices, H, W) with slices in anatomical order, because the
    3D Dice and the 3D largest component need real slice adjacency. Keys are
    described in :data:`METRIC_NAMES`.
    """
    rows: list[PatientScores] = []
    slice_dices: list[float] = []
    empty_fp = empty_slices = agree = pixels = 0
    soft_sums = np.zeros(3)  # sum(p*t), sum(p), sum(t)
    for patient, (prob, truth) in volumes.items():
        prob = np.asarray(prob)
        pred, truth = _binary_pair(prob >= threshold, truth)
        if pred.ndim != 3:
            raise ValueError(f"{patient}: expected (slices, H, W), got {pred.shape}")
        largest = largest_component(pred)
        rows.append(
            PatientScores(
                patient=str(patient),
                slices=pred.shape[0],
                dice_3d=dice(pred, truth),
                dice_3d_lcc=dice(largest, truth),
                dice_3d_filled=dice(fill_holes_2d(largest), truth),
                tumour_voxels_true=int(np.count_nonzero(truth)),
                tumour_voxels_pred=int(np.count_nonzero(pred)),
            )
        )
        tumour = truth.any(axis=(1, 2))
        slice_dices += _slice_dice(pred[tumour], truth[tumour])
        empty_fp += int(np.count_nonzero(pred[~tumour].any(axis=(1, 2))))
        empty_slices += int(np.count_nonzero(~tumour))
        soft_sums += (prob[truth].sum(dtype=np.float64), prob.sum(dtype=np.float64), np.count_nonzero(truth))
        agree += int(np.count_nonzero(pred == truth))
        pixels += pred.size
    return {
        "per_patient": [asdict(row) for row in rows],
        "dice_3d": _mean_median([row.dice_3d for row in rows]),
        "dice_3d_lcc": _mean_median([row.dice_3d_lcc for row in rows]),
        "dice_3d_filled": _mean_median([row.dice_3d_filled for row in rows]),
        "slice_dice_tumour": {**_mean_median(slice_dices), "slices": len(slice_dices)},
        "empty_slice_fp_rate": {
            "rate": empty_fp / empty_slices if empty_slices else None,
            "slices": empty_slices,
        },
        "seed_soft_dice": _soft_dice_from_sums(*map(float, soft_sums), 100.0) if pixels else None,
        "pixel_accuracy": agree / pixels if pixels else None,
        "threshold": float(threshold),
    }


def summary_rows(scores: dict, fmt: Callable[[float | None], str]) -> list[tuple[str, str]]:
    """The summary figures of score_patients, each named by what it measures (tables and the model card).

    The per-patient means come with their 95% bootstrap interval over the patients, computed
    here from the per-patient rows (so reports written before it was added show it too).
    """
    patients = len(scores["per_patient"])

    def interval(key: str) -> str:
        bounds = bootstrap_interval([row[key] for row in scores["per_patient"]])
        return fmt(None) if bounds is None else f"{fmt(bounds[0])} to {fmt(bounds[1])}"

    return [
        ("per-patient 3D Dice, mean", fmt(scores["dice_3d"]["mean"])),
        (f"per-patient 3D Dice, mean: 95% bootstrap interval ({patients} patients)", interval("dice_3d")),
        ("per-patient 3D Dice, median", fmt(scores["dice_3d"]["median"])),
        ("per-patient 3D Dice, largest component, mean", fmt(scores["dice_3d_lcc"]["mean"])),
        (
            f"per-patient 3D Dice, largest component, mean: 95% bootstrap interval ({patients} patients)",
            interval("dice_3d_lcc"),
        ),
        ("per-patient 3D Dice, largest component, median", fmt(scores["dice_3d_lcc"]["median"])),
        *(
            [
                ("per-patient 3D Dice, largest component, holes filled, mean", fmt(scores["dice_3d_filled"]["mean"])),
                (
                    f"per-patient 3D Dice, largest component, holes filled, mean: 95% bootstrap interval "
                    f"({patients} patients)",
                    interval("dice_3d_filled"),
                ),
            ]
            if "dice_3d_filled" in scores
            else []
        ),
        (
            f"per-slice Dice on tumour slices, mean ({scores['slice_dice_tumour']['slices']} slices)",
            fmt(scores["slice_dice_tumour"]["mean"]),
        ),
        (
            f"false-positive rate on empty slices ({scores['empty_slice_fp_rate']['slices']} slices)",
            fmt(scores["empty_slice_fp_rate"]["rate"]),
        ),
        ("seed's batch-pooled soft Dice (smoothing 100)", fmt(scores["seed_soft_dice"])),
        ("pixel accuracy", fmt(scores["pixel_accuracy"])),
    ]
