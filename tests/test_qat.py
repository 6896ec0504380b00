"""Quantization-aware fine-tuning: where its int8 ranges come from, and what fine-tuning may change."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import saunet.quantize  # noqa: F401  (Keras 2 before TensorFlow)
from saunet.quantize.export import QatRecipe
from saunet.quantize.qat import batchnorm_layers, calibrate_ranges, fine_tune, quantization_aware, range_variables
from saunet.runtime.preprocess import Preprocessing
from saunet.runtime.spec import model_spec
from saunet.training.config import Augmentation
from saunet.training.keras import keras
from saunet.training.losses import make_loss
from saunet.training.model import build_saunet
from saunet.training.pipeline import make_dataset

from conftest import synthetic_case

SIZE = 32


@pytest.fixture(scope="module")
def slices() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    images, masks = zip(*(synthetic_case(rng, 8, SIZE) for _ in range(2)))
    return np.concatenate(images), (np.concatenate(masks) > 0).astype(np.uint8)


@pytest.fixture(scope="module")
def batches(slices) -> list[np.ndarray]:
    images = slices[0].astype(np.float32) / 255
    return [images[:8], images[8:]]


@pytest.fixture(scope="module")
def float_model() -> keras.Model:
    keras.utils.set_random_seed(0)
    return build_saunet("seed", input_size=SIZE, keep_prob=1.0)


def qat_copy(model: keras.Model) -> keras.Model:
    return quantization_aware(model, model_spec("seed", Preprocessing(input_size=SIZE), keep_prob=1.0))


def variable(model: keras.Model, layer: str, suffix: str):
    (found,) = [v for v in range_variables(model) if v.name.startswith(f"quant_{layer}/") and v.name.endswith(suffix)]
    return found


def test_calibration_sets_activation_ranges_to_the_data_min_max(float_model, batches) -> None:
    qat = qat_copy(float_model)
    relu = variable(qat, "down1_a_relu", "_max:0")
    assert float(relu.numpy()) == pytest.approx(6.0), "tfmot's initial range, which the fix replaces"
    calibrate_ranges(qat, batches)
    probe = keras.Model(float_model.input, float_model.get_layer("down1_a_relu").output)
    expected = max(float(probe(b).numpy().max()) for b in batches)
    assert float(relu.numpy()) == pytest.approx(expected, rel=0.02)
    assert float(variable(qat, "down1_a_relu", "_min:0").numpy()) == 0.0, "a ReLU never goes negative"


def test_calibration_leaves_batchnorm_statistics_alone(float_model, batches) -> None:
    qat = qat_copy(float_model)
    before = [[w.copy() for w in layer.get_weights()] for layer in batchnorm_layers(qat)]
    assert before, "the QAT model keeps its BatchNorm layers (the converter folds them)"
    calibrate_ranges(qat, batches)
    after = [layer.get_weights() for layer in batchnorm_layers(qat)]
    for old, new in zip(before, after):
        for a, b in zip(old, new):
            np.testing.assert_array_equal(a, b)
    assert all(layer.trainable for layer in batchnorm_layers(qat)), "trainability is restored"


def test_calibrated_qat_model_computes_like_the_float_model(float_model, batches) -> None:
    qat = qat_copy(float_model)
    calibrate_ranges(qat, batches)
    reference = float_model(batches[0]).numpy()
    quantized = qat(batches[0], training=False).numpy()
    assert np.abs(quantized - reference).max() < 0.05


def test_fine_tuning_keeps_batchnorm_statistics(float_model, batches, slices) -> None:
    qat = qat_copy(float_model)
    calibrate_ranges(qat, batches)

    def statistics() -> list:
        return [(layer.moving_mean.numpy(), layer.moving_variance.numpy()) for layer in batchnorm_layers(qat)]

    before = statistics()
    kernel = qat.get_layer("quant_down1_a_conv").trainable_weights[0].numpy().copy()
    data = make_dataset(*slices, 4, Preprocessing(input_size=SIZE), shuffle=True, seed=0)
    fine_tune(qat, data, epochs=1, learning_rate=1e-2, loss=make_loss("bce-dice", 100.0))
    for layer, old, new in zip(batchnorm_layers(qat), before, statistics()):
        for a, b in zip(old, new):
            np.testing.assert_array_equal(a, b, err_msg=f"{layer.name}'s statistics moved in fine-tuning")
    assert not np.array_equal(kernel, qat.get_layer("quant_down1_a_conv").trainable_weights[0].numpy()), (
        "the convolutions are what fine-tuning trains"
    )


def test_qat_repeats_the_runs_own_loss_and_augmentation() -> None:
    run = Path(__file__).resolve().parents[1] / "checkpoints" / "seed-128-grey-norm-nodrop-50" / "config.json"
    config = json.loads(run.read_text())
    assert (config["loss"], config["augmentation"]["grey"]) == ("bce-dice", 0.1)
    assert QatRecipe.of_run(config) == QatRecipe("bce-dice", 100.0, Augmentation(**config["augmentation"]))
    assert QatRecipe.of_run({**config, "loss": "dice", "smooth": 1.0}).loss == "dice"
    old = {k: v for k, v in config.items() if k not in ("loss", "augmentation")}
    assert QatRecipe.of_run(old) == QatRecipe("dice", 100.0, Augmentation()), "what a run without the keys trained on"


def test_saunet_export_defaults_are_the_libraries() -> None:
    from saunet.quantize.cli import main
    from saunet.quantize.export import QAT_EPOCHS, QAT_LEARNING_RATE, QAT_STEPS

    defaults = {p.name: p.default for p in main.params}
    assert (defaults["qat_epochs"], defaults["qat_lr"], defaults["qat_steps"]) == (
        QAT_EPOCHS,
        QAT_LEARNING_RATE,
        QAT_STEPS,
    )
