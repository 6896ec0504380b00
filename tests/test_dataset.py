"""Tests for saunet.training.dataset (numpy only): finding, checking, splitting and loading slices."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from saunet.runtime import preprocess
from saunet.runtime.metrics import dice
from saunet.runtime.preprocess import InputError, read_image, resize_probability
from saunet.training.dataset import (
    BadFiles,
    Case,
    DataError,
    find_cases,
    fold_split,
    load_case,
    load_cases,
    split_cases,
    stack,
    training_mask,
)

from conftest import write_dataset

# --- helpers ------------------------------------------------------------------


def write_pair(
    folder: Path,
    stem: str,
    size: int = 16,
    suffix: str = ".png",
    mask_size: int | None = None,
    seed: int = 0,
    image: bool = True,
    mask: bool = True,
) -> tuple[Path, Path]:
    """Writes <folder>/<stem><suffix> (RGB noise) and <stem>_mask<suffix> (a square of 255)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    image_path, mask_path = folder / f"{stem}{suffix}", folder / f"{stem}_mask{suffix}"
    if image:
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(image_path)
    if mask:
        side = mask_size or size
        pixels = np.zeros((side, side), np.uint8)
        pixels[side // 4 : side // 2, side // 4 : side // 2] = 255
        Image.fromarray(pixels).save(mask_path)
    return image_path, mask_path


def one_line_naming(error: BaseException, path: Path) -> str:
    message = str(error)
    assert "\n" not in message, message
    assert str(path) in message, message
    return message


# --- find_cases ---------------------------------------------------------------


def test_find_cases_kaggle_layout_tiff(dataset: Path) -> None:
    cases = find_cases(dataset)
    assert [c.name for c in cases] == [f"TCGA_XX_{1000 + c}_2000010{c + 1}" for c in range(6)]
    for case in cases:
        assert [s.index for s in case.slices] == list(range(1, 9))
        assert case.patient == "_".join(case.name.split("_")[:3])
        assert case.info == {}
        for item in case.slices:
            assert item.case == case.name
            assert item.image.is_file() and item.mask.is_file()
            assert item.image.parent == dataset / case.name
            assert item.image.name == f"{case.name}_{item.index}.tif"
            assert item.mask.name == f"{case.name}_{item.index}_mask.tif"


def test_find_cases_parent_of_kaggle_folder_works_too(dataset: Path) -> None:
    assert [c.name for c in find_cases(dataset.parent)] == [c.name for c in find_cases(dataset)]


def test_find_cases_flat_png_pairs(real_slices: Path) -> None:
    cases = find_cases(real_slices)
    assert [(c.name, [s.index for s in c.slices]) for c in cases] == [
        ("TCGA_CS_6186_20000601", [3, 16, 18]),
        ("TCGA_DU_5855_19951217", [3, 15, 19]),
        ("TCGA_HT_7877_19980917", [3, 21, 24]),
    ]
    assert [c.patient for c in cases] == ["TCGA_CS_6186", "TCGA_DU_5855", "TCGA_HT_7877"]
    for case in cases:
        for item in case.slices:
            assert item.image.suffix == ".png" and item.image.parent == real_slices
            assert item.mask == real_slices / f"{case.name}_{item.index}_mask.png"


def test_slices_sorted_numerically_not_lexically(tmp_path: Path) -> None:
    folder = tmp_path / "data" / "TCGA_XX_1234_20000101"
    for n in (7, 12, 1, 10, 3, 2, 11, 5, 9, 4, 8, 6):  # written in no particular order
        write_pair(folder, f"TCGA_XX_1234_20000101_{n}", size=8, suffix=".tif")
    (case,) = find_cases(tmp_path / "data")
    assert [s.index for s in case.slices] == list(range(1, 13))
    assert [s.image.name for s in case.slices][8:] == [f"TCGA_XX_1234_20000101_{n}.tif" for n in (9, 10, 11, 12)]


@pytest.mark.parametrize("where", ["kaggle_3m", "parent"])
def test_data_csv_joined_by_patient_id(tmp_path: Path, where: str) -> None:
    base = write_dataset(tmp_path / "data", cases=3, slices=2, size=8)
    # a second study of patient TCGA_XX_1000 (another date): it shares the patient's row
    write_pair(base / "TCGA_XX_1000_20050505", "TCGA_XX_1000_20050505_1", size=8, suffix=".tif")
    table = base / "data.csv" if where == "kaggle_3m" else base.parent / "data.csv"
    with table.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["Patient", "RNASeqCluster", "age_at_initial_pathologic"])
        writer.writerow(["TCGA_XX_1000", "2", "45"])
        writer.writerow(["TCGA_XX_1001", "", "61"])
        writer.writerow(["TCGA_YY_9999", "1", "30"])  # no such case: ignored
    root = base if where == "kaggle_3m" else base.parent
    cases = {c.name: c for c in find_cases(root)}
    assert set(cases) == {
        "TCGA_XX_1000_20000101",
        "TCGA_XX_1000_20050505",
        "TCGA_XX_1001_20000102",
        "TCGA_XX_1002_20000103",
    }
    expected = {"Patient": "TCGA_XX_1000", "RNASeqCluster": "2", "age_at_initial_pathologic": "45"}
    assert cases["TCGA_XX_1000_20000101"].info == expected
    assert cases["TCGA_XX_1000_20050505"].info == expected
    assert cases["TCGA_XX_1001_20000102"].info == {
        "Patient": "TCGA_XX_1001",
        "RNASeqCluster": "",
        "age_at_initial_pathologic": "61",
    }
    assert cases["TCGA_XX_1002_20000103"].info == {}


