"""Scoring a model on a split's patients with the shared numpy metrics (saunet.runtime.metrics)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from saunet.runtime.ensemble import Predictor, averaged, mirrored
from saunet.runtime.metrics import (
    METRIC_NAMES,
    format_difference,
    paired_difference,
    score_patients,
    summary_rows,
)
from saunet.runtime.preprocess import Preprocessing, model_pixels, resize_probability
from saunet.runtime.spec import ModelSpec
from saunet.training.dataset import BadFiles, DataError, Volume, find_cases, load_cases


def keras_predictor(model, spec: Preprocessing, batch_size: int = 16) -> Predictor:
    """Wraps a Keras model as saunet-run uses a TFLite one: the runtime's resizing,
    normalisation and scaling, predict, and the probabilities resized back to the scans' own size."""

    def predict(images: np.ndarray) -> np.ndarray:
        height, width = images.shape[1:3]
        resized = (height, width) != (spec.input_size, spec.input_size)
        inputs = np.stack([model_pixels(image, spec) for image in images]).astype(np.float32) * np.float32(spec.scale)
        probabilities = model.predict(inputs, batch_size=batch_size, verbose=0)[..., 0]
        if resized:
            probabilities = np.stack([resize_probability(p, height, width) for p in probabilities])
        return probabilities

    return predict


def read_json(path: Path) -> dict:
    """A JSON file kept with a model (split.json, config.json, the bundled model's .json)."""
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise DataError(f"{path}: corrupt JSON ({error})") from None


def model_split(path: Path) -> tuple[Path, dict | None]:
    """Where the patient split of the model at `path` is kept, and the split (None if it is not).

    A run folder (or a .keras file in one) keeps it in split.json; a bundled model in the
    `split` of the .json beside it (saunet.quantize.bundle writes it there).
    """
    model_file = path / "best.keras" if path.is_dir() else path
    beside = model_file.with_suffix(".json")
    if beside.is_file() and not (model_file.parent / "split.json").is_file():
        return beside, read_json(beside).get("split")
    where = model_file.parent / "split.json"
    return where, read_json(where) if where.is_file() else None


def split_cases_of(path: Path, split: str) -> list[str]:
    """The case names of `split` in the split of the model at `path` (see model_split)."""
    where, cases = model_split(path)
    if cases is None:
        raise DataError(
            f"{where}: {'missing' if where.name == 'split.json' else 'keeps no patient split'}; "
            "pass --split all, or a model inside a run folder"
        )
    if split not in cases or not isinstance(cases[split], list):
        raise DataError(f"{where}: has no split named {split!r}")
    return cases[split]


def load_split(data: Path, names: list[str] | None, skip_bad: bool = False) -> list[Volume]:
    """Loads the named cases (all when None) from a data folder, as stored (scores are taken
    at the masks' own resolution, whatever the model's input size)."""
    cases = find_cases(data, BadFiles(skip_bad))
    if names is not None:
        wanted = set(names)
        missing = wanted - {c.name for c in cases}
        if missing:
            raise DataError(f"{data}: lacks {len(missing)} case(s) of the split, e.g. {sorted(missing)[0]}")
        cases = [c for c in cases if c.name in wanted]
    return load_cases(cases, None, BadFiles(skip_bad))


