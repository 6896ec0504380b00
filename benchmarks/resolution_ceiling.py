"""What training at a smaller input size costs at most: the true masks as training targets, back.

    python -m saunet.benchmarks.resolution_ceiling --data data/kaggle_3m --run runs/RUN --split val --size 128

Each true mask is made a training target at --size (`training.dataset.training_mask`, "nearest"
and "area"), taken back to the scan's size as saunet-run takes a prediction back (bilinear,
threshold 0.5) and scored against itself with the shared metrics: the Dice a model would reach if
it learnt its targets perfectly. Cases come from RUN's split.json (--split all: every case).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from saunet.benchmarks.report import stamped, write_json
from saunet.runtime.metrics import score_patients
from saunet.runtime.preprocess import InputError, resize_probability
from saunet.training.dataset import MASK_TARGETS, DataError, Volume, training_mask
from saunet.training.evaluate import load_split, split_cases_of


def round_trip(volume: Volume, size: int, targets: str) -> np.ndarray:
    """A volume's true masks as training targets at `size`, back at their own size as probabilities."""
    height, width = volume.masks.shape[1:]
    return np.stack(
        [resize_probability(training_mask(m, size, targets).astype(np.float32), height, width) for m in volume.masks]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--run", type=Path, default=Path("."), help="run folder whose split.json names the cases")
    parser.add_argument("--split", default="val", choices=("train", "val", "test", "all"))
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    try:
        volumes = load_split(args.data, None if args.split == "all" else split_cases_of(args.run, args.split))
    except (DataError, InputError) as error:
        sys.exit(f"error: {error}")
    rows = {}
    print(f"{len(volumes)} {args.split} case(s) of {args.run}, targets at {args.size}x{args.size} and back")
    for targets in MASK_TARGETS:
        scores = score_patients({v.case: (round_trip(v, args.size, targets), v.masks) for v in volumes})
        per_patient = [p["dice_3d"] for p in scores["per_patient"]]
        rows[targets] = {
            "mean": scores["dice_3d"]["mean"],
            "median": scores["dice_3d"]["median"],
            "min": min(per_patient),
        }
        print(
            f"{targets:<8} per-patient 3D Dice mean {rows[targets]['mean']:.4f}  "
            f"median {rows[targets]['median']:.4f}  min {rows[targets]['min']:.4f}"
        )
    if args.json:
        write_json(
            args.json,
            stamped(
                {
                    "data": args.data.resolve().name,
                    "run": args.run.name,
                    "split": args.split,
                    "size": args.size,
                    "dice_3d": rows,
                }
            ),
        )
        print(f"report: {args.json}")


if __name__ == "__main__":
    main()
