"""How far does QAT's fine-tuning move the model without any quantization?

    python -m saunet.benchmarks.qat_drift RUN [--lr LR] [--epochs N] [--steps N] [--json REPORT.json]

Fine-tunes the run's float model exactly as `saunet-export --int8` fine-tunes its QAT copy
(saunet.quantize.export: DropBlock removed, the run's loss and augmentation, BatchNorm in
inference mode, Adam, batch 16, the run's training patients; its defaults for the learning rate,
epochs and steps per epoch) but with no fake quantization,
then scores it against the untouched model on the run's validation patients with the export's
parity check (saunet.quantize.parity.compare). A change here is fine-tuning drift, not
quantization error: the part of a QAT parity figure that quantization does not explain.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import saunet.quantize  # noqa: F401  (Keras 2 before TensorFlow)
from saunet.benchmarks.report import stamped, write_json
from saunet.quantize.export import QAT_EPOCHS, QAT_LEARNING_RATE, QAT_STEPS, QatRecipe
from saunet.quantize.parity import compare
from saunet.quantize.qat import fine_tune, without_dropblock
from saunet.runtime.preprocess import normalise_intensity
from saunet.training.dataset import find_cases, load_cases, stack
from saunet.training.evaluate import keras_predictor, load_keras_model, model_spec_of
from saunet.training.losses import make_loss
from saunet.training.pipeline import make_dataset


def drift(run: Path, learning_rate: float, epochs: int, steps: int | None, data: Path | None = None) -> dict:
    """The parity row of the fine-tuned float model against the run's own, with per-patient changes."""
    model, _, spec = load_keras_model(run)
    split, config = json.loads((run / "split.json").read_text()), json.loads((run / "config.json").read_text())
    cases = {c.name: c for c in find_cases(Path(data or config["data"]))}
    images, masks = stack(load_cases([cases[n] for n in split["train"]], spec.input_size))
    validation = load_cases([cases[n] for n in split["val"]], None)
    recipe = QatRecipe.of_run(config)
    tuned = without_dropblock(model, model_spec_of(run))
    batches = make_dataset(
        normalise_intensity(images, spec.normalise), masks, 16, spec, recipe.augmentation, shuffle=True, seed=0
    )
    if steps:
        batches = batches.repeat()
    fine_tune(tuned, batches, epochs, learning_rate, make_loss(recipe.loss, recipe.smooth), steps)
    report = compare(
        validation,
        keras_predictor(model, spec),
        {"float fine-tuned": keras_predictor(tuned, spec)},
        spec.threshold,
        0.01,
    )
    return {
        "run": run.name,
        "learning_rate": learning_rate,
        "epochs": epochs,
        "steps_per_epoch": steps,
        "loss": recipe.loss,
        "cases": report["cases"],
        "float": report["float"],
        "fine_tuned": report["exports"]["float fine-tuned"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--lr", type=float, default=QAT_LEARNING_RATE)
    parser.add_argument("--epochs", type=int, default=QAT_EPOCHS)
    parser.add_argument("--steps", type=int, default=QAT_STEPS, help="steps per epoch (0: every training slice)")
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    report = stamped(
        {
            "command": f"python -m saunet.benchmarks.qat_drift {args.run.name} --lr {args.lr} --epochs {args.epochs} "
            f"--steps {args.steps}",
            **drift(args.run, args.lr, args.epochs, args.steps or None, args.data),
        }
    )
    row = report["fine_tuned"]
    print(
        f"float fine-tuned at lr {args.lr}: per-patient Dice {row['dice_3d_mean']:.4f} "
        f"(change {row['dice_change']:+.4f}, mask agreement {100 * row['mask_agreement']:.3f}%)"
    )
    if args.json:
        write_json(args.json, report)


if __name__ == "__main__":
    main()
