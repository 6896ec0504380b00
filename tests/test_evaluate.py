"""Scoring at the masks' own resolution, whatever the model's input size, and the learning-rate schedule."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from saunet.runtime.preprocess import Preprocessing, resize_image, resize_probability
from saunet.training.dataset import BadFiles, DataError, find_cases, load_case


class GreenChannel:
    """A stand-in model: the probability is the scaled green channel (what the test data tints)."""

    def __init__(self):
        self.seen: list[tuple[int, ...]] = []

    def predict(self, inputs: np.ndarray, batch_size: int, verbose: int) -> np.ndarray:
        self.seen.append(inputs.shape)
        return inputs[..., 1:2]


def test_load_case_without_size_keeps_the_stored_resolution(dataset: Path) -> None:
    volume = load_case(find_cases(dataset)[0], None)
    assert volume.images.shape == (8, 32, 32, 3) and volume.masks.shape == (8, 32, 32)


def test_load_case_without_size_refuses_slices_of_another_size(dataset: Path) -> None:
    from PIL import Image

    case = find_cases(dataset)[0]
    odd = case.slices[3]
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(odd.image, format="TIFF")
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(odd.mask, format="TIFF")
    with pytest.raises(DataError, match=f"{odd.image}: is 16x16, the case's first slice 32x32"):
        load_case(case, None)
    bad = BadFiles(skip=True)
    assert len(load_case(case, None, bad).images) == 7 and len(bad.problems) == 1


def test_keras_predictor_resizes_in_and_maps_probabilities_back(dataset: Path) -> None:
    pytest.importorskip("tensorflow")
    from saunet.training.evaluate import keras_predictor

    images = load_case(find_cases(dataset)[0], None).images
    spec = Preprocessing(input_size=16)
    model = GreenChannel()
    probabilities = keras_predictor(model, spec)(images)
    assert model.seen == [(8, 16, 16, 3)], "the model must see the scans at its input size"
    assert probabilities.shape == (8, 32, 32)
    expected = [
        resize_probability(resize_image(i, 16)[..., 1].astype(np.float32) * np.float32(1 / 255), 32, 32) for i in images
    ]
    np.testing.assert_allclose(probabilities, np.stack(expected), rtol=1e-6)


def test_keras_predictor_at_input_size_does_not_resize(dataset: Path) -> None:
    pytest.importorskip("tensorflow")
    from saunet.training.evaluate import keras_predictor

    images = load_case(find_cases(dataset)[0], None).images
    probabilities = keras_predictor(GreenChannel(), Preprocessing(input_size=32))(images)
    np.testing.assert_array_equal(probabilities, images[..., 1].astype(np.float32) * np.float32(1 / 255))


def test_cosine_schedule_decays_from_peak_to_one_percent() -> None:
    pytest.importorskip("tensorflow")
    from saunet.training.train import learning_rate

    assert learning_rate(1e-3, "constant", 100) == 1e-3
    schedule = learning_rate(1e-3, "cosine", 100)
    values = [float(schedule(step)) for step in (0, 50, 100)]
    np.testing.assert_allclose(values, [1e-3, 0.505e-3, 1e-5], rtol=1e-5)
    with pytest.raises(ValueError, match="unknown learning-rate schedule 'step'"):
        learning_rate(1e-3, "step", 100)


def test_a_bundled_model_keeps_its_split_in_the_json_beside_it(tmp_path: Path) -> None:
    from saunet.training.evaluate import split_cases_of

    (tmp_path / "saunet_float.keras").write_bytes(b"")
    (tmp_path / "saunet_float.json").write_text(
        '{"preprocessing": {}, "split": {"train": ["a"], "val": ["b"], "test": ["c"]}}'
    )
    assert split_cases_of(tmp_path / "saunet_float.keras", "test") == ["c"]
    (tmp_path / "saunet_float.json").write_text('{"preprocessing": {}}')
    with pytest.raises(DataError, match="saunet_float.json: keeps no patient split; pass --split all"):
        split_cases_of(tmp_path / "saunet_float.keras", "test")
    (tmp_path / "saunet_float.json").write_text('{"split": ')
    with pytest.raises(DataError, match="saunet_float.json: corrupt JSON"):
        split_cases_of(tmp_path / "saunet_float.keras", "test")
    run = tmp_path / "run"
    run.mkdir()
    with pytest.raises(DataError, match="split.json: missing"):
        split_cases_of(run, "val")


def test_paired_against_differs_patient_by_patient_over_the_shared_ones(tmp_path: Path) -> None:
    from saunet.training.evaluate import paired_against, read_scores

    def report(scores: dict[str, float], filled: bool = True) -> dict:
        rows = [{"patient": p, "dice_3d": d, "dice_3d_lcc": d, **({"dice_3d_filled": d} if filled else {})}
                for p, d in scores.items()]  # fmt: skip
        return {"per_patient": rows}

    base = report({"A": 0.5, "B": 0.8, "C": 0.9}, filled=False)  # written before hole filling
    new = report({"A": 0.7, "B": 0.7, "D": 0.1})
    out = paired_against(new, base)
    assert out["patients"] == 2 and "dice_3d_filled" not in out
    assert out["dice_3d_lcc"]["mean"] == pytest.approx(0.05)
    assert (out["dice_3d_lcc"]["better"], out["dice_3d_lcc"]["worse"]) == (1, 1)
    with pytest.raises(DataError, match="no patient in common"):
        paired_against(report({"X": 1.0}), base)
    (tmp_path / "r.json").write_text('{"dice_3d": 1}')
    with pytest.raises(DataError, match="not a saunet-eval --json report"):
        read_scores(tmp_path / "r.json")


def test_each_patients_line_shows_its_true_and_predicted_tumour_volume() -> None:
    from saunet.runtime.metrics import score_patients
    from saunet.training.evaluate import format_table

    truth = np.zeros((3, 8, 8), dtype=bool)
    truth[1, 2:6, 2:6] = True
    probability = np.zeros((3, 8, 8), dtype=np.float32)
    probability[1, 2:4, 2:6] = 0.9
    table = format_table(score_patients({"P1": (probability, truth)}), "title")
    (line,) = [line for line in table.splitlines() if line.startswith("P1 ")]
    assert "tumour voxels 16 true, 8 predicted" in line, line