def predict_volumes(volumes: list[Volume], predict: Predictor) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Probabilities and truth per case, slices in order (what score_patients takes)."""
    return {v.case: (predict(v.images), v.masks) for v in volumes}


def score(volumes: list[Volume], predict: Predictor, threshold: float) -> dict:
    return score_patients(predict_volumes(volumes, predict), threshold)


def format_table(scores: dict, title: str) -> str:
    """The summary figures as a terminal table, and a line per patient (with the true and predicted
    tumour volumes, so that under- and over-segmentation show at a glance)."""

    def fmt(value) -> str:
        return "n/a" if value is None else f"{value:.4f}"

    rows = summary_rows(scores, fmt)
    width, value_width = max(len(name) for name, _ in rows), max(len(value) for _, value in rows)
    lines = [title, "-" * (width + value_width + 2)]
    lines += [f"{name:<{width}}  {value:>{value_width}}" for name, value in rows]
    lines.append("")
    lines += [
        f"{p['patient']:<28} slices {p['slices']:>3}  Dice {fmt(p['dice_3d'])}  "
        f"largest component {fmt(p['dice_3d_lcc'])}"
        + (f"  holes filled {fmt(p['dice_3d_filled'])}" if "dice_3d_filled" in p else "")
        + f"  tumour voxels {p['tumour_voxels_true']} true, {p['tumour_voxels_pred']} predicted"
        + (f"  fold {p['fold']}" if "fold" in p else "")
        for p in scores["per_patient"]
    ]
    return "\n".join(lines)


CHECKPOINTS = ("best", "last")


def is_fold_run(path: Path) -> bool:
    """Whether `path` is (or is a model inside) a run of saunet-train --folds."""
    where, split = model_split(path)
    return where.name == "split.json" and split is not None and bool(split.get("folds"))


def load_keras_model(path: Path, checkpoint: str = "best"):
    """(model, run folder, preprocessing) for a run folder (its best.keras or last.keras), a .keras
    file in one, or a bundled .keras file."""
    from saunet.training.keras import keras
    from saunet.training.model import custom_objects

    model_file = path / f"{checkpoint}.keras" if path.is_dir() else path
    run = model_file.parent
    if not model_file.is_file():
        raise DataError(f"{model_file}: no such model file")
    try:
        model = keras.models.load_model(model_file, custom_objects=custom_objects(), compile=False)
    except Exception as error:  # Keras raises many types for a bad file
        raise DataError(f"{model_file}: not a loadable Keras model ({type(error).__name__})") from None
    spec = model_spec_of(model_file)
    check_architecture(model, spec, model_file)
    return model, run, spec.preprocessing


def check_architecture(model, spec: ModelSpec, model_file: Path) -> None:
    """Refuses a model whose weights are not those of the network its description names."""
    from saunet.training.model import build_saunet

    expected = [tuple(w.shape) for w in build_saunet(spec, channels=model.input_shape[-1]).weights]
    if [tuple(w.shape) for w in model.weights] != expected:
        raise DataError(
            f"{model_file}: not a saunet model as its description says ({spec.preset}, widths "
            f"{list(spec.filters)}; {model.count_params():,} parameters)"
        )


def model_spec_of(path: Path) -> ModelSpec:
    """The description of the model at `path` (a run folder, a .keras file in one, or a bundled .keras file).

    A run keeps it in config.json (runs from before the description existed: rebuilt from their
    settings, which determine it); a bundled model in <name>.json beside it.
    """
    from saunet.training.config import TrainConfig

    model_file = path / "best.keras" if path.is_dir() else path
    for where in (model_file.parent / "config.json", model_file.with_suffix(".json")):
        if where.is_file():
            values = read_json(where)
            try:
                if "model" in values:
                    return ModelSpec.from_dict(values["model"])
                if "preset" in values:
                    return TrainConfig.from_dict({"data": "", "out": "", **values}).model_spec()
            except (TypeError, ValueError) as error:
                raise DataError(f"{where}: not a saunet model description ({error})") from None
    raise DataError(f"{model_file}: no model description beside it (a run's config.json, or {model_file.stem}.json)")


def fold_splits(runs: list[Path]) -> list[dict]:
    """The runs' splits, checked to be distinct folds of one cross-validation (same folds, same test patients)."""
    if not all(is_fold_run(run) for run in runs):
        raise DataError(
            "this needs runs of saunet-train --folds; "
            + ", ".join(str(r) for r in runs if not is_fold_run(r))
            + " is not one"
        )
    splits = [model_split(run)[1] for run in runs]
    if len({(s["folds"], tuple(s["test"])) for s in splits}) != 1:
        raise DataError("the runs are folds of different cross-validations (other --folds, --split or --seed)")
    folds = [s["fold"] for s in splits]
    if len(set(folds)) != len(folds):
        raise DataError(f"fold {next(f for f in folds if folds.count(f) > 1)} is given twice")
    return splits


