"""saunet-train and saunet-eval end to end on tiny synthetic data: run folder, resume, errors."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import TINY_TRAINING, run_with_keras_models, write_dataset


def saunet(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "saunet.training", *args], capture_output=True, text=True, timeout=timeout
    )


def history_epochs(run: Path) -> list[int]:
    with (run / "history.csv").open(newline="") as handle:
        return [int(row["epoch"]) for row in csv.DictReader(handle)]


def optimizer_state(model_file: Path) -> tuple[int, float]:
    """The optimiser's step count and its learning rate at that step, as saved in a .keras file."""
    result = run_with_keras_models(
        """
        o = m.optimizer
        lr = o.get_config()["learning_rate"]
        lr = keras.optimizers.schedules.deserialize(lr)(o.iterations) if isinstance(lr, dict) else lr
        print(int(o.iterations.numpy()), float(lr))
        """,
        m=model_file,
    )
    assert result.returncode == 0, result.stderr
    steps, rate = result.stdout.split()[-2:]
    return int(steps), float(rate)


def test_run_folder_has_every_artifact(dataset: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    result = saunet(
        "train",
        "--data",
        str(dataset),
        "--out",
        str(run),
        "--epochs",
        "2",
        "--normalise",
        "channel-median",
        "--tumour-share",
        "0.5",
        "--mask-targets",
        "area",
        *TINY_TRAINING,
        "--input-size",
        "16",
    )
    assert result.returncode == 0, result.stderr
    assert not {"oneDNN", "cuInit", "absl", "cuda"} & set(result.stderr.replace(":", " ").split()), (
        f"TensorFlow's start-up chatter reached the user: {result.stderr[:300]}"
    )
    config = json.loads((run / "config.json").read_text())
    assert config["preprocessing"]["normalise"] == "channel-median"
    assert config["tumour_share"] == 0.5 and config["mask_targets"] == "area"
    for name in (
        "config.json",
        "split.json",
        "state.json",
        "last.keras",
        "best.keras",
        "history.csv",
        "curves.png",
        "samples.png",
    ):
        assert (run / name).is_file(), name
    assert any((run / "tensorboard").rglob("events.out.tfevents.*"))
    split = json.loads((run / "split.json").read_text())
    assert len(split["train"]) == 4 and len(split["val"]) == 1 and len(split["test"]) == 1
    assert history_epochs(run) == [0, 1]
    with (run / "history.csv").open(newline="") as handle:
        row = next(csv.DictReader(handle))
    assert {"loss", "dice", "iou", "accuracy", "val_dice_3d", "val_dice_3d_lcc"} <= set(row)
    state = json.loads((run / "state.json").read_text())
    assert state["epoch"] == 2 and 1 <= state["best_epoch"] <= 2
    assert "best validation per-patient 3D Dice" in result.stdout
    assert "4 training cases (32 slices, 20 with tumour; masks as tumour shares (area))" in result.stdout, (
        "5 of each synthetic case's 8 slices; masks resized 32 -> 16 as shares"
    )

    evaluated = saunet("eval", "--data", str(dataset), "--model", str(run), "--json", str(tmp_path / "s.json"))
    assert evaluated.returncode == 0, evaluated.stderr
    scores = json.loads((tmp_path / "s.json").read_text())
    assert scores["split"] == "test" and [p["patient"] for p in scores["per_patient"]] == split["test"]
    assert "per-patient 3D Dice, mean" in evaluated.stdout
    assert scores["threshold"] == 0.5, "the model's own threshold by default"

    everything = saunet(
        "eval",
        "--data",
        str(dataset),
        "--model",
        str(run),
        "--split",
        "all",
        "--threshold",
        "0",
        "--json",
        str(tmp_path / "t.json"),
    )
    assert everything.returncode == 0, everything.stderr
    scores = json.loads((tmp_path / "t.json").read_text())
    assert scores["threshold"] == 0.0 and "threshold 0.0" in everything.stdout
    assert scores["empty_slice_fp_rate"]["rate"] == 1.0, "at threshold 0 every pixel of every slice is tumour"


def test_killed_run_resumes_after_last_finished_epoch(dataset: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    epochs = 12
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "saunet.training",
            "train",
            "--data",
            str(dataset),
            "--out",
            str(run),
            "--epochs",
            str(epochs),
            "--lr",
            "1e-3",
            "--schedule",
            "cosine",
            "--tumour-share",
            "0.5",
            *TINY_TRAINING,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    state_file = run / "state.json"
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None:
        if state_file.exists() and json.loads(state_file.read_text())["epoch"] >= 1:
            break
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    finished = json.loads(state_file.read_text())["epoch"]
    assert 1 <= finished < epochs, "the run should have been killed part-way"
    assert not list(run.glob(".*partial*")), "a kill must leave no half-written file"

    result = saunet("train", "--data", str(dataset), "--out", str(run), "--resume")
    assert result.returncode == 0, result.stderr
    assert f"epochs {finished + 1} to {epochs}" in result.stdout, "without --epochs, a resumed run keeps its own length"
    epochs_logged = history_epochs(run)
    assert epochs_logged[-(epochs - finished) :] == list(range(finished, epochs))
    assert json.loads(state_file.read_text())["epoch"] == epochs
    steps_per_epoch = 4  # 4 training cases x 8 slices, batch 8 (--tumour-share keeps an epoch's length)
    steps, rate = optimizer_state(run / "last.keras")
    assert steps == epochs * steps_per_epoch, "optimiser state was not restored"
    assert rate == pytest.approx(1e-5), "the cosine schedule should end at 1% of --lr"


def test_init_from_starts_from_a_trained_model_at_another_size_and_refuses_a_leaky_or_foreign_one(
    dataset: Path, tmp_path: Path
) -> None:
    source = tmp_path / "source"
    assert (
        saunet(
            "train", "--data", str(dataset), "--out", str(source), "--epochs", "1", *TINY_TRAINING, "--input-size", "16"
        ).returncode
        == 0
    )
    tuned = tmp_path / "tuned"
    result = saunet(
        "train",
        "--data",
        str(dataset),
        "--out",
        str(tuned),
        "--epochs",
        "1",
        "--lr",
        "0",
        *TINY_TRAINING,
        "--init-from",
        str(source),
    )
    assert result.returncode == 0, result.stderr
    assert f"starting from the weights of {source}" in result.stdout
    assert "was trained with input_size 16 (this run: 32)" in result.stdout
    assert json.loads((tuned / "config.json").read_text())["init_from"] == str(source)
    same = run_with_keras_models(
        """
        assert a.input_shape[1:3] == (16, 16) and b.input_shape[1:3] == (32, 32)
        assert all(np.array_equal(x, y) for x, y in zip(a.trainable_weights, b.trainable_weights)), (
            "at --lr 0 the weights stay the source's"
        )
        """,
        a=source / "best.keras",
        b=tuned / "best.keras",
    )
    assert same.returncode == 0, same.stderr

    leaky = saunet(
        "train",
        "--data",
        str(dataset),
        "--out",
        str(tmp_path / "leaky"),
        "--epochs",
        "1",
        *TINY_TRAINING,
        "--seed",
        "1",
        "--init-from",
        str(source / "best.keras"),
    )
    assert leaky.returncode == 1
    assert (
        leaky.stderr.strip()
        .splitlines()[-1]
        .startswith(f"error: {source / 'best.keras'}: learnt from or was chosen on ")
    ), leaky.stderr
    foreign = saunet(
        "train",
        "--data",
        str(dataset),
        "--out",
        str(tmp_path / "foreign"),
        "--epochs",
        "1",
        *TINY_TRAINING,
        "--preset",
        "sa-unet",
        "--init-from",
        str(source),
    )
    assert foreign.returncode == 1
    assert "another architecture" in foreign.stderr.strip().splitlines()[-1], foreign.stderr
    missing = saunet(
        "train",
        "--data",
        str(dataset),
        "--out",
        str(tmp_path / "missing"),
        "--epochs",
        "1",
        *TINY_TRAINING,
        "--init-from",
        str(tmp_path / "nothing.keras"),
    )
    assert missing.returncode == 1
    assert missing.stderr.strip().splitlines()[-1] == f"error: {tmp_path / 'nothing.keras'}: no such model file"
    assert not any((tmp_path / name).exists() for name in ("leaky", "foreign", "missing")), (
        "a refused source is found before the run folder is made"
    )


def test_new_run_refuses_existing_run_folder(dataset: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert saunet("train", "--data", str(dataset), "--out", str(run), "--epochs", "1", *TINY_TRAINING).returncode == 0
    again = saunet("train", "--data", str(dataset), "--out", str(run), "--epochs", "1", *TINY_TRAINING)
    assert again.returncode == 1
    assert (
        again.stderr.strip().splitlines()[-1]
        == f"error: {run}: already holds a run; add --resume to continue it, or choose another --out"
    )


def test_epochs_default_to_50_for_a_new_run_and_to_the_runs_own_on_resume(tmp_path: Path, capsys) -> None:
    from saunet.training.train import RunFolder, TrainConfig, start_or_resume

    run = RunFolder(tmp_path / "run", chief=True)
    config, state = start_or_resume(TrainConfig(data="d", out=str(run.path)), False, run)
    assert (config.epochs, state["epoch"]) == (50, 0)

    run.path.mkdir()
    run.write_json("config.json", TrainConfig(data="d", out=str(run.path), epochs=12, schedule="cosine").to_dict())
    run.write_json("state.json", {"epoch": 0})
    resumed, _ = start_or_resume(TrainConfig(data="moved", out=str(run.path)), True, run)
    assert (resumed.epochs, resumed.data) == (12, "moved")
    assert capsys.readouterr().out == ""

    extended, _ = start_or_resume(TrainConfig(data="d", out=str(run.path), epochs=20), True, run)
    assert extended.epochs == 20
    assert "laid out for 12 epochs" in capsys.readouterr().out, "extending a cosine run should say the rate stays low"


@pytest.mark.parametrize(
    "setup, expected",
    [
        ("missing", "no such data folder"),
        ("empty", "no image/mask pairs"),
        ("unpaired", "image without its mask"),
        ("corrupt", "not a readable image"),
    ],
)
def test_bad_data_is_one_line_error_naming_the_file(tmp_path: Path, setup: str, expected: str) -> None:
    data = tmp_path / "data"
    if setup != "missing":
        data.mkdir()
    if setup in ("unpaired", "corrupt"):
        data = write_dataset(tmp_path / "d2", cases=5, slices=4)
        victim = next(data.rglob("*_2.tif"))
        if setup == "unpaired":
            victim.with_name(victim.stem + "_mask.tif").unlink()
        else:
            victim.write_bytes(b"this is not a TIFF file")
    result = saunet("train", "--data", str(data), "--out", str(tmp_path / "run"), "--epochs", "1", *TINY_TRAINING)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("error: ") and expected in lines[-1]
    assert str(victim if setup in ("unpaired", "corrupt") else data) in lines[-1]
    assert not (tmp_path / "run" / "best.keras").exists()


def test_skip_bad_goes_on_and_counts(tmp_path: Path) -> None:
    data = write_dataset(tmp_path / "d", cases=5, slices=4)
    next(data.rglob("*_2.tif")).write_bytes(b"garbage")
    next(data.rglob("*_3_mask.tif")).unlink()
    result = saunet(
        "train", "--data", str(data), "--out", str(tmp_path / "run"), "--epochs", "1", "--skip-bad", *TINY_TRAINING
    )
    assert result.returncode == 0, result.stderr
    assert "skipped 2 bad file(s)" in result.stdout


def test_defaults_rebuild_the_training_command_cross_validation_adopted(monkeypatch) -> None:
    """`saunet-train --data D --out O` with nothing else trains what the adopted candidate's folds
    (cv5-contrast) were trained with, less their --folds/--fold."""
    from click.testing import CliRunner

    from saunet.training import cli, train

    fold = json.loads(
        (Path(__file__).resolve().parents[1] / "checkpoints" / "cv5-contrast" / "fold0" / "config.json").read_text()
    )
    seen = {}
    monkeypatch.setattr(train, "train", lambda config, resume: seen.update(config=config, resume=resume))
    result = CliRunner().invoke(cli.train, ["--data", fold["data"], "--out", fold["out"]])
    assert result.exit_code == 0, result.output
    ours = seen["config"].to_dict()
    ours["epochs"] = train.DEFAULT_EPOCHS  # filled in when the run starts
    assert {k: v for k, v in ours.items() if k in fold} == {
        **{k: fold[k] for k in ours if k in fold},
        "folds": None,
        "fold": None,
    }
    assert set(ours) <= set(fold)


def test_contrast_is_in_the_rebuilt_command_and_absent_from_old_run_folders_means_off() -> None:
    from saunet.training.cli import train as train_command
    from saunet.training.cli import training_command
    from saunet.training.config import TrainConfig

    bundled = json.loads(
        (
            Path(__file__).resolve().parents[1] / "checkpoints" / "seed-128-grey-norm-nodrop-50" / "config.json"
        ).read_text()
    )
    assert "contrast" not in bundled["augmentation"]
    assert TrainConfig.from_dict(bundled).augmentation.contrast == 0.0, "an old run resumes as it was trained"
    rebuilt = training_command(bundled).replace("\\\n", " ").split()
    assert rebuilt[rebuilt.index("--contrast") + 1] == "0", "trained without it, before 0.5 became the default"
    wider = {**bundled, "augmentation": {**bundled["augmentation"], "contrast": 0.5}}
    command = training_command(wider).replace("\\\n", " ").split()
    assert command[command.index("--contrast") + 1] == "0.5"
    assert train_command.make_context("saunet-train", command[1:]).params["contrast"] == 0.5


def test_seed_notebook_recipe_is_one_option_away(monkeypatch) -> None:
    from click.testing import CliRunner

    from saunet.training import cli, train

    seen = {}
    monkeypatch.setattr(train, "train", lambda config, resume: seen.update(config=config))
    result = CliRunner().invoke(cli.train, ["--data", "d", "--out", "o", "--recipe", "seed-notebook", "--lr", "3e-4"])
    assert result.exit_code == 0, result.output
    config = seen["config"]
    assert (
        config.input_size,
        config.loss,
        config.learning_rate,
        config.split,
        config.keep_prob,
        config.normalise,
        config.augmentation.grey,
    ) == (256, "dice", 3e-4, (0.85, 0.10, 0.05), None, "none", 0.0)


def test_old_config_without_newer_keys_resumes_with_the_values_it_was_trained_with() -> None:
    from saunet.training.train import TrainConfig

    old = TrainConfig.from_dict({"data": "d", "out": "o", "epochs": 3})
    assert (old.preset, old.input_size, old.loss, old.normalise, old.split, old.folds) == (
        "sa-unet",
        256,
        "dice",
        "none",
        (0.85, 0.10, 0.05),
        None,
    )


def test_fold_runs_give_out_of_fold_scores_and_an_ensemble_on_the_test_patients(dataset: Path, tmp_path: Path) -> None:
    runs = [tmp_path / f"fold{f}" for f in range(2)]
    for fold, run in enumerate(runs):
        result = saunet(
            "train",
            "--data",
            str(dataset),
            "--out",
            str(run),
            *TINY_TRAINING,
            "--epochs",
            "1",
            "--folds",
            "2",
            "--fold",
            str(fold),
        )
        assert result.returncode == 0, result.stderr
    splits = [json.loads((run / "split.json").read_text()) for run in runs]
    assert splits[0]["test"] == splits[1]["test"] and (splits[0]["folds"], splits[1]["fold"]) == (2, 1)

    oof = saunet(
        "eval",
        "--data",
        str(dataset),
        *[a for run in runs for a in ("--model", str(run))],
        "--split",
        "val",
        "--json",
        str(tmp_path / "oof.json"),
    )
    assert oof.returncode == 0, oof.stderr
    scores = json.loads((tmp_path / "oof.json").read_text())
    assert scores["checkpoint"] == "last", "a fold's best epoch was chosen on the patients it is scored on"
    assert sorted(p["patient"] for p in scores["per_patient"]) == sorted(splits[0]["val"] + splits[1]["val"])
    assert {p["patient"]: p["fold"] for p in scores["per_patient"]} == {
        case: f for f, split in enumerate(splits) for case in split["val"]
    }
    assert "out-of-fold over 2 folds" in oof.stdout

    twice = saunet("eval", "--data", str(dataset), "--model", str(runs[0]), "--model", str(runs[0]), "--split", "val")
    assert twice.returncode == 1 and twice.stderr.strip() == "error: fold 0 is given twice"

    ensemble = saunet(
        "eval",
        "--data",
        str(dataset),
        "--model",
        str(runs[0]),
        "--model",
        str(runs[1]),
        "--tta",
        "--json",
        str(tmp_path / "ens.json"),
    )
    assert ensemble.returncode == 0, ensemble.stderr
    scores = json.loads((tmp_path / "ens.json").read_text())
    assert [p["patient"] for p in scores["per_patient"]] == splits[0]["test"] and scores["tta"] is True

    folds = [a for run in runs for a in ("--model", str(run))]
    again = saunet(
        "eval", "--data", str(dataset), *folds, "--split", "val", "--against", str(tmp_path / "oof.json"),
        "--json", str(tmp_path / "again.json"),
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    against = json.loads((tmp_path / "again.json").read_text())["against"]
    assert against["patients"] == len(splits[0]["val"] + splits[1]["val"])
    assert against["dice_3d_lcc"]["mean"] == 0.0 and against["dice_3d_lcc"]["better"] == 0
    assert "paired over" in again.stdout
    apart = saunet("eval", "--data", str(dataset), *folds, "--split", "val", "--against", str(tmp_path / "ens.json"))
    assert apart.returncode == 1 and apart.stderr.strip() == "error: the two reports have no patient in common"