def test_data_csv_with_byte_order_mark_is_joined(tmp_path: Path) -> None:
    base = write_dataset(tmp_path / "data", cases=1, slices=2, size=8)
    (base / "data.csv").write_text("Patient,age\r\nTCGA_XX_1000,45\r\n", encoding="utf-8-sig")  # as Excel saves it
    (case,) = find_cases(base)
    assert case.info == {"Patient": "TCGA_XX_1000", "age": "45"}


@pytest.mark.parametrize(
    "name, patient",
    [
        ("TCGA_CS_6186_20000601", "TCGA_CS_6186"),
        ("TCGA_HT_A61A_20000127", "TCGA_HT_A61A"),
        ("TCGA_CS_6186", "TCGA_CS_6186"),  # already a patient id
        ("brain_case_7_b", "brain_case_7_b"),  # not a TCGA name: the case is its own patient
        ("case1", "case1"),
    ],
)
def test_case_patient(name: str, patient: str) -> None:
    assert Case(name, []).patient == patient


# --- bad input ------------------------------------------------------------------


def test_missing_folder(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError) as error:
        find_cases(missing)
    one_line_naming(error.value, missing)


def test_a_file_instead_of_a_folder(tmp_path: Path) -> None:
    path, _ = write_pair(tmp_path, "TCGA_XX_1000_20000101_1")
    with pytest.raises(DataError) as error:
        find_cases(path)
    one_line_naming(error.value, path)


@pytest.mark.parametrize("content", ["empty", "other files", "images only"])
def test_folder_without_pairs(tmp_path: Path, content: str) -> None:
    root = tmp_path / "data"
    root.mkdir()
    if content == "other files":
        (root / "README.md").write_text("no slices here\n")
        (root / "sub").mkdir()
        (root / "sub" / "notes.txt").write_text("x")
    bad = BadFiles(skip=True)
    if content == "images only":
        write_pair(root, "TCGA_XX_1000_20000101_1", mask=False)
    with pytest.raises(DataError) as error:
        find_cases(root, bad)
    message = one_line_naming(error.value, root)
    assert "no image/mask pairs" in message
    assert len(bad.problems) == (1 if content == "images only" else 0)


@pytest.mark.parametrize(
    "removed, named, problem",
    [
        ("_3_mask.tif", "_3.tif", "without its mask"),
        ("_3.tif", "_3_mask.tif", "mask without its image"),
    ],
)
def test_unpaired_file_is_named(dataset: Path, removed: str, named: str, problem: str) -> None:
    case = dataset / "TCGA_XX_1000_20000101"
    (case / f"{case.name}{removed}").unlink()
    with pytest.raises(DataError) as error:
        find_cases(dataset)
    assert problem in one_line_naming(error.value, case / f"{case.name}{named}")


