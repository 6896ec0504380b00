"""Does an export segment like the float model? Per-patient Dice of both, and mask agreement."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from saunet.runtime.files import write_text
from saunet.runtime.metrics import mask_agreement, score_patients
from saunet.training.dataset import Volume
from saunet.training.evaluate import Predictor, predict_volumes

#: Slack for float rounding in a difference of two means of Dice: a drop exactly at the tolerance
#: passes, whichever way the last bit rounds. Far below one voxel's worth of Dice in any real volume.
ROUNDING = 1e-9


def passes_gate(change: float, tolerance: float) -> bool:
    """The parity gate: an export passes unless its mean per-patient Dice dropped by more than
    `tolerance` below the float model's (a gain, or a drop of exactly `tolerance`, passes)."""
    return change >= -tolerance - ROUNDING


def compare(
    volumes: list[Volume], reference: Predictor, candidates: dict[str, Predictor], threshold: float, tolerance: float
) -> dict:
    """Scores the float model and each export on the same volumes.

    For each export: its per-patient 3D Dice (mean), the change against the float model (per
    patient and mean), and the fraction of pixels where the two thresholded masks agree.
    `passed` is False when the mean per-patient Dice drops by more than `tolerance`.
    """
    float_probabilities = predict_volumes(volumes, reference)
    float_scores = score_patients(float_probabilities, threshold)
    float_dice = {p["patient"]: p["dice_3d"] for p in float_scores["per_patient"]}
    rows = {}
    for name, predict in candidates.items():
        probabilities = predict_volumes(volumes, predict)
        scores = score_patients(probabilities, threshold)
        agreement = mask_agreement(
            np.concatenate([(p >= threshold).ravel() for p, _ in probabilities.values()]),
            np.concatenate([(p >= threshold).ravel() for p, _ in float_probabilities.values()]),
        )
        change = scores["dice_3d"]["mean"] - float_scores["dice_3d"]["mean"]
        rows[name] = {
            "dice_3d_mean": scores["dice_3d"]["mean"],
            "dice_3d_lcc_mean": scores["dice_3d_lcc"]["mean"],
            "dice_change": change,
            "dice_change_per_patient": {
                p["patient"]: p["dice_3d"] - float_dice[p["patient"]] for p in scores["per_patient"]
            },
            "mask_agreement": agreement,
            "passed": passes_gate(change, tolerance),
        }
    return {
        "cases": [v.case for v in volumes],
        "threshold": threshold,
        "tolerance": tolerance,
        "float": {
            "dice_3d_mean": float_scores["dice_3d"]["mean"],
            "dice_3d_lcc_mean": float_scores["dice_3d_lcc"]["mean"],
        },
        "exports": rows,
    }


def markdown(report: dict, sizes: dict[str, int]) -> str:
    """The parity report as a Markdown table (written beside the models)."""
    lines = [
        "# Parity of the exports with the float model",
        "",
        f"{len(report['cases'])} validation case(s); per-patient 3D Dice of the mask thresholded at "
        f"{report['threshold']}, mean over patients; tolerance {report['tolerance']}.",
        "",
        "| model | size (MB) | per-patient Dice | largest component | change | mask agreement | gate |",
        "|---|---|---|---|---|---|---|",
        f"| float (Keras) | | {report['float']['dice_3d_mean']:.4f} | {report['float']['dice_3d_lcc_mean']:.4f} "
        f"| | | |",
    ]
    for name, row in report["exports"].items():
        gate = "pass" if row["passed"] else "FAIL"
        lines.append(
            f"| {name} | {sizes.get(name, 0) / 1e6:.2f} | {row['dice_3d_mean']:.4f} | {row['dice_3d_lcc_mean']:.4f} "
            f"| {row['dice_change']:+.4f} | {100 * row['mask_agreement']:.3f}% | {gate} |"
        )
    return "\n".join(lines) + "\n"


def write_report(report: dict, sizes: dict[str, int], stem: Path) -> tuple[Path, Path]:
    """Writes <stem>_parity.json and <stem>_parity.md; returns their paths."""
    json_path, md_path = stem.with_name(stem.name + "_parity.json"), stem.with_name(stem.name + "_parity.md")
    write_text(json_path, json.dumps({**report, "sizes_bytes": sizes}, indent=2) + "\n")
    write_text(md_path, markdown(report, sizes))
    return json_path, md_path
