"""Ensembles, test-time mirroring and paired comparisons: numpy only, as on the device."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from saunet.runtime.ensemble import averaged, mirrored
from saunet.runtime.metrics import paired_difference


def left_bright(images: np.ndarray) -> np.ndarray:
    """A 'model' that is not mirror-symmetric: tumour probability 1 in the left half, 0 elsewhere."""
    out = np.zeros(images.shape[:3], np.float32)
    out[:, :, : images.shape[2] // 2] = 1.0
    return out


def brightness(images: np.ndarray) -> np.ndarray:
    return images[..., 1].astype(np.float32) / 255


def test_mirroring_averages_the_prediction_and_its_mirror_mapped_back() -> None:
    images = np.random.default_rng(0).integers(0, 256, (2, 4, 6, 3), dtype=np.uint8)
    np.testing.assert_allclose(mirrored(left_bright)(images), 0.5)
    (
        np.testing.assert_allclose(mirrored(brightness)(images), brightness(images), atol=1e-6),
        "a pixel-wise model gives the same probability at the same anatomy either way",
    )


def test_average_of_models_is_their_mean_and_one_model_is_itself() -> None:
    images = np.random.default_rng(1).integers(0, 256, (3, 4, 4, 3), dtype=np.uint8)
    np.testing.assert_allclose(
        averaged([left_bright, brightness])(images), (left_bright(images) + brightness(images)) / 2, atol=1e-6
    )
    assert averaged([brightness]) is brightness
    with pytest.raises(ValueError):
        averaged([])


def test_paired_difference_counts_and_bounds() -> None:
    result = paired_difference([0.9, 0.8, 0.7, 0.6], [0.8, 0.8, 0.75, 0.5])
    assert result["mean"] == pytest.approx(0.0375)
    assert (result["better"], result["worse"], result["patients"]) == (2, 1, 4)
    low, high = result["interval"]
    assert low <= result["mean"] <= high
    assert paired_difference([0.5] * 5, [0.4] * 5)["interval"] == pytest.approx((0.1, 0.1))


def test_paired_difference_prints_mean_interval_and_counts() -> None:
    from saunet.runtime.metrics import format_difference

    text = format_difference(paired_difference([0.5] * 5, [0.4] * 5))
    assert text == "+0.1000 (95% bootstrap +0.1000 to +0.1000), better 5, worse 0"
    assert format_difference(paired_difference([], [])) == "no shared patients"


def test_device_ensemble_and_mirroring_average_the_models_probabilities(real_slices) -> None:
    from saunet.runtime.ensemble import combined
    from saunet.runtime.models import BUNDLED_MODEL
    from saunet.runtime.preprocess import read_image
    from saunet.runtime.segmenter import Segmenter

    scan = read_image(next(iter(sorted(real_slices.glob("*_16.png")))))
    model = Segmenter(BUNDLED_MODEL, threads=1)
    single = model.predict(scan)
    twice = combined([model, model], tta=False)(scan)
    np.testing.assert_allclose(twice.probability, single.probability, atol=1e-6)
    assert twice.invoke_ms > 0 and combined([model], tta=False)(scan).probability.shape == scan.shape[:2]
    mirrored_scan = model.predict(np.ascontiguousarray(scan[:, ::-1])).probability[:, ::-1]
    np.testing.assert_allclose(
        combined([model], tta=True)(scan).probability, (single.probability + mirrored_scan) / 2, atol=1e-6
    )
    assert not np.allclose(mirrored_scan, single.probability), "the model is not mirror-symmetric: the test has teeth"


def test_saunet_run_takes_several_models_and_tta(real_slices, tmp_path) -> None:
    import json
    import subprocess
    import sys

    from saunet.runtime.models import BUNDLED_MODEL

    def run(*args: str) -> dict:
        out = tmp_path / str(len(list(tmp_path.iterdir())))
        result = subprocess.run(
            [sys.executable, "-m", "saunet.runtime", str(real_slices), "--out", str(out), *args],
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0, result.stderr
        return json.loads((out / "results.json").read_text())

    one = run("--fast")
    two = run("--model", str(BUNDLED_MODEL), "--model", str(BUNDLED_MODEL))
    assert two["model"] == [str(BUNDLED_MODEL)] * 2
    assert [r["tumour_pixels"] for r in two["results"]] == [r["tumour_pixels"] for r in one["results"]]
    mirrored = run("--fast", "--tta")
    assert mirrored["tta"] is True and len(mirrored["results"]) == len(one["results"])


def write_ensemble(folder: Path, tta: bool, members: int = 2, threshold: float | None = None) -> Path:
    """A bundled-ensemble folder of `members` copies of the bundled int8 model."""
    import json
    import shutil

    from saunet.runtime.models import BUNDLED_MODEL

    folder.mkdir(parents=True)
    names = [f"fold{i}_int8.tflite" for i in range(members)]
    for name in names:
        shutil.copyfile(BUNDLED_MODEL, folder / name)
    description = folder / "ensemble.json"
    values = {"models": names, "tta": tta, "test_patients": ["A"]}
    description.write_text(json.dumps({**values, **({"threshold": threshold} if threshold else {})}))
    return description


def test_saunet_run_defaults_to_the_bundled_ensemble_and_fast_to_the_single_model(
    real_slices: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    from click.testing import CliRunner

    from saunet.runtime import cli

    description = write_ensemble(tmp_path / "ensemble", tta=True, threshold=0.4)
    monkeypatch.setattr(cli, "BUNDLED_ENSEMBLE", description)

    said = {}

    def run(*args: str) -> dict:
        out = tmp_path / f"out{len(list(tmp_path.iterdir()))}"
        result = CliRunner().invoke(cli.main, [str(real_slices), "--out", str(out), *args])
        assert result.exit_code == 0, result.output
        said[args] = result.output.splitlines()[0]
        return json.loads((out / "results.json").read_text())

    default = run()
    assert said[()] == (
        "model: the bundled ensemble (2 int8 models averaged; --fast: the single model); "
        "mirrored scan averaged in, threshold 0.4, largest component kept, holes filled"
    ), "the first line says what runs and how"
    assert default["model"] == [str(description.parent / f"fold{i}_int8.tflite") for i in range(2)]
    assert default["tta"] is True, "the description's tta is the default"
    assert default["threshold"] == 0.4, "the description's threshold is the default"
    assert run("--no-tta")["tta"] is False and run("--threshold", "0.6")["threshold"] == 0.6
    fast = run("--fast")
    assert fast["model"] == str(cli.BUNDLED_MODEL) and fast["tta"] is False
    assert fast["threshold"] == 0.5, "the single model keeps its own threshold"
    assert (
        said[("--fast",)]
        == "model: the bundled int8 model saunet_int8.tflite; threshold 0.5, largest component kept, holes filled"
    )
    run("--model", str(cli.BUNDLED_MODEL), "--model", str(cli.BUNDLED_MODEL), "--keep-holes")
    assert said[("--model", str(cli.BUNDLED_MODEL), "--model", str(cli.BUNDLED_MODEL), "--keep-holes")] == (
        "model: saunet_int8.tflite + saunet_int8.tflite averaged; threshold 0.5, largest component kept"
    )
    result = CliRunner().invoke(cli.main, [str(real_slices), "--fast", "--model", str(cli.BUNDLED_MODEL)])
    assert result.exit_code == 2 and "--fast" in result.output


def test_a_broken_ensemble_description_is_one_line_naming_it(tmp_path: Path) -> None:
    from saunet.runtime.ensemble import BundledEnsemble
    from saunet.runtime.metadata import ModelError

    description = write_ensemble(tmp_path / "ensemble", tta=False, members=3)
    assert len(BundledEnsemble.read(description).models) == 3
    (description.parent / "fold1_int8.tflite").unlink()
    with pytest.raises(ModelError, match="fold1_int8.tflite"):
        BundledEnsemble.read(description)
    description.write_text('{"models": [], "tta": false}')
    with pytest.raises(ModelError, match="names no models"):
        BundledEnsemble.read(description)
    description.write_text('{"models": ["fold0_int8.tflite"], "tta": false, "threshold": 1.5}')
    with pytest.raises(ModelError, match="threshold 1.5 is not a number between 0 and 1"):
        BundledEnsemble.read(description)
    description.write_text("{not json")
    with pytest.raises(ModelError, match=str(description)):
        BundledEnsemble.read(description)
