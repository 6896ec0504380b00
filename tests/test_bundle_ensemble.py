"""Bundling a cross-validation's fold exports as saunet-run's ensemble: every fold, each through its gate."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import saunet.quantize  # noqa: F401  (Keras 2 before TensorFlow)
from saunet.quantize.bundle_ensemble import bundle_ensemble
from saunet.runtime.ensemble import BundledEnsemble
from saunet.runtime.models import BUNDLED_MODEL
from saunet.training.config import TrainConfig
from saunet.training.dataset import DataError


def fold_run(root: Path, fold: int, folds: int = 2, passed: bool = True, test: tuple[str, ...] = ("T1", "T2")) -> Path:
    """A fold run's record as saunet-train --folds and saunet-export leave it (the bundled int8 as its export)."""
    run = root / f"fold{fold}"
    (run / "export").mkdir(parents=True)
    split = {"train": [], "val": [f"V{fold}a", f"V{fold}b"], "test": list(test), "folds": folds, "fold": fold}
    (run / "split.json").write_text(json.dumps(split))
    config = TrainConfig(data="kaggle_3m", out=str(run), epochs=100, folds=folds, fold=fold)
    (run / "config.json").write_text(json.dumps(config.to_dict()))
    shutil.copyfile(BUNDLED_MODEL, run / "export" / "saunet_int8_ptq.tflite")
    row = {"mask_agreement": 0.999, "dice_change": -0.001, "passed": passed}
    report = {"exports": {"int8-ptq": row}, "files": {"int8-ptq": "saunet_int8_ptq.tflite"}}
    (run / "export" / "saunet_int8_ptq_parity.json").write_text(json.dumps(report))
    return run


def test_every_fold_is_bundled_with_its_description_and_test_patients(tmp_path: Path) -> None:
    runs = [fold_run(tmp_path / "cv", f) for f in (1, 0)]
    dest = tmp_path / "models" / "ensemble"
    written = bundle_ensemble(runs, tta=True, dest=dest)
    ensemble = BundledEnsemble.read(written)
    assert [m.name for m in ensemble.models] == ["fold0_int8.tflite", "fold1_int8.tflite"]
    assert ensemble.tta is True and ensemble.test_patients == ("T1", "T2") and ensemble.threshold is None
    assert BundledEnsemble.read(bundle_ensemble(runs, tta=False, dest=dest, threshold=0.4)).threshold == 0.4
    assert all(m.read_bytes() == BUNDLED_MODEL.read_bytes() for m in ensemble.models)
    members = json.loads(written.read_text())["members"]
    assert [m["run"] for m in members] == ["cv/fold0", "cv/fold1"] and all("agreement" in m["chosen"] for m in members)
    assert [m["epochs"] for m in members] == [100, 100]
    command = json.loads(written.read_text())["training"].replace("\\\n", " ").split()
    assert command[:5] == ["saunet-train", "--data", "data/kaggle_3m", "--out", "runs/cv/fold0"]
    assert "--folds 2 --fold 0" in " ".join(command) and "--epochs 100" in " ".join(command), "fold 0's own command"


def test_a_missing_fold_or_a_failed_gate_leaves_the_bundle_as_it_was(tmp_path: Path) -> None:
    dest = tmp_path / "ensemble"
    bundle_ensemble([fold_run(tmp_path / "cv", f) for f in (0, 1)], tta=False, dest=dest)
    before = {p.name: p.read_bytes() for p in dest.iterdir()}
    with pytest.raises(ValueError, match="every fold"):
        bundle_ensemble([tmp_path / "cv" / "fold0"], tta=True, dest=dest)
    failed = [fold_run(tmp_path / "failed", 0), fold_run(tmp_path / "failed", 1, passed=False)]
    with pytest.raises(ValueError, match="no int8 export within its parity tolerance"):
        bundle_ensemble(failed, tta=True, dest=dest)
    other = [fold_run(tmp_path / "mixed", 0), fold_run(tmp_path / "mixed", 1, test=("T3",))]
    with pytest.raises(DataError, match="different cross-validations"):
        bundle_ensemble(other, tta=True, dest=dest)
    (tmp_path / "cv" / "fold1" / "config.json").unlink()
    with pytest.raises(DataError, match="config.json: missing"):
        bundle_ensemble([tmp_path / "cv" / "fold0", tmp_path / "cv" / "fold1"], tta=True, dest=dest)
    assert {p.name: p.read_bytes() for p in dest.iterdir()} == before
