"""saunet-export on a tiny run: outputs, parity report, gate, and bad input."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from saunet.runtime.metadata import read_metadata

from conftest import run_python, run_with_keras_models, train_tiny, write_dataset


def cli(module: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[Path, Path]:
    """A one-epoch 32x32 sa-unet run on synthetic data: (run folder, data folder)."""
    root = tmp_path_factory.mktemp("export")
    data = write_dataset(root / "data", cases=6, slices=8)
    folder = root / "run"
    result = train_tiny(data, folder)
    assert result.returncode == 0, result.stderr
    return folder, data


def test_export_writes_models_and_parity_report(run: tuple[Path, Path], tmp_path: Path) -> None:
    folder, data = run
    out = tmp_path / "tiny.tflite"
    result = cli("saunet.quantize", str(folder), "--ptq", "--float32", "--out", str(out), "--allow-drop", "--edgetpu")
    assert result.returncode == 0, result.stderr
    edgetpu = json.loads((tmp_path / "tiny_int8_ptq_edgetpu.json").read_text())
    assert edgetpu["compiler"] is None and "not on PATH" in result.stdout
    assert (tmp_path / "tiny_int8_ptq.tflite").is_file() and (tmp_path / "tiny_float32.tflite").is_file()
    report = json.loads((tmp_path / "tiny_int8_ptq_parity.json").read_text())
    assert set(report["exports"]) == {"int8-ptq", "float32"}
    assert report["exports"]["float32"]["mask_agreement"] > 0.999
    assert report["cases"] == json.loads((folder / "split.json").read_text())["val"]
    assert "| float32 |" in (tmp_path / "tiny_int8_ptq_parity.md").read_text()
    metadata = read_metadata(tmp_path / "tiny_int8_ptq.tflite")
    assert (metadata["source"], metadata["data"]) == (folder.name, data.name), "metadata should hold names, not paths"

    again = cli("saunet.quantize", str(folder), "--float32", "--out", str(tmp_path / "tiny_float32.tflite"))
    assert again.returncode == 1
    assert (
        again.stderr.strip().splitlines()[-1]
        == f"error: {tmp_path / 'tiny_float32.tflite'}: exists; add --force to overwrite it"
    )


def test_a_failed_gate_exits_2_and_still_writes_the_report(run: tuple[Path, Path], tmp_path: Path) -> None:
    """The CLI's side of the gate (its arithmetic: test_parity_gate.py): every export made to fail it."""
    folder, _ = run
    result = run_python(f"""
import sys
import saunet.quantize.parity as parity
from saunet.quantize.cli import main
parity.passes_gate = lambda change, tolerance: False
sys.argv = ["saunet-export", {str(folder)!r}, "--ptq", "--out", {str(tmp_path / "m.tflite")!r}]
main()
""")
    assert result.returncode == 2, result.stderr
    assert "int8-ptq: mean per-patient Dice dropped by more than 0.01" in result.stderr.strip().splitlines()[-1]
    assert (tmp_path / "m_parity.md").is_file() and "| FAIL |" in (tmp_path / "m_parity.md").read_text()


@pytest.mark.parametrize("case", ["no-checkpoint", "corrupt-checkpoint", "not-saunet", "no-training-data"])
def test_bad_sources_are_one_line_errors(run: tuple[Path, Path], tmp_path: Path, case: str) -> None:
    folder, data = run
    source = tmp_path / "run"
    source.mkdir()
    for name in ("config.json", "split.json"):
        (source / name).write_text((folder / name).read_text())
    extra = []
    if case == "corrupt-checkpoint":
        (source / "best.keras").write_bytes(b"PK\x03\x04 broken zip")
    elif case == "not-saunet":
        import saunet.training  # noqa: F401
        from saunet.training.keras import keras

        inputs = keras.Input((32, 32, 3))
        keras.Model(inputs, keras.layers.Conv2D(1, 1)(inputs)).save(source / "best.keras")
    elif case == "no-training-data":
        (source / "best.keras").write_bytes((folder / "best.keras").read_bytes())
        empty = tmp_path / "empty"
        write_dataset(empty, cases=1, slices=2, institution="ZZ")
        extra = ["--data", str(empty / "kaggle_3m")]
    result = cli("saunet.quantize", str(source), "--ptq", "--out", str(tmp_path / "m.tflite"), *extra)
    assert result.returncode == 1, result.stderr
    line = result.stderr.strip().splitlines()[-1]
    expected = {
        "no-checkpoint": f"{source / 'best.keras'}: no such model file",
        "corrupt-checkpoint": f"{source / 'best.keras'}: not a loadable Keras model",
        "not-saunet": "best.keras: not a saunet model",
        "no-training-data": "lacks case",
    }[case]
    assert line.startswith("error: ") and expected in line
    assert not list(tmp_path.glob("m*.tflite"))