def test_name_without_slice_number(dataset: Path) -> None:
    image, _ = write_pair(dataset / "TCGA_XX_1002_20000103", "TCGA_XX_1002_20000103_extra", size=32, suffix=".tif")
    with pytest.raises(DataError) as error:
        find_cases(dataset)
    assert "slice number" in one_line_naming(error.value, image)


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty"])
def test_corrupt_file_on_load_case(dataset: Path, damage: str) -> None:
    cases = find_cases(dataset)  # finding only looks at names
    corrupt = cases[2].slices[4].image
    content = corrupt.read_bytes()
    corrupt.write_bytes(
        {"garbage": b"this is not a TIFF file\x00\xff" * 20, "truncated": content[: len(content) // 2], "empty": b""}[
            damage
        ]
    )
    load_case(cases[0], 32)  # other cases still load
    with pytest.raises(DataError) as error:
        load_case(cases[2], 32)
    assert "not a readable image" in one_line_naming(error.value, corrupt)


def test_corrupt_mask_on_load_case(dataset: Path) -> None:
    cases = find_cases(dataset)
    corrupt = cases[1].slices[0].mask
    corrupt.write_bytes(b"")
    with pytest.raises(DataError) as error:
        load_case(cases[1], 32)
    one_line_naming(error.value, corrupt)


def test_image_and_mask_of_different_sizes_on_load_case(tmp_path: Path) -> None:
    folder = tmp_path / "data" / "TCGA_XX_1000_20000101"
    write_pair(folder, "TCGA_XX_1000_20000101_1", size=16)
    _, mask = write_pair(folder, "TCGA_XX_1000_20000101_2", size=16, mask_size=12)
    (case,) = find_cases(tmp_path / "data")
    with pytest.raises(DataError) as error:
        load_case(case, 16)
    message = one_line_naming(error.value, mask)
    assert "12x12" in message and "16x16" in message


def test_skip_bad_goes_on_and_counts_each_problem(dataset: Path, capsys: pytest.CaptureFixture) -> None:
    folder = dataset / "TCGA_XX_1003_20000104"
    (folder / "TCGA_XX_1003_20000104_2_mask.tif").unlink()  # image without mask
    (folder / "TCGA_XX_1003_20000104_3.tif").unlink()  # mask without image
    write_pair(folder, "scan", size=32, suffix=".tif")  # no slice number
    bad = BadFiles(skip=True)
    cases = find_cases(dataset, bad)
    assert len(bad.problems) == 3
    assert any("TCGA_XX_1003_20000104_2.tif" in p and "without its mask" in p for p in bad.problems)
    assert any("TCGA_XX_1003_20000104_3_mask.tif" in p and "without its image" in p for p in bad.problems)
    assert any("scan.tif" in p and "slice number" in p for p in bad.problems)
    assert len(cases) == 6
    by_name = {c.name: c for c in cases}
    assert [s.index for s in by_name["TCGA_XX_1003_20000104"].slices] == [1, 4, 5, 6, 7, 8]

    # loading: a corrupt image and a mask of the wrong size are skipped and counted too
    case = by_name["TCGA_XX_1000_20000101"]
    case.slices[1].image.write_bytes(b"garbage" * 50)
    Image.fromarray(np.zeros((20, 20), np.uint8)).save(case.slices[6].mask)
    volume = load_case(case, 32, bad)
    assert volume is not None and volume.images.shape == (6, 32, 32, 3) and volume.masks.shape == (6, 32, 32)
    assert len(bad.problems) == 5
    assert str(case.slices[1].image) in bad.problems[3] and str(case.slices[6].mask) in bad.problems[4]

    # a case whose every slice is bad is dropped by load_cases
    for item in by_name["TCGA_XX_1005_20000106"].slices:
        item.mask.write_bytes(b"")
    alone = BadFiles(skip=True)
    assert load_case(by_name["TCGA_XX_1005_20000106"], 32, alone) is None and len(alone.problems) == 8
    volumes = load_cases([by_name["TCGA_XX_1001_20000102"], by_name["TCGA_XX_1005_20000106"]], 32, bad)
    assert [v.case for v in volumes] == ["TCGA_XX_1001_20000102"]
    assert len(bad.problems) == 5 + 8
    assert capsys.readouterr().err.count("skipped: ") == len(bad.problems) + len(alone.problems)


# --- intensity normalisation ---------------------------------------------------


def test_channel_median_makes_a_dim_channel_look_like_the_others(real_slices: Path) -> None:
    """A scan whose FLAIR was stored at a third of the usual level normalises to nearly the usual scan."""
    scan = read_image(real_slices / "TCGA_CS_6186_20000601_16.png")
    dim = scan.copy()
    dim[:, :, 1] = np.rint(scan[:, :, 1] / 3.0).astype(np.uint8)
    normal, dimmed = (preprocess.normalise_intensity(x, "channel-median") for x in (scan, dim))
    head = normal.max(axis=2) > preprocess.HEAD_LEVEL
    for c in range(3):
        assert abs(np.median(normal[:, :, c][head]) - preprocess.TARGET_MEDIAN) <= 2, c
    before = np.abs(scan[:, :, 1].astype(int) - dim[:, :, 1]).mean()
    after = np.abs(normal[:, :, 1].astype(int) - dimmed[:, :, 1]).mean()
    assert after < before / 10, (before, after)
    np.testing.assert_array_equal(normal[:, :, 0], dimmed[:, :, 0])


def test_channel_median_equals_the_plain_formula_the_bundled_model_was_trained_with(real_slices: Path) -> None:
    """The histogram median and lookup tables are speed-ups: the pixels must stay equal to the bit."""

    def plain(pixels: np.ndarray) -> np.ndarray:
        head = pixels.max(axis=-1) > preprocess.HEAD_LEVEL
        if head.sum() < preprocess.MIN_HEAD_PIXELS:
            return pixels
        medians = np.median(pixels[head], axis=0).astype(np.float32)
        gains = np.clip(
            np.float32(preprocess.TARGET_MEDIAN) / np.maximum(medians, 1), 1 / preprocess.MAX_GAIN, preprocess.MAX_GAIN
        ).astype(np.float32)
        return np.clip(np.rint(pixels * gains), 0, 255).astype(np.uint8)

    rng = np.random.default_rng(0)
    scans = [read_image(p) for p in sorted(real_slices.glob("*[0-9].png"))]
    scans += [
        (rng.integers(0, 256, (rng.integers(9, 60), rng.integers(9, 60), 3)) // rng.integers(1, 40)).astype(np.uint8)
        for _ in range(300)
    ]  # odd and even head counts, dim and bright channels, gains at both limits
    for scan in scans:
        np.testing.assert_array_equal(preprocess.normalise_intensity(scan, "channel-median"), plain(scan))
    values = rng.integers(0, 256, 1001).astype(np.uint8)
    assert preprocess.uint8_median(values) == np.median(values) and preprocess.uint8_median(values[:-1]) == np.median(
        values[:-1]
    )


def test_channel_median_limits_its_gain_and_leaves_near_empty_slices() -> None:
    scan = np.zeros((32, 32, 3), np.uint8)
    scan[4:28, 4:28] = (50, 2, 200)  # a near-empty middle channel, a bright last one
    out = preprocess.normalise_intensity(scan, "channel-median")
    assert tuple(out[10, 10]) == (50, 2 * preprocess.MAX_GAIN, 200 / preprocess.MAX_GAIN)
    corner = np.zeros((32, 32, 3), np.uint8)
    corner[:5, :5] = 20  # 25 head pixels: too few to measure
    np.testing.assert_array_equal(preprocess.normalise_intensity(corner, "channel-median"), corner)


def test_normalisation_of_a_batch_is_slice_by_slice_and_none_is_identity(real_slices: Path) -> None:
    batch = np.stack([read_image(p) for p in sorted(real_slices.glob("*[0-9].png"))[:3]])
    together = preprocess.normalise_intensity(batch, "channel-median")
    for one, normalised in zip(batch, together):
        np.testing.assert_array_equal(preprocess.normalise_intensity(one, "channel-median"), normalised)
    assert preprocess.normalise_intensity(batch, "none") is batch
    with pytest.raises(ValueError, match="unknown intensity normalisation 'zscore'"):
        preprocess.Preprocessing(normalise="zscore")


def test_model_input_is_resized_then_normalised_then_scaled(real_slices: Path) -> None:
    scan = read_image(real_slices / "TCGA_CS_6186_20000601_16.png")
    spec = preprocess.Preprocessing(input_size=64, normalise="channel-median")
    expected = preprocess.normalise_intensity(preprocess.resize_image(scan, 64), "channel-median")
    np.testing.assert_array_equal(preprocess.model_pixels(scan, spec), expected)
    np.testing.assert_array_equal(preprocess.to_input(scan, spec), expected.astype(np.float32) * np.float32(1 / 255))
    assert preprocess.Preprocessing.from_dict(spec.to_dict()) == spec
    assert preprocess.Preprocessing.from_dict({"input_size": 64}).normalise == "none", "older models: no normalisation"


# --- read_image ---------------------------------------------------------------


def test_read_image_16_bit_grayscale_png(tmp_path: Path) -> None:
    pixels = np.arange(256, dtype=np.uint16).reshape(16, 16) * 100  # max 25,500 -> 255
    Image.fromarray(pixels).save(tmp_path / "scan16.png")
    assert Image.open(tmp_path / "scan16.png").mode.startswith("I")
    image = read_image(tmp_path / "scan16.png")
    assert image.dtype == np.uint8 and image.shape == (16, 16, 3)
    expected = np.arange(256).reshape(16, 16)
    for c in range(3):
        np.testing.assert_array_equal(image[:, :, c], expected)


def test_read_image_rgba_drops_alpha(tmp_path: Path) -> None:
    pixels = np.random.default_rng(1).integers(0, 256, (12, 10, 4), dtype=np.uint8)
    pixels[:6, :, 3] = 0  # transparent half keeps its colour
    Image.fromarray(pixels, mode="RGBA").save(tmp_path / "rgba.png")
    image = read_image(tmp_path / "rgba.png")
    assert image.dtype == np.uint8 and image.shape == (12, 10, 3)
    np.testing.assert_array_equal(image, pixels[:, :, :3])


def test_read_image_grayscale_replicated_to_three_channels(tmp_path: Path) -> None:
    pixels = np.random.default_rng(2).integers(0, 256, (9, 14), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "flair.png")
    image = read_image(tmp_path / "flair.png")
    assert image.shape == (9, 14, 3) and image.dtype == np.uint8
    for c in range(3):
        np.testing.assert_array_equal(image[:, :, c], pixels)


def test_read_image_rgb_is_unchanged(tmp_path: Path) -> None:
    pixels = np.random.default_rng(3).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "rgb.tif")
    np.testing.assert_array_equal(read_image(tmp_path / "rgb.tif"), pixels)


def test_decompression_bomb_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(preprocess, "MAX_PIXELS", 100)
    Image.fromarray(np.zeros((10, 10, 3), np.uint8)).save(tmp_path / "ok.png")
    Image.fromarray(np.zeros((10, 11, 3), np.uint8)).save(tmp_path / "bomb.png")
    assert read_image(tmp_path / "ok.png").shape == (10, 10, 3)  # at the limit: fine
    with pytest.raises(InputError) as error:
        read_image(tmp_path / "bomb.png")
    message = one_line_naming(error.value, tmp_path / "bomb.png")
    assert "11x10" in message and "limit" in message
    # pillow's own bomb check (a warning turned into an error) is reported the same way
    monkeypatch.setattr(preprocess, "MAX_PIXELS", 10_000)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 50)
    with pytest.raises(InputError) as error:
        read_image(tmp_path / "ok.png")
    assert "limit" in one_line_naming(error.value, tmp_path / "ok.png")
    monkeypatch.undo()
    monkeypatch.setattr(preprocess, "MAX_PIXELS", 100)

    # through the data loader it is a DataError naming the file (or a counted skip)
    folder = tmp_path / "data" / "TCGA_XX_1000_20000101"
    write_pair(folder, "TCGA_XX_1000_20000101_1", size=8)
    image, _ = write_pair(folder, "TCGA_XX_1000_20000101_2", size=12)
    (case,) = find_cases(tmp_path / "data")
    with pytest.raises(DataError) as error:
        load_case(case, 8)
    one_line_naming(error.value, image)
    bad = BadFiles(skip=True)
    assert load_case(case, 8, bad).images.shape == (1, 8, 8, 3) and len(bad.problems) == 1


