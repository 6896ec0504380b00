"""Does filling each slice's holes after the largest component raise per-patient 3D Dice?

    python -m saunet.benchmarks.hole_filling --data data/kaggle_3m [--model M.tflite] [--json REPORT.json]

Runs the model as saunet-run does on each validation patient of the bundled model's split
(runtime/models/saunet_float.json, key split.val): every slice through Segmenter.predict,
threshold, largest 6-connected component (saunet.runtime.volumes.postprocess); then scores
the 3D Dice (saunet.runtime.metrics.dice) with and without every slice's holes filled
(saunet-run's default since the cross-validation adopted it; `--keep-holes` turns it off).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from saunet.benchmarks.report import stamped, write_json
from saunet.runtime.inputs import folder_items
from saunet.runtime.metrics import dice, paired_difference
from saunet.runtime.models import BUNDLED_MODEL
from saunet.runtime.preprocess import read_mask
from saunet.runtime.segmenter import Segmenter
from saunet.runtime.volumes import postprocess, predict_volume, read_slice_folder

SPLIT = Path(__file__).resolve().parents[1] / "runtime" / "models" / "saunet_float.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="the Kaggle layout (kaggle_3m)")
    parser.add_argument("--model", type=Path, default=BUNDLED_MODEL)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None, help="write the report here")
    args = parser.parse_args()
    patients = json.loads(SPLIT.read_text())["split"]["val"]
    segmenter = Segmenter(args.model, args.threads)
    rows = []
    for patient in patients:
        (item,), _ = folder_items(args.data / patient, depth=0)
        volume = read_slice_folder(item.path, item.files, item.numbers)
        truth = np.stack([read_mask(p.with_name(p.stem + "_mask" + p.suffix)) for p in item.files])
        probability, _ = predict_volume(volume, segmenter.predict)
        lcc = postprocess(probability, segmenter.spec.threshold, keep_largest=True, fill_holes=False)
        filled = postprocess(probability, segmenter.spec.threshold, keep_largest=True, fill_holes=True)
        rows.append(
            {
                "patient": patient,
                "dice_lcc": dice(lcc, truth),
                "dice_lcc_filled": dice(filled, truth),
                "voxels_added": int(filled.sum() - lcc.sum()),
            }
        )
        print(
            f"{patient}: LCC {rows[-1]['dice_lcc']:.4f}, LCC + 2D holes filled {rows[-1]['dice_lcc_filled']:.4f} "
            f"({rows[-1]['voxels_added']} voxels added)"
        )
    means = {key: float(np.mean([row[key] for row in rows])) for key in ("dice_lcc", "dice_lcc_filled")}
    change = paired_difference([row["dice_lcc_filled"] for row in rows], [row["dice_lcc"] for row in rows])
    low, high = change["interval"]
    print(
        f"mean per-patient 3D Dice over {len(rows)} validation patients: LCC {means['dice_lcc']:.4f}, "
        f"LCC + holes filled {means['dice_lcc_filled']:.4f} (paired change {change['mean']:+.4f}, "
        f"{low:+.4f} to {high:+.4f}); filling better on {change['better']}, worse on {change['worse']}"
    )
    if args.json:
        write_json(
            args.json,
            stamped(
                {
                    "model": str(args.model),
                    "patients": rows,
                    "mean": means,
                    "better": change["better"],
                    "worse": change["worse"],
                    "filled_minus_lcc": change,
                }
            ),
        )


if __name__ == "__main__":
    main()