def out_of_fold(data: Path, runs: list[Path], checkpoint: str, tta: bool, skip_bad: bool = False) -> dict:
    """Scores every validation patient of a cross-validation by the fold model that did not train on it.

    The runs must be folds of one cross-validation (same number of folds, same test patients, no
    patient validated twice). Returns score_patients' dict over the union of the folds' patients,
    with each patient's fold.
    """
    splits = fold_splits(runs)
    folds = [s["fold"] for s in splits]
    probabilities, fold_of = {}, {}
    for run, split in zip(runs, splits):
        model, _, spec = load_keras_model(run, checkpoint)
        predict = keras_predictor(model, spec)
        for volume in load_split(data, split["val"], skip_bad):
            probabilities[volume.case] = (predict_with(predict, tta)(volume.images), volume.masks)
            fold_of[volume.case] = split["fold"]
    scores = score_patients(probabilities, spec.threshold)
    for row in scores["per_patient"]:
        row["fold"] = fold_of[row["patient"]]
    return {**scores, "folds": sorted(folds), "of_folds": splits[0]["folds"]}


#: The per-patient figures two reports are compared on, with their names in print.
PAIRED = {"dice_3d": "Dice", "dice_3d_lcc": "largest component", "dice_3d_filled": "largest component, holes filled"}


def read_scores(path: Path) -> dict:
    """Another saunet-eval --json report (its per-patient rows), for --against."""
    report = read_json(path)
    rows = report.get("per_patient") if isinstance(report, dict) else None
    if not isinstance(rows, list) or not all(isinstance(r, dict) and "patient" in r for r in rows):
        raise DataError(f"{path}: not a saunet-eval --json report (no per-patient rows)")
    return report


def paired_against(scores: dict, other: dict) -> dict:
    """This report minus another over their shared patients: each of PAIRED's figures both hold, paired.

    A change (a training recipe, an ensemble) is judged by its per-patient differences on the same
    patients, which vary far less than the patients do: nnU-Net-style cross-validation
    comparisons in a form a decision rule can name.
    """
    theirs = {row["patient"]: row for row in other["per_patient"]}
    shared = [row for row in scores["per_patient"] if row["patient"] in theirs]
    if not shared:
        raise DataError("the two reports have no patient in common")
    out: dict = {"patients": len(shared)}
    for key in PAIRED:
        if all(key in row and key in theirs[row["patient"]] for row in shared):
            out[key] = paired_difference([row[key] for row in shared], [theirs[row["patient"]][key] for row in shared])
    return out


def format_against(against: dict, name: str) -> str:
    """The paired differences as lines: mean, 95% interval, patients better and worse."""
    lines = [f"this minus {name}, paired over {against['patients']} shared patient(s):"]
    for key, label in PAIRED.items():
        if key in against:
            lines.append(f"  {label}: {format_difference(against[key])}")
    return "\n".join(lines)


def predict_with(predict: Predictor, tta: bool) -> Predictor:
    return mirrored(predict) if tta else predict


def ensemble_predictor(runs: list[Path], checkpoint: str, tta: bool) -> tuple[Predictor, Preprocessing]:
    """The averaged probabilities of several models (one: itself); their preprocessing must agree."""
    predictors, specs = [], []
    for run in runs:
        model, _, spec = load_keras_model(run, checkpoint)
        predictors.append(keras_predictor(model, spec))
        specs.append(spec)
    if any(s.to_dict() != specs[0].to_dict() for s in specs):
        raise DataError(f"{runs[0]} and the other models preprocess scans differently; an ensemble needs one")
    return predict_with(averaged(predictors), tta), specs[0]


def shared_split(runs: list[Path], split: str) -> list[str]:
    """The cases of `split` that every model keeps aside the same way (an ensemble is scored on them)."""
    lists = [split_cases_of(run, split) for run in runs]
    if any(sorted(cases) != sorted(lists[0]) for cases in lists):
        raise DataError(f"the models' {split!r} patients differ; an ensemble is scored on patients none trained on")
    return lists[0]


__all__ = [
    "CHECKPOINTS",
    "METRIC_NAMES",
    "ensemble_predictor",
    "fold_splits",
    "format_against",
    "format_table",
    "keras_predictor",
    "load_keras_model",
    "load_split",
    "model_spec_of",
    "model_split",
    "out_of_fold",
    "paired_against",
    "predict_volumes",
    "read_scores",
    "score",
    "shared_split",
    "summary_rows",
]
