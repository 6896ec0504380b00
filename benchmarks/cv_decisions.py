"""The post-processing and test-time-flip decisions of docs/experiments.md (rule 2), on out-of-fold predictions.

    python -m saunet.benchmarks.cv_decisions --data data/kaggle_3m --json REPORT.json runs/cv5-saunet/fold* \
        [--thresholds 0.4,0.3]

Each non-test patient is predicted by the fold model that did not train on it (each fold's final
model, last.keras), once as stored and once mirrored left-right. Per patient, the 3D Dice with the
largest 6-connected component kept is scored four ways: as is, with the mirrored prediction
averaged in (`--tta`), with each slice's enclosed holes filled after the largest component
(saunet.runtime.volumes.postprocess, as saunet-run does), and both.
Each variant is compared with the plain one, paired over the same patients. Each of
`--thresholds` (rule 5) is scored with the default post-processing (largest component, holes
filled) and compared, paired, with that default at the models' own threshold.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from saunet.benchmarks.report import stamped, write_json
from saunet.runtime.metrics import bootstrap_interval, dice, format_difference, paired_difference
from saunet.runtime.volumes import postprocess

VARIANTS = ("plain", "tta", "holes", "tta+holes")


def variant_dice(
    probability: np.ndarray, mirrored: np.ndarray, truth: np.ndarray, threshold: float, others: tuple[float, ...] = ()
) -> dict:
    """Per-patient 3D Dice (largest component kept) of the four variants, and of the default at `others`.

    Each mask is saunet-run's own post-processing (saunet.runtime.volumes.postprocess).
    """
    scores = {}
    for name in VARIANTS:
        p = (probability + mirrored) / 2 if name.startswith("tta") else probability
        scores[name] = dice(postprocess(p, threshold, True, name.endswith("holes")), truth)
    for t in others:
        scores[threshold_variant(t)] = dice(postprocess(probability, t, True, True), truth)
    return scores


def threshold_variant(t: float) -> str:
    return f"holes@{t:g}"


def thresholds(text: str) -> tuple[float, ...]:
    """--thresholds: comma-separated probabilities strictly between 0 and 1."""
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of numbers") from None
    if not all(0 < v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"{text!r}: each threshold must lie strictly between 0 and 1")
    return values


def main() -> None:
    import saunet.training  # noqa: F401  (Keras 2 before TensorFlow)
    from saunet.training.evaluate import is_fold_run, keras_predictor, load_keras_model, load_split, model_split

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, nargs="+", help="the fold run folders of one cross-validation")
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--thresholds", type=thresholds, default=(), help="rule 5's candidates, e.g. 0.4,0.3")
    args = parser.parse_args()
    names = VARIANTS + tuple(threshold_variant(t) for t in args.thresholds)
    rows = []
    for run in args.runs:
        if not is_fold_run(run):
            parser.error(f"{run}: not a run of saunet-train --folds")
        split = model_split(run)[1]
        model, _, spec = load_keras_model(run, "last")
        predict = keras_predictor(model, spec)
        for volume in load_split(args.data, split["val"]):
            probability = predict(volume.images)
            mirrored = predict(np.ascontiguousarray(volume.images[:, :, ::-1]))[:, :, ::-1]
            rows.append(
                {
                    "patient": volume.case,
                    "fold": split["fold"],
                    **variant_dice(probability, mirrored, volume.masks, spec.threshold, args.thresholds),
                }
            )
            print(
                f"fold {split['fold']} {volume.case}: " + ", ".join(f"{k} {rows[-1][k]:.4f}" for k in names),
                flush=True,
            )
    summary = {
        name: {
            "mean": float(np.mean([r[name] for r in rows])),
            "median": float(np.median([r[name] for r in rows])),
            "interval": bootstrap_interval([r[name] for r in rows]),
        }
        for name in names
    }
    against = {name: paired_difference([r[name] for r in rows], [r["plain"] for r in rows]) for name in VARIANTS[1:]}
    against_default = {
        name: paired_difference([r[name] for r in rows], [r["holes"] for r in rows]) for name in names[len(VARIANTS) :]
    }
    for name in names:
        line = (
            f"{name:<10} mean {summary[name]['mean']:.4f} ({summary[name]['interval'][0]:.4f} to "
            f"{summary[name]['interval'][1]:.4f}), median {summary[name]['median']:.4f}"
        )
        for base, differences in (("plain", against), ("holes", against_default)):
            if name in differences:
                line += f"; vs {base} {format_difference(differences[name])}"
        print(line)
    if args.json:
        write_json(
            args.json,
            stamped(
                {
                    "runs": [str(r) for r in args.runs],
                    "patients": len(rows),
                    "metric": "per-patient 3D Dice, largest 6-connected component kept",
                    "summary": summary,
                    "against_plain": against,
                    "against_holes": against_default,
                    "per_patient": rows,
                }
            ),
        )


if __name__ == "__main__":
    main()
