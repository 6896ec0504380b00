"""Training does what it claims: it learns, and a resumed run continues exactly where it stopped."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import write_dataset

pytestmark = pytest.mark.slow

#: Runs saunet-train's command line in one process for each argument list (one TensorFlow start-up in
#: all), then saves every run's last.keras weights and optimiser variables to <run>.npz.
TRAIN_AND_SAVE = """
import json, sys
import numpy as np
import saunet.training
import saunet.training.train as training
import tensorflow as tf
from saunet.training.cli import train
tf.config.experimental.enable_op_determinism()
make_dataset = training.make_dataset
training.make_dataset = lambda *args, **kwargs: make_dataset(*args, **{**kwargs, "shuffle": False})
from saunet.training.keras import keras
from saunet.training.train import custom_objects
for args in json.loads(sys.argv[1]):
    keras.backend.clear_session()
    train.main(args, standalone_mode=False)
for run in json.loads(sys.argv[2]):
    model = keras.models.load_model(run + "/last.keras", custom_objects=custom_objects())
    variables = model.optimizer.variables
    variables = variables() if callable(variables) else variables
    np.savez(run + ".npz", *model.get_weights(), *[v.numpy() for v in variables])
    json.dump([v.name for v in variables], open(run + ".names.json", "w"))
"""


def train_and_save(runs: list[list[str]], saved: list[Path]) -> list[tuple[list[np.ndarray], list[str]]]:
    """(arrays: weights then optimiser variables, optimiser variable names) of each run in `saved`,
    trained without shuffling and with deterministic TensorFlow ops."""
    result = subprocess.run(
        [sys.executable, "-c", TRAIN_AND_SAVE, json.dumps(runs), json.dumps(list(map(str, saved)))],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    states = []
    for run in saved:
        with np.load(f"{run}.npz") as stored:
            arrays = [stored[f"arr_{i}"] for i in range(len(stored.files))]
        states.append((arrays, json.loads(Path(f"{run}.names.json").read_text())))
    return states


#: Why the comparison can be exact. After a resume, tf.data's shuffle is reseeded (seed + epoch), so the
#: slices come in another order than in the uninterrupted run and float sums round differently; through
#: Adam's normalised steps that moves some weights by up to the learning rate (measured: 1.4e-3 on a conv
#: bias before BatchNorm, whose gradient is pure rounding). With shuffling off and TensorFlow's op
#: determinism on, the two runs are bit-identical (measured), so any difference is a resume that lost
#: something: a weight, a moment, the step count or the learning rate.


def test_a_resumed_run_ends_with_the_weights_and_adam_moments_of_an_uninterrupted_one(tmp_path: Path) -> None:
    data = write_dataset(tmp_path / "data", cases=6, slices=8)
    common = [
        "--data",
        str(data),
        "--input-size",
        "32",
        "--preset",
        "sa-unet",
        "--batch-size",
        "64",
        "--split",
        "0.6/0.2/0.2",
        "--lr",
        "1e-3",
        "--schedule",
        "constant",
        "--no-augment",
        "--keep-prob",
        "1",
    ]
    whole, split = tmp_path / "whole", tmp_path / "split"
    (uninterrupted, names), (resumed, resumed_names) = train_and_save(
        [
            [*common, "--out", str(whole), "--epochs", "3"],
            [*common, "--out", str(split), "--epochs", "1"],
            ["--data", str(data), "--out", str(split), "--resume", "--epochs", "3"],
        ],
        [whole, split],
    )
    assert len(resumed) == len(uninterrupted) and len(names) == len(resumed_names)
    optimiser = dict(zip(names, uninterrupted[-len(names) :], strict=True))
    moments = [n for n in names if n.split("/")[0] in ("m", "v") or "/m/" in n or "/v/" in n]  # Adam's m and v
    assert len(moments) >= 2 and any("iteration" in n for n in names), names
    assert int(next(v for n, v in optimiser.items() if "iteration" in n)) == 3, "three one-batch epochs"
    assert json.loads((split / "state.json").read_text())["epoch"] == 3
    for index, (a, b) in enumerate(zip(resumed, uninterrupted, strict=True)):
        np.testing.assert_array_equal(a, b, err_msg=f"array {index}")


def test_training_learns_validation_dice_rises_on_easy_synthetic_data(tmp_path: Path) -> None:
    """The default recipe (less augmentation) on bright synthetic tumours: validation per-patient Dice
    starts near 0 and ends high within ten short epochs.

    16x16 slices keep a step cheap, and batch 1 gives the ~500 steps BatchNorm's moving statistics
    (momentum 0.99) need to forget their initial values: with fewer steps the inference-mode model
    that validation scores predicts nothing, however well the training batches are fitted.
    """
    data = write_dataset(tmp_path / "data", cases=10, slices=8, size=16)
    run = tmp_path / "run"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "saunet.training",
            "train",
            "--data",
            str(data),
            "--out",
            str(run),
            "--epochs",
            "10",
            "--preset",
            "sa-unet",
            "--input-size",
            "16",
            "--batch-size",
            "1",
            "--split",
            "0.6/0.2/0.2",
            "--lr",
            "1e-3",
            "--no-augment",
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    with (run / "history.csv").open(newline="") as handle:
        dice = [float(row["val_dice_3d"]) for row in csv.DictReader(handle)]
    assert len(dice) == 10
    assert dice[0] < 0.5 and max(dice[-2:]) > 0.8 and max(dice[-2:]) - dice[0] > 0.4, (
        f"validation Dice by epoch: {dice}"
    )
