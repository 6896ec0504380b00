"""Ensembles and test-time mirroring over any predictor, defined once for the device and training.

A predictor maps uint8 scans (n, h, w, 3) to tumour probabilities (n, h, w). Averaging the
probabilities of models trained on different folds, and of a scan and its left-right mirror
(the head is near-symmetric, and every model here trained with random left-right flips), is what
nnU-Net does at prediction; the mask is thresholded after averaging.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from saunet.runtime.metadata import ModelError

Predictor = Callable[[np.ndarray], np.ndarray]
#: The description a bundled ensemble's folder holds (written by saunet.quantize.bundle_ensemble).
ENSEMBLE_FILE = "ensemble.json"


@dataclass(frozen=True)
class BundledEnsemble:
    """Several int8 models averaged, as one description file names them.

    Args:
        models: the member files, beside the description.
        tta: whether the mirrored scan is averaged too unless the user says otherwise.
        test_patients: the patients none of the members trained on (the model card's test set).
        threshold: the probability threshold of the averaged probabilities, when the
            cross-validation decided one other than the members' own (None: theirs).
    """

    models: tuple[Path, ...]
    tta: bool
    test_patients: tuple[str, ...]
    threshold: float | None = None

    @classmethod
    def read(cls, path: Path) -> BundledEnsemble:
        """Reads and checks a description; a missing member or a malformed file is a ModelError."""
        try:
            values = json.loads(path.read_text())
            models = tuple(path.parent / name for name in values["models"])
            tta, test = values["tta"], tuple(values.get("test_patients", ()))
            threshold = values.get("threshold")
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise ModelError(path, f"is not an ensemble description ({type(error).__name__}: {error})") from None
        if not models or not isinstance(tta, bool):
            raise ModelError(path, "names no models, or its tta is not true/false")
        if threshold is not None and not (isinstance(threshold, (int, float)) and 0 < threshold < 1):
            raise ModelError(path, f"threshold {threshold!r} is not a number between 0 and 1")
        missing = [m.name for m in models if not m.is_file()]
        if missing:
            raise ModelError(path, f"names models that are not beside it: {', '.join(missing)}")
        return cls(models, tta, test, None if threshold is None else float(threshold))


def mirrored(predict: Predictor) -> Predictor:
    """The mean of the prediction of the scans and the mirrored-back prediction of their mirrors."""

    def predict_both(images: np.ndarray) -> np.ndarray:
        flipped = np.ascontiguousarray(images[:, :, ::-1])
        return 0.5 * (predict(images) + predict(flipped)[:, :, ::-1])

    return predict_both


def averaged(predictors: Sequence[Predictor]) -> Predictor:
    """The mean of several models' probabilities (one model: itself)."""
    if not predictors:
        raise ValueError("an ensemble needs at least one model")
    if len(predictors) == 1:
        return predictors[0]

    def predict_mean(images: np.ndarray) -> np.ndarray:
        total = predictors[0](images).astype(np.float32)
        for predict in predictors[1:]:
            total += predict(images)
        return total / np.float32(len(predictors))

    return predict_mean


def combined(segmenters: Sequence, tta: bool) -> Callable:
    """One scan's Prediction from several device models, each also shown the mirrored scan with `tta`.

    The probabilities are averaged as `averaged` and `mirrored` do; the times are summed, since
    on the device each model runs in turn.
    """
    from saunet.runtime.segmenter import Prediction

    def predict(pixels: np.ndarray) -> Prediction:
        parts = [s.predict(pixels) for s in segmenters]
        if tta:
            flipped = np.ascontiguousarray(pixels[:, ::-1])
            mirrors = [s.predict(flipped) for s in segmenters]
            for part in mirrors:
                part.probability = part.probability[:, ::-1]
            parts += mirrors
        if len(parts) == 1:
            return parts[0]
        probability = parts[0].probability.astype(np.float32)
        for part in parts[1:]:
            probability = probability + part.probability
        return Prediction(
            probability / np.float32(len(parts)),
            sum(p.preprocess_ms for p in parts),
            sum(p.invoke_ms for p in parts),
            sum(p.postprocess_ms for p in parts),
        )

    return predict
