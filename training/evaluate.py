"""Scoring a model on a split's patients with the shared numpy metrics (saunet.runtime.metrics)."""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from saunet.runtime.metrics import METRIC_NAMES, score_patients, summary_rows
from saunet.runtime.preprocess import Preprocessing, model_pixels, resize_probability
from saunet.training.dataset import BadFiles, DataError, Volume, find_cases, load_cases

#: uint8 scans (n, h, w, 3) -> tumour probabilities (n, h, w)
Predictor = Callable[[np.ndarray], np.ndarray]


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
        raise DataError(f"{where}: {'missing' if where.name == 'split.json' else 'keeps no patient split'}; "
                        "pass --split all, or a model inside a run folder")
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
    """The summary figures as a terminal table, and a line per patient."""
    def fmt(value) -> str:
        return "n/a" if value is None else f"{value:.4f}"

    rows = summary_rows(scores, fmt)
    width, value_width = max(len(name) for name, _ in rows), max(len(value) for _, value in rows)
    lines = [title, "-" * (width + value_width + 2)]
    lines += [f"{name:<{width}}  {value:>{value_width}}" for name, value in rows]
    lines.append("")
    lines += [f"{p['patient']:<28} slices {p['slices']:>3}  Dice {fmt(p['dice_3d'])}  "
              f"largest component {fmt(p['dice_3d_lcc'])}" for p in scores["per_patient"]]
    return "\n".join(lines)


def load_keras_model(path: Path):
    """(model, run folder, preprocessing) for a run folder, a .keras file in one, or a bundled .keras file."""
    from saunet.training.keras import keras
    from saunet.training.train import custom_objects

    model_file = path / "best.keras" if path.is_dir() else path
    run = model_file.parent
    if not model_file.is_file():
        raise DataError(f"{model_file}: no such model file")
    try:
        model = keras.models.load_model(model_file, custom_objects=custom_objects(), compile=False)
    except Exception as error:  # Keras raises many types for a bad file
        raise DataError(f"{model_file}: not a loadable Keras model ({type(error).__name__})") from None
    # A run keeps the preprocessing in config.json; a bundled model in <name>.json beside it.
    config = next((f for f in (run / "config.json", model_file.with_suffix(".json")) if f.is_file()), None)
    spec = Preprocessing.from_dict(read_json(config).get("preprocessing", {})) if config \
        else Preprocessing(input_size=model.input_shape[1])
    return model, run, spec


__all__ = ["METRIC_NAMES", "format_table", "summary_rows", "keras_predictor", "load_keras_model", "load_split", "model_split",
           "predict_volumes",
           "score"]