# --- split_cases --------------------------------------------------------------


def patient_names(patients: int, studies: int = 1, institution: str = "XX") -> list[str]:
    """Case names of `patients` patients, with `studies` case folders (dates) each for every third one."""
    names = []
    for p in range(patients):
        for s in range(studies if p % 3 == 0 else 1):
            names.append(f"TCGA_{institution}_{1000 + p}_{19950101 + 10000 * s}")
    return names


def patients_of(names: list[str]) -> set[str]:
    return {Case(n, []).patient for n in names}


@pytest.mark.parametrize("seed", range(8))
def test_split_keeps_each_patient_on_one_side(seed: int) -> None:
    names = patient_names(12, studies=3) + ["TCGA_YY_1000_20010101", "TCGA_YY_1000_20020202"]
    split = split_cases(names, (0.6, 0.2, 0.2), seed=seed)
    assert sorted(split) == ["test", "train", "val"]
    assert sorted(sum(split.values(), [])) == sorted(names)  # each case exactly once
    sides = {side: patients_of(cases) for side, cases in split.items()}
    assert not sides["train"] & sides["val"]
    assert not sides["train"] & sides["test"]
    assert not sides["val"] & sides["test"]
    assert len(sides["val"]) == len(sides["test"]) == round(0.2 * 13)
    for cases in split.values():
        assert cases == sorted(cases)