def test_bundle_puts_the_runs_pair_into_the_package_and_refuses_a_mismatch(
    run: tuple[Path, Path], tmp_path: Path
) -> None:
    folder, _ = run
    exported = tmp_path / "tiny.tflite"
    assert (
        cli("saunet.quantize", str(folder), "--ptq", "--float32", "--out", str(exported), "--allow-drop").returncode
        == 0
    )
    int8, float32 = tmp_path / "tiny_int8_ptq.tflite", tmp_path / "tiny_float32.tflite"
    dest = tmp_path / "models"

    result = cli("saunet.quantize.bundle", str(folder), str(int8), "--dest", str(dest))
    assert result.returncode == 0, result.stderr
    assert (dest / "saunet_int8.tflite").read_bytes() == int8.read_bytes()
    check = run_with_keras_models(
        f"""
from pathlib import Path
from saunet.training.evaluate import load_keras_model
best, _, _ = load_keras_model(Path({str(folder)!r}))
assert bundled.optimizer is None, "the bundled float model should carry no optimiser state"
import json
beside = Path({str(dest)!r}) / "saunet_float.json"
described = json.loads(beside.read_text())
described["model"]["preprocessing"]["normalise"] = "channel-median"
beside.write_text(json.dumps(described))
_, _, spec = load_keras_model(Path({str(dest / "saunet_float.keras")!r}))
assert spec.normalise == "channel-median", "the bundled float model's preprocessing comes from the file beside it"
assert all(np.array_equal(a, b) for a, b in zip(bundled.get_weights(), best.get_weights()))
""",
        bundled=dest / "saunet_float.keras",
    )
    assert check.returncode == 0, check.stderr
    assert cli("saunet.quantize.bundle", str(folder), str(int8), "--dest", str(dest)).returncode == 0
    assert sorted(p.name for p in dest.iterdir()) == ["saunet_float.json", "saunet_float.keras", "saunet_int8.tflite"]
    assert (
        json.loads((dest / "saunet_float.json").read_text())["model"]
        == json.loads((folder / "config.json").read_text())["model"]
    ), "the model's description travels with it"
    assert (
        json.loads((dest / "saunet_float.json").read_text())["preprocessing"]
        == json.loads((folder / "config.json").read_text())["preprocessing"]
    )
    assert json.loads((dest / "saunet_float.json").read_text())["split"] == json.loads(
        (folder / "split.json").read_text()
    ), "the bundled model should keep its patient split"

    before = {p.name: p.read_bytes() for p in dest.iterdir()}
    bundled_128 = Path(__file__).resolve().parents[1] / "runtime" / "models" / "saunet_int8.tflite"
    normalised = tmp_path / "normalised_int8.tflite"
    relabel = run_python(f"""
import saunet.quantize
from saunet.quantize.tflite_metadata import embed
from saunet.runtime.metadata import read_metadata
metadata = read_metadata({str(int8)!r})
metadata["preprocessing"]["normalise"] = {{"none": "channel-median", "channel-median": "none"}}[metadata["preprocessing"]["normalise"]]
open({str(normalised)!r}, "wb").write(embed(open({str(int8)!r}, "rb").read(), metadata))
""")
    assert relabel.returncode == 0, relabel.stderr
    for wrong, problem in (
        (float32, "is a float32 model; bundle an int8 export"),
        (bundled_128, "no model description"),
        (normalised, "differently from the run: normalise "),
        (tmp_path / "absent.tflite", "absent.tflite"),
    ):
        refused = cli("saunet.quantize.bundle", str(folder), str(wrong), "--dest", str(dest))
        assert refused.returncode == 1
        (line,) = refused.stderr.strip().splitlines()[-1:]
        assert line.startswith("error: ") and problem in line and str(wrong) in line, line
    assert {p.name: p.read_bytes() for p in dest.iterdir()} == before, "a refused bundle must change nothing"


