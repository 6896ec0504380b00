"""The device runtime stays light: it imports and reads models without TensorFlow."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import BLOCK_TENSORFLOW, run_python


def test_runtime_imports_without_tensorflow() -> None:
    result = run_python(
        BLOCK_TENSORFLOW
        + """
import saunet.runtime.cli, saunet.runtime.segmenter, saunet.runtime.metrics, saunet.runtime.preprocess
from saunet.runtime.interpreter import find_backend
name, _ = find_backend()
assert name != "tensorflow", name
heavy = [m for m in sys.modules if m.split(".")[0] in ("tensorflow", "tf_keras", "keras")]
assert not heavy, heavy
print("OK", name)
"""
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("OK")


def saunet_run(*args: str) -> subprocess.CompletedProcess:
    code = BLOCK_TENSORFLOW + "from saunet.runtime.cli import main\nmain()"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120)


def test_not_a_tflite_model_is_a_one_line_error(tmp_path: Path, real_slices: Path) -> None:
    model = tmp_path / "model.tflite"
    model.write_bytes(b"definitely not a flatbuffer")
    result = saunet_run(str(real_slices), "--model", str(model), "--out", str(tmp_path / "out"))
    assert result.returncode == 1
    assert result.stderr.strip() == f"error: {model}: not a TFLite model (no TFL3 identifier)"
    assert not (tmp_path / "out").exists()


def test_missing_model_is_a_one_line_error(tmp_path: Path, real_slices: Path) -> None:
    model = tmp_path / "absent.tflite"
    result = saunet_run(str(real_slices), "--model", str(model), "--out", str(tmp_path / "out"))
    assert result.returncode == 1
    assert result.stderr.strip() == f"error: {model}: no such model file"
