"""The models shipped inside the package: saunet-run works right after install, with no download."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from saunet.runtime import cli
from saunet.runtime.metadata import read_metadata
from saunet.runtime.metrics import dice, mask_agreement
from saunet.runtime.preprocess import read_image, read_mask

from conftest import BLOCK_TENSORFLOW, ROOT

MODELS = Path(cli.__file__).parent / "models"
INT8, FLOAT = MODELS / "saunet_int8.tflite", MODELS / "saunet_float.keras"


def default_models(models: Path) -> list[Path]:
    """What saunet-run runs by default from a models folder: the bundled ensemble if there is one."""
    ensemble = models / "ensemble" / "ensemble.json"
    if not ensemble.is_file():
        return [models / INT8.name]
    return [ensemble.parent / name for name in json.loads(ensemble.read_text())["models"]]


def models_of(report: dict) -> list[Path]:
    """The model file(s) a results.json names."""
    named = report["model"]
    return [Path(m) for m in named] if isinstance(named, list) else [Path(named)]


def test_bundled_files_are_there_and_small() -> None:
    assert INT8 == cli.BUNDLED_MODEL
    assert INT8.stat().st_size < 2e6 and FLOAT.stat().st_size < 5e6
    card = (MODELS / "MODEL_CARD.md").read_text()
    assert "not a medical device" in card.lower()


def test_bundled_int8_model_describes_itself() -> None:
    metadata = read_metadata(INT8)
    assert metadata["format"] in ("int8", "int8-ptq") and metadata["preset"] in ("sa-unet", "seed")
    assert metadata["preprocessing"]["channels"] and metadata["preprocessing"]["threshold"] == 0.5
    assert 0 < metadata["float_val_dice_3d"] <= 1


@pytest.mark.parametrize("fast", [False, True], ids=["default", "fast"])
def test_saunet_run_without_model_uses_the_bundled_one(real_slices: Path, tmp_path: Path, fast: bool) -> None:
    """On the bundled test slices the masks must be real segmentations, not just files, with the
    default (the bundled ensemble when there is one) and with --fast (the single int8 model)."""
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "saunet.runtime", str(real_slices), "--out", str(out)] + ["--fast"] * fast,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "results.json").read_text())
    assert models_of(report) == ([INT8] if fast else default_models(MODELS)) and len(report["results"]) == 9
    dices, empty_hits = [], []
    for item in report["results"]:
        truth = read_mask(Path(item["input"]).with_name(Path(item["input"]).stem + "_mask.png")) > 0
        predicted = np.asarray(Image.open(item["mask"])) > 0
        if truth.any():
            dices.append(dice(predicted, truth))
        else:
            empty_hits.append(int(predicted.sum()))
    # Six of the nine slices hold tumour (two of them grey, FLAIR-only, the harder kind); the other three
    # are tumour-free, where any marked pixel is a false positive.
    assert len(dices) == 6 and sum(d > 0.8 for d in dices) >= 4, f"per-slice Dice fell to {dices}"
    assert empty_hits == [0, 0, 0]


def test_bundled_float_and_int8_models_agree(real_slices: Path) -> None:
    pytest.importorskip("tensorflow")
    from saunet.runtime.segmenter import Segmenter
    from saunet.training.evaluate import keras_predictor, load_keras_model

    model, _, spec = load_keras_model(FLOAT)
    images = np.stack([read_image(p) for p in sorted(real_slices.glob("*[0-9].png"))])
    float_masks = keras_predictor(model, spec)(images) >= 0.5
    int8_masks = Segmenter(INT8).predict_batch(images) >= 0.5
    assert mask_agreement(int8_masks, float_masks) > 0.99


def test_missing_bundled_model_is_a_clear_error(
    real_slices: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli, "BUNDLED_MODEL", tmp_path / "absent.tflite")
    monkeypatch.setattr(cli, "BUNDLED_ENSEMBLE", tmp_path / "absent.json")
    result = CliRunner().invoke(cli.main, [str(real_slices), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert "no model is bundled with this install; pass --model FILE.tflite" in result.output
    assert not (tmp_path / "out").exists()


def test_a_wheel_carries_the_models_and_its_saunet_run_needs_no_tensorflow(real_slices: Path, tmp_path: Path) -> None:
    """The tests otherwise run on an editable install, which would hide models left out of the package."""
    # Built from a copy without build/ or *.egg-info, whose stale file lists setuptools would reuse.
    source = tmp_path / "source"
    shutil.copytree(
        ROOT,
        source,
        ignore=shutil.ignore_patterns(
            ".git",
            ".venv",
            "build",
            "*.egg-info",
            "runs",
            "data",
            "checkpoints",
            "saunet-out",
            "__pycache__",
            ".*_cache",
        ),
    )
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(tmp_path / "wheel"), str(source)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp_path / "wheel").glob("saunet-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata = archive.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
        entry_points = archive.read(next(n for n in names if n.endswith(".dist-info/entry_points.txt"))).decode()
        archive.extractall(tmp_path / "site")
    for name in ("saunet_int8.tflite", "saunet_float.keras", "saunet_float.json", "MODEL_CARD.md"):
        assert f"saunet/runtime/models/{name}" in names, f"the wheel lacks {name}"
    bundled = sorted(p.relative_to(MODELS).as_posix() for p in (MODELS / "ensemble").glob("*") if p.is_file())
    for name in bundled:  # the bundled ensemble, when there is one, is saunet-run's default
        assert f"saunet/runtime/models/{name}" in names, f"the wheel lacks {name}"
    assert "saunet-run = saunet.runtime.cli:main" in entry_points
    assert "License-Expression: MIT" in metadata.splitlines()
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names), "the wheel lacks the LICENSE file"
    device = [
        line
        for line in metadata.splitlines()
        if line.startswith("Requires-Dist:") and "extra ==" not in line or 'extra == "pi"' in line
    ]
    assert device and not any("tensorflow" in line for line in device), "a Pi install would pull TensorFlow"

    site, out = tmp_path / "site", tmp_path / "out"
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            BLOCK_TENSORFLOW
            + f"""
sys.path.insert(0, {str(site)!r})
from saunet.runtime import cli
assert cli.__file__.startswith({str(site)!r}), cli.__file__
cli.main()
""",
            str(real_slices),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "results.json").read_text())
    assert models_of(report) == default_models(site / "saunet" / "runtime" / "models")
    assert len(report["results"]) == 9 and all(Path(item["mask"]).is_file() for item in report["results"])
