"""saunet-bench --quick end to end on a tiny trained run: every row measured, skipped or failed with why."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from saunet.quantize.formats import LITERT
from saunet.runtime.metrics import bootstrap_interval

from conftest import train_tiny, write_dataset

pytestmark = pytest.mark.slow


def saunet(module: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, timeout=1200)


@pytest.fixture(scope="module")
def quick_report(tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path, Path]:
    """A 1-epoch 32x32 run, benchmarked with --quick, a delegate library that does not exist and its two
    int8 exports as an ensemble, described as a bundled one with its own threshold."""
    folder = tmp_path_factory.mktemp("bench")
    dataset = write_dataset(folder / "data")
    run = folder / "run"
    trained = train_tiny(dataset, run)
    (folder / "ensemble").mkdir()
    members = [f"../run/export/{name}" for name in ("saunet_int8_ptq.tflite", "saunet_int8.tflite")]
    description = {"models": members, "tta": False, "threshold": 0.4}
    (folder / "ensemble" / "ensemble.json").write_text(json.dumps(description))
    assert trained.returncode == 0, trained.stderr
    result = saunet(
        "saunet.benchmarks.bench",
        "--model",
        str(run),
        "--data",
        str(dataset),
        "--out",
        str(folder / "reports"),
        "--quick",
        "--delegate",
        str(folder / "libmissing.so"),
        "--ensemble",
        str(folder / "ensemble"),
    )
    return result, run, folder / "reports"


def rows_of(reports: Path) -> dict[str, dict]:
    (report_file,) = reports.glob("*.json")
    return {row["name"]: row for row in json.loads(report_file.read_text())["rows"]}


def test_quick_bench_writes_every_report_file(quick_report) -> None:
    result, run, reports = quick_report
    assert result.returncode == 0, result.stderr
    stems = {p.name for p in reports.iterdir()}
    (md,) = [n for n in stems if n.endswith(".md")]
    stem = md[: -len(".md")]
    assert stem.endswith(f"-{run.name}"), "the report should be named for the run it measured"
    report = json.loads((reports / f"{stem}.json").read_text())
    assert report["run"] == run.name, "the report should name the run, not this machine's path to it"
    assert {f"{stem}.json", f"{stem}-latency.png", f"{stem}-dice.png"} <= stems
    assert "| tflite int8 | ok |" in result.stdout and "QUICK RUN" in result.stdout
    for fmt in LITERT:
        assert (run / "export" / f"saunet{fmt.suffix}").is_file(), f"{fmt.name} was not exported"
    assert "AVX-512 VNNI" in report["machine"] and "AMX" in report["machine"], "the report names the CPU's ISA"


def test_every_cpu_row_is_measured_at_each_thread_count(quick_report) -> None:
    _, run, reports = quick_report
    report = json.loads(next(reports.glob("*.json")).read_text())
    rows = rows_of(reports)
    measured = ["keras float32 (TF CPU)", *(f"tflite {f.name}" for f in LITERT)]
    measured += [f"tflite {f.name} --tta" for f in LITERT if f.integer_io]  # saunet-run --tta, as the device runs it
    measured += ["tflite int8 ensemble of 2", "tflite int8 ensemble of 2 --tta"]
    try:
        import onnxruntime  # noqa: F401
        import tf2onnx  # noqa: F401

        measured += ["onnxruntime float32", "onnxruntime int8"]
    except ImportError:
        assert rows["onnxruntime float32"]["status"].startswith("skipped: ")
        assert rows["onnxruntime int8"]["status"].startswith("skipped: ")
    for name in measured:
        row = rows[name]
        assert row["status"] == "ok", (name, row["status"])
        assert sorted(row["latency_ms"]) == sorted(str(t) for t in report["threads"])
        for latency in row["latency_ms"].values():
            assert latency["runs"] == 10 and 0 < latency["p50"] <= latency["p90"] <= latency["p99"]
        assert 0 <= row["dice_3d_mean"] <= 1 and row["slices_per_s"] > 0 and row["peak_rss_mb"] > 0
        assert row["size_mb"] > 0 and all(g > 0 for g in row["gops"].values())
    assert rows["keras float32 (TF CPU)"]["agreement"] == 1.0 and rows["keras float32 (TF CPU)"]["dice_change"] == 0
    assert rows["tflite float32"]["agreement"] > 0.999, "float32 TFLite should segment like Keras"
    floors = {rows[name]["floor"] for name in measured if name.startswith(("tflite", "onnxruntime"))}
    assert floors == set(report["floors"]) and {"litert float32", "litert int8"} <= floors
    for name, floor in report["floors"].items():
        assert sorted(floor["p50_ms"]) == sorted(str(t) for t in report["threads"]), name
        assert all(ms > 0 for ms in floor["p50_ms"].values()) and floor["convolutions"] >= floor["shapes"] > 0
    for name in measured[1:]:
        ratios = rows[name]["floor_ratio"]
        assert sorted(ratios) == sorted(str(t) for t in report["threads"]) and all(r > 0 for r in ratios.values())
    for name in measured:
        assert sorted(rows[name]["slice_ms"]) == sorted(str(t) for t in report["threads"]), name
    ensemble, single = rows["tflite int8 ensemble of 2 --tta"], rows["tflite int8-ptq"]
    assert ensemble["size_mb"] > single["size_mb"] and isinstance(ensemble["model"], list)
    assert ensemble["scores"]["threshold"] == 0.4, "a bundled ensemble is scored at its description's threshold"
    assert rows["tflite int8"]["scores"]["threshold"] == 0.5
    assert len(report["goals"]) == 6 and all(g["value"] is not None for g in report["goals"] if "ONNX" not in g["goal"])


def test_rows_that_cannot_run_say_why(quick_report) -> None:
    _, _, reports = quick_report
    rows = rows_of(reports)
    assert rows["tflite int8 (libmissing.so)"]["status"].startswith("failed: ")
    assert "libmissing.so: no such delegate library" in rows["tflite int8 (libmissing.so)"]["status"]
    assert rows["tflite int8 (Edge TPU)"]["status"].startswith("skipped: no saunet_int8_edgetpu.tflite")
    import tensorflow as tf

    if not tf.config.list_physical_devices("GPU"):
        assert rows["keras float32 (TF GPU)"]["status"] == "skipped: TensorFlow sees no GPU"


def test_bench_of_a_missing_run_is_a_one_line_error(tmp_path: Path) -> None:
    result = saunet("saunet.benchmarks.bench", "--model", str(tmp_path / "nowhere"), "--quick")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == f"error: {tmp_path / 'nowhere'}: no such model file"


def test_model_card_tables_come_from_the_report(quick_report) -> None:
    from saunet.benchmarks.card_tables import tables

    _, _, reports = quick_report
    report = json.loads(next(reports.glob("*.json")).read_text())
    rows = rows_of(reports)
    text = tables(report, ("keras float32 (TF CPU)", "tflite int8"))
    dice = rows["tflite int8"]["scores"]["dice_3d"]["mean"]
    assert f"| per-patient 3D Dice, mean | {rows['keras float32 (TF CPU)']['dice_3d_mean']:.3f} | {dice:.3f} |" in text
    for patient in report["patients"]:
        assert f"| {patient} |" in text


def test_model_card_is_written_from_the_run_record_report_and_bundle(quick_report, tmp_path: Path) -> None:
    from saunet.quantize.choice import pick_int8, read_reports
    from saunet.training.cli import train, training_command

    _, run, reports = quick_report
    data = run.parent / "data" / "kaggle_3m"
    evaluated = saunet(
        "saunet.training",
        "eval",
        "--data",
        str(data),
        "--model",
        str(run),
        "--split",
        "val",
        "--json",
        str(run / "val-scores.json"),
    )
    assert evaluated.returncode == 0, evaluated.stderr
    models = tmp_path / "models"
    bundled = saunet(
        "saunet.quantize.bundle", str(run), str(run / "export" / "saunet_int8_ptq.tflite"), "--dest", str(models)
    )
    assert bundled.returncode == 0, bundled.stderr
    notes = tmp_path / "notes.md"
    notes.write_text("Where it falls short: everywhere (a one-epoch test run).\n")
    report_file = next(reports.glob("*.json"))
    result = saunet(
        "saunet.benchmarks.model_card",
        "--record",
        str(run),
        "--bench",
        str(report_file),
        "--notes",
        str(notes),
        "--models",
        str(models),
    )
    assert result.returncode == 0, result.stderr
    card = (models / "MODEL_CARD.md").read_text()

    lcc = rows_of(reports)["tflite int8-ptq"]["scores"]["dice_3d_lcc"]["mean"]
    assert f"int8 model. {'Met' if lcc >= 0.85 else 'Missed'}: {lcc:.3f}**" in card, "goal line from the report"
    low, high = bootstrap_interval(
        [p["dice_3d_lcc"] for p in rows_of(reports)["tflite int8-ptq"]["scores"]["per_patient"]]
    )
    reading = (
        "lies below the goal" if high < 0.85 else "lies above the goal" if low > 0.85 else "the goal lies inside it"
    )
    assert f"patients is {low:.3f} to\n{high:.3f}: " in card and reading in card, (
        "the goal read against the interval of the int8 mean"
    )
    assert "| int8 PTQ (bundled) |" in card, "the bundled file's kind"
    rule = pick_int8(read_reports(run / "export"))
    assert ("Bundled: the **int8 PTQ** file, the rule's pick: mask agreement " in card) == (
        rule is not None and rule.format == "int8-ptq"
    )
    assert ("Bundled: the **int8 PTQ** file, named by hand; the rule picks " in card) != (
        rule is not None and rule.format == "int8-ptq"
    ), "the card says whether the bundled file is the rule's pick"
    assert "Where it falls short: everywhere" in card
    assert "| int8 | " in card and "| gate |" in card, "the validation parity table"
    val = json.loads((run / "val-scores.json").read_text())
    assert f"| per-patient 3D Dice, mean | {val['dice_3d']['mean']:.3f} |" in card

    config = json.loads((run / "config.json").read_text())
    command = training_command(config).replace("\\\n", " ").split()
    assert command[0] == "saunet-train"
    parsed = train.make_context("saunet-train", command[1:]).params
    assert (parsed["input_size"], parsed["epochs"], parsed["batch_size"], parsed["split_text"], parsed["seed"]) == (
        32,
        1,
        8,
        "0.6/0.2/0.2",
        0,
    ), "the card's command should make the run's config again"
    assert " ".join(command) in " ".join(card.replace("\\\n", " ").split())

    other = json.loads(report_file.read_text())
    other["run"] = "another-run"
    (tmp_path / "other.json").write_text(json.dumps(other))
    refused = saunet(
        "saunet.benchmarks.model_card",
        "--record",
        str(run),
        "--bench",
        str(tmp_path / "other.json"),
        "--notes",
        str(notes),
        "--models",
        str(models),
        "--out",
        str(tmp_path / "card.md"),
    )
    assert refused.returncode == 1 and not (tmp_path / "card.md").exists()
    assert refused.stderr.strip().splitlines()[-1].startswith("error: not one run: ")


def test_model_card_reports_a_bundled_ensemble_beside_the_single_model(quick_report, tmp_path: Path) -> None:
    _, run, reports = quick_report
    data = run.parent / "data" / "kaggle_3m"
    if not (run / "val-scores.json").exists():
        evaluated = saunet(
            "saunet.training", "eval", "--data", str(data), "--model", str(run), "--split", "val", "--json",
            str(run / "val-scores.json"),
        )  # fmt: skip
        assert evaluated.returncode == 0, evaluated.stderr
    models = tmp_path / "models"
    bundled = saunet(
        "saunet.quantize.bundle", str(run), str(run / "export" / "saunet_int8_ptq.tflite"), "--dest", str(models)
    )
    assert bundled.returncode == 0, bundled.stderr
    (models / "ensemble").mkdir()
    members = []
    for fold, name in enumerate(("saunet_int8_ptq.tflite", "saunet_int8.tflite")):
        shutil.copyfile(run / "export" / name, models / "ensemble" / f"fold{fold}_int8.tflite")
        members.append(
            {
                "fold": fold,
                "run": f"cv/fold{fold}",
                "epochs": 100,
                "validation_patients": 3,
                "format": "int8-ptq",
                "chosen": "why",
            }
        )
    command = "saunet-train --data data/kaggle_3m --out runs/cv/fold0 --epochs 100 --folds 2 --fold 0"
    description = {
        "models": [f"fold{i}_int8.tflite" for i in (0, 1)],
        "tta": True,
        "members": members,
        "training": command,
    }
    (models / "ensemble" / "ensemble.json").write_text(json.dumps(description))
    summary = {"mean": 0.8, "median": 0.85, "interval": [0.75, 0.84]}
    change = {"mean": 0.01, "interval": [0.001, 0.02], "better": 5, "worse": 2}
    oof = {
        "date": "2026-12-06",
        "machine": "x",
        "runs": ["runs/cv/fold0", "runs/cv/fold1"],
        "patients": 6,
        "summary": {"plain": summary, "tta": {**summary, "mean": 0.81}, "tta+holes": {**summary, "mean": 0.82}},
        "against_plain": {"tta": change},
    }
    (tmp_path / "oof.json").write_text(json.dumps(oof))
    notes = tmp_path / "notes.md"
    notes.write_text("Notes.\n")
    args = ["--record", str(run), "--bench", str(next(reports.glob("*.json"))), "--notes", str(notes)]
    missing = saunet("saunet.benchmarks.model_card", *args, "--models", str(models))
    assert missing.returncode == 1 and "--oof" in missing.stderr.strip().splitlines()[-1]
    written = saunet(
        "saunet.benchmarks.model_card", *args, "--models", str(models), "--oof", str(tmp_path / "oof.json")
    )
    assert written.returncode == 0, written.stderr
    card = (models / "MODEL_CARD.md").read_text()
    assert "**the default of `saunet-run`**" in card and "`saunet-run --fast`" in card
    rows = rows_of(reports)
    for label, name in (
        ("ensemble of 2, mirrored too", "tflite int8 ensemble of 2 --tta"),
        ("single int8", "tflite int8-ptq"),
    ):
        lcc = rows[name]["scores"]["dice_3d_lcc"]["mean"]
        scores = rows[name]["scores"]
        (line,) = [line for line in card.splitlines() if line.startswith(f"| {label}")]
        assert f"| {scores['threshold']:g} | {scores['dice_3d_filled']['mean']:.3f} | {lcc:.3f} (" in line, (
            label,
            line,
        )
    assert "| the same, mirrored scan averaged in | 0.810 (0.750 to 0.840) | 0.850 |" in card
    assert (
        "| saunet-run's default (mirrored scan averaged in, holes filled, the members' threshold) | 0.820 (0.750 to"
        in card
    ), "the out-of-fold figure of what saunet-run does by default"
    assert f"    {command}\n" in card and "final model (epoch 100)" in card, "the folds' own training command"
    assert "(the ensemble's is its members' own)" in card
    assert "by +0.0100 (paired 95% interval\n+0.0010 to +0.0200; 5 patients better" in card


def test_the_cards_ensemble_goals_follow_the_figures():
    from saunet.benchmarks.model_card import ensemble_goals

    def scores(values: list[float]) -> dict:
        return {
            "per_patient": [{"patient": f"p{i}", "dice_3d_lcc": v, "dice_3d_filled": v} for i, v in enumerate(values)]
        }

    oof = {"mean": 0.79, "interval": [0.74, 0.83]}
    text = ensemble_goals(scores([0.88, 0.90, 0.86]), scores([0.80, 0.92, 0.85]), oof, 15.8)
    assert "at least 0.87: **met, 0.880**" in text
    assert "at least 0.86: **missed, 0.790**" in text and "the whole interval lies below the goal" in text
    assert "at most 60 ms: **met, 15.8 ms**" in text
    assert "+0.0233 (95% bootstrap" in text and "better 2, worse 1" in text, "paired by patient, ensemble minus single"
    slow = ensemble_goals(scores([0.80]), scores([0.80]), {**oof, "mean": 0.87, "interval": [0.861, 0.88]}, 61.0)
    assert "**missed, 0.800**" in slow and "at least 0.86: **met, 0.870**" in slow and "**missed, 61.0 ms**" in slow
    assert "lies above the goal" in slow


def test_the_cards_default_row_is_the_out_of_fold_variant_saunet_run_applies():
    from saunet.benchmarks.model_card import default_variant

    assert default_variant({"tta": False, "threshold": 0.4}) == "holes@0.4"
    assert default_variant({"tta": False}) == "holes"
    assert default_variant({"tta": True}) == "tta+holes"
    assert default_variant({"tta": True, "threshold": 0.4}) is None, "cv_decisions scores no such variant"


def test_goal_reading_names_where_the_interval_lies():
    from saunet.benchmarks.model_card import GOAL, goal_reading

    assert goal_reading(GOAL - 0.2, GOAL - 0.01) == "the whole interval lies below the goal"
    assert goal_reading(GOAL + 0.01, GOAL + 0.1) == "the whole interval lies above the goal"
    assert goal_reading(GOAL - 0.1, GOAL + 0.02).startswith("the goal lies inside it")


def test_model_card_says_whether_dropblock_was_on_in_training():
    from saunet.benchmarks.model_card import dropblock_text

    on = dropblock_text({"dropblock": True, "block_size": 7, "keep_prob": 0.9})
    assert "block 7" in on and "keep 0.9" in on
    assert dropblock_text({"dropblock": True, "block_size": 7, "keep_prob": 1.0}).startswith("DropBlock off")
    assert dropblock_text({"dropblock": False, "block_size": 7, "keep_prob": 0.9}) == "no DropBlock"


def test_flair_contrast_is_the_tumours_mean_over_the_rest_of_the_heads():
    from saunet.benchmarks.intensity_levels import flair_contrast

    images = np.zeros((1, 8, 8, 3), np.uint8)
    images[0, 2:6, 2:6] = (40, 50, 40)  # the head
    images[0, 3:5, 3:5, 1] = 100  # a tumour twice as bright in FLAIR (channel 1)
    masks = np.zeros((1, 8, 8), np.uint8)
    masks[0, 3:5, 3:5] = 1
    assert flair_contrast(images, masks) == pytest.approx(2.0)
    assert flair_contrast(images, np.zeros_like(masks)) is None