def test_two_case_folders_of_one_patient_go_together(tmp_path: Path) -> None:
    base = write_dataset(tmp_path / "a", cases=5, slices=2, size=8)
    for c in range(5):  # a second study (later date) of each patient
        write_pair(base / f"TCGA_XX_{1000 + c}_20100101", f"TCGA_XX_{1000 + c}_20100101_1", size=8, suffix=".tif")
    names = [c.name for c in find_cases(base)]
    assert len(names) == 10
    for seed in range(5):
        split = split_cases(names, (0.6, 0.2, 0.2), seed=seed)
        for side, cases in split.items():
            for name in cases:
                twin = [n for n in names if n != name and n[:12] == name[:12]]
                assert twin and twin[0] in cases, (side, name)


def test_split_is_deterministic_for_a_seed_and_differs_for_another() -> None:
    names = patient_names(20, studies=2)
    first = split_cases(names, (0.7, 0.15, 0.15), seed=7)
    assert split_cases(list(reversed(names)), (0.7, 0.15, 0.15), seed=7) == first
    assert split_cases(names, (0.7, 0.15, 0.15), seed=7) == first
    others = [split_cases(names, (0.7, 0.15, 0.15), seed=s) for s in (8, 9, 10)]
    assert all(other != first for other in others)
    assert split_cases(names, (0.7, 0.15, 0.15)) == split_cases(names, (0.7, 0.15, 0.15), seed=0)


