"""saunet-run on an emulated Raspberry Pi (aarch64 under qemu) gives the masks it gives here.

The emulated runs need Debian's qemu-user-static and, the first time, the network (for bookworm's
arm64 packages and PyPI's aarch64 wheels); they skip when either is missing. Later runs reuse the
cached root ($SAUNET_PI_CACHE, else ~/.cache/saunet/pi-emulation).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from saunet.runtime.models import BUNDLED_MODEL

from conftest import SLICES

SCANS = ("TCGA_CS_6186_20000601_16.png", "TCGA_HT_7877_19980917_21.png")
#: Failures of the first run's downloads mean "no network here", not a bug in what is tested.
OFFLINE = ("error: downloading", "error: installing aarch64 wheels")


def pi_emulation(*args: str, env: dict | None = None, timeout: int = 1800) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "saunet.benchmarks.pi_emulation", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture(scope="module")
def qemu() -> None:
    if not shutil.which("qemu-aarch64-static"):
        pytest.skip("qemu-aarch64-static not on PATH (apt-get install qemu-user-static)")


def emulate(report: Path, *extra: str) -> dict:
    """Runs the script with the bundled model on two bundled slices; skips if its first-run
    downloads cannot be made."""
    result = pi_emulation("--image", *(str(SLICES / name) for name in SCANS), "--report", str(report), *extra)
    error = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else ""
    if result.returncode and error.startswith(OFFLINE):
        pytest.skip(f"no network for the first emulation setup: {error}")
    assert result.returncode == 0, result.stderr
    return json.loads(report.read_text())


def test_emulated_pi_gives_the_same_masks(qemu, tmp_path: Path) -> None:
    """The default: the bundled model and ai-edge-litert, as on 64-bit Raspberry Pi OS, the same
    release on both sides."""
    report = emulate(tmp_path / "report.json")
    assert report["model"] == str(BUNDLED_MODEL)
    assert report["aarch64"]["backend"] == report["x86_64"]["backend"] == "ai-edge-litert"
    assert report["aarch64"]["cpu"] == "cortex-a72"
    assert [Path(row["image"]).name for row in report["results"]] == list(SCANS)
    assert report["overall"]["compared"] == report["overall"]["identical"] == 2, report["results"]
    assert report["overall"]["differing_pixels"] == 0 and report["overall"]["agreement"] == 1.0


def test_tflite_runtime_under_emulation_nearly_agrees(qemu, tmp_path: Path) -> None:
    """tflite-runtime 2.14's int8 kernels round some outputs a step away from XNNPACK's (the host's),
    which flips the odd pixel at the 0.5 threshold, so near-agreement is asserted."""
    report = emulate(tmp_path / "report.json", "--backend", "tflite-runtime")
    assert report["aarch64"]["backend"] == "tflite-runtime"
    assert report["aarch64"]["wheels"]["tflite-runtime"] == "2.14.0"
    assert report["overall"]["compared"] == 2
    assert report["overall"]["agreement"] >= 0.999, report["results"]  # 99.99% when written


def test_missing_model_is_a_one_line_error(tmp_path: Path) -> None:
    model = tmp_path / "absent.tflite"
    result = pi_emulation("--model", str(model), "--cache", str(tmp_path / "cache"), timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip() == f"error: {model}: no such model file"
    assert not (tmp_path / "cache").exists()


def test_missing_qemu_says_how_to_install_it(tmp_path: Path) -> None:
    model = tmp_path / "model.tflite"
    model.write_bytes(b"checked by saunet-run, not here")
    empty = tmp_path / "bin"
    empty.mkdir()
    result = pi_emulation(
        "--model", str(model), "--cache", str(tmp_path / "cache"), env={"PATH": str(empty)}, timeout=120
    )
    assert result.returncode == 1
    assert result.stderr.strip() == ("error: qemu-aarch64-static not found on PATH: apt-get install qemu-user-static")


def test_emulated_pi_gives_the_same_nifti_mask(qemu, tmp_path: Path) -> None:
    """The volume path on aarch64: a NIfTI (the bundled slices of one patient, in RAS voxel order,
    so it is turned on the way in and back on the way out) gives the same seg file voxel for voxel."""
    import nibabel as nib
    import numpy as np

    from saunet.runtime.preprocess import read_image

    case = "TCGA_CS_6186_20000601"
    stack = np.stack([read_image(SLICES / f"{case}_{n}.png") for n in (3, 16, 18)])
    pls = nib.Nifti1Image(
        np.moveaxis(stack, 0, 2), np.array([[0, -0.5, 0, 0], [-0.5, 0, 0, 0], [0, 0, 5.0, 0], [0, 0, 0, 1]])
    )
    volume = tmp_path / f"{case}.nii.gz"
    nib.save(nib.as_closest_canonical(pls), volume)
    result = pi_emulation("--image", str(volume), "--report", str(tmp_path / "report.json"))
    error = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else ""
    if result.returncode and error.startswith(OFFLINE):
        pytest.skip(f"no network for the first emulation setup: {error}")
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    (row,) = report["results"]
    assert row["compared"] and row["pixels"] == stack.shape[0] * stack.shape[1] * stack.shape[2], row
    assert row["tumour_pixels"]["x86_64"] > 0
    assert report["overall"]["identical"] == 1 and report["overall"]["differing_pixels"] == 0
    assert report["aarch64"]["wheels"]["nibabel"]
