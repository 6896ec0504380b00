"""What the input pipeline costs training: slices/s through it against in-memory tensors.

    python -m saunet.benchmarks.pipeline_throughput --data data/kaggle_3m [--preset sa-unet]

Both arms run the same compiled model and train step in one process, one after the other,
twice each (A B A B), and the best of each arm's repeats is compared, which damps the noise
of a shared machine. Arm "pipeline" is training/pipeline.make_dataset exactly as
saunet-train uses it (shuffle, scaling, the seed's augmentation, batching, prefetch); arm
"in-memory" feeds one ready float batch over and over. The one-time cost of reading and
decoding the files (done once per run, before the first epoch) is reported separately.
Goal (issue 2): the pipeline costs at most 10% of training throughput.
"""
from __future__ import annotations

import argparse
import json
import time
from datetime import date
from pathlib import Path

import saunet.training  # noqa: F401  (Keras 2 before TensorFlow)
import numpy as np
import tensorflow as tf

from saunet.benchmarks import machine
from saunet.runtime.preprocess import Preprocessing
from saunet.training.dataset import find_cases, load_cases, stack
from saunet.training.keras import keras
from saunet.training.losses import make_loss, training_metrics
from saunet.training.model import build_saunet
from saunet.training.pipeline import Augmentation, make_dataset


def slices_per_second(model: keras.Model, dataset: tf.data.Dataset, steps: int, batch: int) -> float:
    """Trains `steps` batches after two warm-up steps; returns slices per second."""
    model.fit(dataset, steps_per_epoch=2, epochs=1, verbose=0)
    started = time.perf_counter()
    model.fit(dataset, steps_per_epoch=steps, epochs=1, verbose=0)
    return steps * batch / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="kaggle_3m folder")
    parser.add_argument("--preset", default="sa-unet")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per repeat")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--cases", type=int, default=20, help="cases to load (enough to fill the shuffle buffer)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    spec = Preprocessing()
    started = time.perf_counter()
    volumes = load_cases(find_cases(args.data)[: args.cases], spec.input_size)
    images, masks = stack(volumes)
    decode = len(images) / (time.perf_counter() - started)

    model = build_saunet(args.preset)
    model.compile(keras.optimizers.Adam(1e-4), loss=make_loss("dice", 100.0), metrics=training_metrics())
    pipeline = make_dataset(images, masks, args.batch_size, spec, Augmentation(), shuffle=True).repeat()
    batch = next(iter(make_dataset(images[: args.batch_size], masks[: args.batch_size], args.batch_size, spec)))
    in_memory = tf.data.Dataset.from_tensors(batch).repeat()

    rates: dict[str, list[float]] = {"pipeline": [], "in-memory": []}
    for _ in range(args.repeats):
        rates["pipeline"].append(slices_per_second(model, pipeline, args.steps, args.batch_size))
        rates["in-memory"].append(slices_per_second(model, in_memory, args.steps, args.batch_size))
    best = {arm: max(values) for arm, values in rates.items()}
    cost = 1.0 - best["pipeline"] / best["in-memory"]
    report = {
        "date": date.today().isoformat(), "machine": machine.describe(), "tensorflow": tf.__version__,
        "preset": args.preset, "batch_size": args.batch_size, "steps": args.steps, "repeats": args.repeats,
        "slices_loaded": len(images), "decode_slices_per_s": round(decode, 1),
        "pipeline_slices_per_s": [round(r, 2) for r in rates["pipeline"]],
        "in_memory_slices_per_s": [round(r, 2) for r in rates["in-memory"]],
        "pipeline_cost": round(cost, 4), "goal": "at most 0.10", "met": cost <= 0.10,
    }
    print(f"{report['date']}, {report['machine']}, TensorFlow {tf.__version__}, preset {args.preset}, batch {args.batch_size}")
    print(f"one-time read and decode: {decode:.0f} slices/s ({len(images)} slices)")
    print(f"training through the pipeline: {best['pipeline']:.2f} slices/s (best of {rates['pipeline']})")
    print(f"training on in-memory tensors: {best['in-memory']:.2f} slices/s (best of {rates['in-memory']})")
    print(f"pipeline cost: {100 * cost:.1f}% of throughput (goal: at most 10%) -> {'met' if cost <= 0.10 else 'missed'}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
