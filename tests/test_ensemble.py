"""Ensembles, test-time mirroring and paired comparisons: numpy only, as on the device."""

from __future__ import annotations

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

    one = run()
    two = run("--model", str(BUNDLED_MODEL), "--model", str(BUNDLED_MODEL))
    assert two["model"] == [str(BUNDLED_MODEL)] * 2
    assert [r["tumour_pixels"] for r in two["results"]] == [r["tumour_pixels"] for r in one["results"]]
    mirrored = run("--tta")
    assert mirrored["tta"] is True and len(mirrored["results"]) == len(one["results"])
