"""Shared fixtures: the bundled real slices and small synthetic data sets in the Kaggle layout."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ROOT = Path(__file__).resolve().parents[1]
SLICES = ROOT / "examples" / "slices"
#: Prepended to code run in a fresh interpreter: any import of TensorFlow or Keras fails, as on a Pi without them.
BLOCK_TENSORFLOW = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("tensorflow", "tf_keras", "keras", "tensorflow_model_optimization"):
            raise ImportError("blocked: " + name)
sys.meta_path.insert(0, Block())
"""
#: Prepended by `run_with_keras_models`: numpy, saunet's Keras (imported after saunet.training, which sets
#: Keras 2 up before TensorFlow) and `load`, which reads a .keras file with saunet's custom layers.
LOAD_KERAS_MODELS = """
import numpy as np
import saunet.training
from saunet.training.keras import keras
from saunet.training.model import custom_objects
def load(path):
    return keras.models.load_model(path, custom_objects=custom_objects())
"""


def synthetic_case(rng: np.random.Generator, slices: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """A fake volume: a grey disc of 'brain' with a bright ellipsoid 'tumour' in the middle slices."""
    yy, xx = np.mgrid[:size, :size]
    centre = size / 2 + rng.uniform(-size / 10, size / 10, 2)
    radius = rng.uniform(size / 10, size / 5)
    images, masks = [], []
    for z in range(slices):
        image = np.zeros((size, size, 3), np.uint8)
        brain = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (0.42 * size) ** 2
        image[brain] = rng.integers(60, 90, size=(brain.sum(), 3))
        depth = 1 - abs(z - slices / 2) / (slices / 3)
        mask = np.zeros((size, size), np.uint8)
        if depth > 0 and 0 < z < slices - 1:
            mask = (((yy - centre[0]) ** 2 + (xx - centre[1]) ** 2) < (radius * depth) ** 2).astype(np.uint8)
            image[mask > 0, 1] = rng.integers(180, 230, size=mask.sum())
        images.append(image)
        masks.append(mask * 255)
    return np.stack(images), np.stack(masks)


def write_dataset(
    root: Path,
    cases: int = 6,
    slices: int = 8,
    size: int = 32,
    suffix: str = ".tif",
    seed: int = 0,
    institution: str = "XX",
) -> Path:
    """Writes `cases` synthetic cases as <root>/kaggle_3m/<case>/<case>_<n><suffix> (+ _mask)."""
    rng = np.random.default_rng(seed)
    base = root / "kaggle_3m"
    for c in range(cases):
        name = f"TCGA_{institution}_{1000 + c}_2000010{c % 9 + 1}"
        folder = base / name
        folder.mkdir(parents=True, exist_ok=True)
        images, masks = synthetic_case(rng, slices, size)
        for n, (image, mask) in enumerate(zip(images, masks), start=1):
            Image.fromarray(image).save(folder / f"{name}_{n}{suffix}")
            Image.fromarray(mask).save(folder / f"{name}_{n}_mask{suffix}")
    return base


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    """Six synthetic 8-slice cases of 32x32 TIFF pairs in the Kaggle layout."""
    return write_dataset(tmp_path / "data")


@pytest.fixture(scope="session")
def real_slices() -> Path:
    """The bundled real slices (examples/slices, PNG pairs; see its NOTICE.md)."""
    return SLICES


def run_python(code: str, env: dict | None = None, timeout: int = 300):
    """Runs Python code in a fresh interpreter (for isolation of TensorFlow state)."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=full_env, timeout=timeout)


def run_with_keras_models(code: str, **models: Path):
    """Runs `code` in a fresh interpreter with each of `models` (name=path of a .keras file) loaded into a
    variable of that name, and `np` and `keras` at hand: the test states only what it checks of the models."""
    loads = "".join(f"{name} = load({str(path)!r})\n" for name, path in models.items())
    return run_python(LOAD_KERAS_MODELS + loads + textwrap.dedent(code))


#: saunet-train's smallest real settings, which the tests that need a trained run use.
TINY_TRAINING = ("--input-size", "32", "--batch-size", "8", "--split", "0.6/0.2/0.2")


def train_tiny(data: Path, out: Path, *extra: str, timeout: int = 900) -> subprocess.CompletedProcess:
    """A one-epoch saunet-train run of TINY_TRAINING on `data` into `out`, with `extra` options."""
    command = ["train", "--data", str(data), "--out", str(out), "--epochs", "1", *TINY_TRAINING, *extra]
    return subprocess.run(
        [sys.executable, "-m", "saunet.training", *command], capture_output=True, text=True, timeout=timeout
    )


def run_device(*args: str) -> tuple[int, str]:
    """saunet-run's exit code and what it wrote to stderr after its first line (which says what model runs)."""
    from click.testing import CliRunner

    from saunet.runtime import cli

    result = CliRunner().invoke(cli.main, list(args))
    first, _, rest = result.stderr.partition("\n")
    if result.exit_code == 2:  # refused before a model was opened
        return result.exit_code, result.stderr
    assert first.startswith("model: "), first
    return result.exit_code, rest