@pytest.mark.parametrize(
    "fractions, counts",
    [
        ((0.7, 0.15, 0.15), (14, 3, 3)),
        ((0.85, 0.10, 0.05), (17, 2, 1)),
        ((0.8, 0.2, 0.0), (16, 4, 0)),
        ((0.5, 0.25, 0.25), (10, 5, 5)),
        ((0.98, 0.01, 0.01), (18, 1, 1)),  # a positive fraction gets at least one patient
    ],
)
def test_split_counts_follow_fractions(fractions: tuple, counts: tuple) -> None:
    names = patient_names(20, studies=2)
    split = split_cases(names, fractions, seed=3)
    assert tuple(len(patients_of(split[s])) for s in ("train", "val", "test")) == counts


@pytest.mark.parametrize(
    "fractions",
    [
        (0.5, 0.5),
        (0.5, 0.25, 0.25, 0.0),
        (0.7, 0.2, 0.2),
        (0.6, 0.2, 0.1),
        (1.2, -0.1, -0.1),
        (0.8, 0.3, -0.1),
        (math.inf, 0.0, 0.0),
    ],
)
def test_invalid_fractions_rejected(fractions: tuple) -> None:
    with pytest.raises(ValueError, match="fractions"):
        split_cases(patient_names(10), fractions)