def parity(rows: dict[str, tuple[float, float, bool]], files: bool = True) -> dict:
    """A parity report as saunet-export writes it: format -> (mask agreement, Dice change, passed)."""
    report = {
        "exports": {
            name: {"mask_agreement": agreement, "dice_change": change, "passed": passed}
            for name, (agreement, change, passed) in rows.items()
        }
    }
    return {**report, "files": {name: f"m_{name}.tflite" for name in rows}} if files else report


def test_the_rule_bundles_the_int8_file_that_agrees_best_within_the_tolerance(tmp_path: Path) -> None:
    from saunet.quantize.choice import pick_int8

    report = tmp_path / "m_parity.json"
    both = parity({"int8": (0.9990, +0.030, True), "int8-ptq": (0.9995, -0.002, True), "float32": (1.0, 0.0, True)})
    choice = pick_int8([(report, both)])
    assert (choice.format, choice.path, choice.candidates) == ("int8-ptq", tmp_path / "m_int8-ptq.tflite", 2), (
        "agreement decides, not a Dice gain; float formats are never bundled"
    )
    failed = parity({"int8": (0.9990, +0.030, True), "int8-ptq": (0.9995, -0.020, False)})
    assert pick_int8([(report, failed)]).format == "int8", "a file outside the tolerance is passed over"
    assert pick_int8([(report, parity({"int8-ptq": (0.9995, -0.020, False)}))]) is None
    other = tmp_path / "qat2" / "m_parity.json"
    choice = pick_int8([(report, failed), (other, parity({"int8": (0.9993, 0.0, True)}))])
    assert (choice.path, choice.candidates) == (tmp_path / "qat2" / "m_int8.tflite", 2), "the best of all reports"
    assert pick_int8([(report, parity({"int8": (0.999, 0.0, True)}, files=False))]).path is None


def test_bundle_without_a_file_takes_the_rules_pick(run: tuple[Path, Path], tmp_path: Path) -> None:
    folder, _ = run
    copy = tmp_path / "run"
    shutil.copytree(folder, copy)
    assert cli("saunet.quantize", str(copy), "--ptq", "--allow-drop").returncode == 0
    report_file = copy / "export" / "saunet_int8_ptq_parity.json"
    report = json.loads(report_file.read_text())
    assert report["files"] == {"int8-ptq": "saunet_int8_ptq.tflite"}, "saunet-export records the file it scored"

    report["exports"]["int8-ptq"]["passed"] = True
    report_file.write_text(json.dumps(report))
    result = cli("saunet.quantize.bundle", str(copy), "--dest", str(tmp_path / "models"))
    assert result.returncode == 0, result.stderr
    assert f"chosen: {copy / 'export' / 'saunet_int8_ptq.tflite'} (mask agreement" in result.stdout
    assert (tmp_path / "models" / "saunet_int8.tflite").read_bytes() == (
        copy / "export" / "saunet_int8_ptq.tflite"
    ).read_bytes()

    report["exports"]["int8-ptq"]["passed"] = False
    report_file.write_text(json.dumps(report))
    for broken, problem in (
        (None, "no int8 export within its parity tolerance"),
        ("{", "not a readable parity report"),
        ('{"exports": {"int8": {}}}', "not a saunet-export parity report"),
    ):
        if broken:
            report_file.write_text(broken)
        refused = cli("saunet.quantize.bundle", str(copy), "--dest", str(tmp_path / "none"))
        assert refused.returncode == 1
        (line,) = refused.stderr.strip().splitlines()[-1:]
        assert line.startswith("error: ") and problem in line and str(copy / "export") in line, line
        assert not (tmp_path / "none").exists(), "a refused bundle writes nothing"
