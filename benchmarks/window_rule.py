"""How the 8-bit window (saunet.runtime.intensity) treats the training data, and what it costs the model.

    python -m saunet.benchmarks.window_rule --data data/kaggle_3m [--model M.tflite] [--json REPORT.json]

The data set's slices are already 8-bit; a user's scan of the same patient would come as 12 to
16 bits. Each patient is stored as its 8-bit values times 16 (a 12-bit export of the same
pixels), windowed by the rule, and compared with the 8-bit pixels the model was trained on:
every volume's per-channel minimum, maximum and share of voxels at 255 (what the rule is
modelled on), the rule's gain over the stored pixels (median over head voxels), and, on the
bundled model's validation patients (split.val), per-patient 3D Dice with the largest
component on the stored pixels and on the windowed ones.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from saunet.benchmarks.report import stamped, write_json
from saunet.runtime.inputs import folder_items
from saunet.runtime.intensity import window
from saunet.runtime.metrics import dice
from saunet.runtime.models import BUNDLED_MODEL
from saunet.runtime.preprocess import head_mask, read_mask
from saunet.runtime.segmenter import Segmenter
from saunet.runtime.volumes import Volume, postprocess, predict_volume, read_slice_folder

SPLIT = Path(__file__).resolve().parents[1] / "runtime" / "models" / "saunet_float.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="the Kaggle layout (kaggle_3m)")
    parser.add_argument("--model", type=Path, default=BUNDLED_MODEL)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    val = set(json.loads(SPLIT.read_text())["split"]["val"])
    segmenter = Segmenter(args.model, 1)
    stored, rows = [], []
    for case in sorted(p for p in args.data.iterdir() if p.is_dir()):
        found, _ = folder_items(case, depth=0)
        if len(found) != 1 or found[0].kind != "slices":
            continue
        volume = read_slice_folder(case, found[0].files, found[0].numbers)
        pixels = volume.pixels
        windowed = window(pixels.astype(np.uint16) * 16, channels_last=True)
        head = head_mask(pixels)
        gain = [float(np.median(windowed[..., c][head] / np.maximum(pixels[..., c][head], 1))) for c in range(3)]
        stored.append(
            {
                "case": case.name,
                "min": pixels.min(axis=(0, 1, 2)).tolist(),
                "max": pixels.max(axis=(0, 1, 2)).tolist(),
                "at_255": [float((pixels[..., c] == 255).mean()) for c in range(3)],
                "window_gain": gain,
            }
        )
        if case.name in val:
            truth = np.stack([read_mask(p.with_name(p.stem + "_mask" + p.suffix)) for p in found[0].files])
            scores = []
            for source in (pixels, windowed):
                probability, _ = predict_volume(
                    Volume(case.name, case, "slices", source, volume.labels), segmenter.predict
                )
                scores.append(dice(postprocess(probability, segmenter.spec.threshold, True, False), truth))
            rows.append({"case": case.name, "dice_lcc_stored": scores[0], "dice_lcc_windowed": scores[1]})
            print(f"{case.name}: 3D Dice (LCC) stored 8-bit {scores[0]:.4f}, windowed 12-bit {scores[1]:.4f}")
    maxima = np.array([row["max"] for row in stored])
    gains = np.array([row["window_gain"] for row in stored])
    summary = {
        "volumes": len(stored),
        "minimum_is_0": int(sum(min(row["min"]) == 0 for row in stored)),
        "channel_maximum_range": [int(maxima.min()), int(maxima.max())],
        "max_share_at_255": max(max(row["at_255"]) for row in stored),
        "window_gain_median": float(np.median(gains)),
        "window_gain_range": [float(gains.min()), float(gains.max())],
        "val_dice_lcc_stored_mean": float(np.mean([r["dice_lcc_stored"] for r in rows])),
        "val_dice_lcc_windowed_mean": float(np.mean([r["dice_lcc_windowed"] for r in rows])),
    }
    print(json.dumps(summary, indent=2))
    if args.json:
        write_json(
            args.json,
            stamped(
                {
                    "model": str(args.model),
                    "summary": summary,
                    "validation": rows,
                    "volumes": stored,
                }
            ),
        )


if __name__ == "__main__":
    main()