def test_nan_fraction_rejected() -> None:
    with pytest.raises(ValueError, match="fractions"):
        split_cases(patient_names(10), (math.nan, 0.5, 0.5))


def test_too_few_patients_for_the_split() -> None:
    with pytest.raises(ValueError, match="too few"):
        split_cases(["TCGA_XX_1000_20000101", "TCGA_XX_1000_20010101", "TCGA_XX_1001_20000101"], (0.8, 0.1, 0.1))
    assert len(split_cases(patient_names(3), (0.8, 0.1, 0.1))["train"]) == 1


# --- load_case ----------------------------------------------------------------


@pytest.mark.parametrize("size", [16, 32, 48])
def test_load_case_resizes_and_masks_are_binary(dataset: Path, size: int) -> None:
    cases = find_cases(dataset)
    volume = load_case(cases[0], size)
    assert volume.case == cases[0].name
    assert volume.images.shape == (8, size, size, 3) and volume.images.dtype == np.uint8
    assert volume.masks.shape == (8, size, size) and volume.masks.dtype == np.uint8
    assert set(np.unique(volume.masks)) <= {0, 1}
    assert volume.masks.sum() > 0 and volume.masks.max() == 1
    if size == 32:  # the files' own size: exactly the pixels on disk
        for n, item in enumerate(cases[0].slices):
            np.testing.assert_array_equal(volume.images[n], np.asarray(Image.open(item.image)))
            np.testing.assert_array_equal(volume.masks[n], np.asarray(Image.open(item.mask)) // 255)


def test_load_case_of_real_png_slices(real_slices: Path) -> None:
    volumes = load_cases(find_cases(real_slices), 64)
    images, masks = stack(volumes)
    assert images.shape == (9, 64, 64, 3) and masks.shape == (9, 64, 64)
    assert set(np.unique(masks)) <= {0, 1} and masks.sum() > 0


# --- training_mask --------------------------------------------------------------


def test_area_targets_are_tumour_shares_on_the_images_grid() -> None:
    """256 -> 128 -> 256 as saunet-run maps a prediction back: an area target returns the
    tumour in place, a nearest one (which picks the odd rows and columns) a pixel up and left."""
    mask = np.zeros((256, 256), np.uint8)
    mask[101:121, 61:91] = 1
    mask[10, 11] = 1  # one pixel: a quarter of its 2x2 block
    area = training_mask(mask, 128, "area")
    assert area.dtype == np.float16 and area.shape == (128, 128)
    assert area[5, 5] == 0.25 and area[51:60, 31:45].min() == 1.0 and area[50, 30] == 0.25
    assert float(area.sum()) * 4 == mask.sum(), "the tumour's area is kept"
    nearest = training_mask(mask, 128, "nearest")
    assert nearest.dtype == np.uint8 and set(np.unique(nearest)) == {0, 1}

    def box(target: np.ndarray) -> list[int]:
        back = np.argwhere(resize_probability(target.astype(np.float32), 256, 256)[50:] >= 0.5) + [50, 0]
        return [*back.min(axis=0), *back.max(axis=0)]

    assert box(area) == [101, 61, 120, 90]
    assert box(nearest) == [100, 60, 119, 89]


def test_area_targets_come_back_closer_than_nearest_ones() -> None:
    rng = np.random.default_rng(0)
    scores = {"area": [], "nearest": []}
    for _ in range(40):
        mask = np.zeros((256, 256), np.uint8)
        (y, x), (h, w) = rng.integers(20, 200, 2), rng.integers(3, 25, 2)
        mask[y : y + h, x : x + w] = 1
        for targets, got in scores.items():
            back = resize_probability(training_mask(mask, 128, targets).astype(np.float32), 256, 256) >= 0.5
            got.append(dice(back, mask))
    assert all(a >= n for a, n in zip(scores["area"], scores["nearest"]))
    assert np.mean(scores["area"]) > 0.95 > 0.9 > np.mean(scores["nearest"])


def test_area_targets_at_any_ratio_stay_in_0_1_and_at_the_stored_size_equal_the_mask(dataset: Path) -> None:
    cases = find_cases(dataset)
    volume = load_case(cases[0], 20, mask_targets="area")
    assert volume.masks.dtype == np.float16 and volume.masks.shape == (8, 20, 20)
    assert volume.masks.min() >= 0 and volume.masks.max() <= 1
    assert ((volume.masks > 0) & (volume.masks < 1)).any(), "edge pixels are shares"
    as_stored = load_case(cases[0], 32, mask_targets="area")
    assert np.array_equal(as_stored.masks, load_case(cases[0], 32).masks)
    with pytest.raises(ValueError, match="mask targets 'bilinear'"):
        training_mask(np.zeros((4, 4), np.uint8), 2, "bilinear")


def test_resolution_ceiling_scores_both_targets_of_a_runs_split(dataset: Path, tmp_path: Path) -> None:
    names = [c.name for c in find_cases(dataset)]
    run = tmp_path / "run"
    run.mkdir()
    (run / "split.json").write_text(json.dumps({"train": names[2:], "val": names[:2], "test": []}))
    report = tmp_path / "ceiling.json"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "saunet.benchmarks.resolution_ceiling",
            "--data",
            str(dataset),
            "--run",
            str(run),
            "--split",
            "val",
            "--size",
            "16",
            "--json",
            str(report),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "2 val case(s)" in result.stdout
    scores = json.loads(report.read_text())["dice_3d"]
    assert 0.5 < scores["nearest"]["mean"] < scores["area"]["mean"] <= 1.0
    missing = subprocess.run(
        [sys.executable, "-m", "saunet.benchmarks.resolution_ceiling", "--data", str(dataset), "--run", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (
        missing.returncode != 0
        and missing.stderr.strip()
        == f"error: {tmp_path / 'split.json'}: missing; pass --split all, or a model inside a run folder"
    )


# --- fold_split -----------------------------------------------------------------


@pytest.mark.parametrize("folds", [2, 5])
def test_folds_validate_every_non_test_patient_once_and_keep_the_single_runs_test_set(folds: int) -> None:
    names = patient_names(23, studies=2)
    single = split_cases(names, (0.8, 0.1, 0.1), seed=4)
    validated: list[str] = []
    for fold in range(folds):
        split = fold_split(names, (0.8, 0.1, 0.1), 4, folds, fold)
        assert split["test"] == single["test"]
        assert sorted(sum(split.values(), [])) == sorted(names)
        sides = {side: patients_of(cases) for side, cases in split.items()}
        assert not sides["train"] & sides["val"] and not (sides["train"] | sides["val"]) & sides["test"]
        validated += sorted(sides["val"])
    assert sorted(validated) == sorted(patients_of(single["train"] + single["val"]))
    sizes = [len(patients_of(fold_split(names, (0.8, 0.1, 0.1), 4, folds, f)["val"])) for f in range(folds)]
    assert max(sizes) - min(sizes) <= 1


def test_folds_are_deterministic_and_refuse_impossible_numbers() -> None:
    names = patient_names(12)
    assert fold_split(names, (0.8, 0.1, 0.1), 0, 5, 3) == fold_split(list(reversed(names)), (0.8, 0.1, 0.1), 0, 5, 3)
    for folds, fold in ((1, 0), (5, 5), (5, -1), (20, 0)):
        with pytest.raises(ValueError):
            fold_split(names, (0.8, 0.1, 0.1), 0, folds, fold)
