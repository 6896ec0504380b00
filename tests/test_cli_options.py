"""Every command's numeric options are range-checked (NaN and infinities included) before anything is written."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from saunet.benchmarks import bench
from saunet.quantize import cli as export_cli
from saunet.training import cli as train_cli

BAD_TRAIN = [
    ["--batch-size", "0"],
    ["--batch-size", "-4"],
    ["--epochs", "0"],
    ["--lr", "nan"],
    ["--lr", "-1e-3"],
    ["--lr", "inf"],
    ["--smooth", "nan"],
    ["--smooth", "-1"],
    ["--keep-prob", "nan"],
    ["--keep-prob", "0"],
    ["--rotation", "nan"],
    ["--shift", "nan"],
    ["--shear", "inf"],
    ["--zoom", "nan"],
    ["--grey", "nan"],
    ["--grey", "1.5"],
    ["--tumour-share", "nan"],
    ["--tumour-share", "1"],
    ["--input-size", "8"],
    ["--input-size", "40"],
    ["--preset", "sa-unet", "--input-size", "36"],
    ["--base-filters", "0"],
    ["--block-size", "0"],
    ["--seed", "-1"],
    ["--seed", str(2**40)],
    ["--split", "nan/0.5/0.5"],
    ["--split", "0.5/0.5/0.5"],
    ["--split", "1/0/0"],
    ["--split", "0.9/-0.1/0.2"],
    ["--split", "0.8/0.2"],
    ["--folds", "1", "--fold", "0"],
    ["--folds", "3", "--fold", "3"],
]


@pytest.mark.parametrize("args", BAD_TRAIN, ids=" ".join)
def test_saunet_train_refuses_out_of_range_numbers_before_making_the_run_folder(
    args: list[str], tmp_path: Path
) -> None:
    out = tmp_path / "run"
    result = CliRunner().invoke(train_cli.train, ["--data", str(tmp_path), "--out", str(out), *args])
    assert result.exit_code == 2, result.output
    assert "Invalid value" in result.output or "Error:" in result.output, result.output
    assert "Traceback" not in result.output
    assert not out.exists()


@pytest.mark.parametrize(
    "args", [["--threshold", "nan"], ["--threshold", "1.5"], ["--threshold", "-inf"]], ids=" ".join
)
def test_saunet_eval_refuses_a_threshold_outside_0_1(args: list[str], tmp_path: Path) -> None:
    scores = tmp_path / "scores.json"
    result = CliRunner().invoke(
        train_cli.evaluate, ["--data", str(tmp_path), "--model", str(tmp_path), "--json", str(scores), *args]
    )
    assert result.exit_code == 2 and "Invalid value for '--threshold'" in result.output, result.output
    assert not scores.exists()


@pytest.mark.parametrize(
    "args",
    [
        ["--tolerance", "nan"],
        ["--tolerance", "-1"],
        ["--tolerance", "inf"],
        ["--qat-lr", "nan"],
        ["--qat-lr", "0"],
        ["--qat-epochs", "0"],
        ["--qat-steps", "0"],
        ["--calibration", "0"],
        ["--calibration", "-5"],
    ],
    ids=" ".join,
)
def test_saunet_export_refuses_out_of_range_numbers_before_writing(args: list[str], tmp_path: Path) -> None:
    out = tmp_path / "m.tflite"
    result = CliRunner().invoke(export_cli.main, [str(tmp_path), "--out", str(out), *args])
    assert result.exit_code == 2 and "Invalid value" in result.output, result.output
    assert list(tmp_path.iterdir()) == []


def test_saunet_bench_has_no_numeric_option_left_unchecked() -> None:
    """saunet-bench takes paths and flags only; a numeric option added later must get a range here."""
    numeric = [p.name for p in bench.main.params if p.type.name in ("integer", "float")]
    assert numeric == []


def test_a_run_that_finished_no_epoch_does_not_block_a_rerun(tmp_path: Path, capsys) -> None:
    """A failure before the first epoch (out of memory, a kill) left config.json behind: a rerun starts afresh,
    while a run with a finished epoch is still protected."""
    from saunet.training.train import RunError, RunFolder, TrainConfig, start_or_resume

    run = RunFolder(tmp_path / "run", chief=True)
    run.path.mkdir()
    run.write_json("config.json", TrainConfig(data="d", out=str(run.path), batch_size=8).to_dict())
    config, state = start_or_resume(TrainConfig(data="d", out=str(run.path), batch_size=4), False, run)
    assert (config.batch_size, state["epoch"]) == (4, 0)
    assert "finished no epoch; starting it again" in capsys.readouterr().out

    run.write_json("state.json", {"epoch": 1})
    with pytest.raises(RunError, match="already holds a run"):
        start_or_resume(TrainConfig(data="d", out=str(run.path)), False, run)
