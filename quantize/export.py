"""Turning a trained Keras model into the .tflite files of quantize/formats.py."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np
import tensorflow as tf

from saunet.quantize.convert import convert, representative
from saunet.quantize.formats import Format
from saunet.quantize.qat import calibrate_ranges, fine_tune, quantization_aware, without_dropblock
from saunet.quantize.tflite_metadata import embed
from saunet.runtime import __version__
from saunet.runtime.preprocess import normalise_intensity
from saunet.runtime.spec import ModelSpec
from saunet.training.config import Augmentation, TrainConfig
from saunet.training.keras import keras
from saunet.training.losses import make_loss
from saunet.training.pipeline import make_dataset

#: Quantization-aware fine-tuning's defaults: one short epoch at a low rate. With ranges set from
#: calibration there is little quantization error left to train away, while every further step
#: moves the model away from the float one it is judged against (fine-tuning the float model the
#: same way, with no quantization at all, moved it as far); measurements:
#: benchmarks/reports/2026-12-06-qat-parity.md.
QAT_EPOCHS = 1
QAT_STEPS = 100
QAT_LEARNING_RATE = 1e-6


@dataclass(frozen=True)
class QatRecipe:
    """What the run was trained on, which quantization-aware fine-tuning repeats (training/config.py's
    TrainConfig fields of the same names; these defaults are its own)."""

    loss: str = "bce-dice"
    smooth: float = 100.0
    augmentation: Augmentation = Augmentation(grey=0.1)

    @classmethod
    def of_run(cls, config: dict) -> QatRecipe:
        """The recipe of a run's config.json (an old one's missing keys meaning what they meant then)."""
        run = TrainConfig.from_dict(config)
        return cls(run.loss, run.smooth, run.augmentation)


def qat_model(
    model: keras.Model,
    images: np.ndarray,
    masks: np.ndarray,
    spec: ModelSpec,
    epochs: int,
    learning_rate: float,
    calibration,
    recipe: QatRecipe,
    batch_size: int = 16,
    steps_per_epoch: int | None = None,
) -> keras.Model:
    """Fine-tunes a QAT copy of `model` on training slices; returns its batch-1 twin for conversion.

    Its quantization ranges are first set from `calibration` (the generator PTQ calibrates with),
    so fine-tuning starts where post-training quantization ends; it then trains on the run's own
    loss and augmentation (`recipe`), so the only new thing it learns is the quantization.
    """
    trainable = quantization_aware(model, spec)
    calibrate_ranges(trainable, calibration_batches(calibration, batch_size))
    data = make_dataset(images, masks, batch_size, spec.preprocessing, recipe.augmentation, shuffle=True, seed=0)
    if steps_per_epoch:
        data = data.repeat()
    fine_tune(trainable, data, epochs, learning_rate, make_loss(recipe.loss, recipe.smooth), steps_per_epoch)
    static = quantization_aware(model, spec, batch_size=1)
    static.set_weights(trainable.get_weights())
    return static


def calibration_batches(calibration, batch_size: int) -> list[np.ndarray]:
    """The calibration generator's single slices, stacked into batches."""
    slices = [inputs[0][0] for inputs in calibration()]
    return [np.stack(slices[i : i + batch_size]) for i in range(0, len(slices), batch_size)]


def export_formats(
    model: keras.Model,
    formats: Iterable[Format],
    model_spec: ModelSpec,
    metadata: dict,
    train_images: np.ndarray | None = None,
    train_masks: np.ndarray | None = None,
    qat_epochs: int = QAT_EPOCHS,
    qat_learning_rate: float = QAT_LEARNING_RATE,
    qat_steps: int | None = QAT_STEPS,
    calibration_count: int = 200,
    qat_recipe: QatRecipe = QatRecipe(),
) -> dict[str, bytes]:
    """Each format's .tflite bytes, metadata embedded.

    Args:
        model: the trained float model (with DropBlock; it is removed here).
        formats: what to export.
        model_spec: the model's description, with the preprocessing it was trained with (both
            stored in the metadata).
        metadata: provenance to store beside them (data, split, Dice...).
        train_images, train_masks: training slices at the input size (uint8, 0/1) for calibration
            and QAT, as read: the intensity normalisation of `spec` is applied here, as in training.
        qat_epochs, qat_learning_rate, qat_steps: quantization-aware fine-tuning settings (steps per
            epoch; None: every training slice once per epoch).
        qat_recipe: the loss and augmentation the model was trained with, which QAT repeats.
        calibration_count: representative slices for int8 calibration.
    """
    spec = model_spec.preprocessing
    if train_images is not None:
        train_images = normalise_intensity(train_images, spec.normalise)
    calibration = representative(train_images, spec.scale, calibration_count) if train_images is not None else None
    float_static = without_dropblock(model, model_spec, batch_size=1)
    exported = {}
    for fmt in formats:
        if fmt.engine != "litert":
            raise ValueError(f"{fmt.name} is an {fmt.engine} model: saunet-bench makes it, not this export")
        if fmt.needs_data and train_images is None:
            raise ValueError(f"{fmt.name} needs training slices")
        source = float_static
        if fmt.name == "int8":
            source = qat_model(
                model,
                train_images,
                train_masks,
                model_spec,
                qat_epochs,
                qat_learning_rate,
                calibration,
                qat_recipe,
                steps_per_epoch=qat_steps,
            )
        flatbuffer = convert(source, fmt, calibration, spec.scale)
        exported[fmt.name] = embed(
            flatbuffer,
            {
                **metadata,
                "format": fmt.name,
                "quantization": fmt.quantization,
                "preprocessing": spec.to_dict(),
                "model": model_spec.to_dict(),
                "exported": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "saunet": __version__,
                "tensorflow": tf.__version__,
                **(
                    {
                        "qat": {
                            "epochs": qat_epochs,
                            "learning_rate": qat_learning_rate,
                            "steps_per_epoch": qat_steps,
                            "loss": qat_recipe.loss,
                            "augmentation": qat_recipe.augmentation.to_dict(),
                            "ranges": "calibrated",
                            "batchnorm": "inference mode",
                        }
                    }
                    if fmt.name == "int8"
                    else {}
                ),
            },
        )
    return exported
