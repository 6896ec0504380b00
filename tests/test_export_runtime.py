"""Exports of a tiny trained-from-scratch model, and saunet-run on them, end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import saunet.quantize  # noqa: F401  (Keras 2 before TensorFlow)
from saunet.quantize.export import export_formats
from saunet.quantize.formats import LITERT
from saunet.quantize.inspect import describe_model
from saunet.runtime.metadata import read_metadata
from saunet.runtime.preprocess import Preprocessing, read_image, to_input
from saunet.runtime.segmenter import Segmenter
from saunet.runtime.spec import ModelSpec, model_spec
from saunet.training.model import build_saunet

from conftest import synthetic_case

SIZE = 32
INT8_OPS = {
    "CONV_2D",
    "TRANSPOSE_CONV",
    "MAX_POOL_2D",
    "CONCATENATION",
    "MEAN",
    "REDUCE_MAX",
    "MUL",
    "LOGISTIC",
    "QUANTIZE",
    "RELU",
}


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    """Every format of a 32x32 sa-unet, QAT fine-tuned for one short epoch on synthetic slices."""
    rng = np.random.default_rng(0)
    images, masks = zip(*(synthetic_case(rng, 8, SIZE) for _ in range(3)))
    images, masks = np.concatenate(images), (np.concatenate(masks) > 0).astype(np.uint8)
    exported = export_formats(
        build_saunet("sa-unet", input_size=SIZE),
        LITERT,
        model_spec("sa-unet", Preprocessing(input_size=SIZE)),
        {"preset": "sa-unet", "note": "test"},
        images,
        masks,
        qat_epochs=1,
        qat_learning_rate=1e-4,
        calibration_count=16,
    )
    folder = tmp_path_factory.mktemp("models")
    paths = {}
    for name, flatbuffer in exported.items():
        paths[name] = folder / f"tiny_{name}.tflite"
        paths[name].write_bytes(flatbuffer)
    return paths


def test_int8_model_is_integer_only_with_static_shapes(models: dict[str, Path]) -> None:
    for name in ("int8", "int8-ptq"):
        report = describe_model(models[name])
        assert report["float_tensors"] == [], f"{name} has float tensors"
        assert report["input"] == {"dtype": "int8", "shape": [1, SIZE, SIZE, 3]}
        assert report["output"] == {"dtype": "int8", "shape": [1, SIZE, SIZE, 1]}
        assert set(report["ops"]) <= INT8_OPS, set(report["ops"]) - INT8_OPS
        # every BatchNorm folded: the attention's MUL is the only multiplication left
        assert report["ops"]["MUL"] == 1 and "ADD" not in report["ops"]


def test_float_exports_keep_float_io(models: dict[str, Path]) -> None:
    for name in ("float32", "float16", "dynamic"):
        report = describe_model(models[name])
        assert report["input"]["dtype"] == "float32" and report["output"]["dtype"] == "float32"
        assert not {"SHAPE", "PACK", "STRIDED_SLICE"} & set(report["ops"])


def test_metadata_round_trips(models: dict[str, Path]) -> None:
    for name, path in models.items():
        metadata = read_metadata(path)
        assert metadata["format"] == name and metadata["preset"] == "sa-unet"
        assert Preprocessing.from_dict(metadata["preprocessing"]) == Preprocessing(input_size=SIZE)
        assert ModelSpec.from_dict(metadata["model"]) == model_spec("sa-unet", Preprocessing(input_size=SIZE)), (
            "the model's description travels into every export"
        )


def test_segmenter_maps_mask_back_to_input_size(models: dict[str, Path]) -> None:
    scan = np.random.default_rng(1).integers(0, 255, (70, 50, 3), dtype=np.uint8)
    for name in ("int8", "float32"):
        prediction = Segmenter(models[name], threads=1).predict(scan)
        assert prediction.probability.shape == (70, 50)
        assert 0.0 <= prediction.probability.min() and prediction.probability.max() <= 1.0


def test_int8_input_quantization_is_exact_for_8bit_pixels(models: dict[str, Path]) -> None:
    for name in ("int8", "int8-ptq"):
        segmenter = Segmenter(models[name], threads=1)
        assert segmenter.input["quantization"] == (np.float32(1 / 255), -128)
        pixels = np.arange(256, dtype=np.uint8)
        quantized = segmenter._quantize(pixels.astype(np.float32) * np.float32(segmenter.spec.scale))
        assert np.array_equal(quantized.astype(int), pixels.astype(int) - 128)
        scan = np.random.default_rng(2).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
        fast = segmenter.model_input(scan)  # the direct pixel - 128 path equals the float path
        assert np.array_equal(fast, segmenter._quantize(to_input(scan, segmenter.spec)[None]))


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "saunet.runtime", *args], capture_output=True, text=True, timeout=300)


def test_saunet_run_writes_masks_overlays_and_results(
    models: dict[str, Path], real_slices: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    result = run(str(real_slices), "--model", str(models["int8"]), "--out", str(out), "--json", "--threads", "1")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    scans = sorted(p for p in real_slices.glob("*.png") if not p.stem.endswith("_mask"))
    assert [Path(r["input"]).name for r in report["results"]] == [p.name for p in scans]
    for entry, scan in zip(report["results"], scans):
        mask = np.asarray(Image.open(entry["mask"]))
        assert mask.shape == read_image(scan).shape[:2] and set(np.unique(mask)) <= {0, 255}
        assert entry["tumour_pixels"] == int((mask > 0).sum())
        assert Image.open(entry["overlay"]).size == (256, 256)
        assert entry["latency_ms"]["invoke"] > 0
    assert json.loads((out / "results.json").read_text()) == report
    assert "[9/9]" in result.stderr


def test_bad_inputs_are_reported_and_the_batch_goes_on(
    models: dict[str, Path], real_slices: Path, tmp_path: Path
) -> None:
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    missing = tmp_path / "missing.png"
    good = next(p for p in real_slices.glob("*.png") if not p.stem.endswith("_mask"))
    out = tmp_path / "out"
    result = run(str(corrupt), str(missing), str(good), "--model", str(models["float32"]), "--out", str(out))
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert errors[0].startswith(f"error: {corrupt}: not a readable image")
    assert errors[1] == f"error: {missing}: no such file"
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"{good.stem}_pred.png", f"{good.stem}_overlay.png", "results.json"]
    )
    results = json.loads((out / "results.json").read_text())["results"]
    assert [("error" in r) for r in results] == [True, True, False]


def test_an_output_that_cannot_be_written_fails_its_scan_only(
    models: dict[str, Path], real_slices: Path, tmp_path: Path
) -> None:
    first, second = sorted(p for p in real_slices.glob("*.png") if not p.stem.endswith("_mask"))[:2]
    out = tmp_path / "out"
    blocked = out / f"{first.stem}_overlay.png"
    blocked.mkdir(parents=True)  # a folder where the overlay should go
    result = run(str(first), str(second), "--model", str(models["int8"]), "--out", str(out), "--threads", "1")
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [errors[0]] and errors[0].startswith(f"error: {blocked}: cannot be written"), errors
    results = json.loads((out / "results.json").read_text())["results"]
    assert [r["input"] for r in results] == [str(first), str(second)]
    assert "cannot be written" in results[0]["error"] and "error" not in results[1]
    assert (out / f"{second.stem}_overlay.png").is_file() and (out / f"{second.stem}_pred.png").is_file()
    assert not list(out.glob(".*partial*")), "a failed write must leave no partial file"

    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("x")
    refused = run(str(first), "--model", str(models["int8"]), "--out", str(not_a_folder))
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines()[-1].startswith(f"error: {not_a_folder}: cannot create the output folder")


def test_missing_delegate_is_an_error_unless_cpu_fallback(
    models: dict[str, Path], real_slices: Path, tmp_path: Path
) -> None:
    scan = next(p for p in real_slices.glob("*.png") if not p.stem.endswith("_mask"))
    library = tmp_path / "libnothing.so"
    result = run(str(scan), "--model", str(models["int8"]), "--delegate", str(library), "--out", str(tmp_path / "a"))
    assert result.returncode == 1
    assert result.stderr.strip() == f"error: {library}: no such delegate library"
    fallback = run(
        str(scan),
        "--model",
        str(models["int8"]),
        "--delegate",
        str(library),
        "--cpu-fallback",
        "--out",
        str(tmp_path / "b"),
    )
    assert fallback.returncode == 0, fallback.stderr
    assert "running on the CPU instead" in fallback.stderr
    assert (tmp_path / "b" / f"{scan.stem}_pred.png").is_file()


def test_edgetpu_static_check_allows_the_attentions_channel_reductions(models: dict[str, Path]) -> None:
    from saunet.quantize.edgetpu import static_check

    report = static_check(models["int8"])
    assert report["ops_total"] == sum(describe_model(models["int8"])["ops"].values())
    # ChannelPool reduces 128 channels (axis 3): the table allows a z-reduction of a depth that is a multiple of 4
    reductions = [o for o in report["ops"] if o["op"] in ("MEAN", "REDUCE_MAX")]
    assert len(reductions) == 2 and all(o["supported"] for o in reductions)
    assert report["unsupported"] == [] and report["ops_before_first_unsupported"] == report["ops_total"]


def test_normalisation_travels_in_the_metadata_and_runs_on_the_device(real_slices: Path, tmp_path: Path) -> None:
    """A model trained with channel-median gets the same normalised pixels from saunet-run as from training."""
    from saunet.runtime.preprocess import model_pixels
    from saunet.training.evaluate import keras_predictor

    spec = Preprocessing(input_size=SIZE, normalise="channel-median")
    rng = np.random.default_rng(0)
    images, masks = synthetic_case(rng, 8, SIZE)
    model = build_saunet("sa-unet", input_size=SIZE)
    formats = [f for f in LITERT if f.name in ("float32", "int8-ptq")]
    exported = export_formats(
        model,
        formats,
        model_spec("sa-unet", spec),
        {"preset": "sa-unet"},
        images,
        (masks > 0).astype(np.uint8),
        calibration_count=8,
    )
    for name, flatbuffer in exported.items():
        (tmp_path / f"{name}.tflite").write_bytes(flatbuffer)
        assert read_metadata(tmp_path / f"{name}.tflite")["preprocessing"]["normalise"] == "channel-median"

    scans = np.stack([read_image(p) for p in sorted(real_slices.glob("*[0-9].png"))[:3]])
    scans[:, :, :, 1] //= 3  # a FLAIR stored at a third of the usual level
    on_device = Segmenter(tmp_path / "float32.tflite", threads=1).predict_batch(scans)
    np.testing.assert_allclose(on_device, keras_predictor(model, spec)(scans), atol=1e-4)
    unnormalised = keras_predictor(model, Preprocessing(input_size=SIZE))(scans)
    assert np.abs(on_device - unnormalised).max() > 1e-3, "the test should be able to tell the difference"

    int8 = Segmenter(tmp_path / "int8-ptq.tflite", threads=1)
    np.testing.assert_array_equal(
        int8.model_input(scans[0])[0].astype(int), model_pixels(scans[0], spec).astype(int) - 128
    )


def test_a_model_with_unknown_preprocessing_is_a_one_line_error(
    models: dict[str, Path], real_slices: Path, tmp_path: Path
) -> None:
    """A model from a newer saunet (a normalisation this version lacks) is refused, not run without it."""
    from saunet.quantize.tflite_metadata import embed

    metadata = read_metadata(models["int8"])
    metadata["preprocessing"]["normalise"] = "per-volume-zscore"
    newer = tmp_path / "newer.tflite"
    newer.write_bytes(embed(models["int8"].read_bytes(), metadata))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "saunet.runtime",
            str(real_slices),
            "--model",
            str(newer),
            "--out",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    (line,) = result.stderr.strip().splitlines()[-1:]
    assert line.startswith("error: ") and str(newer) in line and "'per-volume-zscore'" in line, line
    assert not (tmp_path / "out").exists()
