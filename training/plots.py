"""The pictures a run leaves behind: training curves and scan / truth / prediction panels."""

from __future__ import annotations

import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from saunet.runtime.files import atomic_path  # noqa: E402


def plot_curves(history_csv: Path, out: Path) -> None:
    """Loss and Dice per epoch from the run's history.csv (training batches vs validation)."""
    with history_csv.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        return
    epochs = [int(r["epoch"]) + 1 for r in rows]

    def column(name: str) -> list[float]:
        return [float(r[name]) if r.get(name) not in (None, "") else np.nan for r in rows]

    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    left.plot(epochs, column("loss"), label="training loss")
    left.set_xlabel("epoch")
    left.set_title("loss")
    left.legend()
    right.plot(epochs, column("dice"), label="training: batch soft Dice (seed's metric)")
    right.plot(epochs, column("val_seed_soft_dice"), label="validation: pooled soft Dice (seed's metric)")
    right.plot(epochs, column("val_dice_3d"), label="validation: per-patient 3D Dice, mean")
    right.set_xlabel("epoch")
    right.set_ylim(0, 1)
    right.set_title("Dice")
    right.legend(fontsize=8)
    figure.tight_layout()
    with atomic_path(out) as partial:
        figure.savefig(partial, dpi=100)
    plt.close(figure)


def plot_samples(
    images: np.ndarray,
    truths: np.ndarray,
    predictions: list[np.ndarray],
    titles: list[str],
    out: Path,
    labels: list[str] | None = None,
) -> None:
    """A row per slice: the scan (as stored, RGB), the true mask, then each prediction.

    Args:
        images: uint8 scans (n, h, w, 3).
        truths: 0/1 masks (n, h, w).
        predictions: one (n, h, w) array of 0/1 masks per model shown.
        titles: a title per row (case and slice).
        out: the PNG to write.
        labels: a column title per prediction.
    """
    labels = labels or [f"prediction {i + 1}" for i in range(len(predictions))]
    columns = 2 + len(predictions)
    figure, axes = plt.subplots(len(images), columns, figsize=(2.6 * columns, 2.6 * len(images)), squeeze=False)
    for row, image in enumerate(images):
        panels = [image, truths[row]] + [p[row] for p in predictions]
        names = ["scan", "true mask"] + labels
        for col, (panel, name) in enumerate(zip(panels, names)):
            axis = axes[row, col]
            axis.imshow(panel, cmap=None if panel.ndim == 3 else "gray", vmin=0, vmax=255 if panel.ndim == 3 else 1)
            axis.set_xticks([])
            axis.set_yticks([])
            if row == 0:
                axis.set_title(name, fontsize=9)
        axes[row, 0].set_ylabel(titles[row], fontsize=7)
    figure.tight_layout()
    with atomic_path(out) as partial:
        figure.savefig(partial, dpi=80)
    plt.close(figure)
