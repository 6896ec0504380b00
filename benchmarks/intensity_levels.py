"""How bright each volume stores each sequence, and how much its tumour stands out in FLAIR.

    python -m saunet.benchmarks.intensity_levels --data data/kaggle_3m --run runs/RUN --json REPORT.json

The figures behind `--normalise channel-median` (runtime.preprocess): volumes whose channels
sit at other levels than the rest. The FLAIR contrast (the tumour's mean over the rest of the
head's) names the volumes whose tumours are faint, where the models fail. Cases are labelled
train/val/test from RUN's split.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from saunet.benchmarks.report import stamped, write_json
from saunet.runtime.preprocess import Preprocessing, head_mask
from saunet.training.dataset import find_cases, load_case


def channel_medians(images: np.ndarray) -> list[float]:
    """Each channel's median over the head pixels of all of a volume's slices."""
    return [float(m) for m in np.median(images[head_mask(images)], axis=0)]


def flair_contrast(images: np.ndarray, masks: np.ndarray) -> float | None:
    """Mean FLAIR over the tumour divided by mean FLAIR over the rest of the head; None without tumour."""
    flair = images[..., Preprocessing().channels.index("FLAIR")].astype(np.float64)
    tumour = masks > 0
    rest = head_mask(images) & ~tumour
    if not tumour.any() or not rest.any():
        return None
    return float(flair[tumour].mean() / flair[rest].mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--run", type=Path, required=True, help="run folder whose split.json labels the cases")
    parser.add_argument("--json", type=Path, required=True)
    args = parser.parse_args()
    split = json.loads((args.run / "split.json").read_text())
    group = {name: side for side in ("train", "val", "test") for name in split[side]}
    channels = Preprocessing().channels
    cases = []
    for case in find_cases(args.data):
        volume = load_case(case, None)
        medians = channel_medians(volume.images)
        contrast = flair_contrast(volume.images, volume.masks)
        cases.append(
            {
                "case": case.name,
                "split": group.get(case.name),
                "slices": len(volume.images),
                "median_over_head": dict(zip(channels, medians)),
                "flair_contrast": contrast,
            }
        )
        print(
            f"{case.name:<24} {group.get(case.name) or '-':<5} "
            + "  ".join(f"{c} {m:5.0f}" for c, m in zip(channels, medians))
            + (f"  FLAIR contrast {contrast:.2f}" if contrast is not None else "")
        )
    flair = [c["median_over_head"]["FLAIR"] for c in cases if c["split"] in ("train", "val")]
    print(
        f"FLAIR median over the head, training and validation volumes: min {min(flair):.0f}, "
        f"10th percentile {np.percentile(flair, 10):.0f}, median {np.median(flair):.0f}, max {max(flair):.0f}"
    )
    write_json(
        args.json,
        stamped(
            {
                "data": args.data.resolve().name,
                "run": args.run.name,
                "cases": cases,
            }
        ),
    )
    print(f"report: {args.json}")


if __name__ == "__main__":
    main()
