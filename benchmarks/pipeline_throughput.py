"""What the input pipeline costs training: slices/s through it against in-memory tensors.

    python -m saunet.benchmarks.pipeline_throughput --data data/kaggle_3m [--preset sa-unet]

Both arms run the same compiled model and train step in one process, one after the other
(A B A B). The goal is judged on CPU time per slice (the process's own, pipeline threads
included), which a shared machine's slowdowns do not change; wall-clock throughput, which
they do, is reported beside it. Arm "pipeline" is training/pipeline.make_dataset exactly as
saunet-train uses it (shuffle, scaling, the seed's augmentation, batching, prefetch); arm
"in-memory" feeds one ready float batch over and over. The one-time cost of reading and
decoding the files (done once per run, before the first epoch) is reported separately.
Goal (issue 2): the pipeline costs at most 10% of training throughput.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import tensorflow as tf

import saunet.training  # noqa: F401  (Keras 2 before TensorFlow)
from saunet.benchmarks.report import stamped, write_json
from saunet.runtime.preprocess import Preprocessing
from saunet.training.dataset import find_cases, load_cases, stack
from saunet.training.keras import keras
from saunet.training.losses import make_loss, training_metrics
from saunet.training.model import build_saunet
from saunet.training.pipeline import Augmentation, make_dataset


def measure(model: keras.Model, dataset: tf.data.Dataset, steps: int, batch: int) -> tuple[float, float]:
    """Trains `steps` batches after two warm-up steps.

    Returns (slices per wall-clock second, CPU seconds of this process per slice). The CPU
    time counts the pipeline's threads too, and unlike wall time it does not change when a
    shared machine slows this process down.
    """
    model.fit(dataset, steps_per_epoch=2, epochs=1, verbose=0)
    wall, cpu = time.perf_counter(), time.process_time()
    model.fit(dataset, steps_per_epoch=steps, epochs=1, verbose=0)
    slices = steps * batch
    return slices / (time.perf_counter() - wall), (time.process_time() - cpu) / slices


def pipeline_alone(dataset: tf.data.Dataset, batches: int, batch: int) -> float:
    """Slices per second the pipeline produces with no model consuming them."""
    iterator = iter(dataset)
    next(iterator)
    started = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return batches * batch / (time.perf_counter() - started)


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

    alone = pipeline_alone(pipeline, 20, args.batch_size)
    rates: dict[str, list[float]] = {"pipeline": [], "in-memory": []}
    cpu: dict[str, list[float]] = {"pipeline": [], "in-memory": []}
    for _ in range(args.repeats):
        for arm, data in (("pipeline", pipeline), ("in-memory", in_memory)):
            rate, seconds = measure(model, data, args.steps, args.batch_size)
            rates[arm].append(rate)
            cpu[arm].append(seconds)
    best = {arm: max(values) for arm, values in rates.items()}
    least_cpu = {arm: min(values) for arm, values in cpu.items()}
    wall_cost = 1.0 - best["pipeline"] / best["in-memory"]
    cost = least_cpu["pipeline"] / least_cpu["in-memory"] - 1.0
    report = stamped(
        {
            "tensorflow": tf.__version__,
            "preset": args.preset,
            "batch_size": args.batch_size,
            "steps": args.steps,
            "repeats": args.repeats,
            "slices_loaded": len(images),
            "decode_slices_per_s": round(decode, 1),
            "pipeline_alone_slices_per_s": round(alone, 1),
            "pipeline_slices_per_s": [round(r, 2) for r in rates["pipeline"]],
            "in_memory_slices_per_s": [round(r, 2) for r in rates["in-memory"]],
            "pipeline_cpu_s_per_slice": [round(c, 4) for c in cpu["pipeline"]],
            "in_memory_cpu_s_per_slice": [round(c, 4) for c in cpu["in-memory"]],
            "pipeline_cost_cpu": round(cost, 4),
            "pipeline_cost_wall": round(wall_cost, 4),
            "goal": "pipeline_cost_cpu at most 0.10",
            "met": cost <= 0.10,
        }
    )
    print(
        f"{report['date']}, {report['machine']}, TensorFlow {tf.__version__}, preset {args.preset}, batch {args.batch_size}"
    )
    print(f"one-time read and decode: {decode:.0f} slices/s ({len(images)} slices)")
    print(f"the pipeline alone (no model): {alone:.0f} slices/s")
    for arm in rates:
        print(
            f"training, {arm:>9}: {best[arm]:.2f} slices/s wall-clock, {least_cpu[arm]:.3f} CPU s/slice "
            f"(repeats: {', '.join(f'{r:.2f}' for r in rates[arm])} slices/s)"
        )
    print(
        f"pipeline cost: {100 * cost:+.1f}% CPU time per slice, {100 * wall_cost:+.1f}% wall-clock throughput "
        f"(goal: at most 10%) -> {'met' if cost <= 0.10 else 'missed'}"
    )
    if args.json:
        write_json(args.json, report)


if __name__ == "__main__":
    main()
