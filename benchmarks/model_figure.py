"""The README's result figure: scan / truth / float prediction / int8 prediction for real slices.

    python -m saunet.benchmarks.model_figure --keras runtime/models/saunet_float.keras \
        --int8 runtime/models/saunet_int8.tflite --slices examples/slices --out docs/test-slices.png

The float model runs through Keras and the int8 model through the device runtime, both with the
runtime's preprocessing, so the picture shows what each gives on a scan at its own size. Each
row's title has the slice's Dice for both (the bundled slices are test patients').
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from saunet.runtime.metrics import dice
from saunet.runtime.segmenter import Segmenter
from saunet.training.dataset import find_cases, load_cases
from saunet.training.evaluate import keras_predictor, load_keras_model
from saunet.training.plots import plot_samples

SLICES = Path(__file__).resolve().parents[1] / "examples" / "slices"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keras", type=Path, required=True, help="the float model (.keras or run folder)")
    parser.add_argument("--int8", type=Path, required=True, help="the int8 .tflite model")
    parser.add_argument("--slices", type=Path, default=SLICES, help="folder of <case>_<n>.png / _mask.png pairs")
    parser.add_argument("--out", type=Path, default=Path("docs/test-slices.png"))
    args = parser.parse_args()

    model, _, spec = load_keras_model(args.keras)
    cases = find_cases(args.slices)
    volumes = load_cases(cases, None)
    images = np.concatenate([v.images for v in volumes])
    truths = np.concatenate([v.masks for v in volumes])
    titles = [f"{s.case[:12]} slice {s.index}" for c in cases for s in c.slices]
    float_masks = (keras_predictor(model, spec)(images) >= spec.threshold).astype(np.uint8)
    segmenter = Segmenter(args.int8)
    int8_masks = (segmenter.predict_batch(images) >= segmenter.spec.threshold).astype(np.uint8)
    titles = [
        f"{t}\nDice float {dice(f, m):.2f} int8 {dice(q, m):.2f}"
        for t, f, q, m in zip(titles, float_masks, int8_masks, truths)
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    plot_samples(images, truths, [float_masks, int8_masks], titles, args.out, labels=["float (Keras)", "int8 (TFLite)"])
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
